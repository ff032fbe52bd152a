#!/bin/sh
# mkapp.sh: builds the two root filesystems of the WordPress demo application
# (docs/demo-app.md) offline from Debian 12 packages, and prints the directory
# that holds them as image tarballs:
#
#   db.tar    mariadb-server; entrypoint /usr/local/bin/app-db
#   web.tar   wordpress, nginx-light and php-fpm; entrypoint /usr/local/bin/app-web
#
# One debootstrap (minbase, from the archive the host's apt sources name), then
# apt-get inside a copy for each image, so that apt (not debootstrap's simple
# resolver) picks nginx-light and php-fpm for wordpress's "apache2 | httpd".
# Cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/app/<key>, key = sha256 of the
# suite, mirror, package lists and this script: a second call returns at once.
# Concurrent calls wait for each other (flock).
set -eu
suite=${RUNH_DEBIAN_SUITE:-bookworm}
db_pkgs="mariadb-server"
# apache2- and libapache2-mod-php8.2- (apt's "do not install") make apt take
# nginx-light and php-fpm for wordpress's "apache2 | httpd" and
# "libapache2-mod-php | php". Debian's wordpress has no theme of its own:
# twentytwentyone, a classic one, renders faster than the block ones.
web_pkgs="wordpress wordpress-theme-twentytwentyone nginx-light php php8.2-fpm php8.2-mysql apache2- libapache2-mod-php8.2-"
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/app

mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'; \
	grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}') | grep -v security | head -n1)
[ -n "$mirror" ] || { echo "mkapp: no Debian archive in the host's apt sources" >&2; exit 1; }
key=$( (printf '%s|%s|%s|%s\n' "$suite" "$mirror" "$db_pkgs" "$web_pkgs"; cat "$0") | sha256sum | cut -c1-16)
out=$cache/$key
if [ -s "$out/db.tar" ] && [ -s "$out/web.tar" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -s "$out/db.tar" ] && [ -s "$out/web.tar" ]; then
	echo "$out"
	exit 0
fi
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
log=$tmp/log
# Mounts made inside the roots are undone on any exit, before the removal.
cleanup() {
	for r in "$tmp/db" "$tmp/web"; do umount "$r/proc" 2>/dev/null || true; done
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
echo "mkapp: debootstrap $suite from $mirror, then $db_pkgs; $web_pkgs (a few minutes once)" >&2
debootstrap --variant=minbase "$suite" "$tmp/base" "$mirror" >"$log" 2>&1 || fail debootstrap

# install ROOT PKGS...: apt-get in the root, without recommends, with no
# service started (policy-rc.d) and without caches, docs or man pages.
install() {
	r=$1
	shift
	cp -a "$tmp/base" "$r"
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
	DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
		fail "apt-get install $*"
	chroot "$r" apt-get clean >>"$log" 2>&1
	rm -rf "$r/var/lib/apt/lists"/* "$r/var/cache/debconf"/*-old "$r/var/log"/*.log "$r/usr/sbin/policy-rc.d"
}

# ---- the database ----
install "$tmp/db" $db_pkgs
# Small enough for a 256 MiB VM; fsync rather than O_DIRECT and no native
# AIO, which a 9p volume (hypervisor isolation) does not offer; reachable on
# the container's network (Debian binds 127.0.0.1).
cat >"$tmp/db/etc/mysql/mariadb.conf.d/90-app.cnf" <<'EOF'
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
umount "$tmp/db/proc"
cat >"$tmp/db/usr/local/bin/app-db" <<'EOF'
#!/bin/sh
# app-db: MariaDB for the WordPress demo. DB_NAME, DB_USER, DB_PASSWORD make
# the application's database and account (idempotent, at every start).
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
chmod 755 "$tmp/db/usr/local/bin/app-db"

# ---- the web server ----
install "$tmp/web" $web_pkgs
umount "$tmp/web/proc"
rm -f "$tmp/web/etc/nginx/sites-enabled"/*
cat >"$tmp/web/etc/nginx/sites-enabled/wordpress" <<'EOF'
server {
	listen 80 default_server;
	root /usr/share/wordpress;
	index index.php;
	client_max_body_size 16m;
	location / {
		try_files $uri $uri/ /index.php?$args;
	}
	location ~ \.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 300s;
	}
}
EOF
# A few static workers: a VM has one vCPU, and ondemand forking is slow under TCG.
sed -i -e 's/^pm = .*/pm = static/' -e 's/^pm.max_children = .*/pm.max_children = 3/' \
	"$tmp/web/etc/php/8.2/fpm/pool.d/www.conf"
cat >"$tmp/web/usr/local/bin/app-web" <<'EOF'
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
mkdir -p /run/php
php-fpm8.2 --daemonize
echo "app-web: nginx starting"
exec nginx -g 'daemon off;'
EOF
chmod 755 "$tmp/web/usr/local/bin/app-web"

mkdir -p "$tmp/out"
for r in db web; do
	tar -C "$tmp/$r" --numeric-owner -cf "$tmp/out/$r.tar" . || fail "tar $r"
done
rm -rf "$out"
mv "$tmp/out" "$out"
echo "mkapp: $out in $(($(date +%s) - start)) s ($(du -sh "$out/db.tar" | cut -f1) db, $(du -sh "$out/web.tar" | cut -f1) web)" >&2
echo "$out"
