package linux

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/runh-project/runh/libruntime"
)

// OOMPollInterval is how often a wait for OOM kills reads the counter.
// The kernel's notification (an eventfd on cgroup v1) comes before the kill
// it announces is counted, and none comes for a kill by the global OOM
// killer (as in a VM that has run out of RAM), so the counter is polled.
var OOMPollInterval = 200 * time.Millisecond

// OOMWaiter implements libruntime.OOMWatcher: it reads the kernel's count
// of OOM kills in the container's memory cgroup (oom_kill in
// memory.oom_control on cgroup v1, in memory.events on v2).
func (b *Backend) OOMWaiter(h *libruntime.Handle) (libruntime.OOMWaitFunc, error) {
	c, err := b.load(h)
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	var file string
	if cgroups.IsCgroup2UnifiedMode() {
		file = filepath.Join(st.CgroupPaths[""], "memory.events")
	} else if dir := st.CgroupPaths["memory"]; dir != "" {
		file = filepath.Join(dir, "memory.oom_control")
	} else {
		return nil, errors.New("the container has no memory cgroup")
	}
	return func(seen uint64, done <-chan struct{}) (uint64, error) {
		t := time.NewTicker(OOMPollInterval)
		defer t.Stop()
		for {
			n, err := readOOMKills(file)
			if err != nil || n > seen {
				return n, err
			}
			select {
			case <-done:
				return readOOMKills(file)
			case <-t.C:
			}
		}
	}, nil
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
