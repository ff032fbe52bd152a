// Package transport connects the host to the guest agent: vsock when the
// host has /dev/vhost-vsock, otherwise a virtio-serial port that QEMU backs
// with a unix socket. Either way the connection is checked with a versioned
// hello and then multiplexed with yamux.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
)

// Kind names a transport.
type Kind string

// The transports.
const (
	Vsock  Kind = "vsock"
	Serial Kind = "serial"
)

const (
	// VsockPort is the port the agent listens on.
	VsockPort = 1024
	// SerialName is the virtio-serial port name the agent opens.
	SerialName = "runh.0"
	// SocketName is the unix socket, in the VM's directory, backing it.
	SocketName = "agent.sock"
	vhostDev   = "/dev/vhost-vsock"
)

// HostHasVsock reports whether the host can give VMs a vsock device:
// whether this process may open /dev/vhost-vsock, not only whether it
// exists (on Debian 13 it is 0660 root:kvm, which a rootless runtime's
// user may not open: it then takes virtio-serial).
func HostHasVsock() bool {
	f, err := os.OpenFile(vhostDev, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Host is the host end of one VM's transport.
type Host struct {
	Kind Kind
	Dir  string // directory of the serial socket (QEMU's working directory)
	CID  uint32 // vsock only
	// vhost is the /dev/vhost-vsock handle holding CID, passed to QEMU
	// so no other VM can take the CID between allocation and use.
	vhost *os.File
}

// NewHost prepares a transport of the given kind ("" picks the best one).
func NewHost(kind Kind, dir string) (*Host, error) {
	if kind == "" {
		kind = Serial
		if HostHasVsock() {
			kind = Vsock
		}
	}
	h := &Host{Kind: kind, Dir: dir}
	switch kind {
	case Serial:
		return h, nil
	case Vsock:
		f, cid, err := allocCID()
		if err != nil {
			return nil, err
		}
		h.vhost, h.CID = f, cid
		return h, nil
	}
	return nil, fmt.Errorf("unknown transport %q", kind)
}

// allocCID claims a free guest CID on a fresh vhost-vsock handle; the
// kernel refuses a CID another VM holds, so trying is collision-free.
func allocCID() (*os.File, uint32, error) {
	f, err := os.OpenFile(vhostDev, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("vsock: %w", err)
	}
	const setGuestCID = 0x4008af60 // VHOST_VSOCK_SET_GUEST_CID
	for i := 0; i < 64; i++ {
		cid := uint64(3 + rand.Uint32N(1<<31))
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), setGuestCID, uintptr(unsafe.Pointer(&cid)))
		if errno == 0 {
			return f, uint32(cid), nil
		}
		if errno != unix.EADDRINUSE {
			f.Close()
			return nil, 0, fmt.Errorf("vsock: set guest cid: %w", errno)
		}
	}
	f.Close()
	return nil, 0, errors.New("vsock: no free guest cid")
}

// QEMUArgs returns the device arguments; files are passed to QEMU as
// ExtraFiles, so the first is fd 3 + offset.
func (h *Host) QEMUArgs(offset int) (args []string, files []*os.File) {
	if h.Kind == Vsock {
		return []string{"-device", fmt.Sprintf("vhost-vsock-device,guest-cid=%d,vhostfd=%d", h.CID, 3+offset)},
			[]*os.File{h.vhost}
	}
	return []string{
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=agent,path=" + SocketName + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + SerialName,
	}, nil
}

// KernelArg tells the agent which transport to open.
func (h *Host) KernelArg() string { return "runh.transport=" + string(h.Kind) }

// Close releases the CID handle (QEMU keeps its own copy).
func (h *Host) Close() error {
	if h.vhost != nil {
		return h.vhost.Close()
	}
	return nil
}

// Dial connects to the agent, retrying until ctx ends (the guest needs a
// few seconds to boot), then does the hello and starts the multiplexer.
func (h *Host) Dial(ctx context.Context) (*yamux.Session, error) {
	var lastErr error
	for {
		conn, err := h.dialOnce()
		if err == nil {
			s, err := clientHandshake(ctx, conn)
			if err == nil {
				return s, nil
			}
			conn.Close()
			// A serial socket that accepted us is the right peer:
			// a failed hello will not get better by retrying.
			if h.Kind == Serial {
				return nil, err
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to agent: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *Host) dialOnce() (net.Conn, error) {
	if h.Kind == Vsock {
		return vsock.Dial(h.CID, VsockPort, nil)
	}
	return DialUnixIn(h.Dir, SocketName)
}

// DialUnixIn connects to the unix socket name in dir, reaching it through
// /proc/self/fd so that deep directories do not overflow sun_path.
func DialUnixIn(dir, name string) (net.Conn, error) {
	if len(dir)+len(name) < 100 {
		return net.Dial("unix", filepath.Join(dir, name))
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(fd)+"/"+name)
}

func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	// TCG guests can stall for seconds under host load; don't declare the
	// peer dead too early. Liveness is QEMU's process state, not pings.
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 30 * time.Second
	return c
}

func clientHandshake(ctx context.Context, conn net.Conn) (*yamux.Session, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := proto.WriteFrame(conn, proto.Hello{Magic: proto.Magic, Version: proto.Version}); err != nil {
		return nil, fmt.Errorf("agent hello: %w", err)
	}
	var h proto.Hello
	if err := proto.ReadFrame(conn, &h, 4096); err != nil {
		return nil, fmt.Errorf("agent hello: %w", err)
	}
	switch {
	case h.Magic != proto.Magic:
		return nil, errors.New("agent hello: not a runh agent")
	case h.Error != "":
		return nil, fmt.Errorf("agent: %s", h.Error)
	case h.Version != proto.Version:
		return nil, fmt.Errorf("agent speaks protocol %d, want %d", h.Version, proto.Version)
	}
	conn.SetDeadline(time.Time{})
	return yamux.Client(conn, yamuxConfig())
}

// GuestKind reads the transport chosen by the host from the kernel command line.
func GuestKind() Kind {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "runh.transport="); ok {
			return Kind(v)
		}
	}
	return Serial
}

// GuestAccept waits for the host on the guest side and returns the
// multiplexed session after the hello.
func GuestAccept(kind Kind) (*yamux.Session, error) {
	var rwc io.ReadWriteCloser
	switch kind {
	case Vsock:
		l, err := vsock.Listen(VsockPort, nil)
		if err != nil {
			return nil, fmt.Errorf("vsock listen: %w", err)
		}
		c, err := l.Accept()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("vsock accept: %w", err)
		}
		rwc = c
	default:
		f, err := openSerial(SerialName)
		if err != nil {
			return nil, err
		}
		rwc = f
	}
	var h proto.Hello
	if err := proto.ReadFrame(untilHost{rwc}, &h, 4096); err != nil {
		rwc.Close()
		return nil, fmt.Errorf("host hello: %w", err)
	}
	reply := proto.Hello{Magic: proto.Magic, Version: proto.Version}
	if h.Magic != proto.Magic || h.Version != proto.Version {
		reply.Error = fmt.Sprintf("agent speaks protocol %d, host %d", proto.Version, h.Version)
	}
	if err := proto.WriteFrame(rwc, reply); err != nil || reply.Error != "" {
		rwc.Close()
		return nil, fmt.Errorf("host hello: %v %s", err, reply.Error)
	}
	return yamux.Server(rwc, yamuxConfig())
}

// untilHost reads the host's hello from the virtio-serial port, waiting for
// the host to connect: while no one is connected to QEMU's end, a read
// returns end-of-file at once. A VM restored from a template resumes in
// that state (the new QEMU's socket has no client yet); vsock never
// returns it before the connection.
type untilHost struct{ r io.Reader }

func (u untilHost) Read(p []byte) (int, error) {
	for {
		n, err := u.r.Read(p)
		if n > 0 || err != io.EOF {
			return n, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openSerial opens the virtio-serial port with the given name. Without udev
// there is no /dev/virtio-ports link, so the name is looked up in sysfs.
func openSerial(name string) (*os.File, error) {
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		dev := "/dev/" + filepath.Base(d)
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("virtio port %s: %w", name, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("virtio port %s not found", name)
}
