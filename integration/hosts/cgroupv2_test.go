// Package hosts holds what `make test-hosts` runs inside its Debian 13 test
// host (docs/hosts.md) besides the integration suite: checks of cgroup v2
// placement, limits, update, OOM and removal, under the cgroupfs and the
// systemd driver, beyond the suite's own host-side checks (which read the
// v2 files too): under systemd, the scope unit's properties and their
// surviving a daemon-reload, the unit's removal, the unit's journal of an
// OOM kill. Same runtime selection as the suite: RUNH_BINARY (runh or
// runc, or a wrapper adding --systemd-cgroup), HOSTS_DRIVER (cgroupfs or
// systemd: what to expect), HOSTS_ROOTFS (a busybox rootfs, read-only).
// Process isolation only; they skip unless /sys/fs/cgroup is cgroup2.
package hosts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runh-project/runh/integration"
	"golang.org/x/sys/unix"
)

var (
	bin    = os.Getenv("RUNH_BINARY")
	driver = os.Getenv("HOSTS_DRIVER")
	rootfs = os.Getenv("HOSTS_ROOTFS")
)

func setup(t *testing.T) (root string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skip("not a cgroup v2 host")
	}
	if bin == "" || rootfs == "" {
		t.Skip("RUNH_BINARY and HOSTS_ROOTFS unset")
	}
	root, err := os.MkdirTemp("", "hroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// rt runs the runtime with --root; stdin may be empty. Output goes through a
// file, not a pipe: a container inherits create's stdio, and a pipe it holds
// would keep Wait from returning.
func rt(t *testing.T, root string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := os.CreateTemp("", "hv2out")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	c := exec.CommandContext(ctx, bin, append([]string{"--root", root}, args...)...)
	c.Stdout, c.Stderr = f, f
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	err = c.Run()
	out, _ := os.ReadFile(f.Name())
	return string(out), err
}

func must(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := rt(t, root, "", args...)
	if err != nil {
		t.Fatalf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}

type state struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

func getState(t *testing.T, root, id string) state {
	t.Helper()
	var s state
	if err := json.Unmarshal([]byte(must(t, root, "state", id)), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitStatus(t *testing.T, root, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if getState(t, root, id).Status == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not %s within 30 s", id, want)
}

// cgroupOf returns the v2 cgroup directory of pid.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Join("/sys/fs/cgroup", p)
		}
	}
	t.Fatalf("pid %d: no cgroup v2 line in %q", pid, b)
	return ""
}

func read(dir, file string) string {
	b, _ := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b))
}

func unitActive(unit string) bool {
	return exec.Command("systemctl", "is-active", "--quiet", unit).Run() == nil
}

// start creates and starts a container; cleanup force-deletes it.
func start(t *testing.T, root, name string, mutate func(*specs.Spec), args ...string) (id string, pid int, cg string) {
	t.Helper()
	id = fmt.Sprintf("hv2-%s-%d", name, os.Getpid())
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := integration.NewBundle(dir, rootfs, integration.ModeProcess, mutate, args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt(t, root, "", "delete", "--force", id) })
	must(t, root, "create", "--bundle", dir, id)
	pid = getState(t, root, id).Pid
	cg = cgroupOf(t, pid)
	return id, pid, cg
}

// gone checks delete removed the cgroup and, under systemd, the unit.
func gone(t *testing.T, cg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(cg)
		unitLeft := driver == "systemd" && strings.HasSuffix(cg, ".scope") && unitActive(filepath.Base(cg))
		if os.IsNotExist(err) && !unitLeft {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after delete: cgroup %s stat err %v, unit active %v", cg, err, unitLeft)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestV2Placement: the default cgroup (empty cgroupsPath) is a cgroup of the
// container's own; under the systemd driver a systemd scope unit, active
// while the container runs; delete removes cgroup and unit.
func TestV2Placement(t *testing.T) {
	root := setup(t)
	id, _, cg := start(t, root, "place", nil, "sleep", "1000")
	t.Logf("cgroup %s", cg)
	if driver == "systemd" {
		if !strings.HasSuffix(cg, ".scope") || !unitActive(filepath.Base(cg)) {
			t.Errorf("cgroup %s: want an active systemd scope", cg)
		}
	} else if strings.HasSuffix(cg, ".scope") || strings.HasSuffix(cg, ".service") {
		t.Errorf("cgroupfs driver: cgroup %s is a systemd unit's", cg)
	}
	must(t, root, "start", id)
	must(t, root, "delete", "--force", id)
	gone(t, cg)
}

// TestV2Update: create's limits and each form of update land in the
// container's v2 files (the integration suite's TestUpdate reads v1 ones on
// the host side).
func TestV2Update(t *testing.T) {
	root := setup(t)
	limit, pids := int64(64<<20), int64(99)
	id, _, cg := start(t, root, "update", func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
	}, "sleep", "1000")
	must(t, root, "start", id)
	expect := func(step string, want map[string]string) {
		t.Helper()
		for f, v := range want {
			if got := read(cg, f); got != v {
				t.Errorf("%s: %s/%s = %q, want %q", step, cg, f, got, v)
			}
		}
	}
	expect("create", map[string]string{"memory.max": "67108864", "pids.max": "99"})
	must(t, root, "update", "--memory", "100663296", "--pids-limit", "77", "--cpu-share", "512", id)
	expect("flags", map[string]string{"memory.max": "100663296", "pids.max": "77"})
	// Shares become a weight by libcontainer's formula, which changed
	// (runc 1.1: linear, 512 -> 20; newer: quadratic, 512 -> 59): either.
	if w := read(cg, "cpu.weight"); w != "20" && w != "59" {
		t.Errorf("flags: %s/cpu.weight = %q, want 20 (runc 1.1's formula) or 59 (newer)", cg, w)
	} else {
		t.Logf("cpu shares 512 -> cpu.weight %s", w)
	}
	must(t, root, "update", "--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-cpus", "0", id)
	expect("cpu-flags", map[string]string{"cpu.max": "50000 100000", "cpuset.cpus": "0"})
	must(t, root, "update", "--memory", "50331648", "--memory-swap", "100663296", id)
	expect("memory-swap", map[string]string{"memory.max": "50331648", "memory.swap.max": "50331648"})
	if out, err := rt(t, root, `{"memory":{"limit":83886080},"pids":{"limit":55}}`, "update", "--resources", "-", id); err != nil {
		t.Fatalf("update --resources -: %v: %s", err, out)
	}
	expect("resources-stdin", map[string]string{"memory.max": "83886080", "pids.max": "55"})
	if driver == "systemd" && strings.HasSuffix(cg, ".scope") {
		// The unit's properties follow, or systemd would put the old
		// values back on its next reload.
		out, _ := exec.Command("systemctl", "show", "-p", "MemoryMax", "-p", "TasksMax", filepath.Base(cg)).Output()
		for _, w := range []string{"MemoryMax=83886080", "TasksMax=55"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("unit %s: %q, want %s", filepath.Base(cg), out, w)
			}
		}
		exec.Command("systemctl", "daemon-reload").Run()
		expect("after daemon-reload", map[string]string{"memory.max": "83886080", "pids.max": "55"})
	}
	if out, err := rt(t, root, "", "update", "--pids-limit", "lots", id); err == nil {
		t.Errorf("update --pids-limit lots succeeded: %s", out)
	}
	expect("bad-value", map[string]string{"pids.max": "55"})
	must(t, root, "delete", "--force", id)
	gone(t, cg)
}

// TestV2OOM: a container over its limit is OOM-killed, `events` reports
// "oom", the v2 memory.events counts the kill (under systemd, whose scope
// goes with the last process, the unit's journal does), and delete removes
// the cgroup.
func TestV2OOM(t *testing.T) {
	root := setup(t)
	id, cg := oomContainer(t, root, "oom", "sleep 1; tail /dev/zero")
	_, lines := events(t, root, id, "1s")
	time.Sleep(time.Second)
	must(t, root, "start", id)
	if why := oomEvent(lines, id, 45*time.Second); why != "" {
		t.Error(why)
	}
	waitStatus(t, root, id, "stopped")
	if _, err := os.Stat(cg); err != nil && driver == "systemd" && strings.HasSuffix(cg, ".scope") {
		// systemd removes a scope, cgroup and all, once its last process
		// has gone: the kill is in its journal, not in memory.events.
		unit := filepath.Base(cg)
		out, _ := exec.Command("journalctl", "--no-pager", "-u", unit).Output()
		if !strings.Contains(string(out), "killed by the OOM killer") {
			t.Errorf("scope %s gone, and its journal tells no OOM kill: %q", unit, out)
		} else {
			t.Logf("scope %s removed by systemd on exit; journal: OOM kill", unit)
		}
	} else if ev := read(cg, "memory.events"); !strings.Contains(ev, "oom_kill 1") {
		t.Errorf("%s/memory.events = %q, want oom_kill 1", cg, ev)
	}
	must(t, root, "delete", id)
	gone(t, cg)
}

// TestV2OOMEventsLate: an `events` that is slow to be served (here stopped
// with SIGSTOP from before the kill until the container has gone, under
// systemd its scope, memory.events and all) still reports the OOM kill;
// what a loaded host does to it on a smaller scale.
func TestV2OOMEventsLate(t *testing.T) {
	root := setup(t)
	id, cg := oomContainer(t, root, "oomlate", "tail /dev/zero")
	// A long interval: runh's stats, read under the container's lock, come
	// once, so that the stopped events holds no lock start needs.
	ev, lines := events(t, root, id, "1h")
	// The OOM watch is set up (an inotify watch in events), then the count
	// read once, at once (a second allows for a loaded host).
	if !waitInotify(ev.Process.Pid, 30*time.Second) {
		t.Fatal("events set up no inotify watch within 30 s")
	}
	time.Sleep(time.Second)
	// runh prints the stats at once (runc after the interval).
	select {
	case <-lines:
	case <-time.After(5 * time.Second):
	}
	if err := ev.Process.Signal(unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	must(t, root, "start", id)
	waitStatus(t, root, id, "stopped")
	if driver == "systemd" && strings.HasSuffix(cg, ".scope") {
		deadline := time.Now().Add(30 * time.Second)
		for _, err := os.Stat(cg); err == nil; _, err = os.Stat(cg) {
			if time.Now().After(deadline) {
				t.Fatalf("scope %s still there 30 s after the container stopped", cg)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("scope %s gone before events ran again", filepath.Base(cg))
	}
	ev.Process.Signal(unix.SIGCONT)
	if why := oomEvent(lines, id, 45*time.Second); why != "" {
		t.Fatal(why + " (events stopped until the container had gone)")
	}
	must(t, root, "delete", id)
	gone(t, cg)
}

// oomContainer creates a container that runs script with 32 MiB of memory
// and no swap, to be OOM-killed once its script allocates.
func oomContainer(t *testing.T, root, name, script string) (id, cg string) {
	t.Helper()
	limit := int64(32 << 20)
	id, _, cg = start(t, root, name, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	}, "sh", "-c", script)
	return id, cg
}

// events starts `events --interval interval id` (for at most 2 minutes);
// its output lines come on the channel, closed at its end. Cleanup ends it,
// stopped or not.
func events(t *testing.T, root, id, interval string) (*exec.Cmd, <-chan string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	ev := exec.CommandContext(ctx, bin, "--root", root, "events", "--interval", interval, id)
	ev.WaitDelay = time.Second
	stdout, _ := ev.StdoutPipe()
	if err := ev.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	t.Cleanup(func() {
		ev.Process.Signal(unix.SIGCONT)
		ev.Process.Kill()
		ev.Wait()
		cancel()
		for range lines { // the reader ends at the pipe's close
		}
	})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return ev, lines
}

// oomEvent waits up to d for an "oom" event of id among lines; it returns
// why not, or "".
func oomEvent(lines <-chan string, id string, d time.Duration) string {
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return "events ended without an oom event"
			}
			var e struct{ Type, ID string }
			if json.Unmarshal([]byte(l), &e) == nil && e.Type == "oom" && e.ID == id {
				return ""
			}
		case <-timeout:
			return fmt.Sprintf("no oom event within %v", d)
		}
	}
}

// waitInotify waits until process pid has an inotify watch.
func waitInotify(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		infos, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
		for _, f := range infos {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "inotify wd:") {
				return true
			}
		}
	}
	return false
}

// TestV2CgroupsPathSystemdForm: the slice:prefix:name form. Under the systemd
// driver, the scope prefix-name.scope in that slice; under cgroupfs a
// relative path, runc's rule: a cgroup of that literal name beside the
// runtime's own cgroup (in its parent). Limit applied; delete removes it.
func TestV2CgroupsPathSystemdForm(t *testing.T) {
	root := setup(t)
	name := fmt.Sprintf("hv2-cgpath-%d", os.Getpid())
	path := "system.slice:runh-test:" + name
	limit := int64(64 << 20)
	id, _, cg := start(t, root, "cgpath", func(s *specs.Spec) {
		s.Linux.CgroupsPath = path
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}, "sleep", "1000")
	t.Logf("cgroup %s", cg)
	want := filepath.Join("/sys/fs/cgroup/system.slice", "runh-test-"+name+".scope")
	if driver != "systemd" {
		own := cgroupOf(t, os.Getpid())
		want = filepath.Join(filepath.Dir(own), path)
	}
	if cg != want {
		t.Errorf("cgroup %s, want %s", cg, want)
	}
	if driver == "systemd" && !unitActive(filepath.Base(cg)) {
		t.Errorf("unit %s not active", filepath.Base(cg))
	}
	if got := read(cg, "memory.max"); got != "67108864" {
		t.Errorf("%s/memory.max = %q, want 67108864", cg, got)
	}
	must(t, root, "delete", "--force", id)
	gone(t, cg)
}
