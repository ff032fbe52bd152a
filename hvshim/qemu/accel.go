package qemu

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Accelerators.
const (
	KVM = "kvm"
	TCG = "tcg"
)

// Accel is the result of probing the host's accelerator.
type Accel struct {
	Name   string // KVM or TCG
	Reason string // why, in a few words
}

// ProbeAccel decides between KVM and TCG with a real probe: /dev/kvm must
// create a VM, the CPU must have vmx or svm, and the KVM must not be a
// paravirtual-only one (kvm_pvm) that cannot boot a normal guest kernel.
func ProbeAccel() Accel {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return Accel{TCG, "/dev/kvm is kvm_pvm (paravirtual KVM), which cannot boot a normal guest"}
	}
	cpu, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return Accel{TCG, "cannot read /proc/cpuinfo: " + err.Error()}
	}
	if !hasFlag(cpu, "vmx") && !hasFlag(cpu, "svm") {
		return Accel{TCG, "CPU has no vmx/svm"}
	}
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Accel{TCG, "open /dev/kvm: " + err.Error()}
	}
	defer unix.Close(fd)
	const (
		getAPIVersion = 0xae00 // KVM_GET_API_VERSION
		createVM      = 0xae01 // KVM_CREATE_VM
	)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), getAPIVersion, 0)
	if errno != 0 || v != 12 {
		return Accel{TCG, fmt.Sprintf("KVM API version %d (%v)", v, errno)}
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), createVM, 0)
	if errno != 0 {
		return Accel{TCG, "KVM_CREATE_VM: " + errno.Error()}
	}
	unix.Close(int(vm))
	return Accel{KVM, "/dev/kvm creates VMs and the CPU has hardware virtualization"}
}

func hasFlag(cpuinfo []byte, flag string) bool {
	for _, line := range bytes.Split(cpuinfo, []byte("\n")) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(bytes.TrimSpace(name)) != "flags" {
			continue
		}
		for _, f := range bytes.Fields(rest) {
			if string(f) == flag {
				return true
			}
		}
		return false
	}
	return false
}
