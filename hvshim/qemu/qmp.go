package qemu

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// QMP is a minimal client of QEMU's machine protocol.
type QMP struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// maxQMPLine bounds a line from QEMU; replies here are small.
const maxQMPLine = 1 << 20

// NewQMP takes a connected socket, reads the greeting and negotiates
// capabilities.
func NewQMP(conn net.Conn, timeout time.Duration) (*QMP, error) {
	q := &QMP{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("qmp greeting: %v", err)
	}
	if _, err := q.exec("qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *QMP) read(v any) error {
	line, err := q.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxQMPLine {
		return errors.New("qmp: line too long")
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// Execute runs a command and returns its "return" value.
func (q *QMP) Execute(cmd string, args any, timeout time.Duration) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn.SetDeadline(time.Now().Add(timeout))
	defer q.conn.SetDeadline(time.Time{})
	return q.exec(cmd, args)
}

func (q *QMP) exec(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	var out json.RawMessage
	err := q.readReturn(cmd, &out)
	return out, err
}

// readReturn reads until the command's answer, skipping events.
func (q *QMP) readReturn(cmd string, out *json.RawMessage) error {
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.read(&resp); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case resp.Event != "":
			continue // asynchronous events are not waited for here
		case resp.Error != nil:
			return fmt.Errorf("qmp %s: %s", cmd, resp.Error.Desc)
		default:
			if out != nil {
				*out = resp.Return
			}
			return nil
		}
	}
}

// Status returns the VM's run state ("running", "paused", ...).
func (q *QMP) Status() (string, error) {
	r, err := q.Execute("query-status", nil, 5*time.Second)
	if err != nil {
		return "", err
	}
	var s struct {
		Status string `json:"status"`
	}
	err = json.Unmarshal(r, &s)
	return s.Status, err
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// SendFd hands QEMU an open file under name (the getfd command), for a
// command that takes "fd:name", such as migrate.
func (q *QMP) SendFd(name string, f *os.File, timeout time.Duration) error {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return errors.New("qmp: not a unix socket")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn.SetDeadline(time.Now().Add(timeout))
	defer q.conn.SetDeadline(time.Time{})
	b, _ := json.Marshal(map[string]any{"execute": "getfd", "arguments": map[string]string{"fdname": name}})
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: %w", err)
	}
	return q.readReturn("getfd", nil)
}
