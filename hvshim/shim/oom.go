package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
)

// OOM kills happen in the guest, where the container's memory cgroup is;
// engines learn of them from the host cgroup of the PID runh reports (the
// shim's): on cgroup v1 conmon and containerd's runc shim register an
// eventfd on its memory.oom_control; on v2 they watch its memory.events
// with inotify (conmon counts "oom", containerd "oom_kill"). Nothing in the
// guest can make the host kernel count or notify, so when the guest reports
// OOM kills, the shim causes one real OOM kill in the VM's host cgroup once
// QEMU has gone: a helper process there allocates until the kernel's OOM
// killer ends it. The host cgroup's notification and counts are then what
// process isolation shows for the same container.

// OOMHelperArg is the argument of `runh shim` that runs the helper.
const OOMHelperArg = "oom-helper"

// oomHelperLimit is the memory the helper may take before it meets its
// limit: on v1 that of the emptied host cgroup, above what the cgroup
// still holds; on v2 that of a cgroup of its own.
const oomHelperLimit = 4 << 20

// oomLinger is how long the shim stays after the helper's kill on a
// systemd-managed cgroup v2 host: systemd removes the container's scope,
// memory.events included, as soon as its last process (the shim) has gone,
// and an engine woken by the kill must have read the counts by then.
const oomLinger = 250 * time.Millisecond

// Children of the VM's host cgroup while the helper runs on cgroup v2.
const (
	oomShimCgroup   = "runh-shim"
	oomHelperCgroup = "runh-oom"
)

// reflectOOM causes one OOM kill in the VM's host memory cgroup; QEMU must
// have exited.
func reflectOOM(dir string) error {
	h, err := readHostCgroup(dir)
	if err != nil {
		return err
	}
	if h == nil {
		return errors.New("no host cgroup")
	}
	if cgroups.IsCgroup2UnifiedMode() {
		if err := reflectOOMv2(h.Paths[""]); err != nil {
			return err
		}
		if h.Config.Systemd {
			time.Sleep(oomLinger)
		}
		return nil
	}
	return reflectOOMv1(h.Paths["memory"])
}

// reflectOOMv1: the shim leaves the memory cgroup mem for its parent,
// which engines do not watch, empties mem, lowers its limit and runs the
// helper there; the limits are then put back.
func reflectOOMv1(mem string) error {
	if mem == "" {
		return errors.New("no host memory cgroup")
	}
	write := func(file, v string) error {
		return os.WriteFile(filepath.Join(mem, file), []byte(v), 0)
	}
	self := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(filepath.Join(filepath.Dir(mem), "cgroup.procs"), []byte(self), 0); err != nil {
		return fmt.Errorf("leave the memory cgroup: %w", err)
	}
	if err := waitCgroupHolds(mem); err != nil {
		return err
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
	limit, err := lowerLimitV1(mem)
	if err != nil {
		return err
	}
	defer write("memory.limit_in_bytes", strings.TrimSpace(string(oldLimit)))
	return runOOMHelper(filepath.Join(mem, "cgroup.procs"), limit)
}

// lowerLimitV1 sets the limit of the memory cgroup mem oomHelperLimit
// above what it still holds. The kernel refuses (EBUSY) a limit below the
// usage it cannot reclaim, and what QEMU left may not be reclaimable at
// once: pages its 9p server or a template it saved dirtied wait for
// writeback on a busy disk. So the limit follows the usage, read again
// if it grew meanwhile.
func lowerLimitV1(mem string) (int64, error) {
	var err error
	for i := 0; i < 10; i++ {
		var b []byte
		if b, err = os.ReadFile(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
			return 0, err
		}
		usage, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return 0, perr
		}
		limit := usage + oomHelperLimit
		if err = os.WriteFile(filepath.Join(mem, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0); err == nil {
			return limit, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("lower the limit: %w", err)
}

// reflectOOMv2: v2's counts are hierarchical, so a kill in a child of the
// VM's host cgroup cg is counted, and notified, in cg's memory.events too;
// the helper gets a child with a small memory.max, and cg's own limits
// stay. A child has a memory controller only if cg enables it for its
// children, which the kernel refuses while cg holds processes (cgroup v2's
// "no internal processes" rule): the shim first moves to a child of its
// own (its parent, under systemd a slice, has controllers enabled and so
// takes no process either). Everything is put back afterwards. Under the
// systemd driver cg is a scope, delegated (libcontainer asks Delegate=yes),
// so that its subtree is the shim's to arrange.
func reflectOOMv2(cg string) error {
	if cg == "" {
		return errors.New("no host cgroup")
	}
	self := strconv.Itoa(os.Getpid())
	if err := waitCgroupHolds(cg, self); err != nil {
		return err
	}
	write := func(dir, file, v string) error {
		return os.WriteFile(filepath.Join(dir, file), []byte(v), 0)
	}
	shimCg := filepath.Join(cg, oomShimCgroup)
	if err := os.Mkdir(shimCg, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	defer func() {
		write(cg, "cgroup.procs", self)
		removeCgroup(shimCg)
	}()
	if err := write(shimCg, "cgroup.procs", self); err != nil {
		return fmt.Errorf("leave the container's cgroup for a child: %w", err)
	}
	sub, err := os.ReadFile(filepath.Join(cg, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	if !slices.Contains(strings.Fields(string(sub)), "memory") {
		if err := write(cg, "cgroup.subtree_control", "+memory"); err != nil {
			return fmt.Errorf("enable memory for children: %w", err)
		}
		defer write(cg, "cgroup.subtree_control", "-memory")
	}
	helperCg := filepath.Join(cg, oomHelperCgroup)
	if err := os.Mkdir(helperCg, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	defer removeCgroup(helperCg)
	if err := write(helperCg, "memory.max", strconv.Itoa(oomHelperLimit)); err != nil {
		return fmt.Errorf("limit the helper: %w", err)
	}
	// Swapped out, the helper would outgrow its limit unkilled (absent
	// without swap accounting).
	if err := write(helperCg, "memory.swap.max", "0"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("limit the helper's swap: %w", err)
	}
	return runOOMHelper(filepath.Join(helperCg, "cgroup.procs"), oomHelperLimit)
}

// waitCgroupHolds waits until the cgroup dir holds no process but those
// listed: QEMU may take a moment to go after a forced stop.
func waitCgroupHolds(dir string, allowed ...string) error {
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err == nil && !slices.ContainsFunc(strings.Fields(string(b)), func(p string) bool { return !slices.Contains(allowed, p) }) {
			return nil
		}
		if i == 250 {
			return fmt.Errorf("the cgroup %s still has processes: %q (%v)", dir, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroup removes an empty cgroup, waiting a little for a killed
// process to leave it.
func removeCgroup(dir string) {
	for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
		if _, err := os.Stat(dir); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runOOMHelper starts the helper in the shim's cgroup (its runtime's first
// pages are charged there), moves it to the cgroup of procs, whose limit
// is limit, lets it allocate and checks the OOM killer ended it.
func runOOMHelper(procs string, limit int64) error {
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
	err = os.WriteFile(procs, []byte(strconv.Itoa(cmd.Process.Pid)), 0)
	if err != nil {
		cmd.Process.Kill()
	} else {
		// How far to go: past the limit, with room for the page cache
		// the cgroup's reclaim gives up first.
		fmt.Fprint(w, limit+oomHelperSlack)
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

// oomHelperSlack is how far beyond its cgroup's limit the helper goes
// before it gives up: the kernel kills it well before.
const oomHelperSlack = 64 << 20

// OOMHelperMain is `runh shim oom-helper`: once its stdin closes, it
// touches memory until the OOM killer ends it, or it has touched as many
// bytes as its stdin said.
func OOMHelperMain() int {
	b, _ := io.ReadAll(os.Stdin)
	max, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 2
	}
	var keep [][]byte
	for n := int64(0); n < max; n += 1 << 20 {
		chunk := make([]byte, 1<<20)
		for j := 0; j < len(chunk); j += 4096 {
			chunk[j] = 1
		}
		keep = append(keep, chunk)
	}
	runtime.KeepAlive(keep)
	return 1 // not killed: the reflection failed
}
