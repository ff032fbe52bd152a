#!/bin/sh
# demo-app.sh up|down: WordPress under podman with runh (docs/demo-app.md).
#
# up: imports the images scripts/mkapp.sh built (tagged with their cache
# key), makes a network (runh-demo-app) and a volume (runh-demo-app-db),
# starts MariaDB with runtime $DEMO_APP_DB and WordPress with $DEMO_APP_WEB
# (runh, runh-vm or a path; default runh-vm and runh), publishes the site on
# $DEMO_APP_ADDR:$DEMO_APP_PORT, waits for its first page, and prints the URL,
# each container's isolation (runh's record of it, and the kernel the
# container runs on) and the time from the first `podman run` to that page.
# down: removes all of that, images included.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
name=runh-demo-app
db=$name-db
web=$name-web
vol=$name-db
db_img=localhost/runh-app-db
web_img=localhost/runh-app-web

ms() { echo $(($(date +%s%N) / 1000000)); }
# runtime NAME: the path podman is given for runh or runh-vm.
runtime() {
	case $1 in
	runh | runh-vm) echo "$top/bin/$1" ;;
	*) echo "$1" ;;
	esac
}

down() {
	podman rm -f -t 5 "$web" "$db" >/dev/null 2>&1 || true
	podman network rm -f "$name" >/dev/null 2>&1 || true
	podman volume rm -f "$vol" >/dev/null 2>&1 || true
	for i in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^($db_img|$web_img):" || true); do
		podman rmi -f "$i" >/dev/null 2>&1 || true
	done
	echo "demo-app: removed containers $db and $web, network $name, volume $vol and the images"
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

command -v podman >/dev/null || { echo "demo-app: podman not installed (apt-get install podman)" >&2; exit 1; }
dbrt=$(runtime "${DEMO_APP_DB:-runh-vm}")
webrt=$(runtime "${DEMO_APP_WEB:-runh}")
port=${DEMO_APP_PORT:-8080}
addr=${DEMO_APP_ADDR:-127.0.0.1}
for c in "$db" "$web"; do
	if podman container exists "$c"; then
		echo "demo-app: $c exists already: make demo-app-down first" >&2
		exit 1
	fi
done
if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
	echo "demo-app: port $port is in use: make demo-app DEMO_APP_PORT=..." >&2
	exit 1
fi

dir=$("$top/scripts/mkapp.sh")
key=$(basename "$dir")
s=$(ms)
for im in "db:$db_img:app-db" "web:$web_img:app-web"; do
	tarball=${im%%:*}.tar
	rest=${im#*:}
	ref=${rest%%:*}:$key
	podman image exists "$ref" ||
		podman import -q --change "ENTRYPOINT [\"/usr/local/bin/${rest#*:}\"]" "$dir/$tarball" "$ref" >/dev/null
done
echo "demo-app: images $db_img:$key and $web_img:$key ready ($((($(ms) - s) / 1000)) s)"

podman network exists "$name" || podman network create "$name" >/dev/null
podman volume exists "$vol" || podman volume create "$vol" >/dev/null
# A fixed address for the database: podman's CNI networks may have no name
# service, and a restarted container could get another address.
subnet=$(podman network inspect --format '{{range .Subnets}}{{.Subnet}}{{end}}' "$name")
case $subnet in
*.0/24) dbip=${subnet%0/24}10 ;;
*)
	echo "demo-app: network $name has subnet $subnet, not a /24" >&2
	exit 1
	;;
esac
pw=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 20)

# podman's default ulimits (1048576 files and processes) exceed the hard limits of a root
# without CAP_SYS_RESOURCE (docs/engines.md): ask for the hard limits.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hp)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
ul="--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
t0=$(ms)
# The servers' sockets on tmpfs: a VM container cannot bind a unix socket on
# its rootfs (docs/demo-app.md, Known problems).
podman run -d --runtime "$dbrt" --name "$db" --network "$name" --ip "$dbip" --tmpfs /run/mysqld $ul \
	-v "$vol:/var/lib/mysql" -e DB_PASSWORD="$pw" "$db_img:$key" >/dev/null
podman run -d --runtime "$webrt" --name "$web" --network "$name" --tmpfs /run/php $ul -p "$addr:$port:80" \
	--add-host "wp-db:$dbip" -e DB_HOST=wp-db -e DB_PASSWORD="$pw" "$web_img:$key" >/dev/null
url=http://127.0.0.1:$port/
[ "$addr" = 0.0.0.0 ] || url=http://$addr:$port/
# The first page: WordPress's installer, served by PHP once the database answers.
until curl -fsS -m 60 "${url}wp-admin/install.php" 2>/dev/null | grep -q weblog_title; do
	if [ $(($(ms) - t0)) -gt 300000 ]; then
		echo "demo-app: no page after 5 minutes; the containers' logs:" >&2
		podman logs --tail 20 "$db" >&2 || true
		podman logs --tail 20 "$web" >&2 || true
		exit 1
	fi
	sleep 0.5
done
t=$(($(ms) - t0))

host=$(uname -r)
for c in "$db" "$web"; do
	id=$(podman inspect --format '{{.Id}}' "$c")
	rt=$(podman inspect --format '{{.OCIRuntime}}' "$c")
	iso=$(sed -n 's/.*"isolation": *"\([a-z]*\)".*/\1/p' "/run/runh/$id/runh.json" 2>/dev/null || true)
	k=$(podman exec "$c" uname -r 2>/dev/null || echo "?")
	where="the host's kernel"
	[ "$k" = "$host" ] || where="its own VM's kernel"
	printf '  %-16s runtime %-8s isolation %-10s (kernel %s: %s)\n' "$c" "$(basename "$rt")" "${iso:-?}" "$k" "$where"
done
echo "demo-app: WordPress at $url, first page $((t / 1000)).$((t % 1000 / 100)) s after the first podman run"
echo "  finish its installation in a browser (or curl); make demo-app-down removes everything"
