package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/template"
)

func init() {
	handlers[proto.OpBoot] = boot
}

// announceWait says on the console, in a VM booted to be saved as a
// template, that the agent now waits for the host: the moment the host
// saves it (hvshim/template).
func announceWait() {
	b, _ := os.ReadFile("/proc/cmdline")
	if strings.Contains(string(b), template.Arg) {
		fmt.Fprintln(os.Stderr, template.Marker)
	}
}

// boot makes the guest this container's, the first thing the host asks
// after the hello, whether the VM booted or was restored from a template
// shared by many: fresh entropy and a reseed of the kernel's random
// generator (restored guests would otherwise draw the same numbers), the
// host's clock (a restored guest's is the template's), then the shares.
func boot(_ *server, body json.RawMessage) (any, error) {
	var r proto.BootRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if len(r.Entropy) > 0 {
		if err := addEntropy(r.Entropy); err != nil {
			return nil, fmt.Errorf("reseed: %w", err)
		}
	}
	if r.TimeNs > 0 {
		ts := unix.NsecToTimespec(r.TimeNs)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return nil, fmt.Errorf("set clock: %w", err)
		}
	}
	return nil, mountShares(r.Share, r.Volumes)
}

// addEntropy credits the host's random bytes to the kernel's pool and
// reseeds the CRNG from it at once.
func addEntropy(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(b))
	*(*int32)(unsafe.Pointer(&buf[0])) = int32(len(b) * 8)
	*(*int32)(unsafe.Pointer(&buf[4])) = int32(len(b))
	copy(buf[8:], b)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return e
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return e
	}
	return nil
}
