package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/client"
	"github.com/runh-project/runh/hvshim/proto"
)

// Operations of the control socket, beyond the agent's own (start, kill,
// pause, resume, ps, update, stats, oom, which are forwarded).
const (
	OpState    = "state"
	OpExec     = "exec"
	OpShutdown = "shutdown"
)

// ExecRequest is sent by `runh shim exec` with its stdio (or its console
// socket) attached as SCM_RIGHTS.
type ExecRequest struct {
	ID       string          `json:"id,omitempty"` // a pod's container; the shim's own if empty
	Process  json.RawMessage `json:"process"`
	Terminal bool            `json:"terminal"`
}

// maxFds bounds the descriptors one request brings (a pod container's
// stdio, rootfs and bind-mount sources).
const maxFds = 64

// StateReply answers OpState.
type StateReply struct {
	Status string `json:"status"`
}

// serve answers the backend's requests, one per connection.
func (s *shim) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c.(*net.UnixConn))
	}
}

func (s *shim) handle(c *net.UnixConn) {
	defer c.Close()
	// Only root (the runtime) may drive the shim.
	if f, err := c.File(); err == nil {
		cred, err := unix.GetsockoptUcred(int(f.Fd()), unix.SOL_SOCKET, unix.SO_PEERCRED)
		f.Close()
		if err != nil || cred.Uid != 0 {
			return
		}
	}
	// The exec request carries file descriptors, received with the first byte.
	var files []*os.File
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4*maxFds))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd)))
			}
		}
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var req proto.Request
	if err := proto.ReadFrame(c, &req, proto.MaxFrame); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req.Op {
	case OpExec:
		s.exec(c, req.Body, files)
		return
	case OpJoin:
		s.join(c, req.Body, files)
		return
	}
	proto.WriteFrame(c, s.call(req))
}

func (s *shim) call(req proto.Request) (resp proto.Response) {
	var target struct {
		ID string `json:"id"`
	}
	json.Unmarshal(req.Body, &target)
	if target.ID != "" && target.ID != s.cfg.ID {
		return s.memberCall(target.ID, req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out any
	var err error
	select {
	case <-s.exited:
		if req.Op == OpState {
			out = StateReply{Status: "stopped"}
		} else {
			err = errors.New(StoppedMsg)
		}
	default:
		switch req.Op {
		case OpState:
			var st proto.StateReply
			err = s.agent.Call(ctx, proto.OpState, proto.IDRequest{ID: s.cfg.ID}, &st)
			out = StateReply{Status: st.Status}
		case OpShutdown:
			s.stopping.Store(true)
			s.setExit(137)
		case proto.OpStart:
			if err = s.lateNetwork(ctx); err != nil {
				break
			}
			// runh start runs the poststart hooks then, on the host.
			err = s.agent.Call(ctx, req.Op, req.Body, nil)
		case proto.OpUpdate:
			// The guest first: it refuses what the container cannot have.
			var u proto.UpdateRequest
			if err = json.Unmarshal(req.Body, &u); err == nil {
				if out, err = s.relay(ctx, req); err == nil {
					err = updateHostCgroup(s.dir, u.Resources)
				}
			}
		default:
			out, err = s.relay(ctx, req)
		}
	}
	if err != nil && !client.IsAgentError(err) && s.exitedWithin(5*time.Second) {
		// The link broke because the container exited meanwhile (the VM
		// stops right after): answer as if the request came after.
		err = nil
		if req.Op == OpState {
			out = StateReply{Status: "stopped"}
		} else if req.Op != proto.OpKill && req.Op != OpShutdown {
			err = errors.New(StoppedMsg)
		}
	}
	return respond(out, err)
}

// respond makes a response of a reply or an error.
func respond(out any, err error) (resp proto.Response) {
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	if out != nil {
		resp.Body, _ = json.Marshal(out)
	}
	return resp
}

// relay forwards a request the agent serves as it is, and returns its
// reply.
func (s *shim) relay(ctx context.Context, req proto.Request) (any, error) {
	var out any
	switch req.Op {
	case proto.OpStart, proto.OpKill, proto.OpPause, proto.OpResume, proto.OpUpdate:
	case proto.OpPs:
		out = &proto.PsReply{}
	case proto.OpPsInfo:
		out = &proto.PsInfoReply{}
	case proto.OpOOM:
		out = &proto.OOMReply{}
	case proto.OpStats:
		out = &proto.StatsReply{}
	default:
		return nil, fmt.Errorf("unknown operation %q", req.Op)
	}
	if err := s.agent.Call(ctx, req.Op, req.Body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// exitedWithin reports whether the container has exited or does so
// within d: a request racing with its exit loses the agent connection.
func (s *shim) exitedWithin(d time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// exec starts a process in the guest with the caller's stdio, answers
// with its guest PID, then with its exit status once it has exited.
func (s *shim) exec(c *net.UnixConn, body json.RawMessage, files []*os.File) {
	fail := func(err error) { proto.WriteFrame(c, proto.Response{Error: err.Error()}) }
	var r ExecRequest
	if err := json.Unmarshal(body, &r); err != nil {
		fail(err)
		return
	}
	id := s.cfg.ID
	if r.ID != "" && r.ID != id {
		if m := s.member(r.ID); m == nil || m.hasExited() {
			fail(fmt.Errorf("container %q is not running in this VM", r.ID))
			return
		}
		id = r.ID
	}
	s.mu.Lock()
	s.nexec++
	key := "exec-" + strconv.Itoa(s.nexec)
	s.mu.Unlock()
	var console, in, out, errf *os.File
	if r.Terminal {
		if len(files) != 1 {
			fail(errors.New("exec with a terminal needs the console socket"))
			return
		}
		console = files[0]
	} else {
		if len(files) != 3 {
			fail(errors.New("exec needs stdin, stdout and stderr"))
			return
		}
		in, out, errf = files[0], files[1], files[2]
	}
	var relays sync.WaitGroup
	st, err := s.openStdio(key, r.Terminal, console, in, out, errf, false, &relays)
	if err != nil {
		fail(err)
		return
	}
	req := struct {
		ID      string          `json:"id"`
		Key     string          `json:"key"`
		Process json.RawMessage `json:"process"`
		Stdio   proto.Stdio     `json:"stdio"`
	}{id, key, r.Process, st}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var pid proto.PidReply
	if err := s.agent.Call(ctx, proto.OpExec, req, &pid); err != nil {
		fail(err)
		return
	}
	b, _ := json.Marshal(pid)
	// A caller gone already is seen by execSignals below, which then kills
	// the process; the wait still follows, so the agent forgets it.
	proto.WriteFrame(c, proto.Response{Body: b})
	waited := make(chan struct{})
	go s.execSignals(c, id, key, waited)
	var w proto.WaitReply
	if err := s.agent.Call(client.NoTimeout(context.Background()), proto.OpWait, proto.ProcessRequest{Key: key}, &w); err != nil {
		w.Status = 255
	}
	close(waited)
	waitRelays(&relays)
	b, _ = json.Marshal(w)
	proto.WriteFrame(c, proto.Response{Body: b})
}

// execSignals forwards the signals the exec helper (`runh shim exec`)
// sends on c to the process key of container id, until c ends. The helper
// stands on the host for the process, which with runc is the host process
// itself: when c ends before the process has exited (waited not closed),
// the helper has gone (killed with SIGKILL, as containerd does when an
// ExecSync times out, or the foreground `runh exec` it belongs to died),
// so the process is killed, and its stdio, which the caller may read to
// EOF, closes once it has exited.
func (s *shim) execSignals(c net.Conn, id, key string, waited <-chan struct{}) {
	signal := func(sig int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.agent.Call(ctx, proto.OpKill, proto.KillRequest{ID: id, Key: key, Signal: sig}, nil)
		if err != nil && sig == int(unix.SIGKILL) {
			select {
			case <-s.exited: // the VM is stopping: the process goes with it
			default:
				s.logf("exec %s in %s: its helper is gone, the kill failed: %v", key, id, err)
			}
		}
	}
	for {
		var sig proto.KillRequest
		if err := proto.ReadFrame(c, &sig, 4096); err != nil {
			select {
			case <-waited: // the process exited: the helper heard, or will
			default:
				signal(int(unix.SIGKILL))
			}
			return
		}
		signal(sig.Signal)
	}
}

// memberCall answers a request about a pod's other container: the guest
// does the work, the host cgroup (the pod's, the VM's) stays as it is.
func (s *shim) memberCall(id string, req proto.Request) (resp proto.Response) {
	m := s.member(id)
	if m == nil && req.Op == OpRemove {
		return resp // removed already, or never made
	}
	if m == nil {
		resp.Error = fmt.Sprintf("container %q is not in this pod's VM", id)
		return resp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out any
	var err error
	switch {
	case req.Op == OpRemove:
		err = s.removeMember(id)
	case req.Op == OpState && m.hasExited():
		out = StateReply{Status: "stopped"}
	case m.hasExited():
		err = errors.New(StoppedMsg)
	default:
		if req.Op == OpState {
			var st proto.StateReply
			err = s.agent.Call(ctx, proto.OpState, proto.IDRequest{ID: id}, &st)
			out = StateReply{Status: st.Status}
		} else {
			out, err = s.relay(ctx, req)
		}
		if err != nil && !client.IsAgentError(err) {
			select {
			case <-m.exited:
				err = errors.New(StoppedMsg)
				if req.Op == OpState {
					err, out = nil, StateReply{Status: "stopped"}
				}
			case <-time.After(5 * time.Second):
			}
		}
	}
	return respond(out, err)
}
