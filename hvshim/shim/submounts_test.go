package shim

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestKeepSubmountFlags(t *testing.T) {
	subs := []Submount{
		{Path: "c", Flags: unix.MS_RDONLY},
		{Path: "a", Flags: unix.MS_NOEXEC},
		{Path: "a/b", Flags: unix.MS_RDONLY | unix.MS_NOEXEC},
		{Path: "a-b", Flags: unix.MS_NOEXEC},
	}
	bind := func(dst, src string, o ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: o}
	}
	for _, c := range []struct {
		opts []string
		want []specs.Mount
	}{
		// The top read-only, the others their own: a, a-b writable, a/b
		// as a's but read-only.
		{[]string{"rbind", "ro"}, []specs.Mount{
			bind("/v/a", "/g/a", "bind", "rw", "noexec"),
			bind("/v/a-b", "/g/a-b", "bind", "rw", "noexec"),
			bind("/v/a/b", "/g/a/b", "bind", "ro", "noexec"),
		}},
		// All read-only: only noexec differs from the top.
		{[]string{"rbind", "rw", "rro"}, []specs.Mount{
			bind("/v/a", "/g/a", "bind", "ro", "noexec"),
			bind("/v/a-b", "/g/a-b", "bind", "ro", "noexec"),
		}},
		{[]string{"rbind", "rw", "rnoexec"}, []specs.Mount{
			bind("/v/a/b", "/g/a/b", "bind", "ro", "noexec"),
			bind("/v/c", "/g/c", "bind", "ro", "noexec"),
		}},
		// No remount (the source's flags stay), no submounts.
		{[]string{"rbind"}, nil},
		{[]string{"rbind", "rro"}, nil},
		{[]string{"bind", "ro"}, nil},
	} {
		top := bind("/v", "/g", c.opts...)
		spec := &specs.Spec{Mounts: []specs.Mount{top, bind("/w", "/h", "rbind", "ro")}}
		list := append([]Submount(nil), subs...)
		if err := keepSubmountFlags(spec, map[int][]Submount{0: list}); err != nil {
			t.Fatal(err)
		}
		want := append([]specs.Mount{top}, c.want...)
		want = append(want, bind("/w", "/h", "rbind", "ro"))
		if !reflect.DeepEqual(spec.Mounts, want) {
			t.Errorf("%v: mounts\n%+v\nwant\n%+v", c.opts, spec.Mounts, want)
		}
	}
}

func TestCheckSubmounts(t *testing.T) {
	listed := map[int]bool{1: true}
	if err := checkSubmounts(map[int][]Submount{1: {{Path: "a/b", Flags: unix.MS_RDONLY}}}, listed); err != nil {
		t.Errorf("good submount: %v", err)
	}
	for _, bad := range []map[int][]Submount{
		{0: {{Path: "a"}}},
		{1: {{Path: ""}}},
		{1: {{Path: "/a"}}},
		{1: {{Path: ".."}}},
		{1: {{Path: "../a"}}},
		{1: {{Path: "a/../../b"}}},
		{1: {{Path: "a/"}}},
		{1: {{Path: "a", Flags: unix.MS_BIND}}},
	} {
		if checkSubmounts(bad, listed) == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestFindSubmounts: only the mounts one reaches count, with their own
// flags; one stacked over another, or over a directory above it, hides it.
func TestFindSubmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), "vol with space")
	mount := func(rel string, flags uintptr) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", flags, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(p, unix.MNT_DETACH) })
	}
	mount("a", unix.MS_NOEXEC|unix.MS_NOSUID)
	mount("a/b", 0)
	if err := unix.Mount("", filepath.Join(dir, "a/b"), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	mount("c", unix.MS_RDONLY)
	mount("c", unix.MS_NODEV) // over the first
	mount("d", 0)
	mount("d/e", 0)
	mount("d", unix.MS_NOEXEC) // over d and d/e
	got, err := findSubmounts(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Path < got[j].Path })
	want := []Submount{
		{Path: "a", Flags: unix.MS_NOEXEC | unix.MS_NOSUID},
		{Path: "a/b", Flags: unix.MS_RDONLY},
		{Path: "c", Flags: unix.MS_NODEV},
		{Path: "d", Flags: unix.MS_NOEXEC},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("submounts %+v, want %+v", got, want)
	}
}
