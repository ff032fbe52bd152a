package integration

import (
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podMember marks a bundle as a container of pod sandbox sb, as
// containerd's CRI does, sharing the sandbox's network, IPC and UTS
// namespaces by the path of the PID runh reported for it.
func podMember(sb string, sbPid int) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": sb}
		s.Hostname = ""
		for i, ns := range s.Linux.Namespaces {
			switch ns.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
				file := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[ns.Type]
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", sbPid, file)
			}
		}
	}
}

// TestPod: a pod as a CRI drives runh, through runh's command line: the
// sandbox, then a container that shares its network and UTS namespaces
// (with hypervisor isolation, in the sandbox's VM), exec in it, its exit
// status, its removal leaving the sandbox, and a container refused once the
// sandbox is gone, leaving nothing.
func TestPod(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		sb := x.id("sandbox")
		x.create(sb, x.bundle("sandbox", func(s *specs.Spec) {
			s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
			s.Hostname = "pod-host"
		}, "nc", "-ll", "-p", "9000", "-e", "echo", "sandbox-reply"), nil)
		x.must("start", sb)
		sbPid := x.state(sb).Pid

		m := x.id("member")
		x.create(m, x.bundle("member", podMember(sb, sbPid), "sh", "-c", "hostname > /tmp/h; exec sleep 100000"), nil)
		x.must("start", m)
		x.waitStatus(m, "running")
		// The pod's UTS and network namespaces: the sandbox's hostname, its
		// server on the pod's loopback.
		var out string
		for i := 0; i < 50; i++ {
			out = strings.TrimSpace(x.rt("exec", m, "sh", "-c", "cat /tmp/h; nc -w 3 127.0.0.1 9000 </dev/null").stdout)
			if out == "pod-host\nsandbox-reply" {
				break
			}
		}
		if out != "pod-host\nsandbox-reply" {
			t.Fatalf("member: hostname and the sandbox's server: %q", out)
		}
		if r := x.rt("exec", m, "sh", "-c", "exit 3"); r.code != 3 {
			t.Fatalf("exec exit status: %v", r)
		}
		// The verbs an engine uses on a pod's container act on it alone.
		x.must("pause", m)
		x.waitStatus(m, "paused")
		if st := x.state(sb).Status; st != "running" {
			t.Fatalf("sandbox while its container is paused: %s", st)
		}
		x.must("resume", m)
		x.waitStatus(m, "running")
		x.must("update", "--pids-limit", "50", m)
		if out := x.must("exec", m, "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max").stdout; strings.TrimSpace(out) != "50" {
			t.Errorf("pids.max after update: %q", out)
		}
		if out := x.must("ps", "--format", "json", m).stdout; strings.Count(out, ",")+1 != 1 {
			t.Errorf("ps of the container: %q, want its one process", out)
		}
		if out := x.must("events", "--stats", m).stdout; !strings.Contains(out, `"type":"stats"`) {
			t.Errorf("events --stats: %q", out)
		}
		x.must("kill", m, "KILL")
		x.waitStatus(m, "stopped")
		x.must("delete", m)
		x.assertGone(m)
		if st := x.state(sb).Status; st != "running" {
			t.Fatalf("sandbox after its container was deleted: %s", st)
		}

		// A container whose sandbox is gone is refused, leaving nothing.
		x.must("delete", "--force", sb)
		late := x.id("late")
		r := x.rt("create", "--bundle", x.bundle("late", podMember(sb, sbPid), "true"), late)
		if r.code == 0 {
			x.cleanupContainer(late)
			t.Fatalf("create in a deleted sandbox succeeded")
		}
		if x.mode == ModeHypervisor && !strings.Contains(r.stderr, "sandbox") {
			t.Errorf("refusal does not name the sandbox: %v", r)
		}
		if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("error is not one line: %q", r.stderr)
		}
		x.assertGone(late)

		// An unknown container type is refused in both modes.
		bad := x.id("badtype")
		r = x.rt("create", "--bundle", x.bundle("badtype", func(s *specs.Spec) {
			s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "pause"}
		}, "true"), bad)
		if r.code == 0 || !strings.Contains(r.stderr, "io.kubernetes.cri.container-type") {
			x.cleanupContainer(bad)
			t.Fatalf("bad container type: %v", r)
		}
		x.assertGone(bad)
	})
}
