#!/bin/sh
# demo-app.sh up|down: WordPress with runh under podman or Docker
# (docs/demo-app.md); $DEMO_APP_ENGINE (podman, the default, or docker)
# chooses the engine.
#
# up: imports the images scripts/mkapp.sh built (tagged with their cache
# key), makes a network (runh-demo-app) and a volume (runh-demo-app-db),
# starts MariaDB with runtime $DEMO_APP_DB and WordPress with $DEMO_APP_WEB
# (runh or runh-vm, default runh-vm and runh; for podman also a path),
# publishes the site on $DEMO_APP_ADDR:$DEMO_APP_PORT, waits for its first
# page, and prints the URL, each container's isolation (runh's record of it,
# and the kernel the container runs on) and the time from the first `run`
# to that page.
# down: removes all of that, images included.
#
# podman: the host's, runh's runtimes named by path. The web server finds
# the database at a fixed address (--add-host): podman 4.3's CNI networks
# have no name service without the dnsname plugin.
# Docker: the runtimes runh and runh-vm registered with dockerd; the web
# server finds the database by its container name (the embedded DNS). If no
# dockerd answers, the demo starts its own (socket, state and data under
# $own and $own_data, no iptables rules, no default bridge), which down stops.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
engine=${DEMO_APP_ENGINE:-podman}
name=runh-demo-app
db=$name-db
web=$name-web
vol=$name-db
db_img=localhost/runh-app-db
web_img=localhost/runh-app-web
own=/run/$name-docker
own_data=/var/lib/$name-docker

ms() { echo $(($(date +%s%N) / 1000000)); }
die() {
	echo "demo-app: $*" >&2
	exit 1
}

case $engine in
podman) cli=podman ;;
docker)
	# Debian's client speaks dockerd 20.10's API; another docker in PATH may not.
	cli=docker
	[ -x /usr/bin/docker ] && cli=/usr/bin/docker
	;;
*) die "DEMO_APP_ENGINE=$engine: podman or docker" ;;
esac
command -v "$cli" >/dev/null || die "$engine not installed (apt-get install $([ "$engine" = docker ] && echo docker.io || echo podman))"

# ownDockerd: true if the demo's own dockerd runs; it is then the one used.
ownDockerd() {
	pid=$(cat "$own/dockerd.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || return 1
	export DOCKER_HOST=unix://$own/docker.sock
}

# startDockerd starts the demo's own dockerd with runh's two runtimes. No
# iptables or ip_forward changes and no default bridge: the site is
# published through docker-proxy, the containers share a user-defined
# bridge, and the embedded DNS's rules are in the containers' namespaces.
startDockerd() {
	command -v dockerd >/dev/null || die "no dockerd answers and none is installed (apt-get install docker.io)"
	mkdir -p "$own/exec" "$own_data"
	cat >"$own/daemon.json" <<-EOF
	{
	  "runtimes": {
	    "runh": { "path": "$top/bin/runh" },
	    "runh-vm": { "path": "$top/bin/runh-vm" }
	  },
	  "cgroup-parent": "$name"
	}
	EOF
	setsid dockerd --config-file "$own/daemon.json" --data-root "$own_data" --exec-root "$own/exec" \
		--pidfile "$own/dockerd.pid" -H "unix://$own/docker.sock" \
		--iptables=false --ip6tables=false --ip-forward=false --bridge=none \
		</dev/null >"$own/dockerd.log" 2>&1 &
	export DOCKER_HOST=unix://$own/docker.sock
	i=0
	until "$cli" info >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 120 ] || die "dockerd did not answer within a minute; its log: $own/dockerd.log"
		sleep 0.5
	done
	echo "demo-app: no dockerd answered: started the demo's own (DOCKER_HOST=$DOCKER_HOST; make demo-app-down stops it)"
}

# stopDockerd stops the demo's own dockerd (it stops its containerd) and
# removes its state, data and cgroup parent.
stopDockerd() {
	pid=$(cat "$own/dockerd.pid")
	kill "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 60 ]; do
		i=$((i + 1))
		sleep 0.5
	done
	kill -0 "$pid" 2>/dev/null && die "dockerd $pid still runs 30 s after SIGTERM; its log: $own/dockerd.log"
	rm -rf "$own" "$own_data"
	for d in /sys/fs/cgroup/*/"$name"; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null || true
	done
	echo "demo-app: stopped the demo's own dockerd ($pid)"
}

down() {
	own_up=false
	if [ "$engine" = docker ]; then
		if ownDockerd; then
			own_up=true
		elif ! "$cli" info >/dev/null 2>&1; then
			echo "demo-app: no dockerd answers: nothing to remove"
			rm -rf "$own" "$own_data"
			return
		fi
		"$cli" rm -f "$web" "$db" >/dev/null 2>&1 || true
		"$cli" network rm "$name" >/dev/null 2>&1 || true
	else
		"$cli" rm -f -t 5 "$web" "$db" >/dev/null 2>&1 || true
		"$cli" network rm -f "$name" >/dev/null 2>&1 || true
	fi
	"$cli" volume rm -f "$vol" >/dev/null 2>&1 || true
	for i in $("$cli" images --format '{{.Repository}}:{{.Tag}}' | grep -E "^($db_img|$web_img):" || true); do
		"$cli" rmi -f "$i" >/dev/null 2>&1 || true
	done
	echo "demo-app: removed containers $db and $web, network $name, volume $vol and the images ($engine)"
	if $own_up; then
		stopDockerd
	fi
}

case ${1:-} in
down)
	down
	exit 0
	;;
up) ;;
*)
	echo "usage: demo-app.sh up|down" >&2
	exit 2
	;;
esac

# A failure from here on leaves nothing behind: what the demo made is
# removed (the containers' logs were shown), and a dockerd it started for
# itself is stopped; what existed before is left alone.
made=false started=false
cleanup() {
	rc=$?
	[ "$rc" -eq 0 ] && return
	if $made; then
		echo "demo-app: failed: removing what it made" >&2
		down >&2
	elif $started; then
		stopDockerd >&2
	fi
}
trap cleanup EXIT

dbrt=${DEMO_APP_DB:-runh-vm}
webrt=${DEMO_APP_WEB:-runh}
port=${DEMO_APP_PORT:-8080}
addr=${DEMO_APP_ADDR:-127.0.0.1}
if [ "$engine" = docker ]; then
	if ! ownDockerd; then
		if "$cli" info >/dev/null 2>&1; then
			# The host's dockerd: it must know the runtimes by name.
			have=$("$cli" info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')
			for rt in "$dbrt" "$webrt"; do
				case " $have" in
				*" $rt "*) ;;
				*) die "dockerd has no runtime $rt: add \"runtimes\": {\"runh\": {\"path\": \"$top/bin/runh\"}, \"runh-vm\": {\"path\": \"$top/bin/runh-vm\"}} to /etc/docker/daemon.json and restart dockerd (docs/engines.md)" ;;
				esac
			done
		else
			startDockerd
			started=true
		fi
	fi
else
	# podman takes runh's runtimes by path.
	for v in dbrt webrt; do
		eval "rt=\$$v"
		case $rt in runh | runh-vm) eval "$v=\$top/bin/\$rt" ;; esac
	done
fi
for c in "$db" "$web"; do
	if "$cli" container inspect "$c" >/dev/null 2>&1; then
		die "$c exists already: make demo-app-down$([ "$engine" = docker ] && echo " DEMO_APP_ENGINE=docker") first"
	fi
done
if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
	die "port $port is in use: make demo-app DEMO_APP_PORT=..."
fi

dir=$("$top/scripts/mkapp.sh")
key=$(basename "$dir")
made=true
# podman's import reports its progress on stderr unless -q, which Docker's lacks.
quiet=
[ "$engine" = docker ] || quiet=-q
s=$(ms)
for im in "db:$db_img:app-db" "web:$web_img:app-web"; do
	tarball=${im%%:*}.tar
	rest=${im#*:}
	ref=${rest%%:*}:$key
	"$cli" image inspect "$ref" >/dev/null 2>&1 ||
		"$cli" import $quiet --change "ENTRYPOINT [\"/usr/local/bin/${rest#*:}\"]" "$dir/$tarball" "$ref" >/dev/null
done
echo "demo-app: images $db_img:$key and $web_img:$key ready in $engine ($((($(ms) - s) / 1000)) s)"

"$cli" network inspect "$name" >/dev/null 2>&1 || "$cli" network create "$name" >/dev/null
"$cli" volume inspect "$vol" >/dev/null 2>&1 || "$cli" volume create "$vol" >/dev/null
pw=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 20)
if [ "$engine" = docker ]; then
	# The embedded DNS finds the database by its name.
	dbargs=
	webargs="-e DB_HOST=$db"
else
	# A fixed address for the database: podman's CNI networks may have no
	# name service, and a restarted container could get another address.
	subnet=$("$cli" network inspect --format '{{range .Subnets}}{{.Subnet}}{{end}}' "$name")
	case $subnet in
	*.0/24) dbip=${subnet%0/24}10 ;;
	*) die "network $name has subnet $subnet, not a /24" ;;
	esac
	# podman's default ulimits (1048576 files and processes) exceed the hard
	# limits of a root without CAP_SYS_RESOURCE (docs/engines.md): ask for the
	# hard limits.
	nofile=$(ulimit -Hn)
	nproc=$(ulimit -Hp)
	[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
	ul="--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
	dbargs="--ip $dbip $ul"
	webargs="--add-host wp-db:$dbip -e DB_HOST=wp-db $ul"
fi

t0=$(ms)
# shellcheck disable=SC2086 # the args are words
"$cli" run -d --runtime "$dbrt" --name "$db" --network "$name" $dbargs \
	-v "$vol:/var/lib/mysql" -e DB_PASSWORD="$pw" "$db_img:$key" >/dev/null
# shellcheck disable=SC2086
"$cli" run -d --runtime "$webrt" --name "$web" --network "$name" $webargs \
	-p "$addr:$port:80" -e DB_PASSWORD="$pw" "$web_img:$key" >/dev/null
url=http://127.0.0.1:$port/
[ "$addr" = 0.0.0.0 ] || url=http://$addr:$port/
# The first page: WordPress's installer, served by PHP once the database answers.
until curl -fsS -m 60 "${url}wp-admin/install.php" 2>/dev/null | grep -q weblog_title; do
	if [ $(($(ms) - t0)) -gt 300000 ]; then
		echo "demo-app: no page after 5 minutes; the containers' logs:" >&2
		"$cli" logs --tail 20 "$db" >&2 || true
		"$cli" logs --tail 20 "$web" >&2 || true
		exit 1
	fi
	sleep 0.5
done
t=$(($(ms) - t0))

host=$(uname -r)
for c in "$db" "$web"; do
	id=$("$cli" inspect --format '{{.Id}}' "$c")
	if [ "$engine" = docker ]; then
		rt=$("$cli" inspect --format '{{.HostConfig.Runtime}}' "$c")
		# containerd's runc shim gives runh this --root.
		state=/run/docker/runtime-runc/moby
		[ -z "${DOCKER_HOST:-}" ] || [ "$DOCKER_HOST" != "unix://$own/docker.sock" ] || state=$own/exec/runtime-runc/moby
	else
		rt=$("$cli" inspect --format '{{.OCIRuntime}}' "$c")
		state=/run/runh
	fi
	iso=$(sed -n 's/.*"isolation": *"\([a-z]*\)".*/\1/p' "$state/$id/runh.json" 2>/dev/null || true)
	k=$("$cli" exec "$c" uname -r 2>/dev/null || echo "?")
	where="the host's kernel"
	[ "$k" = "$host" ] || where="its own VM's kernel"
	printf '  %-16s runtime %-8s isolation %-10s (kernel %s: %s)\n' "$c" "$(basename "$rt")" "${iso:-?}" "$k" "$where"
done
echo "demo-app: WordPress at $url, first page $((t / 1000)).$((t % 1000 / 100)) s after the first $engine run"
down="make demo-app-down"
[ "$engine" = podman ] || down="$down DEMO_APP_ENGINE=$engine"
echo "  finish its installation in a browser (or curl); $down removes everything"
