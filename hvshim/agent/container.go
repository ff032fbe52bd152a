package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/libruntime"
	"github.com/runh-project/runh/libruntime/linux"
)

// The guest builds containers with the host's own process backend, so
// seccomp, capabilities, rlimits, cgroups and masked paths behave the same.
var rt = &libruntime.Runtime{
	Store:    libruntime.Store{Root: "/run/runh/state"},
	Default:  libruntime.ProcessIsolation,
	Backends: map[libruntime.Mode]libruntime.Backend{libruntime.ProcessIsolation: &linux.Backend{}},
}

const bundlesDir = "/run/runh/bundles"

func init() {
	handlers[proto.OpCreate] = create
	handlers[proto.OpStart] = func(_ *server, b json.RawMessage) (any, error) {
		var r proto.IDRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		return nil, rt.Start(r.ID)
	}
	handlers[proto.OpExec] = execProcess
	handlers[proto.OpSync] = func(*server, json.RawMessage) (any, error) {
		unix.Sync()
		return nil, nil
	}
	handlers[proto.OpWait] = wait
	handlers[proto.OpOOM] = waitOOM
	handlers[proto.OpKill] = kill
	handlers[proto.OpResize] = resize
	handlers[proto.OpState] = func(_ *server, b json.RawMessage) (any, error) {
		var r proto.IDRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		st, err := rt.State(r.ID)
		if err != nil {
			return nil, err
		}
		return proto.StateReply{Status: string(st.Status), Pid: st.Pid}, nil
	}
	handlers[proto.OpPause] = idOp(rt.Pause)
	handlers[proto.OpResume] = idOp(rt.Resume)
	handlers[proto.OpPs] = func(_ *server, b json.RawMessage) (any, error) {
		var r proto.IDRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		pids, err := rt.Processes(r.ID)
		return proto.PsReply{Pids: pids}, err
	}
	handlers[proto.OpUpdate] = func(_ *server, b json.RawMessage) (any, error) {
		var r proto.UpdateRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		return nil, rt.Update(r.ID, r.Resources)
	}
	handlers[proto.OpStats] = func(_ *server, b json.RawMessage) (any, error) {
		var r proto.IDRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		st, err := rt.Stats(r.ID)
		return proto.StatsReply{Stats: st}, err
	}
}

func idOp(fn func(string) error) handler {
	return func(_ *server, b json.RawMessage) (any, error) {
		var r proto.IDRequest
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		return nil, fn(r.ID)
	}
}

// process is a container process the agent started and waits for.
type process struct {
	id     string                 // the container's
	oom    libruntime.OOMWaitFunc // init's: the container's OOM kills
	p      libruntime.Process
	master *os.File    // the pty master, with a terminal
	reaped atomic.Bool // its PID is no longer its own
	done   chan struct{}
	status int
}

var (
	procMu sync.Mutex
	procs  = map[string]*process{}
)

func lookup(key string) (*process, error) {
	procMu.Lock()
	defer procMu.Unlock()
	p, ok := procs[key]
	if !ok {
		return nil, fmt.Errorf("no process %q", key)
	}
	return p, nil
}

// stdio connects a process's streams from the host to what libcontainer
// takes: pipes, or a console socket whose pty master is relayed.
type stdio struct {
	files   libruntime.Stdio
	console *os.File // child end of the console socket pair
	parent  *os.File // our end, receiving the master
	close   []*os.File
	copies  sync.WaitGroup
	conns   []net.Conn
}

func (s *server) openStdio(key string, want proto.Stdio) (*stdio, error) {
	sio := &stdio{}
	if want.Terminal {
		c, err := s.takeStdio(key, "tty")
		if err != nil {
			return nil, err
		}
		sio.conns = append(sio.conns, c)
		sio.parent, sio.console, err = libruntime.SocketPair("console")
		if err != nil {
			sio.release()
			return nil, err
		}
		return sio, nil
	}
	for _, st := range []struct {
		name  string
		on    bool
		child **os.File
		in    bool
	}{{"stdin", want.Stdin, &sio.files.Stdin, true}, {"stdout", want.Stdout, &sio.files.Stdout, false}, {"stderr", want.Stderr, &sio.files.Stderr, false}} {
		if !st.on {
			continue
		}
		c, err := s.takeStdio(key, st.name)
		if err != nil {
			sio.release()
			return nil, err
		}
		sio.conns = append(sio.conns, c)
		r, w, err := os.Pipe()
		if err != nil {
			sio.release()
			return nil, err
		}
		if st.in {
			*st.child = r
			sio.close = append(sio.close, r)
			go func() { copyClose(w, c); w.Close() }()
		} else {
			*st.child = w
			sio.close = append(sio.close, w)
			sio.copies.Add(1)
			go func() {
				defer sio.copies.Done()
				copyClose(c, r)
				r.Close()
				c.Close()
			}()
		}
	}
	return sio, nil
}

// copyClose copies until either side ends.
func copyClose(dst io.Writer, src io.Reader) { io.Copy(dst, src) }

// started drops the agent's copies of the child's ends and, with a
// terminal, starts relaying the pty master.
func (sio *stdio) started(p *process) error {
	for _, f := range sio.close {
		f.Close()
	}
	sio.close = nil
	if sio.parent == nil {
		return nil
	}
	sio.console.Close()
	m, err := libruntime.RecvFd(sio.parent, 10*time.Second)
	sio.parent.Close()
	if err != nil {
		return err
	}
	p.master = m
	c := sio.conns[0]
	go copyClose(m, c)
	sio.copies.Add(1)
	go func() {
		defer sio.copies.Done()
		copyClose(c, m) // ends with EIO once the last slave is closed
		c.Close()
	}()
	return nil
}

func (sio *stdio) release() {
	for _, f := range append(sio.close, sio.console, sio.parent) {
		if f != nil {
			f.Close()
		}
	}
	for _, c := range sio.conns {
		c.Close()
	}
}

// track waits for p in the background and records its status once its
// output has been relayed.
func track(key string, p *process, sio *stdio) {
	procMu.Lock()
	procs[key] = p
	procMu.Unlock()
	go func() {
		st, err := p.p.Wait()
		p.reaped.Store(true)
		manage(p.p.Pid(), false)
		if err != nil {
			st = 255
		}
		// Output still buffered in pipes reaches the host before the
		// status; a daemon keeping the pipe open does not hold it.
		done := make(chan struct{})
		go func() { sio.copies.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			for _, c := range sio.conns {
				c.Close()
			}
		}
		if p.master != nil {
			p.master.Close()
		}
		p.status = st
		close(p.done)
	}()
}

// guestSpec drops the annotations that would make the guest's runtime
// choose hypervisor isolation again.
func guestSpec(s *specs.Spec) {
	a := map[string]string{}
	for k, v := range s.Annotations {
		if k != libruntime.AnnotationIsolation && k != libruntime.AnnotationUntrusted {
			a[k] = v
		}
	}
	s.Annotations = a
}

func create(s *server, b json.RawMessage) (any, error) {
	var r proto.CreateRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if err := libruntime.ValidateID(r.ID); err != nil {
		return nil, err
	}
	if r.Spec == nil || r.Spec.Process == nil {
		return nil, errors.New("spec without process")
	}
	guestSpec(r.Spec)
	if err := makeTmpfs(r.Tmpfs); err != nil {
		return nil, err
	}
	adopt := ownNetNS(r.Spec)
	readonlyDevices(r.Spec)
	dir := filepath.Join(bundlesDir, r.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	data, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	sio, err := s.openStdio(proto.InitKey(r.ID), r.Stdio)
	if err != nil {
		return nil, err
	}
	o := &libruntime.CreateOpts{Stdio: sio.files}
	if sio.console != nil {
		o.ConsoleSocket = sio.console
	}
	return launch(r.ID, proto.InitKey(r.ID), sio, func() (libruntime.Process, error) {
		p, err := rt.Create(r.ID, dir, "", o)
		if err == nil && adopt {
			if err = adoptNetwork(p.Pid()); err != nil {
				rt.Delete(r.ID, true)
				return nil, err
			}
		}
		return p, err
	})
}

// launch starts a container process with start, under the reaper's lock
// so that the reaper cannot take its exit status first, and tracks it
// under key with its stdio.
func launch(id, key string, sio *stdio, start func() (libruntime.Process, error)) (any, error) {
	reaperMu.RLock()
	p, err := start()
	if err == nil {
		manage(p.Pid(), true)
	}
	reaperMu.RUnlock()
	if err != nil {
		sio.release()
		return nil, err
	}
	proc := &process{id: id, p: p, done: make(chan struct{})}
	if proto.IsInitKey(key) {
		// Prepared now, so that reading the count at init's exit does
		// not hold up the exit's report.
		proc.oom, _ = rt.OOMWaiter(id)
	}
	if err := sio.started(proc); err != nil {
		p.Signal(unix.SIGKILL)
	}
	track(key, proc, sio)
	return proto.PidReply{Pid: p.Pid()}, nil
}

func execProcess(s *server, b json.RawMessage) (any, error) {
	var r proto.ExecRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Key == "" || proto.IsInitKey(r.Key) || r.Process == nil {
		return nil, errors.New("exec: bad request")
	}
	if _, err := lookup(r.Key); err == nil {
		return nil, fmt.Errorf("exec: process %q exists", r.Key)
	}
	sio, err := s.openStdio(r.Key, r.Stdio)
	if err != nil {
		return nil, err
	}
	o := &libruntime.ExecOpts{Stdio: sio.files, Detach: true}
	if sio.console != nil {
		o.ConsoleSocket = sio.console
	}
	return launch(r.ID, r.Key, sio, func() (libruntime.Process, error) {
		return rt.Exec(r.ID, r.Process, "", o)
	})
}

func wait(_ *server, b json.RawMessage) (any, error) {
	var r proto.ProcessRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	p, err := lookup(r.Key)
	if err != nil {
		return nil, err
	}
	<-p.done
	reply := proto.WaitReply{Status: p.status}
	if !proto.IsInitKey(r.Key) {
		procMu.Lock()
		delete(procs, r.Key)
		procMu.Unlock()
	} else {
		// The host stops the VM once it hears init has exited: what the
		// container wrote must be on the host first (the rootfs share
		// caches writes in the guest).
		unix.Sync()
		// And whether the kernel killed any of its processes for want of
		// memory, which the host reports to the engine.
		if p.oom != nil {
			reply.OOMKills, _ = p.oom(math.MaxUint64, p.done)
		}
	}
	return reply, nil
}

// waitOOM answers OpOOM: the container's count of OOM kills once it
// exceeds the caller's, or when init exits or the wait is over.
func waitOOM(_ *server, b json.RawMessage) (any, error) {
	var r proto.OOMRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	p, err := lookup(proto.InitKey(r.ID))
	if err != nil {
		return nil, err
	}
	d := time.Duration(r.WaitMs) * time.Millisecond
	if d <= 0 || d > time.Minute {
		d = 30 * time.Second
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-p.done:
		case <-time.After(d):
		}
		close(stop)
	}()
	n, err := rt.WaitOOM(r.ID, r.Seen, stop)
	select {
	case <-p.done:
		return proto.OOMReply{Count: n, Exited: true}, err
	default:
		return proto.OOMReply{Count: n}, err
	}
}

func kill(_ *server, b json.RawMessage) (any, error) {
	var r proto.KillRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Key != "" {
		p, err := lookup(r.Key)
		if err != nil {
			return nil, err
		}
		if p.reaped.Load() {
			// It has exited: its PID may be another process's now (a
			// signal can come late, as the host's SIGKILL when the exec
			// helper goes away just as the process exits).
			return nil, nil
		}
		return nil, p.p.Signal(unix.Signal(r.Signal))
	}
	return nil, rt.Kill(r.ID, unix.Signal(r.Signal), r.All)
}

func resize(_ *server, b json.RawMessage) (any, error) {
	var r proto.ResizeRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	p, err := lookup(r.Key)
	if err != nil {
		return nil, err
	}
	if p.master == nil {
		return nil, errors.New("process has no terminal")
	}
	return nil, unix.IoctlSetWinsize(int(p.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: r.Width, Row: r.Height})
}
