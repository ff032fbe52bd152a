package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Result is what one validation program did under one runtime.
type Result struct {
	Program  string  `json:"program"`
	Counts           // TAP counts and failures
	Seconds  float64 `json:"seconds"`
	Exit     int     `json:"exit"`
	TimedOut bool    `json:"timedOut,omitempty"`
	// Error is the last stderr line of a program that exited non-zero.
	Error string `json:"error,omitempty"`
	// Leftovers lists what the harness had to clean up after the program.
	Leftovers []string `json:"leftovers,omitempty"`
}

// runner holds what every program run shares.
type runner struct {
	binDir   string // validation programs and runtimetest
	tarball  string // rootfs-amd64.tar.gz
	runtime  string // absolute path of the runtime under test
	outDir   string // raw TAP, stderr, per-program work dirs
	stateDir string // short base for private --root dirs (unix socket paths)
	timeout  time.Duration
}

// runProgram runs one validation program in a private work dir with a
// private runtime root, then removes every trace it left.
func (r *runner) runProgram(parent context.Context, idx int, prog string) Result {
	res := Result{Program: prog}
	work := filepath.Join(r.outDir, "work", prog)
	root := filepath.Join(r.stateDir, strconv.Itoa(idx))
	tmp := filepath.Join(work, "tmp")
	_ = os.RemoveAll(work)
	for _, d := range []string{tmp, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			res.Exit, res.Error = -1, err.Error()
			return res
		}
	}
	// The programs read both files from their working directory. They must
	// be real files: runtime-tools copies runtimetest with
	// fileutils.CopyFile, which reproduces a symlink instead of its target.
	files := map[string]string{
		"rootfs-amd64.tar.gz": r.tarball,
		"runtimetest":         filepath.Join(r.binDir, "runtimetest"),
	}
	for name, src := range files {
		if err := linkOrCopy(src, filepath.Join(work, name)); err != nil {
			res.Exit, res.Error = -1, err.Error()
			return res
		}
	}
	// runtime-tools v0.9.0 cannot pass global flags to the runtime, so a
	// wrapper adds --root. exec keeps the PID and argv[0] (runh-vm).
	wrapper := filepath.Join(work, "runtime")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --root %s \"$@\"\n", shellQuote(r.runtime), shellQuote(root))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		res.Exit, res.Error = -1, err.Error()
		return res
	}

	tapPath := filepath.Join(r.outDir, prog+".tap")
	errPath := filepath.Join(r.outDir, prog+".stderr")
	stdout, err := os.Create(tapPath)
	if err != nil {
		res.Exit, res.Error = -1, err.Error()
		return res
	}
	stderr, err := os.Create(errPath)
	if err != nil {
		stdout.Close()
		res.Exit, res.Error = -1, err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	cmd := exec.CommandContext(ctx, filepath.Join(r.binDir, prog))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "RUNTIME="+wrapper, "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Own process group, so a timeout also kills the runtime calls in flight.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	res.Seconds = time.Since(start).Seconds()
	res.TimedOut = ctx.Err() == context.DeadlineExceeded
	cancel()
	stdout.Close()
	stderr.Close()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Exit = ee.ExitCode()
	default:
		res.Exit = -1
		res.Error = err.Error()
	}
	errText, _ := os.ReadFile(errPath)
	if res.Exit != 0 && res.Error == "" {
		if errs := stderrErrors(string(errText)); len(errs) > 0 {
			res.Error = errs[len(errs)-1]
		} else {
			res.Error = fmt.Sprintf("exit status %d", res.Exit)
		}
	}
	if res.TimedOut {
		res.Error = fmt.Sprintf("timed out after %s", r.timeout)
	}
	if f, err := os.Open(tapPath); err == nil {
		res.Counts = parseTAP(f)
		f.Close()
	}
	res.addStderrReasons(string(errText))
	res.Leftovers = r.cleanup(work, root)
	return res
}

// cleanup deletes containers left in the private root, kills processes
// still rooted in the work dir, unmounts everything below it (linux_ns_itype
// mounts proc, sys and dev on its bundle in the host's mount namespace) and
// removes both directories. It reports what it found.
func (r *runner) cleanup(work, root string) []string {
	var found []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !e.IsDir() {
			continue // runtimes may keep lock or log files beside the state dirs
		}
		id := e.Name()
		found = append(found, "container "+id)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, r.runtime, "--root", root, "delete", "-f", id).CombinedOutput()
		cancel()
		if err != nil {
			found = append(found, fmt.Sprintf("delete -f %s: %v: %s", id, err, strings.TrimSpace(string(out))))
		}
	}
	for _, pid := range processesUnder(work) {
		found = append(found, fmt.Sprintf("process %d", pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(found) > 0 {
		time.Sleep(200 * time.Millisecond) // let killed processes release their mounts
	}
	mounts := mountsUnder(work)
	if len(mounts) > 0 {
		found = append(found, fmt.Sprintf("%d mounts", len(mounts)))
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			found = append(found, fmt.Sprintf("umount %s: %v", m, err))
		}
	}
	for _, d := range []string{work, root} {
		if err := os.RemoveAll(d); err != nil {
			found = append(found, "remove: "+err.Error())
		}
	}
	return found
}

// mountsUnder returns the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// Later mounts can stack on earlier ones: undo them in reverse, and
	// children before parents.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes the octal escapes (\040 etc.) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// processesUnder finds processes whose root or working directory lies in
// dir: container processes the runtime failed to reap.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, link := range []string{"root", "cwd"} {
			target, err := os.Readlink(filepath.Join("/proc", e.Name(), link))
			if err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func linkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
