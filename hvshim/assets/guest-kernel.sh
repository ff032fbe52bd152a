#!/bin/sh
# guest-kernel.sh OUT PKG MODULE...: fetches the Debian kernel package PKG with
# apt-get download, unpacks it in a temporary directory (never into the host's
# /boot or /lib/modules) and writes into OUT: vmlinuz, version, modules/*.ko
# (MODULE... and everything they depend on) and modules.dep (one
# "name.ko: dep.ko ..." line per kept module). The package ships no
# modules.dep and the host may have no depmod, so dependencies are read from
# each module's .modinfo "depends=" field. OUT is replaced atomically.
set -eu
out=${1:?usage: guest-kernel.sh OUT PKG MODULE...}
pkg=${2:?usage: guest-kernel.sh OUT PKG MODULE...}
shift 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runh-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
chmod 0755 "$tmp" # apt's _apt user downloads into it
echo "guest-kernel: fetching $pkg"
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
	(apt-get update -qq && cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
dpkg-deb -x "$tmp"/*.deb "$tmp/root"
rel=$(ls "$tmp/root/lib/modules")
mdir=$tmp/root/lib/modules/$rel
new=$tmp/guest
mkdir -p "$new/modules"

# add NAME: copies the module and, first, its dependencies.
add() {
	name=$(echo "$1" | tr - _)
	[ -e "$new/modules/$name.ko" ] && return 0
	if grep -qE "/$name\.ko\$" "$mdir/modules.builtin" 2>/dev/null; then return 0; fi
	f=$(find "$mdir/kernel" -name "$name.ko" | head -n1)
	[ -n "$f" ] || { echo "guest-kernel: module $name not in $pkg" >&2; exit 1; }
	cp "$f" "$new/modules/$name.ko"
	deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr , ' ')
	line="$name.ko:"
	for d in $deps; do
		line="$line $(echo "$d" | tr - _).ko"
	done
	echo "$line" >>"$new/modules.dep"
	for d in $deps; do add "$d"; done
}
for m in "$@"; do add "$m"; done
sort -o "$new/modules.dep" "$new/modules.dep"

cp "$tmp/root/boot/vmlinuz-$rel" "$new/vmlinuz"
# The uncompressed ELF kernel boots through its PVH entry point without the
# bzImage decompressing itself, which under TCG takes seconds. Debian's is
# xz-compressed inside vmlinuz; keep it only if it is an ELF with the PVH
# note (Xen note type 0x12), else QEMU boots vmlinuz as before.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$new/vmlinuz" | head -n1 | cut -d: -f1)
if [ -n "$off" ] && tail -c +"$((off + 1))" "$new/vmlinuz" | xz -dc >"$new/vmlinux" 2>/dev/null ||
	[ -s "$new/vmlinux" ]; then
	if ! readelf -n "$new/vmlinux" 2>/dev/null | grep -q '0x00000012'; then
		rm -f "$new/vmlinux"
	fi
else
	rm -f "$new/vmlinux"
fi
echo "$rel" >"$new/version"
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
[ ! -e "$out" ] || mv "$out" "$out.old"
mv "$new" "$out"
rm -rf "$out.old"
echo "guest-kernel: $rel in $out ($(ls "$out/modules" | wc -l) modules)"
