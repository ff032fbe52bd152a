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
// saves it (hvshim/template). Before that it stops free page reporting:
// a VM restored from the template maps the template's memory file
// privately, and QEMU discards a reported page of a file by punching a
// hole in the file, under every other VM of the template.
func announceWait() {
	b, _ := os.ReadFile("/proc/cmdline")
	if strings.Contains(string(b), template.Arg) {
		if err := unbindBalloon(); err != nil {
			fmt.Fprintf(os.Stderr, "runh-agent: free page reporting: %v\n", err)
			return // no marker: the host boots its VMs cold
		}
		fmt.Fprintln(os.Stderr, template.Marker)
	}
}

// balloonDriver is the virtio-balloon driver's directory in sysfs.
const balloonDriver = "/sys/bus/virtio/drivers/virtio_balloon"

// unbindBalloon detaches the virtio-balloon driver from its device, which
// ends free page reporting (the driver's removal waits for a report in
// progress). A kernel without the driver has nothing to stop.
func unbindBalloon() error {
	ents, err := os.ReadDir(balloonDriver)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "virtio") {
			if err := os.WriteFile(balloonDriver+"/unbind", []byte(e.Name()), 0); err != nil {
				return err
			}
		}
	}
	return nil
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
