package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestEventsOOM: a container over its memory limit is OOM-killed (137),
// `events` reports the kill as an "oom" event, as runc does, and the kernel
// counts it in the host cgroup of the PID the runtime reports, where engines
// watch for it (with hypervisor isolation the shim reproduces the guest's
// kill there once the VM has gone), on cgroup v1 and v2, under either
// driver.
func TestEventsOOM(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("oom")
		limit := int64(32 << 20)
		bundle := x.bundle("oom", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
		}, "sh", "-c", "sleep 1; tail /dev/zero")
		x.create(id, bundle, nil)
		pid := x.state(id).Pid
		// The kernel's count: oom_kill in memory.oom_control (v1) or
		// memory.events (v2).
		counts, err := hostCgroupFile(pid, "memory", "memory.oom_control", "memory.events")
		if err != nil {
			t.Fatal(err)
		}
		// Under the systemd driver the container's cgroup is a scope,
		// which systemd removes with its last process; v2 counts are
		// hierarchical, so the parent slice's count tells then.
		parentCounts := filepath.Join(filepath.Dir(filepath.Dir(counts)), filepath.Base(counts))
		parentBefore, _ := oomKillCount(parentCounts)
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
		if n, err := oomKillCount(counts); err == nil {
			if n != 1 {
				t.Errorf("host %s: oom_kill %d, want 1%s", counts, n, x.shimLog(id))
			}
		} else if !os.IsNotExist(err) {
			t.Errorf("host %s: %v", counts, err)
		} else if !cgroupV2Host() || !systemdDriver() {
			t.Errorf("host %s: %v: the cgroup went before delete", counts, err)
		} else if n, err := oomKillCount(parentCounts); err != nil || n < parentBefore+1 {
			t.Errorf("the container's scope is gone; its parent's %s: oom_kill %d (%v), want at least %d", parentCounts, n, err, parentBefore+1)
		} else {
			t.Logf("the container's scope is gone; its parent's oom_kill %d -> %d", parentBefore, n)
		}
		x.must("delete", id)
		x.assertGone(id)
	})
}

// oomKillCount reads the "oom_kill N" line of a cgroup's memory file
// (memory.oom_control on v1, memory.events on v2).
func oomKillCount(file string) (uint64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New(file + ": no oom_kill line")
}

// shimLog returns, for a report, what the shim of a container in a VM
// logged ("" in process isolation or when it logged nothing).
func (x *h) shimLog(id string) string {
	b, err := os.ReadFile(filepath.Join(x.root, id, "shim.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	return "; the shim logged:\n" + string(b)
}
