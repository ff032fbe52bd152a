package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// runtime is one contender: a binary with its own private --root.
type runtime struct {
	Name    string
	Path    string
	Root    string
	Global  []string      // extra global flags, e.g. --isolation hypervisor
	Env     []string      // extra environment, e.g. runh's private cache
	Timeout time.Duration // per invocation
}

// withTimeout returns a copy of r whose invocations may take d, if that
// is longer than r's own (e.g. a job inside a VM under TCG). The copy keeps
// r's name and root, so its containers are r's.
func withTimeout(r *runtime, d time.Duration) *runtime {
	c := *r
	c.Timeout = max(c.Timeout, d)
	return &c
}

func (r *runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	all := append(append([]string{"--root", r.Root}, r.Global...), args...)
	cmd := exec.CommandContext(ctx, r.Path, all...)
	if len(r.Env) > 0 {
		cmd.Env = append(os.Environ(), r.Env...)
	}
	return cmd
}

// worker owns what one concurrent stream of invocations needs: a place for
// pid files and a stderr file. Stdio are files, never pipes: a container
// created by the runtime inherits them, and a pipe would keep the
// invocation's Wait blocked until the container exits.
type worker struct {
	dir    string
	null   *os.File
	stderr *os.File
}

func newWorker(dir string) (*worker, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	// O_APPEND: a container still holding the file never writes over a
	// later invocation's message after the truncate.
	stderr, err := os.OpenFile(filepath.Join(dir, "stderr"), os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		null.Close()
		return nil, err
	}
	return &worker{dir: dir, null: null, stderr: stderr}, nil
}

func (w *worker) close() {
	w.null.Close()
	w.stderr.Close()
}

// call runs one invocation and returns its wall time, which includes the
// fork and exec of the runtime binary, the same for every contender. An
// interrupted benchmark lets invocations finish rather than kill a
// runtime halfway through a create (which can leave cgroups behind).
func (w *worker) call(r *runtime, args ...string) (time.Duration, *os.ProcessState, error) {
	return w.callTo(w.null, r, args...)
}

// callTo is call with the invocation's stdout going to out.
func (w *worker) callTo(out *os.File, r *runtime, args ...string) (time.Duration, *os.ProcessState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	w.stderr.Truncate(0)
	cmd := r.command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = w.null, out, w.stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		msg, _ := os.ReadFile(w.stderr.Name())
		return d, cmd.ProcessState, fmt.Errorf("%s %s: %v: %s", r.Name, args[0], err, lastLine(msg))
	}
	return d, cmd.ProcessState, nil
}

// output is call with stdout kept: it returns what the invocation (a
// foreground `run`: the container) printed.
func (w *worker) output(r *runtime, args ...string) (time.Duration, string, error) {
	f, err := os.OpenFile(filepath.Join(w.dir, "stdout"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	d, _, err := w.callTo(f, r, args...)
	out, rerr := os.ReadFile(f.Name())
	if err == nil {
		err = rerr
	}
	return d, string(out), err
}

// forceDelete removes a container after a failure.
func (w *worker) forceDelete(r *runtime, id string) {
	w.call(r, "delete", "--force", id)
}

func (w *worker) pidFile(id string) string { return filepath.Join(w.dir, id+".pid") }

// create runs `create` and returns its time, the PID the runtime wrote to
// --pid-file (the container's init, or runh's shim) and a pidfd for it.
func (w *worker) create(r *runtime, id, bundle string) (d time.Duration, pid, fd int, err error) {
	pf := w.pidFile(id)
	defer os.Remove(pf)
	if d, _, err = w.call(r, "create", "--bundle", bundle, "--pid-file", pf, id); err != nil {
		w.forceDelete(r, id)
		return d, 0, -1, err
	}
	if pid, err = readPid(pf); err == nil {
		fd, err = unix.PidfdOpen(pid, 0)
	}
	if err != nil {
		w.forceDelete(r, id)
		return d, 0, -1, fmt.Errorf("%s create: pid file: %w", r.Name, err)
	}
	return d, pid, fd, nil
}

// startDetached creates and starts a container of bundle that keeps
// running (the caller deletes it) and returns the PID of what waits for it
// on the host: its init, or runh's shim. A container that fails to start
// is deleted.
func (w *worker) startDetached(r *runtime, id, bundle string) (int, error) {
	_, pid, fd, err := w.create(r, id, bundle)
	if err != nil {
		return 0, err
	}
	unix.Close(fd)
	if _, _, err := w.call(r, "start", id); err != nil {
		w.forceDelete(r, id)
		return 0, err
	}
	return pid, nil
}

// times are the parts of one container's life cycle.
type times struct{ create, start, wait, delete time.Duration }

// cycle creates, starts, waits for and deletes one container and returns
// the time of each step. created, if not nil, runs between create and start.
func (w *worker) cycle(r *runtime, id, bundle string, created func()) (t times, err error) {
	var fd int
	if t.create, _, fd, err = w.create(r, id, bundle); err != nil {
		return
	}
	defer unix.Close(fd)
	if created != nil {
		created()
	}
	if t.start, _, err = w.call(r, "start", id); err != nil {
		w.forceDelete(r, id)
		return
	}
	t0 := time.Now()
	if err = waitPidfd(fd, r.Timeout); err != nil {
		w.forceDelete(r, id)
		err = fmt.Errorf("%s: container %s: %w", r.Name, id, err)
		return
	}
	t.wait = time.Since(t0)
	if t.delete, _, err = w.call(r, "delete", id); err != nil {
		w.forceDelete(r, id)
	}
	return
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}

// waitPidfd waits until the process behind fd has exited. The process is
// not our child; a pidfd is the race-free way to wait for it.
func waitPidfd(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return fmt.Errorf("did not exit within %v", timeout)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// version returns the first line of `bin --version`.
func version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	return string(line)
}

// removeAllContainers force-deletes whatever is left under r's root.
func removeAllContainers(r *runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	out, err := r.command(ctx, "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		logf("cleanup: %s delete --force %s", r.Name, id)
		ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
		r.command(ctx, "delete", "--force", id).Run()
		cancel()
	}
}
