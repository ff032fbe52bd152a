package hvshim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runh-project/runh/hvshim/assets"
	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/hvshim/template"
	"github.com/runh-project/runh/hvshim/transport"
	"github.com/runh-project/runh/hvshim/vmnet"
)

// CheckReport is what `runh check` shows about hypervisor isolation.
type CheckReport struct {
	Accel         string `json:"accel"`
	AccelReason   string `json:"accelReason"`
	VhostVsock    bool   `json:"vhostVsock"`
	Transport     string `json:"transport"`
	QEMU          string `json:"qemu,omitempty"`
	QEMUVersion   string `json:"qemuVersion,omitempty"`
	Kernel        string `json:"kernel,omitempty"`
	KernelVersion string `json:"kernelVersion,omitempty"`
	KernelFlavor  string `json:"kernelFlavor,omitempty"` // "runh" (own minimal kernel) or "distribution"
	Modules       int    `json:"modules"`
	Initrd        string `json:"initrd,omitempty"` // cached initrd for this binary, if built
	InitrdCache   string `json:"initrdCache"`
	Network       string `json:"network"` // "available", or why not
	Templates     int    `json:"templates"`
	TemplateDir   string `json:"templateDir"`
	Usable        bool   `json:"usable"`
	Reason        string `json:"reason,omitempty"` // why not usable
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
		if v, err := qemu.Version(bin); err == nil {
			r.QEMUVersion = v
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
	r.Network = "available"
	if err := networkSupport(); err != nil {
		r.Network = err.Error()
	}
	if os.Geteuid() != 0 {
		reasons = append(reasons, "hypervisor isolation needs root (9p passthrough, mounts)")
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
