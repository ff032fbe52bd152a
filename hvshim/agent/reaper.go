package agent

import (
	"os"
	"os/signal"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The agent is PID 1, so every orphan of the guest becomes its child and
// must be reaped. Processes the agent waits for itself (containers'
// processes, and libcontainer's helpers while a call is in progress) must
// not be reaped by the reaper, or their owners would lose the status:
// reaperMu is held shared by those calls, and managed lists the PIDs whose
// owners reap them.
var (
	reaperMu  sync.RWMutex
	managedMu sync.Mutex
	managed   = map[int]bool{}
)

// manage marks pid as reaped by its owner.
func manage(pid int, on bool) {
	managedMu.Lock()
	defer managedMu.Unlock()
	if on {
		managed[pid] = true
	} else {
		delete(managed, pid)
	}
}

func isManaged(pid int) bool {
	managedMu.Lock()
	defer managedMu.Unlock()
	return managed[pid]
}

func startReaper() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		tick := time.NewTicker(2 * time.Second)
		for {
			select {
			case <-ch:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
}

func reapOrphans() {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	for {
		var info unix.Siginfo
		// WNOWAIT: look at the next zombie without reaping it.
		if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			return
		}
		pid := int(*(*int32)(unsafe.Pointer(uintptr(unsafe.Pointer(&info)) + 16))) // si_pid
		if pid <= 0 || isManaged(pid) {
			return // its owner reaps it; it is reaped at once
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}
