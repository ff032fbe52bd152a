package linux

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/libruntime"
)

// OOMPollInterval is how often a wait for OOM kills reads the counter when
// no notification can wake it early: on cgroup v1 no notification comes for
// a kill by the global OOM killer (as in a VM that has run out of RAM).
var OOMPollInterval = 200 * time.Millisecond

// oomFallbackInterval is the poll behind inotify on cgroup v2, where every
// kill, global ones included, modifies memory.events: only a safety net.
var oomFallbackInterval = time.Second

// After a wake-up the counter is read oomQuickReads times oomQuickInterval
// apart: v1's eventfd fires when the cgroup reaches its limit, before the
// OOM killer has chosen and counted its victim.
const (
	oomQuickInterval = 10 * time.Millisecond
	oomQuickReads    = 50
)

// OOMWaiter implements libruntime.OOMWatcher: it reads the kernel's count
// of OOM kills in the container's memory cgroup (oom_kill in
// memory.oom_control on cgroup v1, in memory.events on v2), woken by the
// kernel's notifications, so that the count is read while the cgroup still
// exists: under the systemd driver the container's scope, cgroup and all,
// goes some 15 ms after its last process, and with it the count.
func (b *Backend) OOMWaiter(h *libruntime.Handle) (libruntime.OOMWaitFunc, error) {
	c, err := b.load(h)
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	if cgroups.IsCgroup2UnifiedMode() {
		dir := st.CgroupPaths[""]
		if dir == "" {
			return nil, errors.New("the container has no cgroup")
		}
		return oomWaitV2(dir), nil
	}
	dir := st.CgroupPaths["memory"]
	if dir == "" {
		return nil, errors.New("the container has no memory cgroup")
	}
	return oomWaitV1(dir), nil
}

// oomWaitV2 waits on memory.events of the cgroup dir, woken by inotify:
// the kernel notifies a change of memory.events (the kill counted, in this
// cgroup or below) and of cgroup.events (its last process gone, which
// systemd acts on). The parent's memory.events, hierarchical on v2, covers
// a kill counted after the last read of a cgroup that systemd then removed
// (see oomCount).
func oomWaitV2(dir string) libruntime.OOMWaitFunc {
	file := filepath.Join(dir, "memory.events")
	c := oomCount{file: file, parent: filepath.Join(filepath.Dir(dir), "memory.events")}
	return oomWait(c, oomFallbackInterval, func() (<-chan struct{}, func(), error) {
		return inotifyWakeups(file, filepath.Join(dir, "cgroup.events"))
	})
}

// oomWaitV1 waits on memory.oom_control of the memory cgroup dir, woken by
// the eventfd the kernel signals on an OOM in the cgroup.
func oomWaitV1(dir string) libruntime.OOMWaitFunc {
	c := oomCount{file: filepath.Join(dir, "memory.oom_control")}
	return oomWait(c, OOMPollInterval, func() (<-chan struct{}, func(), error) {
		return eventfdWakeups(dir)
	})
}

// oomWait returns the wait of libruntime.OOMWaitFunc on the count c reads.
// wakeups, when it works, says when the count may have changed; the poll
// (every interval, OOMPollInterval without wakeups) covers the rest.
func oomWait(c oomCount, interval time.Duration, wakeups func() (<-chan struct{}, func(), error)) libruntime.OOMWaitFunc {
	return func(seen uint64, done <-chan struct{}) (uint64, error) {
		c := c // each wait starts with no earlier read
		select {
		case <-done:
			return c.read()
		default:
		}
		// Watched before the first read, so that no change falls between.
		poll := interval
		woken, stop, err := wakeups()
		if err != nil {
			woken, poll = nil, OOMPollInterval
		} else {
			defer stop()
		}
		t := time.NewTimer(poll)
		defer t.Stop()
		quick := 0
		for {
			n, err := c.read()
			if err != nil || n > seen {
				return n, err
			}
			d := poll
			if quick > 0 {
				d = oomQuickInterval
				quick--
			}
			t.Reset(d)
			select {
			case <-done:
				return c.read()
			case <-woken:
				quick = oomQuickReads
			case <-t.C:
			}
		}
	}
}

// oomCount reads a cgroup's count of OOM kills from file. Under the systemd
// driver the container's scope goes, cgroup and count, some 15 ms after its
// last process: a kill counted after the last read can be gone before the
// wake-up is served (a loaded host, a TCG guest). On cgroup v2 the parent's
// count includes its children's, so each read of file is preceded by one
// of parent, and when the cgroup is gone the parent's increase since then
// is the kills file did not show. It can only be wrong when a sibling's
// kill falls in that gap, which is short: inotify wakes the wait at the
// kill, and cgroup.events at the exit that empties the cgroup.
type oomCount struct {
	file   string
	parent string // "" where counts are not hierarchical (v1)

	n, pn uint64 // file's and parent's counts at the last read
	known bool   // n and pn were read
}

func (c *oomCount) read() (uint64, error) {
	var pn uint64
	pok := false
	if c.parent != "" {
		var err error
		pn, err = readOOMKills(c.parent)
		pok = err == nil
	}
	n, err := readOOMKills(c.file)
	if err == nil {
		c.n, c.pn, c.known = n, pn, pok
		return n, nil
	}
	if c.known && cgroupGone(err) {
		if now, err2 := readOOMKills(c.parent); err2 == nil && now > c.pn {
			return c.n + now - c.pn, nil
		}
	}
	return 0, err
}

// cgroupGone says err is a read of a removed cgroup's file: ENOENT when it
// is opened after, ENODEV when it was opened before.
func cgroupGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// inotifyWakeups watches files for IN_MODIFY; the first must be watched,
// the others are watched when they can be.
func inotifyWakeups(files ...string) (<-chan struct{}, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, os.NewSyscallError("inotify_init1", err)
	}
	for i, f := range files {
		if _, err := unix.InotifyAddWatch(fd, f, unix.IN_MODIFY); err != nil && i == 0 {
			unix.Close(fd)
			return nil, nil, &os.PathError{Op: "inotify_add_watch", Path: f, Err: err}
		}
	}
	return wakeupsOf(os.NewFile(uintptr(fd), "inotify"))
}

// eventfdWakeups registers an eventfd for OOM notifications of the v1
// memory cgroup dir (cgroup.event_control); the kernel also signals it
// when the cgroup is removed.
func eventfdWakeups(dir string) (<-chan struct{}, func(), error) {
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, nil, err
	}
	// The kernel holds what it needs of this file once registered.
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, nil, os.NewSyscallError("eventfd", err)
	}
	ev := os.NewFile(uintptr(efd), "eventfd")
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		ev.Close()
		return nil, nil, err
	}
	return wakeupsOf(ev)
}

// wakeupsOf turns each read of f (non-blocking, so that Go's poller waits
// for it and Close ends the read) into a wake-up; stop closes f.
func wakeupsOf(f *os.File) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	go func() {
		// Room for an inotify event with a name, and for eventfd's 8 bytes.
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}

// readOOMKills reads the "oom_kill N" line of a cgroup's memory file.
func readOOMKills(file string) (uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(file + ": no oom_kill count (kernel older than 4.13)")
}
