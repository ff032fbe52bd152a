package shim

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodNamespaces(t *testing.T) {
	s := &shim{pid: 100, initPid: 1, cfg: Config{ID: "sb"}, members: map[string]*member{
		"a":    {id: "a", hostPid: 200, guestPid: 7, exited: make(chan struct{})},
		"gone": {id: "gone", hostPid: 300, guestPid: 9, exited: make(chan struct{})},
	}}
	s.members["gone"].setExit(0)
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace, Path: "/proc/100/ns/net"},
		{Type: specs.IPCNamespace, Path: "/var/run/ipcns/pinned"}, // CRI-O's pinned namespace: the sandbox's
		{Type: specs.PIDNamespace, Path: "/proc/200/ns/pid"},      // another container's (kubectl debug)
		{Type: specs.MountNamespace},
	}}}
	if err := s.podNamespaces(spec); err != nil {
		t.Fatal(err)
	}
	want := []string{"/proc/1/ns/net", "/proc/1/ns/ipc", "/proc/7/ns/pid", ""}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path != want[i] {
			t.Errorf("%s: path %q, want %q", ns.Type, ns.Path, want[i])
		}
	}
	for _, path := range []string{"/proc/300/ns/net", "/proc/999/ns/net", "/proc/x/ns/net"} {
		spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: path}}}}
		if err := s.podNamespaces(spec); err == nil {
			t.Errorf("%s: mapped to %s, want an error", path, spec.Linux.Namespaces[0].Path)
		}
	}
	spec = &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace, Path: "/proc/100/ns/mnt"}}}}
	if err := s.podNamespaces(spec); err == nil {
		t.Error("a mount namespace by path: accepted")
	}
}
