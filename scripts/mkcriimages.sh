#!/bin/sh
# mkcriimages.sh: prints the directory of the images that critest's validation
# suite (sigs.k8s.io/cri-tools, pkg/validate) pulls, built offline from Debian
# 12 packages with umoci; `go test -run TestCritest ./integration/engines/`
# pushes them with skopeo to a registry of its own on loopback. In DIR:
#
#   oci/         an OCI image layout, one tag per image
#   images.txt   "TAG REFERENCE" a line: the reference the suite pulls
#
# Cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/critest/ by a key of this script
# and the candidate versions of the packages it takes (a second call returns at
# once). Needs apt-get (the packages are downloaded, never installed), umoci,
# gcc with a static libc (libc6-dev) for two small programs, and root.
#
# What the suite expects of each image, and what stands in for it here:
#
#   e2e-test-images/busybox:1.29-2   Debian's dynamically linked busybox with
#       every applet a hard link: the static busybox-static runs applets
#       without exec (so a masked /bin/ls still runs), and a symlinked applet
#       masked by a bind mount masks busybox itself. pgrep (procps) and ipcs
#       (util-linux), which Debian's busybox lacks, come from Debian too.
#   e2e-test-images/nginx:1.14-2, hostnet-nginx-amd64   Debian's nginx on
#       port 80 (12003 for hostnet), pid file /var/run/nginx.pid.
#   e2e-test-images/httpd:2.4.39-4   busybox httpd on port 80 behind a script
#       that logs "httpd" (the suite reads it in the container's log).
#   e2e-test-images/nonewprivs:1.3   a set-user-ID root program printing
#       "Effective uid: N".
#   pause:3.9 (registry.k8s.io and k8s.gcr.io), pause:3.6 (the sandbox image
#       of the test's containerd, another image ID so that the image tests'
#       removal of 3.9 leaves it): a static program that waits for a signal.
#   k8s-staging-cri-tools/test-image-*   busybox plus a file, or a USER, as
#       cri-tools' images/ Dockerfiles make them.
#
# Not reproducible: test-image-digest, which the suite pulls by a digest
# (sha256:9700f9a2...) that only the original manifest has.
set -eu
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/critest
arch=amd64
base_libs="libc6 libproc2-0 libsystemd0 libcap2 libgcrypt20 liblzma5 libzstd1 liblz4-1 libgpg-error0"
nginx_libs="libcrypt1 libpcre2-8-0 libssl3 zlib1g"
tools="busybox procps util-linux nginx nginx-common"
pkgs="$base_libs $nginx_libs $tools"

die() { echo "mkcriimages: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for b in apt-get apt-cache dpkg-deb umoci gcc; do
	command -v $b >/dev/null || die "$b not found (apt-get install umoci gcc libc6-dev)"
done

versions=""
for p in $pkgs; do
	v=$(apt-cache show --no-all-versions "$p" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
	[ -n "$v" ] || die "no candidate version of $p (apt-get update?)"
	versions="$versions $p=$v"
done
key=$( (cat "$0"; echo "$versions") | sha256sum | cut -c1-16)
out=$cache/images-$key
if [ -s "$out/images.txt" ] && [ -f "$out/oci/index.json" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/.images-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "mkcriimages: building critest's images from Debian packages into $out" >&2

mkdir "$work/debs"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root $(echo "$versions" | tr ' ' '\n' | grep .)) \
	>"$work/apt.log" 2>&1 || { tail -n 5 "$work/apt.log" >&2; die "apt-get download failed"; }
deb() { set -- "$work"/debs/"$1"_*.deb; [ -f "$1" ] || die "no .deb for $1"; echo "$1"; }
# unpack PKG DIR [PATH...]: the package's files, or only PATHs, under DIR.
unpack() {
	p=$1 d=$2
	shift 2
	mkdir -p "$d"
	dpkg-deb --fsys-tarfile "$(deb "$p")" | tar -C "$d" -x "$@"
}
# libs DIR PKG...: shared libraries only (no documentation or locales).
libs() {
	d=$1
	shift
	for p in "$@"; do unpack "$p" "$d"; done
	rm -rf "$d/usr/share" "$d/usr/lib/x86_64-linux-gnu/gconv" "$d/usr/bin" "$d/usr/sbin" "$d/sbin" "$d/bin"
}

# The busybox base (every image but pause builds on it).
b=$work/base
libs "$b" $base_libs
unpack busybox "$b" ./bin/busybox
unpack procps "$b" ./usr/bin/pgrep
unpack util-linux "$b" ./usr/bin/ipcs
for applet in $(chroot "$b" /bin/busybox --list-full); do
	case $applet in
	*/*) [ -e "$b/$applet" ] || { mkdir -p "$b/${applet%/*}" && ln "$b/bin/busybox" "$b/$applet"; } ;;
	esac
done
mkdir -p "$b/etc" "$b/root" "$b/home" "$b/proc" "$b/sys" "$b/dev" "$b/run" "$b/mnt" \
	"$b/var/run" "$b/var/www" "$b/var/spool/mail" "$b/usr/local/bin" "$b/tmp"
chmod 1777 "$b/tmp"
chmod 700 "$b/root"
cat >"$b/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$b/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
EOF
echo "127.0.0.1 localhost" >"$b/etc/hosts"

# Two small static programs of our own.
cat >"$work/pause.c" <<'EOF'
/* pause: a pod sandbox's process: waits until SIGINT or SIGTERM, reaping. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
	signal(SIGINT, quit);
	signal(SIGTERM, quit);
	signal(SIGCHLD, reap);
	for (;;) pause();
}
EOF
cat >"$work/nnp.c" <<'EOF'
/* nnp: installed set-user-ID root; prints the effective UID it runs with. */
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
EOF
mkdir -p "$work/pause" "$work/nnp/usr/local/bin"
gcc -O2 -static -o "$work/pause/pause" "$work/pause.c"
gcc -O2 -static -o "$work/nnp/usr/local/bin/nnp" "$work/nnp.c"
chmod 4755 "$work/nnp/usr/local/bin/nnp"

# nginx on Debian's build, its own configuration per port.
n=$work/nginx
libs "$n" $nginx_libs
unpack nginx "$n" ./usr/sbin/nginx
unpack nginx-common "$n" ./etc/nginx/mime.types
mkdir -p "$n/var/log/nginx" "$n/var/lib/nginx" "$n/usr/share/nginx/html"
cat >"$n/usr/share/nginx/html/index.html" <<'EOF'
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1></body></html>
EOF
nginxconf() {
	mkdir -p "$work/nginx-$1/etc/nginx"
	cat >"$work/nginx-$1/etc/nginx/nginx.conf" <<EOF
user www-data;
worker_processes 1;
pid /var/run/nginx.pid;
events { worker_connections 128; }
http {
	include /etc/nginx/mime.types;
	access_log off;
	server {
		listen $1;
		root /usr/share/nginx/html;
		index index.html;
	}
}
EOF
}
nginxconf 80
nginxconf 12003

h=$work/httpd
mkdir -p "$h/usr/local/apache2/htdocs" "$h/usr/local/bin"
echo '<html><body><h1>It works!</h1></body></html>' >"$h/usr/local/apache2/htdocs/index.html"
cat >"$h/usr/local/bin/httpd-foreground" <<'EOF'
#!/bin/sh
echo "httpd: busybox httpd serving /usr/local/apache2/htdocs on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
EOF
chmod 755 "$h/usr/local/bin/httpd-foreground"

# predefined-group: a user 1000 who belongs to group 50000 in /etc/group.
g=$work/group
mkdir -p "$g/etc" "$g/home/default-user"
cp "$b/etc/passwd" "$b/etc/group" "$g/etc/"
echo "default-user:x:1000:1000::/home/default-user:/bin/sh" >>"$g/etc/passwd"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$g/etc/group"
chown 1000:1000 "$g/home/default-user"

# The layout: layers with umoci, one tag per image.
L=$work/oci
umoci init --layout "$L"
new() { umoci new --image "$L:$1" && umoci config --no-history --image "$L:$1" --architecture $arch --os linux; }
insert() { umoci insert --image "$L:$1" ${3:+--tag "$3"} "$2" /; }
config() { tag=$1 from=$2; shift 2; umoci config --no-history --image "$L:$from" --tag "$tag" "$@"; }
list=$work/images.txt
: >"$list"
img() { echo "$1 $2" >>"$list"; }

new base
insert base "$b"
config busybox base --config.cmd sh --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
img busybox registry.k8s.io/e2e-test-images/busybox:1.29-2

insert busybox "$n" nginx-bin
insert nginx-bin "$work/nginx-80" nginx
insert nginx-bin "$work/nginx-12003" hostnet-nginx
for t in nginx hostnet-nginx; do
	config $t $t --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' --config.stopsignal SIGQUIT
done
umoci rm --image "$L:nginx-bin"
img nginx registry.k8s.io/e2e-test-images/nginx:1.14-2
img hostnet-nginx gcr.io/k8s-staging-cri-tools/hostnet-nginx-$arch:latest

insert busybox "$h" httpd
config httpd httpd --config.cmd httpd-foreground --config.exposedports 80/tcp
img httpd registry.k8s.io/e2e-test-images/httpd:2.4.39-4

insert busybox "$work/nnp" nonewprivs
config nonewprivs nonewprivs --clear config.cmd --config.entrypoint /usr/local/bin/nnp
img nonewprivs registry.k8s.io/e2e-test-images/nonewprivs:1.3

new pause
insert pause "$work/pause"
config pause pause --config.entrypoint /pause
config sandbox pause --config.label io.runh.critest=sandbox
img pause registry.k8s.io/pause:3.9
img pause k8s.gcr.io/pause:3.9
img sandbox registry.k8s.io/pause:3.6

r=gcr.io/k8s-staging-cri-tools
config user-uid busybox --config.user 1002
config user-username busybox --config.user www-data
config user-uid-group busybox --config.user 1003:1004
config user-username-group busybox --config.user www-data:1004
for t in uid username uid-group username-group; do img user-$t $r/test-image-user-$t:latest; done
insert busybox "$g" predefined-group
config predefined-group predefined-group --config.user 1000
img predefined-group $r/test-image-predefined-group:latest

for t in test-image-latest test-image-1 test-image-2 test-image-3; do
	mkdir -p "$work/f-$t" && : >"$work/f-$t/$t"
	insert busybox "$work/f-$t" $t
	img $t $r/$t:latest
done
for t in test all; do
	mkdir -p "$work/f-$t" && : >"$work/f-$t/$t"
	insert busybox "$work/f-$t" tag-$t
	img tag-$t $r/test-image-tag:$t
done
mkdir -p "$work/f-same" && : >"$work/f-same/same-image"
insert busybox "$work/f-same" tags
for t in 1 2 3; do img tags $r/test-image-tags:$t; done
umoci rm --image "$L:base"
umoci gc --layout "$L"

mkdir -p "$work/out"
mv "$L" "$list" "$work/out/"
rm -rf "$out"
mv "$work/out" "$out"
echo "mkcriimages: $(wc -l <"$out/images.txt") references, $(du -sh "$out" | cut -f1), in $(($(date +%s) - start)) s" >&2
echo "$out"
