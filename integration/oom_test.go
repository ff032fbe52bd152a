package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestEventsOOM: a container over its memory limit is OOM-killed (137),
// `events` reports the kill as an "oom" event, as runc does, and the kernel
// counts it in the host cgroup of the PID the runtime reports, where engines
// watch for it (with hypervisor isolation the shim reproduces the guest's
// kill there once the VM has gone).
func TestEventsOOM(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("oom")
		limit := int64(32 << 20)
		bundle := x.bundle("oom", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
		}, "sh", "-c", "sleep 1; tail /dev/zero")
		x.create(id, bundle, nil)
		pid := x.state(id).Pid
		oomControl, err := hostCgroupFile(pid, "memory", "memory.oom_control")
		if err != nil {
			t.Fatal(err)
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		c, wait := x.start(opts{stdout: pw}, "events", "--interval", "1s", id)
		pw.Close()
		defer func() { c.Process.Kill(); wait() }()
		oom := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				var ev struct{ Type, ID string }
				if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "oom" && ev.ID == id {
					oom <- true
					return
				}
			}
			oom <- false
		}()
		// Give events a moment to take the count before the kill.
		time.Sleep(time.Second)
		x.must("start", id)
		select {
		case ok := <-oom:
			if !ok {
				t.Errorf("events ended without an oom event")
			}
		case <-time.After(x.timeout()):
			t.Errorf("no oom event within %v", x.timeout())
		}
		x.waitStatus(id, "stopped")
		x.waitPidGone(pid, x.timeout()) // the shim exits once the host knows
		if !strings.Contains(readFile(oomControl), "oom_kill 1") {
			t.Errorf("host %s: %q, want oom_kill 1", oomControl, readFile(oomControl))
		}
		x.must("delete", id)
		x.assertGone(id)
	})
}
