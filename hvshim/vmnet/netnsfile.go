package vmnet

import (
	"os"

	"golang.org/x/sys/unix"
)

// NetNS returns a descriptor of the container's network namespace on the
// host, its own, for the caller to close: hvshim/portfwd listens there.
func (a *Attachment) NetNS() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(a.ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "netns"), nil
}
