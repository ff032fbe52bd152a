#!/bin/sh
# mkcontainerd2.sh VERSION DIR: builds containerd VERSION (2.x) from the Go
# module proxy into DIR (build/engines/containerd2): the daemon, its runc
# shim (containerd-shim-runc-v2) and ctr, the three the engine tests run
# beside Debian's containerd 1.6. Static (CGO_ENABLED=0: only the btrfs
# snapshotter needs cgo, and the tests use overlayfs). Does nothing when DIR
# already has the three for VERSION (DIR/containerd.version). When the build
# fails it exits non-zero, removes what an earlier build left and writes the
# build's last lines to DIR/build-error.txt, which the tests that skip for
# want of it print.
set -eu
version=${1:?usage: mkcontainerd2.sh VERSION DIR}
dir=${2:?usage: mkcontainerd2.sh VERSION DIR}
go=${GO:-go}
cmds="containerd containerd-shim-runc-v2 ctr"
have=1
for c in $cmds; do
	[ -x "$dir/$c" ] || have=0
done
if [ $have = 1 ] && [ "$(cat "$dir/containerd.version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi
# go install pkg@version builds the module as published, whatever module
# the caller's directory or GOFLAGS name.
export GOWORK=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "mkcontainerd2: building containerd $version ($cmds) from the Go module proxy" >&2
start=$(date +%s)
pkgs=
for c in $cmds; do
	pkgs="$pkgs github.com/containerd/containerd/v2/cmd/$c@$version"
done
# shellcheck disable=SC2086 # one word per package
if ! GOBIN="$tmp/bin" "$go" install \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$version" $pkgs >"$tmp/build.log" 2>&1; then
	tail -n 10 "$tmp/build.log" >&2
	for c in $cmds; do
		rm -f "$dir/$c"
	done
	rm -f "$dir/containerd.version"
	{ echo "go install of containerd $version failed:"; tail -n 5 "$tmp/build.log"; } >"$dir/build-error.txt"
	exit 1
fi
rm -f "$dir/containerd.version" "$dir/build-error.txt"
for c in $cmds; do
	mv "$tmp/bin/$c" "$dir/$c"
done
echo "$version" >"$dir/containerd.version"
echo "mkcontainerd2: $dir: containerd $version in $(($(date +%s) - start)) s" >&2
