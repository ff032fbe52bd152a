// Package vm is runh's hypervisor-isolation backend: each container runs in
// its own utility VM, owned by a `runh shim` process that this backend
// starts and then drives over the shim's control socket.
package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim"
	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/shim"
	"github.com/runh-project/runh/hvshim/vmnet"
	"github.com/runh-project/runh/libruntime"
)

// pidFile records the shim's PID and start time in the state directory.
const pidFile = "shim.pid"

// callTimeout bounds a verb's request to the shim (and through it the
// guest), so a VM that never answers cannot hang the verb.
const callTimeout = 60 * time.Second

// Backend implements libruntime.Backend for hypervisor isolation.
type Backend struct {
	// Exe is the runh binary that runs `runh shim`; /proc/self/exe if empty.
	Exe string
	// NoTemplate boots every VM (--vm-template=false).
	NoTemplate bool
	// SystemdCgroup makes the VM's host cgroup with systemd, as the
	// process backend makes a container's (--systemd-cgroup).
	SystemdCgroup bool
	// Rootless makes the VM's host cgroup best effort, as the process
	// backend's (--rootless).
	Rootless bool
}

var _ libruntime.Backend = (*Backend)(nil)

func (b *Backend) exe() string {
	if b.Exe != "" {
		return b.Exe
	}
	return "/proc/self/exe"
}

// Create starts the shim, which boots the VM and creates the container in
// it, and returns once the container is created or has failed.
func (b *Backend) Create(h *libruntime.Handle, bundle *libruntime.Bundle, iso libruntime.Isolation, o *libruntime.CreateOpts) (libruntime.Process, error) {
	if os.Geteuid() != 0 {
		// Before anything is made: the shim needs the namespaces, mounts
		// and taps that root of a user namespace may make (docs/hypervisor.md,
		// Rootless).
		return nil, errors.New("hypervisor isolation: " + hvshim.NeedsUserNS + "; use process isolation")
	}
	if len(o.ExtraFiles) > 0 {
		return nil, errors.New("--preserve-fds is not supported with hypervisor isolation")
	}
	if err := refuse(bundle.Spec); err != nil {
		return nil, err
	}
	if iso.SandboxDir != "" {
		return b.createMember(h, bundle, iso, o)
	}
	vmc := iso.VM
	vmc.NoTemplate = vmc.NoTemplate || b.NoTemplate
	cfg := shim.Config{ID: h.ID, Bundle: bundle.Dir, VM: vmc, HasConsole: o.ConsoleSocket != nil, Debug: o.Debug,
		Pod: iso.Pod.Role == libruntime.PodSandbox, PodMemoryMiB: int(iso.Pod.MemoryBytes >> 20), SystemdCgroup: b.SystemdCgroup, Rootless: b.Rootless}
	if err := h.WriteJSON(shim.ConfigFile, cfg); err != nil {
		return nil, err
	}
	if err := saveHooks(h, bundle.Spec.Hooks); err != nil {
		return nil, err
	}
	cmd, extra := b.shimCommand(&o.Stdio, o.ConsoleSocket, "shim", h.Dir)
	return b.startShim(h, cmd, extra)
}

// saveHooks keeps the poststart and poststop hooks of create's config:
// those run, as with runc, whatever becomes of the bundle before start
// and delete.
func saveHooks(h *libruntime.Handle, hk *specs.Hooks) error {
	if hk != nil {
		for _, f := range []struct {
			name  string
			hooks []specs.Hook
		}{{poststartFile, hk.Poststart}, {poststopFile, hk.Poststop}} {
			if len(f.hooks) == 0 {
				continue
			}
			if err := h.WriteJSON(f.name, f.hooks); err != nil {
				return err
			}
		}
	}
	return nil
}

// startShim starts the shim of create: done by Create once the files the
// shim reads are written.
func (b *Backend) startShim(h *libruntime.Handle, cmd *exec.Cmd, extra []*os.File) (libruntime.Process, error) {
	// The host's network namespace, the one the shim (in one of its own)
	// must never rewire.
	hostNS, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	defer hostNS.Close()
	for len(extra) < shim.HostNetNSFd-3 {
		extra = append(extra, nil)
	}
	extra = append(extra, hostNS)
	// The shim gets its own session (it outlives create), mount namespace
	// (the share's bind mounts die with it, however it dies), network
	// namespace (the one an engine's hooks configure through the shim's
	// PID when the spec asks for a new one, and in any case none of the
	// host's network for the shim and QEMU), PID namespace, whose /proc
	// shows the VM's host processes to engines that read the container's
	// processes there (podman top; QEMU ends with the shim), and IPC and
	// UTS namespaces: the container's namespaces are the guest's, and the
	// PID engines know it by shares none with the host but its user and
	// cgroup ones.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID,
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	p, ready, err := startHelper(cmd, extra, nil)
	if err != nil {
		return nil, err
	}
	if err := recordHelper(h, p); err != nil {
		return nil, err
	}
	if ready.Times != nil {
		h.WriteJSON("boot.json", ready.Times)
	}
	return p, nil
}

// shimCommand returns a shim helper's command and its extra files for
// startHelper: a slot for the sync pipe, then the console socket if any.
// With a terminal the container's stdio is the pty, so the shim does not
// hold the caller's stdio, which an engine may read until EOF.
func (b *Backend) shimCommand(stdio *libruntime.Stdio, console *os.File, args ...string) (*exec.Cmd, []*os.File) {
	cmd := exec.Command(b.exe(), args...)
	extra := []*os.File{nil}
	if console != nil {
		extra = append(extra, console)
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	}
	return cmd, extra
}

// startHelper starts a shim process with a sync socket as fd 3 (extra[0]
// is replaced by it) and waits for its report, running the hooks it asks
// for meanwhile: here, in the runtime's namespaces (PID, mount, network),
// as the runtime spec has it. input, if any, is written to a pipe at fd
// shim.ProcFd.
func startHelper(cmd *exec.Cmd, extra []*os.File, input []byte) (*process, *shim.Ready, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	r, w := os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync")
	defer r.Close()
	extra[0] = w
	var inW *os.File
	if input != nil {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			w.Close()
			return nil, nil, err
		}
		for len(extra) < shim.ProcFd-3 {
			extra = append(extra, nil)
		}
		extra = append(extra, inR)
		defer inR.Close()
	}
	cmd.ExtraFiles = extra
	err = cmd.Start()
	w.Close()
	if err != nil {
		if inW != nil {
			inW.Close()
		}
		return nil, nil, fmt.Errorf("start shim: %w", err)
	}
	if inW != nil {
		go func() { inW.Write(input); inW.Close() }()
	}
	p := &process{pid: cmd.Process.Pid, cmd: cmd}
	dec := json.NewDecoder(r)
	var msg shim.SyncMsg
	for {
		msg = shim.SyncMsg{}
		if err := dec.Decode(&msg); err != nil {
			p.Wait()
			return nil, nil, errors.New("shim exited before the container was created")
		}
		if msg.Cgroup != nil {
			// The shim's host cgroup, made here for it (CgroupRequest).
			json.NewEncoder(r).Encode(msg.Cgroup.Apply(p.pid))
			continue
		}
		if msg.Hook == nil {
			break
		}
		var reply shim.HookReply
		if err := libruntime.RunHooks(msg.Hook.Name, msg.Hook.Hooks, msg.Hook.State); err != nil {
			reply.Error = err.Error()
		}
		json.NewEncoder(r).Encode(reply)
	}
	ready := msg.Ready
	if ready.Error != "" {
		p.Wait()
		return nil, nil, errors.New(ready.Error)
	}
	return p, &ready, nil
}

// recordHelper records the helper that stands for the container (its
// shim, or a pod member's process), or kills it.
func recordHelper(h *libruntime.Handle, p *process) error {
	st, _ := shim.StartTime(p.pid)
	if err := h.WriteJSON(pidFile, shimPid{Pid: p.pid, StartTime: st}); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return err
	}
	return nil
}

type shimPid struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// shimAlive returns the live shim's PID, or 0.
func shimAlive(h *libruntime.Handle) int {
	var sp shimPid
	b, err := os.ReadFile(filepath.Join(h.Dir, pidFile))
	if err != nil || json.Unmarshal(b, &sp) != nil {
		return 0
	}
	if !shim.Alive(sp.Pid, sp.StartTime) {
		return 0
	}
	return sp.Pid
}

// exited reports whether the container has exited, waiting a little for
// a shim that is still stopping its VM and closing its socket: a verb
// racing with the container's exit must see it stopped, not fail.
func exited(h *libruntime.Handle) bool {
	for i := 0; i < 100; i++ {
		if shimAlive(h) == 0 {
			return true
		}
		if _, err := os.Stat(filepath.Join(h.Dir, shim.ExitFile)); err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func call(h *libruntime.Handle, op string, req, resp any) error {
	if shimAlive(h) == 0 {
		return errors.New("container is not running (its VM has stopped)")
	}
	return shim.Call(ctlDir(h), op, req, resp, callTimeout)
}

// Start implements libruntime.Backend. The poststart hooks run here, on
// the host, before start returns.
func (b *Backend) Start(h *libruntime.Handle) error {
	if err := call(h, proto.OpStart, proto.IDRequest{ID: h.ID}, nil); err != nil {
		return err
	}
	runPoststart(h)
	return nil
}

// poststartFile holds the poststart hooks create saw.
const poststartFile = "poststart.json"

// runPoststart runs the poststart hooks saved by create. A failing one is
// only logged, as the runtime spec says.
func runPoststart(h *libruntime.Handle) {
	data, err := os.ReadFile(filepath.Join(h.Dir, poststartFile))
	var hooks []specs.Hook
	if err != nil || h.Meta == nil || json.Unmarshal(data, &hooks) != nil {
		return
	}
	err = libruntime.RunHooks("poststart", hooks, &specs.State{
		Version: specs.Version, ID: h.ID, Status: specs.StateRunning, Pid: shimAlive(h),
		Bundle: h.Meta.Bundle, Annotations: h.Meta.Annotations,
	})
	if err != nil {
		logrus.Warn(err)
	}
}

// Status implements libruntime.Backend: a dead shim means a stopped
// container; the PID is the shim's, the process supervisors wait on.
func (b *Backend) Status(h *libruntime.Handle) (libruntime.Status, int, error) {
	pid := shimAlive(h)
	if pid == 0 {
		return libruntime.Stopped, 0, nil
	}
	var st shim.StateReply
	if err := shim.Call(ctlDir(h), shim.OpState, proto.IDRequest{ID: h.ID}, &st, callTimeout); err != nil {
		if !shim.Answered(err) && exited(h) {
			return libruntime.Stopped, 0, nil
		}
		return "", 0, err
	}
	switch s := libruntime.Status(st.Status); s {
	case libruntime.Created, libruntime.Running, libruntime.Paused, libruntime.Stopped:
		return s, pid, nil
	}
	return "", 0, fmt.Errorf("shim reports unknown status %q", st.Status)
}

// Signal implements libruntime.Backend.
func (b *Backend) Signal(h *libruntime.Handle, sig unix.Signal, all bool) error {
	if shimAlive(h) == 0 {
		if sig == unix.SIGKILL {
			return nil // nothing left to kill
		}
		return errors.New("container is not running")
	}
	err := shim.Call(ctlDir(h), proto.OpKill, proto.KillRequest{ID: h.ID, Signal: int(sig), All: all}, nil, callTimeout)
	if err != nil && !shim.Answered(err) && exited(h) {
		return nil // it exited meanwhile: nothing left to signal
	}
	return err
}

// Exec implements libruntime.Backend through a `runh shim exec` helper:
// its PID stands for the process, and it exits with the process's status.
func (b *Backend) Exec(h *libruntime.Handle, p *specs.Process, o *libruntime.ExecOpts) (libruntime.Process, error) {
	if len(o.ExtraFiles) > 0 {
		return nil, errors.New("--preserve-fds is not supported with hypervisor isolation")
	}
	if shimAlive(h) == 0 {
		return nil, errors.New("container is not running")
	}
	proc, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	args := []string{"shim", "exec", h.Dir}
	if sb := sandboxDir(h); sb != "" {
		args = []string{"shim", "exec", sb, h.ID}
	}
	cmd, extra := b.shimCommand(&o.Stdio, o.ConsoleSocket, args...)
	if o.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// In the foreground, runh exec stands for the process: should it
		// die, even by SIGKILL, the helper dies with it, and the shim,
		// losing the helper, kills the process in the guest rather than
		// leave it running with the caller's stdio, which the shim holds,
		// open and nothing on the host to signal or wait for.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	hp, _, err := startHelper(cmd, extra, proc)
	if err != nil {
		return nil, err
	}
	return hp, nil
}

// Pause implements libruntime.Backend.
func (b *Backend) Pause(h *libruntime.Handle) error {
	return call(h, proto.OpPause, proto.IDRequest{ID: h.ID}, nil)
}

// Resume implements libruntime.Backend.
func (b *Backend) Resume(h *libruntime.Handle) error {
	return call(h, proto.OpResume, proto.IDRequest{ID: h.ID}, nil)
}

// Processes implements libruntime.Backend. The PIDs are the guest's: the
// container's processes have no host PIDs.
func (b *Backend) Processes(h *libruntime.Handle) ([]int, error) {
	var r proto.PsReply
	if err := call(h, proto.OpPs, proto.IDRequest{ID: h.ID}, &r); err != nil {
		if !shim.Answered(err) && exited(h) {
			return nil, nil // a stopped container has no processes, as with runc
		}
		return nil, err
	}
	return r.Pids, nil
}

// Update implements libruntime.Backend.
func (b *Backend) Update(h *libruntime.Handle, r *specs.LinuxResources) error {
	return call(h, proto.OpUpdate, proto.UpdateRequest{ID: h.ID, Resources: r}, nil)
}

// Stats implements libruntime.Backend.
func (b *Backend) Stats(h *libruntime.Handle) (*types.Stats, error) {
	var r proto.StatsReply
	if err := call(h, proto.OpStats, proto.IDRequest{ID: h.ID}, &r); err != nil {
		return nil, err
	}
	return r.Stats, nil
}

// Destroy implements libruntime.Backend: the shim is told to stop (or
// killed), which ends QEMU (in the shim's PID namespace, it cannot outlive
// the shim) and, with the shim's mount namespace, the share's mounts; then
// the shim's files go.
func (b *Backend) Destroy(h *libruntime.Handle) error {
	if sb := sandboxDir(h); sb != "" {
		return destroyMember(h, sb)
	}
	if pid := shimAlive(h); pid != 0 {
		shim.Call(h.Dir, shim.OpShutdown, nil, nil, 5*time.Second)
		awaitHelper(h, pid, 10*time.Second)
	}
	// Only a create killed before it recorded the shim leaves processes no
	// pid file names; scanning /proc is not worth it on every delete.
	if _, err := os.Stat(filepath.Join(h.Dir, pidFile)); errors.Is(err, os.ErrNotExist) {
		killStragglers(h.Dir)
	}
	if err := vmnet.Cleanup(h.Dir); err != nil {
		return fmt.Errorf("remove the VM's network devices: %w", err)
	}
	if err := shim.RemoveHostCgroup(h.Dir); err != nil {
		return fmt.Errorf("remove the VM's host cgroup: %w", err)
	}
	for _, n := range []string{shim.ShareName, shim.VolumesName, "vm"} {
		if err := os.RemoveAll(filepath.Join(h.Dir, n)); err != nil {
			return err
		}
	}
	for _, n := range []string{shim.SocketName, pidFile, shim.ConfigFile, shim.ExitFile, "boot.json", poststartFile} {
		os.Remove(filepath.Join(h.Dir, n))
	}
	runPoststop(h)
	return nil
}

// awaitHelper gives the helper pid that stands for the container (its
// shim, or a pod member's process) grace to exit, then kills it, and
// returns once it is gone (or after 5 s more).
func awaitHelper(h *libruntime.Handle, pid int, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for shimAlive(h) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if shimAlive(h) != 0 {
		unix.Kill(pid, unix.SIGKILL)
		for i := 0; i < 250 && shimAlive(h) != 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// poststopFile holds the poststop hooks create saw.
const poststopFile = "poststop.json"

// runPoststop runs the poststop hooks saved by create on the host once the
// VM is gone, as runc runs them when it destroys a container. Their
// failures do not stop the delete.
func runPoststop(h *libruntime.Handle) {
	path := filepath.Join(h.Dir, poststopFile)
	data, err := os.ReadFile(path)
	os.Remove(path)
	var hooks []specs.Hook
	if err != nil || h.Meta == nil || json.Unmarshal(data, &hooks) != nil {
		return
	}
	libruntime.RunHooks("poststop", hooks, &specs.State{
		Version: specs.Version, ID: h.ID, Status: specs.StateStopped,
		Bundle: h.Meta.Bundle, Annotations: h.Meta.Annotations,
	})
}

// killStragglers ends the shims and QEMUs of this container that no pid
// file names, as when create was killed before recording the shim: they
// are found by their exact arguments (runh shim [exec] DIR) or, for QEMU,
// its working directory, both unique to the container.
func killStragglers(dir string) {
	vmDir := filepath.Join(dir, "vm")
	ents, _ := os.ReadDir("/proc")
	var killed []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		ours := len(args) >= 3 && args[1] == "shim" && args[len(args)-1] == dir
		if !ours && strings.Contains(args[0], "qemu") {
			cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
			ours = cwd == vmDir
		}
		if ours {
			unix.Kill(pid, unix.SIGKILL)
			killed = append(killed, pid)
		}
	}
	for _, pid := range killed {
		for i := 0; i < 250; i++ {
			if _, err := shim.StartTime(pid); err != nil {
				break // gone, or a zombie that has left its cgroups
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// process is the shim (for create) or an exec helper, standing on the
// host for a process in the guest.
type process struct {
	pid int
	cmd *exec.Cmd
}

func (p *process) Pid() int { return p.pid }

func (p *process) Signal(sig unix.Signal) error { return unix.Kill(p.pid, sig) }

// Wait returns the helper's exit status, which is the guest process's.
func (p *process) Wait() (int, error) {
	err := p.cmd.Wait()
	if p.cmd.ProcessState == nil {
		return 0, err
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// oomWait is how long one request for OOM kills waits in the guest.
const oomWait = 20 * time.Second

// OOMWaiter implements libruntime.OOMWatcher: the guest counts the OOM
// kills in the container's memory cgroup; the shim relays the count.
func (b *Backend) OOMWaiter(h *libruntime.Handle) (libruntime.OOMWaitFunc, error) {
	dir, id := ctlDir(h), h.ID
	type answer struct {
		r   proto.OOMReply
		err error
	}
	ask := func(seen uint64, wait time.Duration) answer {
		var a answer
		a.err = shim.Call(dir, proto.OpOOM, proto.OOMRequest{ID: id, Seen: seen, WaitMs: int(wait / time.Millisecond)}, &a.r, wait+callTimeout)
		return a
	}
	return func(seen uint64, done <-chan struct{}) (uint64, error) {
		select {
		case <-done: // the count now
			a := ask(seen, time.Millisecond)
			return a.r.Count, a.err
		default:
		}
		for {
			ch := make(chan answer, 1)
			go func() { ch <- ask(seen, oomWait) }()
			var a answer
			select {
			case a = <-ch:
			case <-done:
				return seen, nil
			}
			switch {
			case a.err != nil && !shim.Answered(a.err):
				return seen, nil // the container has stopped: no more kills
			case a.err != nil:
				return seen, a.err
			case a.r.Count > seen || a.r.Exited:
				return a.r.Count, nil
			}
		}
	}, nil
}
