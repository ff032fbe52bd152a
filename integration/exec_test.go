package integration

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestExec runs every exec flag against one container (one VM boot in
// hypervisor mode); each check is a named subtest.
func TestExec(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		// NoNewPrivileges off so that --no-new-privs has something to change.
		id := x.startContainer("exec", func(s *specs.Spec) { s.Process.NoNewPrivileges = false }, "sleep", "100000")
		// out runs exec in the foreground and checks exit code and stdout.
		out := func(t *testing.T, wantCode int, args ...string) string {
			t.Helper()
			r := x.at(t).rt(append([]string{"exec"}, args...)...)
			if r.code != wantCode || r.err != nil {
				t.Fatalf("want exit %d: %v", wantCode, r)
			}
			return r.stdout
		}
		parent := x
		sub := func(name string, f func(t *testing.T, x *h)) {
			t.Run(name, func(t *testing.T) { f(t, parent.at(t)) })
		}

		sub("status", func(t *testing.T, x *h) {
			out(t, 0, id, "true")
			out(t, 7, id, "sh", "-c", "exit 7")
		})
		sub("stdio", func(t *testing.T, x *h) {
			r := x.runO(opts{stdin: strings.NewReader("in-data")}, "exec", id, "sh", "-c", "cat; echo; echo err-data >&2")
			if r.code != 0 || r.stdout != "in-data\n" || r.stderr != "err-data\n" {
				t.Errorf("want stdout %q and stderr %q: %v", "in-data\n", "err-data\n", r)
			}
		})
		sub("cwd", func(t *testing.T, x *h) {
			if got := out(t, 0, "--cwd", "/tmp", id, "pwd"); got != "/tmp\n" {
				t.Errorf("pwd = %q, want /tmp", got)
			}
		})
		sub("env", func(t *testing.T, x *h) {
			// urfave/cli rejects mixing a flag's short and long form in one call.
			if got := out(t, 0, "--env", "FOO=bar", "--env", "BAZ=qux", id, "sh", "-c", "echo $FOO-$BAZ"); got != "bar-qux\n" {
				t.Errorf("env = %q, want bar-qux", got)
			}
			if got := out(t, 0, "-e", "FOO=short", id, "sh", "-c", "echo $FOO"); got != "short\n" {
				t.Errorf("env = %q, want short", got)
			}
		})
		sub("user", func(t *testing.T, x *h) {
			got := out(t, 0, "--user", "1000:1000", id, "id")
			if !strings.Contains(got, "uid=1000") || !strings.Contains(got, "gid=1000") {
				t.Errorf("id = %q, want uid=1000 gid=1000", got)
			}
			got = out(t, 0, "-u", "1:100", id, "sh", "-c", "id -u; id -g")
			if got != "1\n100\n" {
				t.Errorf("id -u; id -g = %q, want 1 and 100", got)
			}
		})
		sub("additional-gids", func(t *testing.T, x *h) {
			got := strings.Fields(out(t, 0, "-u", "1000:1000", "--additional-gids", "100", "--additional-gids", "65534", id, "id", "-G"))
			for _, want := range []string{"1000", "100", "65534"} {
				if !contains(got, want) {
					t.Errorf("id -G = %v, want %s in it", got, want)
				}
			}
			if got := strings.Fields(out(t, 0, "-u", "1000:1000", "-g", "1", id, "id", "-G")); !contains(got, "1") {
				t.Errorf("id -G = %v, want 1 in it", got)
			}
		})
		sub("cap", func(t *testing.T, x *h) {
			const netAdmin = 12
			capEff := func(args ...string) uint64 {
				t.Helper()
				v := statusField(t, out(t, 0, append(args, id, "cat", "/proc/self/status")...), "CapEff")
				n, err := strconv.ParseUint(v, 16, 64)
				if err != nil {
					t.Fatalf("CapEff %q: %v", v, err)
				}
				return n
			}
			if c := capEff(); c&(1<<netAdmin) != 0 {
				t.Errorf("CapEff %x has CAP_NET_ADMIN without --cap", c)
			}
			if c := capEff("--cap", "CAP_NET_ADMIN"); c&(1<<netAdmin) == 0 {
				t.Errorf("CapEff %x lacks CAP_NET_ADMIN with --cap", c)
			}
			if c := capEff("-c", "CAP_NET_ADMIN"); c&(1<<netAdmin) == 0 {
				t.Errorf("CapEff %x lacks CAP_NET_ADMIN with -c", c)
			}
		})
		sub("no-new-privs", func(t *testing.T, x *h) {
			if v := statusField(t, out(t, 0, id, "cat", "/proc/self/status"), "NoNewPrivs"); v != "0" {
				t.Errorf("NoNewPrivs = %s without the flag, want 0", v)
			}
			if v := statusField(t, out(t, 0, "--no-new-privs", id, "cat", "/proc/self/status"), "NoNewPrivs"); v != "1" {
				t.Errorf("NoNewPrivs = %s with --no-new-privs, want 1", v)
			}
		})
		sub("process-file", func(t *testing.T, x *h) {
			p := specs.Process{
				Args: []string{"sh", "-c", "echo $PF_VAR $(pwd) $(id -u); exit 4"},
				Env:  []string{"PATH=/bin:/usr/bin", "PF_VAR=from-file"},
				Cwd:  "/tmp",
				User: specs.User{UID: 1000, GID: 1000},
			}
			data, _ := json.Marshal(p)
			file := filepath.Join(x.dir, "process.json")
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := out(t, 4, "--process", file, id); got != "from-file /tmp 1000\n" {
				t.Errorf("output %q, want %q", got, "from-file /tmp 1000\n")
			}
		})
		sub("detach", func(t *testing.T, x *h) {
			pidFile := filepath.Join(x.dir, "exec.pid")
			out(t, 0, "--detach", "--pid-file", pidFile, id, "sleep", "2")
			pid := readPidFile(t, pidFile)
			if !pidAlive(pid) {
				t.Errorf("exec --detach pid %d is not alive", pid)
			}
			x.waitPidGone(pid, x.timeout())
		})
		sub("preserve-fds", func(t *testing.T, x *h) {
			f := createFile(t, x.dir, "fd3")
			r := x.runO(opts{extra: []*os.File{f}}, "exec", "--preserve-fds", "1", id, "sh", "-c", "echo preserved >&3")
			skipIfUnsupported(t, x, r)
			if r.code != 0 {
				t.Fatalf("exec --preserve-fds: %v", r)
			}
			if got := readFile(f.Name()); got != "preserved\n" {
				t.Errorf("fd 3 got %q, want preserved", got)
			}
		})
		sub("tty", func(t *testing.T, x *h) {
			// In the foreground the runtime relays the container's pty to
			// its own terminal, here one the test made.
			p, slave := openPty(t)
			_, wait := x.start(opts{stdin: slave, stdout: slave, stderr: slave, ctty: true}, "exec", "--tty", id,
				"sh", "-c", "tty; read line; echo got-$line; exit 5")
			p.waitFor(t, "/dev/pts/", x.timeout())
			p.write(t, "typed\n")
			p.waitFor(t, "got-typed", x.timeout())
			if r := wait(); r.code != 5 {
				t.Errorf("exec --tty: want exit 5: %v; terminal output %q", r, p.output())
			}
		})
		sub("tty-console-socket", func(t *testing.T, x *h) {
			// Detached, the pty master goes to the console socket.
			cs := newConsoleSocket(t, x)
			pidFile := filepath.Join(x.dir, "tty.pid")
			if r := x.rt("exec", "-d", "-t", "--console-socket", cs.path, "--pid-file", pidFile, id,
				"sh", "-c", "tty; read line; echo got-$line"); r.code != 0 {
				t.Fatalf("exec -d -t --console-socket: %v", r)
			}
			p := cs.receive(t, x.timeout())
			p.waitFor(t, "/dev/pts/", x.timeout())
			p.write(t, "typed\n")
			p.waitFor(t, "got-typed", x.timeout())
			x.waitPidGone(readPidFile(t, pidFile), x.timeout())
		})
		sub("unknown-binary", func(t *testing.T, x *h) {
			r := x.rt("exec", id, "/no/such/binary")
			if r.code == 0 {
				t.Errorf("exec of a missing binary succeeded: %v", r)
			}
		})

		// The container survived all of that.
		if s := x.state(id); s.Status != "running" {
			t.Errorf("status after execs = %q, want running", s.Status)
		}
		x.must("kill", id, "KILL")
		x.waitStatus(id, "stopped")
		x.mustFail("exec", id, "true")
		x.must("delete", id)
		x.assertGone(id)
	})
}

// TestExecKilled: when what stands on the host for an exec'd process is
// killed with SIGKILL, as containerd kills it when an ExecSync times out,
// the process goes too and whoever reads its output sees EOF at once, as
// with runc (issue 24). Foreground, that is `runh exec`; detached, the PID
// of --pid-file. The same for an exec in a pod's other container (with
// hypervisor isolation, in the sandbox's VM).
func TestExecKilled(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		parent := x
		run := func(t *testing.T, id string) {
			t.Run("foreground", func(t *testing.T) { execKilled(t, parent.at(t), id, false) })
			t.Run("detach", func(t *testing.T) { execKilled(t, parent.at(t), id, true) })
		}
		t.Run("container", func(t *testing.T) {
			x := parent.at(t)
			run(t, x.startContainer("execkill", nil, "sleep", "100000"))
		})
		t.Run("pod-member", func(t *testing.T) {
			x := parent.at(t)
			sb := x.id("ekpod")
			x.create(sb, x.bundle("ekpod", func(s *specs.Spec) {
				s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
			}, "sleep", "100000"), nil)
			x.must("start", sb)
			m := x.id("ekmember")
			x.create(m, x.bundle("ekmember", podMember(sb, x.state(sb).Pid), "sleep", "100000"), nil)
			x.must("start", m)
			x.waitStatus(m, "running")
			run(t, m)
		})
	})
}

// execKilled execs `sleep 4321` in container id with its stdout a pipe,
// kills with SIGKILL what stands for it on the host, and checks that the
// pipe reaches EOF and that no such process is left in the container.
func execKilled(t *testing.T, x *h, id string, detach bool) {
	const quick = 10 * time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	args := []string{"exec", "--pid-file", pidFile, id, "sleep", "4321"}
	if detach {
		args = append([]string{"exec", "-d"}, args[1:]...)
	}
	c, wait := x.start(opts{stdout: pw}, args...)
	pw.Close()
	eof := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, pr)
		eof <- err
	}()
	sleeping := func() bool {
		return strings.Contains(x.must("ps", id).stdout, "sleep 4321")
	}
	deadline := time.Now().Add(x.timeout())
	for !sleeping() {
		if time.Now().After(deadline) {
			t.Fatalf("no sleep 4321 in the container after %v", x.timeout())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if detach {
		if r := wait(); r.code != 0 {
			t.Fatalf("exec -d: %v", r)
		}
	} else {
		for _, err := os.Stat(pidFile); err != nil; _, err = os.Stat(pidFile) {
			if time.Now().After(deadline) {
				t.Fatalf("exec wrote no pid file in %v", x.timeout())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pid := readPidFile(t, pidFile)
	start := time.Now()
	if detach {
		signalProc(t, pid, syscall.SIGKILL)
	} else {
		signalProc(t, c.Process.Pid, syscall.SIGKILL)
		if x.mode == ModeProcess {
			// The exec'd process is a host process of its own, the one
			// the pid file names, which outlives runh exec (as with runc).
			signalProc(t, pid, syscall.SIGKILL)
		}
		if r := wait(); r.code != -1 {
			t.Errorf("runh exec killed with SIGKILL: %v", r)
		}
	}
	select {
	case err := <-eof:
		if err != nil {
			t.Errorf("reading the exec'd process's stdout: %v", err)
		}
		t.Logf("stdout reached EOF %v after the SIGKILL", time.Since(start).Round(time.Millisecond))
	case <-time.After(quick):
		t.Errorf("stdout of the exec'd process still open %v after its host process was killed", quick)
	}
	for sleeping() {
		if time.Since(start) > quick {
			t.Fatalf("sleep 4321 still in the container %v after its host process was killed: %s", quick, x.must("ps", id).stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing stands for it on the host either.
	x.waitPidGone(pid, quick)
}

// skipIfUnsupported skips when a VM-isolated container refuses a feature
// with a clear "not supported" error: a documented limitation, reported as
// a skip rather than hidden.
func skipIfUnsupported(t *testing.T, x *h, r result) {
	t.Helper()
	if x.mode == ModeHypervisor && r.code != 0 && strings.Contains(r.stderr, "not supported") {
		t.Skipf("runtime limitation in hypervisor mode: %s", strings.TrimSpace(r.stderr))
	}
}

// statusField returns a field of /proc/PID/status text.
func statusField(t *testing.T, status, name string) string {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in %q", name, status)
	return ""
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
