package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/transport"
)

// Dial connects to the control socket of the shim in dir.
func Dial(dir string) (*net.UnixConn, error) {
	c, err := transport.DialUnixIn(dir, SocketName)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// Call runs one request on the shim in dir, with a deadline.
func Call(dir, op string, req, resp any, timeout time.Duration) error {
	c, err := Dial(dir)
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	return call(c, op, req, resp, nil)
}

func call(c *net.UnixConn, op string, req, resp any, files []*os.File) error {
	r := proto.Request{Op: op}
	if req != nil {
		var err error
		if r.Body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	var fds []int
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte{0}, oob, nil); err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	if err := proto.WriteFrame(c, r); err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	return readResponse(c, op, resp)
}

// Error is an error the shim answered with, as opposed to a failed link.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// StoppedMsg answers a request that came after the container exited.
const StoppedMsg = "container is stopped"

// Answered reports whether err is the shim's answer other than
// StoppedMsg: the container was still there to refuse the request.
func Answered(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Msg != StoppedMsg
}

func readResponse(c io.Reader, op string, resp any) error {
	var out proto.Response
	if err := proto.ReadFrame(c, &out, proto.MaxFrame); err != nil {
		return fmt.Errorf("shim %s: %w", op, err)
	}
	if out.Error != "" {
		return &Error{Msg: out.Error}
	}
	if resp != nil && len(out.Body) > 0 {
		return json.Unmarshal(out.Body, resp)
	}
	return nil
}

// ProcFd is where `runh shim exec` reads the process to run.
const ProcFd = 5

// ExecMain is `runh shim exec DIR [ID]`: it runs one process in the
// container of the shim in DIR (or its pod's container ID) with its own stdio (or console socket, fd ConsoleFd),
// reports the start on fd SyncFd, forwards the signals it gets, and exits
// with the process's status. It is the PID exec's --pid-file names: should
// it die before the process (SIGKILL cannot be forwarded), the shim sees
// its connection end and kills the process.
func ExecMain(dir, id string) int {
	sync := os.NewFile(SyncFd, "sync")
	report := func(r Ready) {
		json.NewEncoder(sync).Encode(r)
		sync.Close()
	}
	proc, err := io.ReadAll(io.LimitReader(os.NewFile(ProcFd, "process"), proto.MaxFrame))
	if err != nil {
		report(Ready{Error: err.Error()})
		return 1
	}
	var p struct {
		Terminal bool `json:"terminal"`
	}
	json.Unmarshal(proc, &p)
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	if p.Terminal {
		files = []*os.File{os.NewFile(ConsoleFd, "console-socket")}
	}
	c, err := Dial(dir)
	if err != nil {
		report(Ready{Error: "container is not running"})
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	var pid proto.PidReply
	if err := call(c, OpExec, ExecRequest{ID: id, Process: proc, Terminal: p.Terminal}, &pid, files); err != nil {
		report(Ready{Error: err.Error()})
		return 1
	}
	c.SetDeadline(time.Time{})
	if p.Terminal {
		files[0].Close()
	}
	report(Ready{Pid: os.Getpid()})
	// Our stdio now belongs to the shim's relay; keep none open here so
	// that the caller sees EOF when the process ends.
	devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	for fd := 0; fd < 3 && devnull != nil; fd++ {
		unix.Dup3(int(devnull.Fd()), fd, 0)
	}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	go func() {
		for sig := range ch {
			proto.WriteFrame(c, proto.KillRequest{Signal: int(sig.(unix.Signal))})
		}
	}()
	var w proto.WaitReply
	if err := readResponse(c, OpExec, &w); err != nil {
		return 255
	}
	return w.Status
}

// Alive reports whether pid is still the process that started at
// startTime (from /proc/PID/stat), so a reused PID is not mistaken for it.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := StartTime(pid)
	return err == nil && st == startTime
}

// StartTime reads a process's start time in clock ticks since boot.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
