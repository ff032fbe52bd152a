package agent

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/vmnet"
)

func TestReadonlyDevices(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"dir", "proc"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "file"), nil, 0o644)
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "proc", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Root:   &specs.Root{Path: root},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc"}},
		Linux:  &specs.Linux{ReadonlyPaths: []string{"/dir", "/file", "/fifo", "/proc/fifo", "/missing"}},
	}
	readonlyDevices(spec)
	want := []string{"/dir", "/file", "/proc/fifo", "/missing"}
	if len(spec.Linux.ReadonlyPaths) != len(want) {
		t.Fatalf("readonlyPaths %v, want %v", spec.Linux.ReadonlyPaths, want)
	}
	for i := range want {
		if spec.Linux.ReadonlyPaths[i] != want[i] {
			t.Fatalf("readonlyPaths %v, want %v", spec.Linux.ReadonlyPaths, want)
		}
	}
	m := spec.Mounts[len(spec.Mounts)-1]
	if len(spec.Mounts) != 2 || m.Destination != "/fifo" || m.Source != filepath.Join(root, "fifo") || m.Type != "bind" {
		t.Fatalf("mounts %+v: want a read-only bind of /fifo", spec.Mounts)
	}
}

func TestOwnNetNS(t *testing.T) {
	spec := func(userPath, netPath string) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.UserNamespace, Path: userPath}, {Type: specs.NetworkNamespace, Path: netPath}}}}
	}
	s := spec("", vmnet.GuestNS)
	if !ownNetNS(s) || s.Linux.Namespaces[1].Path != "" {
		t.Errorf("new user namespace: want a network namespace of its own, got %+v", s.Linux.Namespaces)
	}
	for _, s := range []*specs.Spec{spec("/proc/1/ns/user", vmnet.GuestNS), spec("", "/run/other")} {
		if ownNetNS(s) || s.Linux.Namespaces[1].Path == "" {
			t.Errorf("%+v: the guest's namespace must stay", s.Linux.Namespaces)
		}
	}
}
