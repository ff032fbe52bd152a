package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/runh-project/runh/hvshim/portfwd"
	"github.com/runh-project/runh/hvshim/proto"
)

// handler serves one RPC operation.
type handler func(s *server, body json.RawMessage) (any, error)

// handlers maps operation names to their handlers; files of this package
// add to it in init functions.
var handlers = map[string]handler{
	"ping": ping,
}

// server serves one host connection.
type server struct {
	sess *yamux.Session

	mu    sync.Mutex
	stdio map[string]chan net.Conn // process/stream -> its stream from the host
}

func serve(sess *yamux.Session) error {
	s := &server{sess: sess, stdio: map[string]chan net.Conn{}}
	for {
		c, err := sess.Accept()
		if err != nil {
			return err
		}
		go s.handle(c)
	}
}

func (s *server) handle(c net.Conn) {
	var h proto.Header
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := proto.ReadFrame(c, &h, 4096); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch h.Kind {
	case proto.KindStdio:
		s.stdioChan(h.Process, h.Stream) <- c
	case proto.KindRPC:
		defer c.Close()
		var req proto.Request
		if err := proto.ReadFrame(c, &req, proto.MaxFrame); err != nil {
			return
		}
		proto.WriteFrame(c, s.call(req))
	case portfwd.KindWatch, portfwd.KindDial:
		portfwd.Serve(c, h.Kind, portTarget)
	default:
		c.Close()
	}
}

func (s *server) call(req proto.Request) (resp proto.Response) {
	h, ok := handlers[req.Op]
	if !ok {
		resp.Error = fmt.Sprintf("unknown operation %q", req.Op)
		return resp
	}
	out, err := h(s, req.Body)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	if out != nil {
		b, err := json.Marshal(out)
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		resp.Body = b
	}
	return resp
}

func (s *server) stdioChan(process, stream string) chan net.Conn {
	key := process + "/" + stream
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.stdio[key]
	if !ok {
		ch = make(chan net.Conn, 1)
		s.stdio[key] = ch
	}
	return ch
}

// takeStdio returns the stream the host opened for a process, waiting a
// little since it may arrive after the RPC that needs it.
func (s *server) takeStdio(process, stream string) (net.Conn, error) {
	ch := s.stdioChan(process, stream)
	defer func() {
		s.mu.Lock()
		delete(s.stdio, process+"/"+stream)
		s.mu.Unlock()
	}()
	select {
	case c := <-ch:
		return c, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("%s of %s: host did not open it", stream, process)
	}
}

// PingReply answers "ping"; its times are the guest's CLOCK_BOOTTIME in
// seconds, to split a boot into kernel and agent time.
type PingReply struct {
	Version int     `json:"version"`
	Uptime  float64 `json:"uptime"`
	Ready   float64 `json:"ready"` // when the agent accepted the host
	Init    float64 `json:"init"`  // when /init started
}

func ping(s *server, _ json.RawMessage) (any, error) {
	return PingReply{Version: proto.Version, Uptime: uptime(), Ready: readyAt, Init: initAt}, nil
}
