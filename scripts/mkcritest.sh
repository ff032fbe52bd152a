#!/bin/sh
# mkcritest.sh VERSION DIR: builds critest, the CRI validation suite of
# sigs.k8s.io/cri-tools VERSION, and the ginkgo CLI that its -parallel flag
# runs, into DIR (build/engines/bin), from the Go module proxy alone: module
# zips have no vendor/, so a throwaway module requires cri-tools and resolves
# its dependencies; ginkgo is taken at the version cri-tools selects, as its
# runner must match the library compiled into critest. Does nothing when DIR
# already has both for VERSION (DIR/critest.version).
set -eu
version=${1:?usage: mkcritest.sh VERSION DIR}
dir=${2:?usage: mkcritest.sh VERSION DIR}
go=${GO:-go}
export GOWORK=off GOFLAGS=-mod=mod
if [ -x "$dir/critest" ] && [ -x "$dir/ginkgo" ] && [ "$(cat "$dir/critest.version" 2>/dev/null)" = "$version" ]; then
	exit 0
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "mkcritest: building critest $version and its ginkgo from the Go module proxy" >&2
{
	"$go" mod init runh.local/critest &&
		"$go" get -t "sigs.k8s.io/cri-tools/cmd/critest@$version" &&
		gv=$("$go" list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2) &&
		"$go" get "github.com/onsi/ginkgo/v2/ginkgo@$gv" &&
		CGO_ENABLED=0 "$go" test -c -o "$dir/critest.new" \
			-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$version" sigs.k8s.io/cri-tools/cmd/critest &&
		CGO_ENABLED=0 "$go" build -o "$dir/ginkgo.new" -ldflags "-s -w" github.com/onsi/ginkgo/v2/ginkgo
} >"$tmp/build.log" 2>&1 || {
	tail -n 10 "$tmp/build.log" >&2
	rm -f "$dir/critest.new" "$dir/ginkgo.new"
	exit 1
}
mv "$dir/critest.new" "$dir/critest"
mv "$dir/ginkgo.new" "$dir/ginkgo"
echo "$version" >"$dir/critest.version"
echo "mkcritest: $dir/critest $version, $dir/ginkgo $gv" >&2
