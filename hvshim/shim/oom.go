package shim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
)

// OOM kills happen in the guest, where the container's memory cgroup is;
// engines learn of them from the host cgroup of the PID runh reports (the
// shim's): conmon and containerd's runc shim register an eventfd on its
// memory.oom_control (cgroup v1) and record an OOM when it fires. Nothing in
// the guest can make the host kernel send that notification, so when the
// guest reports OOM kills, the shim causes one real OOM in the VM's host
// cgroup once QEMU has gone: it leaves the cgroup, empties it, lowers its
// limit and puts there a helper that allocates until the kernel's OOM
// killer ends it. The host cgroup's OOM notification and oom_kill count are
// then what process isolation shows for the same container.

// OOMHelperArg is the argument of `runh shim` that runs the helper.
const OOMHelperArg = "oom-helper"

// oomHelperLimit is the host cgroup's limit while the helper runs: some
// pages beyond what an emptied cgroup still holds.
const oomHelperLimit = 4 << 20

// reflectOOM causes one OOM kill in the VM's host memory cgroup; QEMU must
// have exited. The shim leaves the cgroup for its parent, which engines do
// not watch.
func reflectOOM(dir string) error {
	if cgroups.IsCgroup2UnifiedMode() {
		return errors.New("OOM notification on a cgroup v2 host: not supported")
	}
	paths, err := hostCgroupPaths(dir)
	if err != nil {
		return err
	}
	mem := paths["memory"]
	if mem == "" {
		return errors.New("no host memory cgroup")
	}
	write := func(file, v string) error {
		return os.WriteFile(filepath.Join(mem, file), []byte(v), 0)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(mem), "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("leave the memory cgroup: %w", err)
	}
	// QEMU may take a moment to go after a forced stop.
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(mem, "cgroup.procs"))
		if err == nil && len(strings.TrimSpace(string(b))) == 0 {
			break
		}
		if i == 100 {
			return errors.New("the memory cgroup still has processes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The page cache QEMU left is reclaimed, so that the limit can be low.
	write("memory.force_empty", "0")
	oldLimit, err := os.ReadFile(filepath.Join(mem, "memory.limit_in_bytes"))
	if err != nil {
		return err
	}
	oldOOM, err := os.ReadFile(filepath.Join(mem, "memory.oom_control"))
	if err != nil {
		return err
	}
	if strings.Contains(string(oldOOM), "oom_kill_disable 1") {
		defer write("memory.oom_control", "1")
		if err := write("memory.oom_control", "0"); err != nil {
			return err
		}
	}
	if err := write("memory.limit_in_bytes", strconv.Itoa(oomHelperLimit)); err != nil {
		return fmt.Errorf("lower the limit: %w", err)
	}
	defer write("memory.limit_in_bytes", strings.TrimSpace(string(oldLimit)))

	// The helper starts in the shim's cgroup (its runtime's first pages
	// are charged there), moves into the container's, then allocates.
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", "shim", OOMHelperArg)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	err = write("cgroup.procs", strconv.Itoa(cmd.Process.Pid))
	if err != nil {
		cmd.Process.Kill()
	}
	w.Close() // go
	werr := cmd.Wait()
	if err != nil {
		return fmt.Errorf("move the helper: %w", err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("the helper was not OOM-killed: %v", werr)
	}
	return nil
}

// OOMHelperMain is `runh shim oom-helper`: once its stdin closes, it
// touches memory until the OOM killer ends it.
func OOMHelperMain() int {
	b := make([]byte, 1)
	os.Stdin.Read(b)
	var keep [][]byte
	for i := 0; i < 1024; i++ { // 1 GiB at most
		chunk := make([]byte, 1<<20)
		for j := 0; j < len(chunk); j += 4096 {
			chunk[j] = 1
		}
		keep = append(keep, chunk)
	}
	runtime.KeepAlive(keep)
	return 1 // not killed: the reflection failed
}
