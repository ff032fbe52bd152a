package integration

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRunStatus checks run's exit status, stdin relay and separate stdout
// and stderr, and that run deletes the container when it exits.
func TestRunStatus(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("runst")
		bundle := x.bundle("runst", nil, "sh", "-c", "cat; echo to-stderr >&2; exit 7")
		x.cleanupContainer(id)
		r := x.runO(opts{stdin: strings.NewReader("piped-input\n")}, "run", "--bundle", bundle, id)
		if r.code != 7 {
			t.Errorf("exit code %d, want 7: %v", r.code, r)
		}
		if r.stdout != "piped-input\n" {
			t.Errorf("stdout %q, want the piped input only", r.stdout)
		}
		if strings.TrimSpace(r.stderr) != "to-stderr" {
			t.Errorf("stderr %q, want to-stderr", r.stderr)
		}
		x.assertGone(id)
	})
}

// TestRunKeep checks exit 0 and that --keep leaves a stopped container.
func TestRunKeep(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("keep")
		bundle := x.bundle("keep", nil, "true")
		x.cleanupContainer(id)
		if r := x.rt("run", "--keep", "--bundle", bundle, id); r.code != 0 {
			t.Fatalf("run --keep true: %v", r)
		}
		if ids := x.listIDs(); len(ids) != 1 || ids[0] != id {
			t.Errorf("list after run --keep = %v, want [%s]", ids, id)
		}
		if s := x.state(id); s.Status != "stopped" {
			t.Errorf("status %q, want stopped", s.Status)
		}
		x.must("delete", id)
		x.assertGone(id)
	})
}

// TestRunSignal checks that run forwards signals to the container and exits
// with 128+n when the container is killed by signal n.
func TestRunSignal(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("runsig")
		bundle := x.bundle("runsig", nil, "sh", "-c",
			`trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done`)
		out := createFile(t, x.dir, "stdout")
		x.cleanupContainer(id)
		c, wait := x.start(opts{stdout: out}, "run", "--bundle", bundle, id)
		waitFileCount(t, out.Name(), "ready", 1, x.timeout())
		signalProc(t, c.Process.Pid, syscall.SIGUSR1)
		waitFileCount(t, out.Name(), "got-usr1", 1, x.timeout())
		// Init in its own pid namespace ignores signals it does not handle
		// unless they come from outside: KILL from the runtime does it.
		x.must("kill", id, "KILL")
		r := wait()
		if r.code != 128+int(syscall.SIGKILL) {
			t.Errorf("run exit code %d, want %d: %v", r.code, 128+int(syscall.SIGKILL), r)
		}
		x.assertGone(id)

		// Without a pid namespace of its own the init is not protected
		// from its own TERM: killed by signal 15, run exits 143. (A VM
		// refuses to share the host's: TestBadInput's host-pid-vm.)
		if x.mode == ModeHypervisor {
			return
		}
		id2 := x.id("runterm")
		bundle2 := x.bundle("runterm", func(s *specs.Spec) {
			var ns []specs.LinuxNamespace
			for _, n := range s.Linux.Namespaces {
				if n.Type != specs.PIDNamespace {
					ns = append(ns, n)
				}
			}
			s.Linux.Namespaces = ns
		}, "sh", "-c", "kill -TERM $$; sleep 100")
		x.cleanupContainer(id2)
		if r := x.rt("run", "--bundle", bundle2, id2); r.code != 128+int(syscall.SIGTERM) {
			t.Errorf("run exit code %d, want %d: %v", r.code, 128+int(syscall.SIGTERM), r)
		}
		x.assertGone(id2)
	})
}

// TestRunDetach checks run --detach with --pid-file.
func TestRunDetach(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("detach")
		bundle := x.bundle("detach", nil, "sleep", "1000")
		pidFile := filepath.Join(x.dir, "pid")
		x.cleanupContainer(id)
		start := time.Now()
		if r := x.rt("run", "--detach", "--pid-file", pidFile, "--bundle", bundle, id); r.code != 0 {
			t.Fatalf("run --detach: %v", r)
		}
		t.Logf("run --detach took %v", time.Since(start))
		s := x.state(id)
		if s.Status != "running" {
			t.Errorf("status %q, want running", s.Status)
		}
		if pf := readPidFile(t, pidFile); pf != s.Pid || !pidAlive(pf) {
			t.Errorf("pid file %d, state pid %d (alive %v)", pf, s.Pid, pidAlive(pf))
		}
		x.must("delete", "--force", id)
		x.assertGone(id)
		x.waitPidGone(s.Pid, 10*time.Second)
	})
}
