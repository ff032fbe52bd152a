package vmnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNS runs fn on an OS thread that has entered ns, and returns fn's error.
// Sockets and tap devices fn creates belong to ns for their whole life.
func inNS(ns netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return nil
	}, fn)
}

// inNewNS runs fn in a new network namespace.
func inNewNS(fn func() error) error {
	return onThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, fn)
}

// onThread runs enter then fn on an OS thread of their own, then takes
// the thread back to its network namespace. When it cannot go back it is
// left locked, so the Go runtime ends it rather than reuse it elsewhere.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		ferr := fn()
		if netns.Set(orig) != nil {
			errc <- ferr // the thread stays locked and dies with us
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// openNetNS opens path and checks that it is a network namespace.
func openNetNS(path string) (netns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("network namespace %s: %w", path, err)
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a network namespace", path)
	}
	return netns.NsHandle(fd), nil
}

// sameNS reports whether two namespace handles name the same namespace.
func sameNS(a, b netns.NsHandle) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a), &sa) != nil || unix.Fstat(int(b), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// InNS runs fn in the network namespace f (an open nsfs file), on a
// thread of its own: processes fn starts are born there. The shim runs
// the hooks of the runtime's namespace so, in the host's.
func InNS(f *os.File, fn func() error) error {
	return inNS(netns.NsHandle(f.Fd()), fn)
}

// nsID identifies a namespace file as "dev:inode".
func nsID(fd int) string {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// selfNS identifies the caller's network namespace (runh's command line
// runs in the host's).
func selfNS() string {
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	defer f.Close()
	return nsID(int(f.Fd()))
}

// isHostNS reports whether ns is the host's network namespace (host, an
// nsID, or PID 1's where readable), which runh must never rewire.
func isHostNS(ns netns.NsHandle, host string) bool {
	id := nsID(int(ns))
	if id == "" || id == host {
		return true // the host's, or cannot tell: refuse
	}
	if os.Getpid() == 1 {
		return false // in a PID namespace of our own (the shim): PID 1 is us
	}
	if init, err := openNetNS("/proc/1/ns/net"); err == nil {
		defer init.Close()
		return sameNS(ns, init)
	}
	return false
}

// HostSupport reports why this host cannot give VMs network interfaces
// (no tap devices, or none this user may make), or nil. Opening the
// device makes nothing.
func HostSupport() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("no /dev/net/tun on this host (load the tun module): %w", err)
	}
	if err != nil {
		// Rootless: udev makes it 0666 on an ordinary host.
		return fmt.Errorf("/dev/net/tun: %w", err)
	}
	unix.Close(fd)
	return nil
}
