package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestFaultKilledInit kills, with SIGKILL, the process that stands for the
// container on the host (the init with process isolation, the shim with
// hypervisor isolation) at created and at running: state must say stopped
// and delete must leave nothing.
func TestFaultKilledInit(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		x.faultAt("fault", nil, func(id string, s state) {
			if err := syscall.Kill(s.Pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %d: %v", s.Pid, err)
			}
		})
	})
}

// faultAt creates a sleeping container, once left created and once
// started, applies fault to it in that state, and checks that it then
// reads stopped and that delete leaves nothing.
func (x *h) faultAt(name string, mutate func(*specs.Spec), fault func(id string, s state)) {
	for _, at := range []string{"created", "running"} {
		id := x.id(name + "-" + at)
		x.create(id, x.bundle(name+"-"+at, mutate, "sleep", "1000"), nil)
		if at == "running" {
			x.must("start", id)
		}
		fault(id, x.waitStatus(id, at))
		x.waitStatus(id, "stopped")
		x.must("delete", id)
		x.assertGone(id)
	}
}

// TestFaultKilledVMM kills QEMU under a created and a running container.
func TestFaultKilledVMM(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		if x.mode != ModeHypervisor {
			t.Skip("no VMM with process isolation")
		}
		x.faultAt("vmm", nil, func(id string, _ state) {
			var qemu []int
			for _, pid := range processesMentioning(filepath.Join(x.root, id)) {
				if strings.Contains(readFile(fmt.Sprintf("/proc/%d/cmdline", pid)), "qemu") {
					qemu = append(qemu, pid)
				}
			}
			if len(qemu) != 1 {
				t.Fatalf("want one QEMU of %s, found %v", id, qemu)
			}
			syscall.Kill(qemu[0], syscall.SIGKILL)
		})
	})
}

// TestFaultCorruptState damages a live container's metadata: state must
// fail clearly, and delete --force must still remove everything.
func TestFaultCorruptState(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.startContainer("corrupt", nil, "sleep", "1000")
		pid := x.state(id).Pid
		if err := os.WriteFile(filepath.Join(x.root, id, "runh.json"), []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := x.mustFail("state", id)
		if !strings.Contains(r.stderr, "corrupt") {
			t.Errorf("state of a corrupt container: %v", r)
		}
		x.must("delete", "--force", id)
		x.waitPidGone(pid, x.timeout())
		x.assertGone(id)
	})
}

// TestFaultKilledCreate kills `create` with SIGKILL at different moments
// of its work; a forced delete must then leave nothing behind.
func TestFaultKilledCreate(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		delays := []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
			20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
		if x.mode == ModeHypervisor {
			delays = []time.Duration{50 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second}
		}
		bundle := x.bundle("killcreate", nil, "sleep", "1000")
		for i, d := range delays {
			id := x.id(fmt.Sprintf("killcreate%d", i))
			x.cleanupContainer(id)
			c, wait := x.start(opts{}, "create", "--bundle", bundle, id)
			time.Sleep(d)
			c.Process.Kill()
			wait()
			if r := x.rt("delete", "--force", id); r.code != 0 && !strings.Contains(r.stderr, "not exist") {
				t.Errorf("after create killed at %v: %v", d, r)
			}
			x.must("list") // sweeps an interrupted create's temporary directory
			x.assertGone(id)
			for _, e := range x.rootEntries() {
				t.Errorf("after create killed at %v: %s left under --root", d, e)
			}
		}
	})
}

// TestConcurrentVerbs races kill, state and delete --force on one
// container: every command ends cleanly and the container is gone after.
func TestConcurrentVerbs(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.startContainer("race", nil, "sleep", "1000")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad []string
		for i := 0; i < 12; i++ {
			verb := [][]string{{"kill", id, "KILL"}, {"state", id}, {"delete", "--force", id}}[i%3]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := x.rt(verb...)
				if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") ||
					strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 || r.err != nil {
					mu.Lock()
					bad = append(bad, r.String())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, b := range bad {
			t.Errorf("racing verb: %s", b)
		}
		x.rt("delete", "--force", id)
		x.assertGone(id)
	})
}

// hostSnapshot counts what a container run could leak on the host.
type hostSnapshot struct {
	procs, mounts, cgroups int
}

func snapshot(ids string) hostSnapshot {
	var s hostSnapshot
	s.procs = len(processesMentioning(ids))
	s.mounts = len(mountsMentioning(ids))
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(filepath.Base(p), ids) {
			s.cgroups++
		}
		return nil
	})
	return s
}

// TestLoad runs many whole lifecycles at once and checks that nothing
// fails and nothing is left: 200 with process isolation (16 at a time),
// 10 VMs at once with hypervisor isolation.
func TestLoad(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n, par := 200, 16
		if x.mode == ModeHypervisor {
			n, par = 10, 10
		}
		prefix := x.id("load")
		bundle := x.bundle("load", nil, "true")
		before := snapshot(prefix)
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []string
		start := time.Now()
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d", prefix, i)
			x.cleanupContainer(id)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if r := x.rt("run", "--bundle", bundle, id); r.code != 0 {
					mu.Lock()
					failed = append(failed, r.String())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		t.Logf("%d lifecycles, %d at a time, in %v", n, par, time.Since(start).Round(time.Millisecond))
		for _, f := range failed {
			t.Errorf("lifecycle failed: %s", f)
		}
		if after := snapshot(prefix); after != before {
			t.Errorf("host before %+v, after %+v", before, after)
		}
		if e := x.rootEntries(); len(e) != 0 {
			t.Errorf("left under --root: %v", e)
		}
	})
}

// TestFaultGuestPanic panics the guest kernel (sysrq "c", from a process in
// the container) at created (through exec) and at running: the container
// must read stopped and delete must leave nothing.
func TestFaultGuestPanic(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		if x.mode != ModeHypervisor {
			t.Skip("a kernel panic with process isolation would be the host's")
		}
		writable := func(s *specs.Spec) {
			var ro []string
			for _, p := range s.Linux.ReadonlyPaths {
				if p != "/proc/sysrq-trigger" {
					ro = append(ro, p)
				}
			}
			s.Linux.ReadonlyPaths = ro
		}
		panicNow := []string{"sh", "-c", "echo c > /proc/sysrq-trigger"}
		x.faultAt("panic", writable, func(id string, _ state) {
			x.rt(append([]string{"exec", id}, panicNow...)...) // may fail: the VM dies under it
		})
	})
}

// TestFaultNoGuestKernel points runh at a kernel that does not boot:
// create must fail with one clear line and leave nothing.
func TestFaultNoGuestKernel(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		if x.mode != ModeHypervisor {
			t.Skip("no guest kernel with process isolation")
		}
		guest := filepath.Join(x.dir, "badguest")
		if err := os.MkdirAll(guest, 0o755); err != nil {
			t.Fatal(err)
		}
		// A kernel image QEMU cannot load, with no modules.
		os.WriteFile(filepath.Join(guest, "vmlinuz"), []byte("not a kernel"), 0o644)
		os.WriteFile(filepath.Join(guest, "modules.dep"), nil, 0o644)
		os.WriteFile(filepath.Join(guest, "version"), []byte("0.0.0-bad\n"), 0o644)
		id := x.id("badkernel")
		x.cleanupContainer(id)
		r := x.runO(opts{env: []string{"RUNH_GUEST_DIR=" + guest}}, "create", "--bundle", x.bundle("badkernel", nil, "true"), id)
		if r.code == 0 {
			t.Fatalf("create with a bad kernel succeeded: %v", r)
		}
		if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 || r.stderr == "" {
			t.Errorf("want one stderr line: %v", r)
		}
		x.assertGone(id)
		if e := x.rootEntries(); len(e) != 0 {
			t.Errorf("left under --root: %v", e)
		}
	})
}
