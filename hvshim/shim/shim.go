// Package shim is `runh shim`: the host process of one VM-isolated
// container. It owns QEMU and the agent connection, relays the container's
// stdio, serves the verbs on a unix socket in the state directory, forwards
// the signals it gets to the container, and exits with the container's
// exit status.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim"
	"github.com/runh-project/runh/hvshim/client"
	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/vmnet"
	"github.com/runh-project/runh/libruntime"
)

// Files in the container's state directory.
const (
	ConfigFile  = "shim.json" // Config, written by the backend
	SocketName  = "shim.sock" // the control socket
	ExitFile    = "exit.json" // Exit, once the container has exited
	LogFile     = "shim.log"  // the shim's own errors
	ShareName   = "share"     // the 9p share directory of the rootfs
	VolumesName = "volumes"   // the 9p share directory of bind-mount sources
	vmDirName   = "vm"        // QEMU's sockets and logs
)

// File descriptors the backend passes beyond stdio.
const (
	SyncFd    = 3 // the shim writes one Ready and closes it
	ConsoleFd = 4 // --console-socket, when given
	// HostNetNSFd is the host's network namespace, given to the shim of a
	// create (exec helpers read their process at ProcFd instead).
	HostNetNSFd = 5
)

// Config is what the backend tells the shim.
type Config struct {
	ID         string              `json:"id"`
	Bundle     string              `json:"bundle"`
	VM         libruntime.VMConfig `json:"vm"`
	HasConsole bool                `json:"hasConsole,omitempty"`
	Debug      bool                `json:"debug,omitempty"`
	// Pod marks a pod's sandbox: its VM takes the pod's other containers.
	Pod bool `json:"pod,omitempty"`
	// PodMemoryMiB is the pod's memory limit the engine gave, if any.
	PodMemoryMiB int `json:"podMemoryMiB,omitempty"`
	// SystemdCgroup: the host cgroup is made by systemd (--systemd-cgroup).
	SystemdCgroup bool `json:"systemdCgroup,omitempty"`
	// Rootless: the host cgroup is best effort, as libcontainer's rootless
	// cgroups (--rootless).
	Rootless bool `json:"rootless,omitempty"`
	// Sandbox is, for a pod's other container, the state directory of
	// the sandbox whose shim runs it.
	Sandbox string `json:"sandbox,omitempty"`
}

// Ready is the shim's report to create.
type Ready struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	// Times of the boot, for benchmarks.
	Times *hvshim.BootTimes `json:"times,omitempty"`
}

// Exit records the container's exit status.
type Exit struct {
	Status int `json:"status"`
}

type shim struct {
	dir    string
	cfg    Config
	vm     *hvshim.VM
	agent  *client.Client
	exited chan struct{} // closed when the container's init has exited
	status int
	relays sync.WaitGroup
	slave  *os.File      // init's host pty, our controlling terminal
	winch  chan struct{} // SIGWINCH: init's window size may have changed
	nexec  int
	mu     sync.Mutex

	net         *vmnet.Attachment // the container's network, mirrored
	hostNS      *os.File          // the host's network namespace
	sync        *os.File          // to the runtime until Ready: hook requests
	hooks       *specs.Hooks      // the hooks run on the host
	oomKills    atomic.Uint64     // the guest's count of OOM kills when init exited
	pid         int               // the shim's PID on the host
	bundle      string
	annotations map[string]string

	initPid  int                // the container's init in the guest
	members  map[string]*member // a pod's other containers (pod.go)
	stopping atomic.Bool        // the shim was told to stop the VM

	stopPorts func() // ends the port forwarding (portfwd.go)
}

// Main runs the shim for the container in dir and returns its exit code.
func Main(dir string) int {
	// Nothing create passed may reach QEMU (the host's network
	// namespace least of all).
	for fd := SyncFd; fd <= HostNetNSFd; fd++ {
		unix.CloseOnExec(fd)
	}
	sync := os.NewFile(SyncFd, "sync")
	s := &shim{dir: dir, exited: make(chan struct{}), winch: make(chan struct{}, 1),
		hostNS: os.NewFile(HostNetNSFd, "host-netns"), sync: sync, pid: hostPID()}
	ready, ln, err := s.create()
	if err != nil {
		if s.vm != nil {
			// The agent failed after the boot: the guest may say why.
			err = hvshim.WithConsole(err, filepath.Join(dir, vmDirName), s.vm.QEMU)
		}
		s.logf("create: %v", err)
		json.NewEncoder(sync).Encode(Ready{Error: err.Error()})
		sync.Close()
		if s.vm != nil {
			s.vm.Close()
		}
		if s.net != nil {
			s.net.Detach()
		}
		return 1
	}
	json.NewEncoder(sync).Encode(ready)
	sync.Close()
	go s.serve(ln)
	status := s.wait()
	ln.Close()
	os.Remove(filepath.Join(dir, SocketName))
	return status
}

func (s *shim) create() (*Ready, net.Listener, error) {
	if err := ownProc(); err != nil {
		return nil, nil, err
	}
	if err := os.Chdir(s.dir); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(ConfigFile)
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(b, &s.cfg); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	bundle, err := libruntime.LoadBundle(s.cfg.Bundle)
	if err != nil {
		return nil, nil, err
	}
	spec := bundle.Spec
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle.Dir, rootfs)
	}
	vmDir := filepath.Join(s.dir, vmDirName)
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		return nil, nil, err
	}
	mem, cpus := vmSize(s.cfg, spec)
	if err := joinHostCgroup(s.dir, s.cfg.ID, spec, mem, s.cfg.SystemdCgroup, s.cfg.Rootless, s.pid, s.cgroupViaRuntime()); err != nil {
		return nil, nil, err
	}
	// Hooks of the runtime's namespaces run here on the host, the others
	// in the guest with the container. They run before the VM boots: an
	// engine's hook (Docker's libnetwork-setkey) configures the network
	// namespace of the shim's PID, which must be read before QEMU starts
	// (a microvm cannot hot-plug network devices).
	s.hooks, spec.Hooks = libruntime.HostHooks(spec.Hooks)
	s.bundle, s.annotations = bundle.Dir, spec.Annotations
	if h := s.hooks; h != nil {
		state := s.hookState(specs.StateCreating)
		err := s.runHooks("prestart", h.Prestart, state)
		if err == nil {
			err = s.runHooks("createRuntime", h.CreateRuntime, state)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	// Before the share rewrites the mounts' sources to guest paths: the
	// network reads the engine's resolv.conf.
	if s.net, err = vmnet.Attach(spec, s.dir, s.hostNS); err != nil {
		return nil, nil, err
	}
	share := filepath.Join(s.dir, ShareName)
	var shm []proto.Tmpfs
	vols, err := prepareShare(share, filepath.Join(s.dir, VolumesName), spec, rootfs, s.cfg.Pod, &shm)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.vm, err = hvshim.StartVM(ctx, hvshim.VMConfig{
		Dir: vmDir, MemoryMiB: mem, CPUs: cpus, Accel: s.cfg.VM.Accel,
		Share: share, Volumes: vols, Debug: s.cfg.Debug, NICs: s.net.NICs,
		CgroupV1: guestCgroupV1(), NoTemplate: s.cfg.VM.NoTemplate,
	})
	s.net.CloseTaps() // QEMU has its own, or failed
	if err != nil {
		return nil, nil, err
	}
	s.agent = s.vm.Agent
	if err := s.setupNetwork(ctx, spec); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("unix", SocketName) // relative: sun_path is short
	if err != nil {
		return nil, nil, err
	}
	var console *os.File
	if s.cfg.HasConsole {
		console = os.NewFile(ConsoleFd, "console-socket")
	}
	st, err := s.openStdio(proto.InitKey(s.cfg.ID), spec.Process.Terminal, console, os.Stdin, os.Stdout, os.Stderr, true, &s.relays)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	var pid proto.PidReply
	if err := s.agent.Call(ctx, proto.OpCreate, proto.CreateRequest{ID: s.cfg.ID, Spec: spec, Stdio: st, Tmpfs: shm}, &pid); err != nil {
		ln.Close()
		return nil, nil, err
	}
	s.initPid = pid.Pid
	if err := limitHostCPU(s.dir, spec); err != nil {
		ln.Close()
		return nil, nil, err
	}
	s.forwardPorts()
	go s.forwardSignals()
	go func() {
		// A VM that dies (QEMU killed, guest panic) ends the container.
		<-s.vm.QEMU.Done()
		s.setExit(255)
	}()
	go func() {
		var w proto.WaitReply
		if err := s.agent.Call(client.NoTimeout(context.Background()), proto.OpWait, proto.ProcessRequest{Key: proto.InitKey(s.cfg.ID)}, &w); err != nil {
			w.Status = 255
		}
		s.oomKills.Store(w.OOMKills)
		s.setExit(w.Status)
	}()
	return &Ready{Pid: s.pid, Times: &s.vm.Times}, ln, nil
}

// runHooks runs hooks of the runtime's namespaces: the runtime that
// started the shim runs them, in the host's namespaces, not the shim's own.
func (s *shim) runHooks(name string, hooks []specs.Hook, st *specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	return runHostHooks(s.sync, name, hooks, st)
}

// hookState is the container's state as host hooks receive it; the PID
// is the shim's, the process that stands for the container on the host.
func (s *shim) hookState(status specs.ContainerState) *specs.State {
	return &specs.State{
		Version: specs.Version, ID: s.cfg.ID, Status: status, Pid: s.pid,
		Bundle: s.bundle, Annotations: s.annotations,
	}
}

// logf appends a line to the shim's log in the state directory.
func (s *shim) logf(format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(s.dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

var exitOnce sync.Once

func (s *shim) setExit(status int) {
	exitOnce.Do(func() {
		s.status = status
		close(s.exited)
	})
}

// wait returns the container's exit status once it has exited, after
// recording it and stopping the VM.
func (s *shim) wait() int {
	<-s.exited
	if s.stopPorts != nil {
		s.stopPorts()
	}
	waitRelays(&s.relays)
	libruntime.WriteFileAtomic(filepath.Join(s.dir, ExitFile), fmt.Appendf(nil, `{"status":%d}`, s.status), 0o600)
	// A container killed by delete --force leaves what it wrote, as on
	// the host, where the page cache outlives the process.
	select {
	case <-s.vm.QEMU.Done():
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.agent.Call(ctx, proto.OpSync, nil, nil)
		cancel()
	}
	s.vm.Close()
	s.waitMembers()
	if err := s.net.Detach(); err != nil {
		s.logf("network: %v", err)
	}
	if s.oomKills.Load() > 0 {
		if err := reflectOOM(s.dir); err != nil {
			s.logf("OOM kill in the guest not reported on the host: %v", err)
		}
	}
	return s.status
}

// lateNetwork, at start, gives the guest the interfaces an engine added
// to the shim's namespace since create (ctr run --cni).
func (s *shim) lateNetwork(ctx context.Context) error {
	cfg, err := s.net.Late()
	if err != nil || cfg == nil {
		return err
	}
	if err := s.agent.Call(ctx, proto.OpNetwork, cfg, nil); err != nil {
		return fmt.Errorf("guest network: %w", err)
	}
	return nil
}

// setupNetwork gives the guest the mirrored network and points the
// spec's network namespace at the guest's: the host path means nothing
// there. Without interfaces the container gets a new namespace with lo,
// the view it has on the host.
func (s *shim) setupNetwork(ctx context.Context, spec *specs.Spec) error {
	path := ""
	if len(s.net.Config.Interfaces) > 0 || len(s.net.Config.DNS) > 0 || s.net.Spare() {
		if len(s.net.Config.DNS) > 0 {
			go s.net.ServeDNS(s.agent.Sess)
		}
		var r proto.NetworkReply
		if err := s.agent.Call(ctx, proto.OpNetwork, s.net.Config, &r); err != nil {
			return fmt.Errorf("guest network: %w", err)
		}
		path = r.Path
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
		}
	}
	return nil
}

// forwardSignals sends the signals the shim gets to the container's init,
// as a supervisor waiting on the shim expects.
func (s *shim) forwardSignals() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGWINCH, unix.SIGCONT, unix.SIGALRM, unix.SIGPWR, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU)
	signal.Ignore(unix.SIGPIPE)
	for sig := range ch {
		if sig == unix.SIGWINCH {
			select {
			case s.winch <- struct{}{}:
			default:
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.agent.Call(ctx, proto.OpKill, proto.KillRequest{ID: s.cfg.ID, Key: proto.InitKey(s.cfg.ID), Signal: int(sig.(unix.Signal))}, nil)
		cancel()
	}
}

func (s *shim) resize(key string, slave *os.File) error {
	if slave == nil {
		return nil
	}
	ws, err := winsize(slave)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.agent.Call(ctx, proto.OpResize, proto.ResizeRequest{Key: key, Width: ws.Col, Height: ws.Row}, nil)
}

// openStdio opens the process's streams to the guest and relays them: to
// a new host pty whose master goes to the console socket (terminal), or to
// the given files. ctty makes the pty the shim's controlling terminal (a
// hangup by the engine then reaches init as SIGHUP, and SIGWINCH hastens
// the resize).
func (s *shim) openStdio(key string, terminal bool, console, in, out, errf *os.File, ctty bool, relays *sync.WaitGroup) (proto.Stdio, error) {
	if terminal {
		if console == nil {
			return proto.Stdio{}, errors.New("process.terminal is set but no console socket was given")
		}
		m, sl, err := openPty()
		if err != nil {
			return proto.Stdio{}, err
		}
		if err := libruntime.SendFd(console, m); err != nil {
			m.Close()
			sl.Close()
			return proto.Stdio{}, fmt.Errorf("console socket: %w", err)
		}
		m.Close() // the engine has it now
		console.Close()
		if ctty {
			unix.IoctlSetInt(int(sl.Fd()), unix.TIOCSCTTY, 0)
			s.slave = sl
		}
		c, err := s.agent.OpenStdio(key, "tty")
		if err != nil {
			sl.Close()
			return proto.Stdio{}, err
		}
		go io.Copy(c, sl)
		done := make(chan struct{})
		relays.Add(1)
		go func() {
			defer relays.Done()
			io.Copy(sl, c)
			close(done)
		}()
		var winch chan struct{}
		if ctty {
			winch = s.winch
		}
		go s.watchSize(key, sl, done, winch)
		return proto.Stdio{Terminal: true}, nil
	}
	st := proto.Stdio{Stdin: in != nil, Stdout: out != nil, Stderr: errf != nil}
	if in != nil {
		c, err := s.agent.OpenStdio(key, "stdin")
		if err != nil {
			return st, err
		}
		go func() {
			io.Copy(c, in)
			c.Close() // EOF for the container's stdin
		}()
	}
	for _, o := range []struct {
		name string
		f    *os.File
	}{{"stdout", out}, {"stderr", errf}} {
		if o.f == nil {
			continue
		}
		c, err := s.agent.OpenStdio(key, o.name)
		if err != nil {
			return st, err
		}
		relays.Add(1)
		go func(f *os.File) {
			defer relays.Done()
			io.Copy(f, c)
		}(o.f)
	}
	return st, nil
}

// waitRelays lets the last output reach the host's files, but does not
// wait for a stream a stray process keeps open.
func waitRelays(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// watchSize forwards the size of a process's host pty to its guest pty.
// It polls: SIGWINCH reaches the shim only for its controlling terminal,
// and not for a size set before the shim listened for it (an engine sets
// it as soon as create returns), so winch only hastens the next check.
func (s *shim) watchSize(key string, slave *os.File, done, winch <-chan struct{}) {
	var last unix.Winsize
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		// Until the process exists in the guest the call fails and is
		// tried again on the next tick.
		if ws, err := winsize(slave); err == nil && *ws != last && s.resize(key, slave) == nil {
			last = *ws
		}
		select {
		case <-done:
			return
		case <-t.C:
		case <-winch:
		}
	}
}
