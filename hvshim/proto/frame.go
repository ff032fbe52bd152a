// Package proto is the wire protocol between the host (the shim) and the
// guest agent: length-prefixed JSON frames on multiplexed streams.
//
// Every yamux stream starts with a Header frame saying what it carries. An
// RPC stream then holds one Request and one Response. Stdio streams carry raw
// bytes after the header. The host treats every frame from the guest as
// untrusted: frames are size-limited and every call has a deadline.
package proto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version. Host and guest are the same binary, so a
// mismatch means a stale initrd or a foreign agent; the hello refuses it.
const Version = 1

// Magic opens the hello so a stray reader of the port is recognised.
const Magic = "runh-agent"

// MaxFrame bounds any frame read from the peer.
const MaxFrame = 4 << 20

// ErrFrameTooLarge is returned for a frame over the limit.
var ErrFrameTooLarge = errors.New("proto: frame too large")

// WriteFrame writes v as one JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame of at most max bytes into v.
func ReadFrame(r io.Reader, v any, max int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(max) {
		return fmt.Errorf("%w (%d bytes, limit %d)", ErrFrameTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("proto: bad frame: %w", err)
	}
	return nil
}

// Hello is exchanged once on the raw connection before multiplexing starts:
// the host sends first (a virtio-serial port drops guest output until the
// host is connected), the agent answers.
type Hello struct {
	Magic   string `json:"magic"`
	Version int    `json:"version"`
	Error   string `json:"error,omitempty"`
}

// Stream kinds, the first frame of every stream.
const (
	KindRPC   = "rpc"
	KindStdio = "stdio"
	// KindDNS is opened by the guest: one DNS query relayed to a name
	// server of the container's host namespace (Process: its address,
	// Stream: "udp" or "tcp").
	KindDNS = "dns"
)

// Header opens a stream.
type Header struct {
	Kind string `json:"kind"`
	// For stdio streams: the process they belong to and which stream
	// ("stdin", "stdout", "stderr"; "tty" for a terminal's both ways).
	Process string `json:"process,omitempty"`
	Stream  string `json:"stream,omitempty"`
}

// Request is an RPC call.
type Request struct {
	Op   string          `json:"op"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error string          `json:"error,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}
