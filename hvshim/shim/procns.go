package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The shim is the first process of a PID namespace of its own (the backend
// starts it so), and QEMU and the shim's helpers live there with it. The
// shim mounts that namespace's procfs on /proc of its own mount namespace
// as it starts: engines that list a container's processes by joining the
// mount namespace of the PID runh reports and reading /proc (podman top,
// through psgo) then see the processes that make the VM container on the
// host (the shim, QEMU), not every process of the host. The guest's
// processes are listed by `runh ps`. Hooks of the runtime's namespaces are
// run by the runtime that started the shim (runHostHooks), in the host's
// namespaces (PID, mount, network) as with process isolation: a hook may
// name processes by host PID (`ip link set ... netns PID`).

// hostPID is the shim's PID in the host's PID namespace, the one engines
// know it by and the one hooks get in the container's state. It is read
// from the host's procfs, before the shim mounts its own.
func hostPID() int {
	if s, err := os.Readlink("/proc/self"); err == nil {
		if pid, err := strconv.Atoi(s); err == nil {
			return pid
		}
	}
	return os.Getpid()
}

// ownProc mounts the procfs of the shim's PID namespace on /proc, when the
// shim has one, before anything reads /proc: PIDs and thread IDs (netns
// handles are opened by them) are the namespace's. Nothing propagates back
// to the host's mount namespace.
func ownProc() error {
	if os.Getpid() != 1 {
		return nil // started without a PID namespace of its own
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// SyncMsg is what the shim of a create writes on fd SyncFd, a socket: hook
// requests, each answered with a HookReply, then its Ready.
type SyncMsg struct {
	Ready
	Hook   *HookRequest   `json:"hook,omitempty"`
	Cgroup *CgroupRequest `json:"cgroup,omitempty"` // answered with a CgroupReply
}

// HookRequest asks the runtime to run hooks with the container's state.
type HookRequest struct {
	Name  string       `json:"name"`
	Hooks []specs.Hook `json:"hooks"`
	State *specs.State `json:"state"`
}

// HookReply is the runtime's answer to a HookRequest.
type HookReply struct {
	Error string `json:"error,omitempty"`
}

// runHostHooks has the runtime at the other end of sync run hooks, and
// waits for it.
func runHostHooks(sync *os.File, name string, hooks []specs.Hook, st *specs.State) error {
	if err := json.NewEncoder(sync).Encode(SyncMsg{Hook: &HookRequest{Name: name, Hooks: hooks, State: st}}); err != nil {
		return fmt.Errorf("%s hooks: %w", name, err)
	}
	var r HookReply
	if err := json.NewDecoder(sync).Decode(&r); err != nil {
		return fmt.Errorf("%s hooks: %w", name, err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// cgroupViaRuntime returns how the shim has the runtime that started it
// make its host cgroup (CgroupRequest), when the shim cannot: rootless,
// under the user's systemd, from a PID namespace of its own; else nil.
func (s *shim) cgroupViaRuntime() func(*CgroupRequest) (map[string]string, error) {
	if !s.cfg.SystemdCgroup || !s.cfg.Rootless || os.Getpid() != 1 {
		return nil
	}
	return func(req *CgroupRequest) (map[string]string, error) {
		if err := json.NewEncoder(s.sync).Encode(SyncMsg{Cgroup: req}); err != nil {
			return nil, err
		}
		var r CgroupReply
		if err := json.NewDecoder(s.sync).Decode(&r); err != nil {
			return nil, err
		}
		if r.Error != "" {
			return r.Paths, errors.New(r.Error)
		}
		return r.Paths, nil
	}
}
