#!/bin/sh
# mkrootfs.sh DIR: writes a minimal busybox root filesystem into DIR, built
# from Debian's busybox-static (no image registry is needed). Applet links are
# relative so the tree works wherever it is mounted; dev, proc and sys are left
# empty for the runtime to fill.
set -eu
dir=${1:?usage: mkrootfs.sh DIR}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "mkrootfs: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/etc" \
	"$dir/dev" "$dir/proc" "$dir/sys" "$dir/tmp" "$dir/root" "$dir/home" "$dir/var" "$dir/run"
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list-full); do
	case "$applet" in
	bin/busybox) continue ;;
	bin/*) target=busybox ;;
	sbin/*) target=../bin/busybox ;;
	usr/bin/* | usr/sbin/*) target=../../bin/busybox ;;
	*) continue ;;
	esac
	[ -e "$dir/$applet" ] || ln -s "$target" "$dir/$applet"
done
cat >"$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
P
cat >"$dir/etc/group" <<'G'
root:x:0:
daemon:x:1:
users:x:100:
nogroup:x:65534:
user:x:1000:
G
echo "127.0.0.1 localhost" >"$dir/etc/hosts"
: >"$dir/etc/resolv.conf"
