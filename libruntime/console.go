package libruntime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DialConsoleSocket connects to the --console-socket of an engine, which
// will receive the container's pty master.
func DialConsoleSocket(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, unwrapPathErr(err))
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("console socket %s: not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return f, nil
}

// SendFd sends f over a unix socket with SCM_RIGHTS, named by f's name as
// libcontainer and runc do, so any console-socket receiver accepts it.
func SendFd(sock *os.File, f *os.File) error {
	name := []byte(f.Name())
	oob := unix.UnixRights(int(f.Fd()))
	return unix.Sendmsg(int(sock.Fd()), name, oob, nil, 0)
}

// RecvFd receives one file descriptor sent with SendFd.
func RecvFd(sock *os.File, timeout time.Duration) (*os.File, error) {
	if timeout > 0 {
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		unix.SetsockoptTimeval(int(sock.Fd()), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if r, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("receive pty master: no file descriptor in message")
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// SocketPair returns two connected unix stream sockets.
func SocketPair(name string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name+"-parent"), os.NewFile(uintptr(fds[1]), name+"-child"), nil
}
