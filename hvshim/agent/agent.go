// Package agent is the guest side of hypervisor isolation: runh's binary
// run as /init, PID 1 of the utility VM. It prepares the guest, connects to
// the host over the transport and runs containers with the same process
// backend the host uses.
package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/transport"
	"github.com/runh-project/runh/hvshim/vmnet"
)

var initAt, readyAt float64

// IsAgent reports whether this process is the guest agent: PID 1 started
// by the kernel as /init. main calls Main when it is.
func IsAgent() bool {
	return os.Getpid() == 1 && len(os.Args) > 0 && os.Args[0] == "/init"
}

// Main runs the agent. It never returns: when the host goes away or
// anything fails, the VM powers off.
func Main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "runh-agent: %v\n", err)
	}
	powerOff()
}

func run() error {
	if os.Getenv(stateEnv) != "2" {
		// Stage 1, in the initramfs: what needs its files, then move out.
		if err := loadModules(); err != nil {
			return err
		}
		initAt = uptime()
		os.Setenv("RUNH_AGENT_INIT_AT", strconv.FormatFloat(initAt, 'f', 3, 64))
		return switchRoot()
	}
	initAt, _ = strconv.ParseFloat(os.Getenv("RUNH_AGENT_INIT_AT"), 64)
	os.Unsetenv(stateEnv)
	os.Unsetenv("RUNH_AGENT_INIT_AT")
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if err := mountBase(); err != nil {
		return err
	}
	// Made now, so that a VM restored from a template has it: the
	// container's network (OpNetwork) starts from it. Made at create if
	// this fails.
	if ns, err := vmnet.Prepare(); err == nil {
		ns.Close()
	} else {
		fmt.Fprintf(os.Stderr, "runh-agent: %v\n", err)
	}
	// The shares are mounted when the host says (OpBoot): a VM saved as a
	// template must not have them mounted (QEMU refuses to migrate then).
	startReaper()
	announceWait()
	sess, err := transport.GuestAccept(transport.GuestKind())
	if err != nil {
		return err
	}
	readyAt = uptime()
	err = serve(sess)
	if debug() {
		fmt.Fprintf(os.Stderr, "runh-agent: host connection ended: %v\n", err)
	}
	return nil
}

func debug() bool {
	b, _ := os.ReadFile("/proc/cmdline")
	return strings.Contains(string(b), "runh.debug=1")
}

func uptime() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func powerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
