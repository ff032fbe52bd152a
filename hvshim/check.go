package hvshim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/runh-project/runh/hvshim/assets"
	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/jail"
	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/hvshim/template"
	"github.com/runh-project/runh/hvshim/transport"
	"github.com/runh-project/runh/hvshim/vmnet"
	"github.com/runh-project/runh/libruntime"
)

// CheckReport is what `runh check` shows about hypervisor isolation.
type CheckReport struct {
	Accel       string `json:"accel"`
	AccelReason string `json:"accelReason"`
	VhostVsock  bool   `json:"vhostVsock"`
	Transport   string `json:"transport"`
	QEMU        string `json:"qemu,omitempty"`
	QEMUVersion string `json:"qemuVersion,omitempty"`
	Firmware    string `json:"firmware,omitempty"` // microvm firmware passed with -bios
	// SpecialFiles is "yes" when unix sockets and FIFOs can be made on a
	// VM container's files, else why not.
	SpecialFiles  string      `json:"specialFiles,omitempty"`
	Kernel        string      `json:"kernel,omitempty"`
	KernelVersion string      `json:"kernelVersion,omitempty"`
	KernelFlavor  string      `json:"kernelFlavor,omitempty"` // "runh" (own minimal kernel) or "distribution"
	Modules       int         `json:"modules"`
	Initrd        string      `json:"initrd,omitempty"` // cached initrd for this binary, if built
	InitrdCache   string      `json:"initrdCache"`
	Network       string      `json:"network"` // "available", or why not
	Confinement   Confinement `json:"confinement"`
	Templates     int         `json:"templates"`
	TemplateDir   string      `json:"templateDir"`
	Usable        bool        `json:"usable"`
	Reason        string      `json:"reason,omitempty"` // why not usable
}

// Confinement is what confines each VM's QEMU (hvshim/jail,
// docs/security.md).
type Confinement struct {
	Seccomp      string   `json:"seccomp"`      // QEMU's -sandbox option
	Jail         string   `json:"jail"`         // QEMU's root
	Namespaces   []string `json:"namespaces"`   // of its own, besides the shim's network namespace
	User         string   `json:"user"`         // its user and group IDs
	Capabilities []string `json:"capabilities"` // its only ones (effective, permitted, bounding, ambient)
	NoNewPrivs   bool     `json:"noNewPrivs"`
	Rlimits      []string `json:"rlimits"`
}

// NeedsUserNS is why an ordinary user outside a user namespace of its own
// cannot have hypervisor isolation.
const NeedsUserNS = "an ordinary user needs a user namespace of its own, as rootless podman runs its runtime in"

func confinement() Confinement {
	user := fmt.Sprintf("%d + the number of its PID namespace (not root)", jail.UIDBase)
	if libruntime.InUserNamespace() {
		user = "the highest ID of this user namespace (rootless), not its root"
		if uid, gid, err := jail.RootlessIDs(); err == nil {
			user = fmt.Sprintf("%d:%d, the highest IDs of this user namespace (rootless), not its root", uid, gid)
		}
	}
	return Confinement{
		Seccomp:      "-sandbox " + qemu.Sandbox,
		Jail:         "pivot_root into a read-only tmpfs holding QEMU, its libraries, the kernel, the initrd, the VM directory and the shares",
		Namespaces:   jail.Namespaces,
		User:         user,
		Capabilities: jail.CapNames(),
		NoNewPrivs:   true,
		Rlimits:      jail.Limits(),
	}
}

// sandboxSupport says why bin cannot take the -sandbox option, or nil:
// QEMU checks the option before it reaches -version.
func sandboxSupport(bin string) error {
	out, err := exec.Command(bin, "-sandbox", qemu.Sandbox, "-version").CombinedOutput()
	if err != nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("qemu has no seccomp sandbox: %s", line)
	}
	return nil
}

// Check probes the host for what hypervisor isolation needs. It writes
// nothing: the initrd is reported only if already cached.
func Check() CheckReport {
	r := CheckReport{InitrdCache: initrd.CacheDir(), VhostVsock: transport.HostHasVsock()}
	a := qemu.ProbeAccel()
	r.Accel, r.AccelReason = a.Name, a.Reason
	r.Transport = string(transport.Serial)
	if r.VhostVsock {
		r.Transport = string(transport.Vsock)
	}
	var reasons []string
	if bin, err := qemu.FindBinary(); err != nil {
		reasons = append(reasons, "qemu-system-x86_64 not found")
	} else {
		r.QEMU = bin
		r.Firmware = qemu.Firmware(bin)
		if v, err := qemu.Version(bin); err == nil {
			r.QEMUVersion = v
			r.SpecialFiles = "yes"
			if err := qemu.SpecialFiles(v); err != nil {
				r.SpecialFiles = err.Error()
			}
			if err := sandboxSupport(bin); err != nil {
				reasons = append(reasons, err.Error())
			}
		} else {
			reasons = append(reasons, "qemu does not run: "+err.Error())
		}
	}
	if g, err := assets.Find(); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		r.Kernel, r.KernelVersion, r.KernelFlavor, r.Modules = g.Kernel, g.Version, g.Flavor, len(g.Modules)
		spec := initrd.Spec{Init: "/proc/self/exe", Modules: g.Modules}
		if key, err := spec.Key(); err == nil {
			p := initrd.CacheDir() + "/initrd-" + key[:32] + ".cpio"
			if _, err := os.Stat(p); err == nil {
				r.Initrd = p
			}
		}
	}
	r.Templates, r.TemplateDir = len(template.List()), template.Dir()
	r.Confinement = confinement()
	if err := jail.Supported(); err != nil {
		reasons = append(reasons, "cannot confine QEMU: "+err.Error())
	}
	r.Network = "available"
	if err := networkSupport(); err != nil {
		r.Network = err.Error()
	}
	if os.Geteuid() != 0 {
		reasons = append(reasons, NeedsUserNS)
	}
	r.Usable = len(reasons) == 0
	if !r.Usable {
		r.Reason = joinReasons(reasons)
	}
	return r
}

// networkSupport says why VM containers cannot have their engine's network
// here, or nil: the host needs tap devices, the guest kernel virtio-net.
func networkSupport() error {
	if err := vmnet.HostSupport(); err != nil {
		return err
	}
	g, err := assets.Find()
	if err != nil {
		return err
	}
	for _, m := range g.Modules {
		if strings.HasPrefix(filepath.Base(m), "virtio_net.") {
			return nil
		}
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(g.Kernel), "config"))
	if err == nil && strings.Contains(string(b), "\nCONFIG_VIRTIO_NET=y") {
		return nil
	}
	return fmt.Errorf("guest kernel %s has no virtio-net driver (rebuild it: make guest-kernel)", g.Kernel)
}

func joinReasons(rs []string) string {
	s := rs[0]
	for _, r := range rs[1:] {
		s += "; " + r
	}
	return s
}
