package linux

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadOOMKills(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		content string
		want    uint64
		err     bool
	}{
		"v1":  {"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, false},
		"v2":  {"low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n", 1, false},
		"old": {"oom_kill_disable 0\nunder_oom 0\n", 0, true},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(c.content), 0o644)
		n, err := readOOMKills(p)
		if n != c.want || (err != nil) != c.err {
			t.Errorf("%s: %d, %v; want %d (error %v)", name, n, err, c.want, c.err)
		}
	}
}

// events writes a v2 memory.events with n (< 10) OOM kills in one write,
// without truncating first: a reader woken by the write never sees a
// partial file, as with the kernel's.
func events(t *testing.T, file string, n int) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(fmt.Appendf(nil, "low 0\nhigh 0\nmax 3\noom %d\noom_kill %d\noom_group_kill 0\n", n, n)); err != nil {
		t.Fatal(err)
	}
}

// waitResult runs wait in the background.
type waitResult struct {
	n   uint64
	err error
}

func startWait(wait func(uint64, <-chan struct{}) (uint64, error), seen uint64, done <-chan struct{}) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		n, err := wait(seen, done)
		ch <- waitResult{n, err}
	}()
	return ch
}

// expect waits (generously: the machine may be loaded) for a result.
func expect(t *testing.T, ch <-chan waitResult, n uint64, wantErr bool) {
	t.Helper()
	select {
	case r := <-ch:
		if r.n != n || (r.err != nil) != wantErr {
			t.Errorf("wait: %d, %v; want %d (error %v)", r.n, r.err, n, wantErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("wait: no return within 30 s; want %d", n)
	}
}

// notReturned checks the wait is still waiting.
func notReturned(t *testing.T, ch <-chan waitResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("wait returned %d, %v before the count changed", r.n, r.err)
	case <-time.After(100 * time.Millisecond):
	}
}

// The count is read when a wake-up comes, not at the next poll (an hour
// away here): what keeps a kill from being lost when systemd removes the
// cgroup right after it.
func TestOOMWaitWakeup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "memory.events")
	events(t, file, 0)
	wake := make(chan struct{}, 1)
	stopped := make(chan struct{})
	wait := oomWait(oomCount{file: file}, time.Hour, func() (<-chan struct{}, func(), error) {
		return wake, func() { close(stopped) }, nil
	})
	ch := startWait(wait, 0, nil)
	notReturned(t, ch)
	events(t, file, 1)
	wake <- struct{}{}
	expect(t, ch, 1, false)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Error("the wake-ups were not stopped")
	}
}

// Without wake-ups (inotify unavailable) the wait polls.
func TestOOMWaitNoWakeups(t *testing.T) {
	defer func(d time.Duration) { OOMPollInterval = d }(OOMPollInterval)
	OOMPollInterval = 20 * time.Millisecond
	file := filepath.Join(t.TempDir(), "memory.events")
	events(t, file, 2)
	wait := oomWait(oomCount{file: file}, time.Hour, func() (<-chan struct{}, func(), error) {
		return nil, nil, os.ErrPermission
	})
	ch := startWait(wait, 2, nil)
	notReturned(t, ch)
	events(t, file, 3)
	expect(t, ch, 3, false)
}

// A closed done makes the wait read the count once and return it; the
// count already above seen returns at once.
func TestOOMWaitDone(t *testing.T) {
	file := filepath.Join(t.TempDir(), "memory.events")
	events(t, file, 4)
	called := false
	wait := oomWait(oomCount{file: file}, time.Hour, func() (<-chan struct{}, func(), error) {
		called = true
		return nil, nil, os.ErrPermission
	})
	done := make(chan struct{})
	close(done)
	expect(t, startWait(wait, 1<<63, done), 4, false)
	if called {
		t.Error("a wait with done closed set up wake-ups")
	}
	expect(t, startWait(wait, 3, nil), 4, false)

	done = make(chan struct{})
	ch := startWait(wait, 4, done)
	notReturned(t, ch)
	close(done)
	expect(t, ch, 4, false)
}

// A cgroup that goes ends the wait with an error.
func TestOOMWaitGone(t *testing.T) {
	defer func(d time.Duration) { oomFallbackInterval = d }(oomFallbackInterval)
	oomFallbackInterval = 20 * time.Millisecond
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.events")
	events(t, file, 0)
	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644)
	ch := startWait(oomWaitV2(dir), 0, nil)
	notReturned(t, ch)
	os.Remove(file)
	expect(t, ch, 0, true)
}

// A kill counted just before systemd removes the scope, with no read of
// the scope's count between, is told by the parent's count (hierarchical
// on v2); a parent that did not change leaves the error.
func TestOOMWaitScopeGone(t *testing.T) {
	defer func(d time.Duration) { oomFallbackInterval = d }(oomFallbackInterval)
	oomFallbackInterval = 20 * time.Millisecond
	for _, killed := range []bool{true, false} {
		t.Run(fmt.Sprint("killed=", killed), func(t *testing.T) {
			slice := t.TempDir()
			scope := filepath.Join(slice, "c.scope")
			os.Mkdir(scope, 0o755)
			events(t, filepath.Join(slice, "memory.events"), 5) // a sibling's kills
			events(t, filepath.Join(scope, "memory.events"), 2)
			ch := startWait(oomWaitV2(scope), 2, nil)
			notReturned(t, ch)
			if killed {
				events(t, filepath.Join(slice, "memory.events"), 6)
			}
			os.RemoveAll(scope)
			if killed {
				expect(t, ch, 3, false)
			} else {
				expect(t, ch, 0, true)
			}
		})
	}
}

// inotify wakes the v2 wait on a change of memory.events or of
// cgroup.events (the fallback poll is an hour away).
func TestOOMWaitV2Inotify(t *testing.T) {
	defer func(d time.Duration) { oomFallbackInterval = d }(oomFallbackInterval)
	oomFallbackInterval = time.Hour
	for _, changed := range []string{"memory.events", "cgroup.events"} {
		t.Run(changed, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "memory.events")
			events(t, file, 0)
			cg := filepath.Join(dir, "cgroup.events")
			os.WriteFile(cg, []byte("populated 1\nfrozen 0\n"), 0o644)
			ch := startWait(oomWaitV2(dir), 0, nil)
			notReturned(t, ch)
			if changed == "memory.events" {
				events(t, file, 1)
			} else {
				// The count changes unseen (a write through a mapping
				// makes no inotify event); then the cgroup empties.
				changeUnseen(t, file, "oom_kill 0", "oom_kill 1")
				notReturned(t, ch)
				os.WriteFile(cg, []byte("populated 0\nfrozen 0\n"), 0o644)
			}
			expect(t, ch, 1, false)
		})
	}
}

func TestInotifyWakeups(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, nil, 0o644)
	if _, _, err := inotifyWakeups(b); err == nil {
		t.Error("watching a missing first file succeeded")
	}
	ch, stop, err := inotifyWakeups(a, b) // b is missing: not watched
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a, []byte("x"), 0o644)
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no wake-up for a modified file")
	}
	stop()
}

// changeUnseen replaces old with new (as long) in file through a shared
// mapping, which inotify does not report.
func changeUnseen(t *testing.T, file, old, new string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	i := strings.Index(string(m), old)
	if i < 0 || len(old) != len(new) {
		t.Fatalf("%s: no %q in %q", file, old, m)
	}
	copy(m[i:], new)
}

// The v1 wait, on a real memory cgroup of this host (cgroup v1, root):
// the eventfd wakes it at the OOM, not the poll (an hour away here).
func TestOOMWaitV1Eventfd(t *testing.T) {
	own := v1MemoryCgroup(t)
	defer func(d time.Duration) { OOMPollInterval = d }(OOMPollInterval)
	OOMPollInterval = time.Hour
	dir := filepath.Join(own, fmt.Sprintf("runh-oomtest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	defer func() {
		for i := 0; i < 100 && os.Remove(dir) != nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("16777216"), 0); err != nil && f == "memory.limit_in_bytes" {
			t.Fatal(err)
		}
	}
	wait := oomWaitV1(dir)
	ch := startWait(wait, 0, nil)
	// Joins the cgroup, then allocates until the OOM killer ends it.
	cmd := exec.Command("sh", "-c", "read x; echo $$ > "+filepath.Join(dir, "cgroup.procs")+" && exec tail /dev/zero")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	notReturned(t, ch)
	in.Write([]byte("go\n"))
	expect(t, ch, 1, false)
	cmd.Wait()
}

// v1MemoryCgroup returns this process's v1 memory cgroup directory, or
// skips.
func v1MemoryCgroup(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && f[1] == "memory" {
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			if _, err := os.Stat(filepath.Join(dir, "cgroup.event_control")); err == nil {
				return dir
			}
		}
	}
	t.Skip("no cgroup v1 memory hierarchy")
	return ""
}
