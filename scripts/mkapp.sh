#!/bin/sh
# mkapp.sh [IMAGE...]: builds application root filesystems offline from
# Debian 12 packages as image tarballs, and prints the directory that holds
# them (IMAGE.tar). Without arguments: db and web, the WordPress demo's
# (docs/demo-app.md).
#
#   db.tar     mariadb-server; entrypoint /usr/local/bin/app-db
#   web.tar    wordpress, nginx-light and php-fpm; entrypoint /usr/local/bin/app-web
#   pg.tar     postgresql-15; entrypoint /usr/local/bin/app-pg (initdb at the
#              first start)
#   redis.tar  redis-server, also on the unix socket /run/redis/redis.sock;
#              entrypoint /usr/local/bin/app-redis
#   fpm.tar    nginx-light in front of php-fpm over the unix socket
#              /run/php/php8.2-fpm.sock, a test page /index.php; entrypoint
#              /usr/local/bin/app-fpm
#
# One debootstrap (minbase, from the archive the host's apt sources name),
# then apt-get inside a copy of it for each image, so that apt (not
# debootstrap's simple resolver) picks nginx-light and php-fpm for
# wordpress's "apache2 | httpd". Cached in
# ${RUNH_CACHE_DIR:-/var/cache/runh}/app/<key>, key = sha256 of the suite,
# mirror, package lists and this script: an image already built returns at
# once. The debootstrapped base is kept there (.base) until every image of
# the key is built, so a later call for other images does not debootstrap
# again. Concurrent calls wait for each other (flock).
set -eu
suite=${RUNH_DEBIAN_SUITE:-bookworm}
images="db web pg redis fpm"
pkgs_db="mariadb-server"
# apache2- and libapache2-mod-php8.2- (apt's "do not install") make apt take
# nginx-light and php-fpm for wordpress's "apache2 | httpd" and
# "libapache2-mod-php | php". Debian's wordpress has no theme of its own:
# twentytwentyone, a classic one, renders faster than the block ones.
pkgs_web="wordpress wordpress-theme-twentytwentyone nginx-light php php8.2-fpm php8.2-mysql apache2- libapache2-mod-php8.2-"
pkgs_pg="postgresql-15"
pkgs_redis="redis-server"
pkgs_fpm="nginx-light php8.2-fpm"
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/app

want=${*:-db web}
for i in $want; do
	case " $images " in
	*" $i "*) ;;
	*) echo "mkapp: no image $i (one of: $images)" >&2; exit 2 ;;
	esac
done
mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'; \
	grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}') | grep -v security | head -n1)
[ -n "$mirror" ] || { echo "mkapp: no Debian archive in the host's apt sources" >&2; exit 1; }
key=$( (printf '%s|%s|%s|%s|%s|%s|%s\n' "$suite" "$mirror" "$pkgs_db" "$pkgs_web" "$pkgs_pg" "$pkgs_redis" "$pkgs_fpm"; cat "$0") |
	sha256sum | cut -c1-16)
out=$cache/$key
# missing LIST: the images of LIST without a tarball yet.
missing() {
	m=""
	for i in $1; do [ -s "$out/$i.tar" ] || m="$m $i"; done
	echo $m
}
if [ -z "$(missing "$want")" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
todo=$(missing "$want")
if [ -z "$todo" ]; then
	echo "$out"
	exit 0
fi
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
mkdir -p "$out"
tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
log=$tmp/log
# Mounts made inside the roots are undone on any exit, before the removal.
cleanup() {
	for r in "$tmp"/*/; do
		umount "$r/var/cache/apt/archives" 2>/dev/null || true
		umount "$r/proc" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
	echo "mkapp: $1 failed; the end of its log:" >&2
	tail -n 25 "$log" >&2
	exit 1
}
start=$(date +%s)
if [ ! -d "$out/.base" ]; then
	echo "mkapp: debootstrap $suite from $mirror, then $todo (a few minutes once)" >&2
	debootstrap --variant=minbase "$suite" "$tmp/base" "$mirror" >"$log" 2>&1 || fail debootstrap
	# What 01-app-nodoc keeps out of later packages (below), out of the base's.
	rm -rf "$tmp/base/var/cache/apt/archives"/*.deb "$tmp/base/usr/share/doc"/* "$tmp/base/usr/share/man"/* \
		"$tmp/base/usr/share/info"/*
	find "$tmp/base/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	mv "$tmp/base" "$out/.base"
else
	echo "mkapp: $todo from the cached base (a minute or two)" >&2
fi
# One download directory for every image of this call.
mkdir -p "$tmp/debs/partial"

# install NAME PKGS...: a copy of the base in $tmp/NAME, apt-get there without
# recommends, with no service started (policy-rc.d) and without caches,
# docs or man pages. /proc stays mounted in it until pack.
install() {
	r=$tmp/$1
	shift
	cp -a "$out/.base" "$r"
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 755 "$r/usr/sbin/policy-rc.d"
	cat >"$r/etc/dpkg/dpkg.cfg.d/01-app-nodoc" <<-'EOF'
	path-exclude /usr/share/doc/*
	path-exclude /usr/share/man/*
	path-exclude /usr/share/info/*
	path-exclude /usr/share/locale/*
	path-include /usr/share/locale/locale.alias
	EOF
	mount -t proc proc "$r/proc"
	mount --bind "$tmp/debs" "$r/var/cache/apt/archives"
	# The base's package lists are kept out of the images: fetched once per call.
	if [ ! -d "$tmp/lists" ]; then
		chroot "$r" apt-get update >>"$log" 2>&1 || fail "apt-get update"
		cp -a "$r/var/lib/apt/lists" "$tmp/lists"
	else
		cp -a "$tmp/lists/." "$r/var/lib/apt/lists/"
	fi
	DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
		fail "apt-get install $*"
	umount "$r/var/cache/apt/archives"
	rm -rf "$r/var/lib/apt/lists"/* "$r/var/cache/apt"/*.bin "$r/var/cache/debconf"/*-old "$r/var/log"/*.log \
		"$r/usr/sbin/policy-rc.d"
}

# entrypoint NAME IMAGE: /usr/local/bin/NAME in the image, from stdin.
entrypoint() {
	cat >"$tmp/$2/usr/local/bin/$1"
	chmod 755 "$tmp/$2/usr/local/bin/$1"
}

# nginx_fpm IMAGE DOCROOT: nginx in front of php-fpm over its unix socket
# (Debian's pool listens on /run/php/php8.2-fpm.sock), serving DOCROOT,
# and the entrypoint app-fpm that starts both.
nginx_fpm() {
	r=$tmp/$1
	rm -f "$r/etc/nginx/sites-enabled"/*
	cat >"$r/etc/nginx/sites-enabled/app" <<-EOF
	server {
		listen 80 default_server;
		root $2;
		index index.php;
		client_max_body_size 16m;
		location / {
			try_files \$uri \$uri/ /index.php?\$args;
		}
		location ~ \.php\$ {
			include snippets/fastcgi-php.conf;
			fastcgi_pass unix:/run/php/php8.2-fpm.sock;
			fastcgi_read_timeout 300s;
		}
	}
	EOF
	# A few static workers: a VM has one vCPU, and ondemand forking is slow under TCG.
	sed -i -e 's/^pm = .*/pm = static/' -e 's/^pm.max_children = .*/pm.max_children = 3/' \
		"$r/etc/php/8.2/fpm/pool.d/www.conf"
	entrypoint app-fpm "$1" <<-'EOF'
	#!/bin/sh
	# app-fpm: php-fpm (its socket in /run/php, on the container's own files),
	# then nginx in the foreground.
	set -eu
	mkdir -p /run/php
	php-fpm8.2 --daemonize
	echo "app-fpm: nginx starting"
	exec nginx -g 'daemon off;'
	EOF
}

# ---- the images ----

build_db() {
	install db $pkgs_db
	# Small enough for a 256 MiB VM; fsync rather than O_DIRECT and no native
	# AIO, which a 9p volume (hypervisor isolation) does not offer; reachable on
	# the container's network (Debian binds 127.0.0.1).
	cat >"$tmp/db/etc/mysql/mariadb.conf.d/90-app.cnf" <<-'EOF'
	[mariadbd]
	bind-address = 0.0.0.0
	skip-name-resolve
	innodb_buffer_pool_size = 32M
	innodb_log_file_size = 8M
	innodb_flush_method = fsync
	innodb_use_native_aio = 0
	performance_schema = OFF
	max_connections = 50
	EOF
	# The data directory is made here, once: a fresh named volume gets a copy of
	# it from the image (podman and Docker both copy up), so the first start of
	# a container does not run mariadb-install-db, which takes long in a TCG VM.
	rm -rf "$tmp/db/var/lib/mysql"/*
	chroot "$tmp/db" mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db --skip-name-resolve --force >>"$log" 2>&1 ||
		fail mariadb-install-db
	entrypoint app-db db <<-'EOF'
	#!/bin/sh
	# app-db: MariaDB for the WordPress demo. DB_NAME, DB_USER, DB_PASSWORD make
	# the application's database and account (idempotent, at every start). Its
	# socket is /run/mysqld/mysqld.sock, on the container's own files.
	set -eu
	: "${DB_NAME:=wordpress}" "${DB_USER:=wordpress}" "${DB_PASSWORD:=wordpress}"
	mkdir -p /run/mysqld
	chown mysql:mysql /run/mysqld /var/lib/mysql
	if [ ! -d /var/lib/mysql/mysql ]; then
		echo "app-db: empty data directory: mariadb-install-db"
		mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db --skip-name-resolve >/dev/null
	fi
	cat >/run/mysqld/init.sql <<SQL
	CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
	CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
	GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%';
	SQL
	echo "app-db: mariadbd starting"
	exec mariadbd --user=mysql --init-file=/run/mysqld/init.sql
	EOF
}

build_web() {
	install web $pkgs_web
	nginx_fpm web /usr/share/wordpress
	entrypoint app-web web <<-'EOF'
	#!/bin/sh
	# app-web: WordPress behind nginx and php-fpm. DB_HOST, DB_NAME, DB_USER,
	# DB_PASSWORD name the database. Debian's wp-config.php reads
	# /etc/wordpress/config-default.php, written at the first start (the salts
	# then stay across restarts).
	set -eu
	: "${DB_HOST:=db}" "${DB_NAME:=wordpress}" "${DB_USER:=wordpress}" "${DB_PASSWORD:=wordpress}"
	conf=/etc/wordpress/config-default.php
	if [ ! -s $conf ]; then
		salt() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 48; }
		cat >$conf.new <<PHP
	<?php
	define('DB_NAME', '$DB_NAME');
	define('DB_USER', '$DB_USER');
	define('DB_PASSWORD', '$DB_PASSWORD');
	define('DB_HOST', '$DB_HOST');
	// The site is wherever it is reached (a published port): no fixed URL.
	define('WP_HOME', 'http://' . \$_SERVER['HTTP_HOST']);
	define('WP_SITEURL', 'http://' . \$_SERVER['HTTP_HOST']);
	// Offline: no update checks or other calls out, no cron requests to itself.
	define('WP_HTTP_BLOCK_EXTERNAL', true);
	define('AUTOMATIC_UPDATER_DISABLED', true);
	define('DISABLE_WP_CRON', true);
	define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');
	define('WP_DEFAULT_THEME', 'twentytwentyone');
	PHP
		for k in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
			echo "define('$k', '$(salt)');" >>$conf.new
		done
		chmod 644 $conf.new
		mv $conf.new $conf
	fi
	exec /usr/local/bin/app-fpm
	EOF
}

build_pg() {
	install pg $pkgs_pg
	# Debian's package makes a cluster "main" at installation: the entrypoint
	# makes its own, in $PGDATA, at the first start. LLVM (and z3, its
	# dependency), 130 MB of the image, serve only JIT compilation, which the
	# entrypoint turns off.
	rm -rf "$tmp/pg/etc/postgresql/15" "$tmp/pg/var/lib/postgresql/15"
	chroot "$tmp/pg" dpkg --purge --force-depends libllvm14 libz3-4 >>"$log" 2>&1 || fail "dpkg --purge libllvm14"
	entrypoint app-pg pg <<-'EOF'
	#!/bin/sh
	# app-pg: PostgreSQL 15. At the first start (no $PGDATA/PG_VERSION) initdb,
	# the superuser postgres trusted over the unix socket (/run/postgresql) and
	# with the password $PG_PASSWORD over TCP; then postgres on both, small
	# enough for a 256 MiB VM.
	set -eu
	: "${PGDATA:=/var/lib/postgresql/data}" "${PG_PASSWORD:=postgres}"
	export PGDATA
	bin=/usr/lib/postgresql/15/bin
	as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
	mkdir -p "$PGDATA" /run/postgresql
	chown postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		echo "app-pg: initdb $PGDATA"
		pw=$(mktemp)
		echo "$PG_PASSWORD" >"$pw"
		chown postgres "$pw"
		# TZ: initdb would otherwise read every zone file to find the system's.
		as_pg env TZ=Etc/UTC "$bin/initdb" -U postgres --pwfile="$pw" --auth-local=trust \
			--auth-host=scram-sha-256 --no-locale -E UTF8
		rm -f "$pw"
		echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	fi
	echo "app-pg: postgres starting"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" \
		-c listen_addresses='*' -c unix_socket_directories=/run/postgresql \
		-c shared_buffers=16MB -c max_connections=20 -c jit=off
	EOF
}

build_redis() {
	install redis $pkgs_redis
	cat >"$tmp/redis/etc/redis/app.conf" <<-'EOF'
	bind 0.0.0.0
	port 6379
	protected-mode no
	unixsocket /run/redis/redis.sock
	unixsocketperm 770
	daemonize no
	dir /var/lib/redis
	logfile ""
	EOF
	entrypoint app-redis redis <<-'EOF'
	#!/bin/sh
	# app-redis: redis-server on port 6379 and on the unix socket
	# /run/redis/redis.sock, on the container's own files.
	set -eu
	mkdir -p /run/redis /var/lib/redis
	chown redis:redis /run/redis /var/lib/redis
	exec setpriv --reuid=redis --regid=redis --init-groups redis-server /etc/redis/app.conf
	EOF
}

build_fpm() {
	install fpm $pkgs_fpm
	rm -rf "$tmp/fpm/var/www/html"/*
	nginx_fpm fpm /var/www/html
	# The same answer wherever it runs: the SAPI that served it (php-fpm's),
	# PHP's version and a computation.
	cat >"$tmp/fpm/var/www/html/index.php" <<-'EOF'
	<?php
	header('Content-Type: text/plain');
	echo php_sapi_name(), "\n", PHP_MAJOR_VERSION, ".", PHP_MINOR_VERSION, "\n";
	echo array_sum(range(1, 1000)), " ", hash('sha256', 'runh'), "\n";
	EOF
}

# pack IMAGE: its tarball into the cache.
pack() {
	umount "$tmp/$1/proc"
	tar -C "$tmp/$1" --numeric-owner -cf "$out/$1.tar.new" . || fail "tar $1"
	mv "$out/$1.tar.new" "$out/$1.tar"
	rm -rf "${tmp:?}/$1"
}

sizes=""
for i in $todo; do
	"build_$i"
	pack "$i"
	sizes="$sizes${sizes:+, }$i $(du -sh "$out/$i.tar" | cut -f1)"
done
[ -n "$(missing "$images")" ] || rm -rf "$out/.base"
echo "mkapp: $out in $(($(date +%s) - start)) s ($sizes)" >&2
echo "$out"
