// Package client is the host's side of the agent protocol.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/runh-project/runh/hvshim/proto"
)

// DefaultTimeout bounds a call when the context has no deadline, so a
// guest that never answers cannot hang the host.
const DefaultTimeout = 30 * time.Second

// Client calls the agent over a multiplexed session.
type Client struct {
	Sess *yamux.Session
}

// AgentError is an error the agent reported.
type AgentError struct{ Msg string }

func (e *AgentError) Error() string { return e.Msg }

type noTimeoutKey struct{}

// NoTimeout marks ctx for calls that last as long as a process, such as
// waiting for its exit: Call then adds no default deadline.
func NoTimeout(ctx context.Context) context.Context {
	return context.WithValue(ctx, noTimeoutKey{}, true)
}

// Call runs op with req and decodes the answer into resp (may be nil).
func (c *Client) Call(ctx context.Context, op string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok && ctx.Value(noTimeoutKey{}) == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	st, err := c.Sess.OpenStream()
	if err != nil {
		return fmt.Errorf("agent %s: %w", op, err)
	}
	defer st.Close()
	dl, _ := ctx.Deadline()
	st.SetDeadline(dl)
	// A cancelled context ends the call at once.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := proto.Request{Op: op}
	if req != nil {
		if r.Body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	if err := proto.WriteFrame(st, proto.Header{Kind: proto.KindRPC}); err != nil {
		return fmt.Errorf("agent %s: %w", op, err)
	}
	if err := proto.WriteFrame(st, r); err != nil {
		return fmt.Errorf("agent %s: %w", op, err)
	}
	var out proto.Response
	if err := proto.ReadFrame(st, &out, proto.MaxFrame); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("agent %s: %w", op, err)
	}
	if out.Error != "" {
		return &AgentError{Msg: out.Error}
	}
	if resp != nil && len(out.Body) > 0 {
		if err := json.Unmarshal(out.Body, resp); err != nil {
			return fmt.Errorf("agent %s: bad answer: %w", op, err)
		}
	}
	return nil
}

// OpenStdio opens a stdio stream of a process the next call will create.
func (c *Client) OpenStdio(process, stream string) (net.Conn, error) {
	st, err := c.Sess.OpenStream()
	if err != nil {
		return nil, err
	}
	if err := proto.WriteFrame(st, proto.Header{Kind: proto.KindStdio, Process: process, Stream: stream}); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// IsAgentError reports whether err came from the agent rather than the link.
func IsAgentError(err error) bool {
	var ae *AgentError
	return errors.As(err, &ae)
}
