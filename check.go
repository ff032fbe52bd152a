package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/hvshim"
)

// checkReport is what `runh check` prints: what this host offers each
// isolation mode.
type checkReport struct {
	Process    processCheck       `json:"process"`
	Hypervisor hvshim.CheckReport `json:"hypervisor"`
}

type processCheck struct {
	Cgroup string `json:"cgroup"`
	// CgroupDriver is what makes the containers' cgroups: "cgroupfs", or
	// "systemd" with --systemd-cgroup; Systemd says whether systemd runs.
	CgroupDriver string `json:"cgroupDriver"`
	Systemd      bool   `json:"systemd"`
	Seccomp      string `json:"seccomp,omitempty"`
	Usable       bool   `json:"usable"`
	Reason       string `json:"reason,omitempty"`
}

var checkCommand = &cli.Command{
	Name:  "check",
	Usage: "report what this host offers each isolation mode",
	Flags: []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "text", Usage: "output format: text or json"}},
	Action: func(_ context.Context, cmd *cli.Command) error {
		r := checkReport{Hypervisor: hvshim.Check()}
		r.Process = processCheck{Cgroup: cgroupMode(), CgroupDriver: "cgroupfs", Seccomp: seccompVersion(), Usable: os.Geteuid() == 0}
		if cmd.Root().Bool("systemd-cgroup") {
			r.Process.CgroupDriver = "systemd"
		}
		_, err := os.Stat("/run/systemd/system")
		r.Process.Systemd = err == nil
		if !r.Process.Usable {
			r.Process.Reason = "not root (use --rootless)"
		}
		switch cmd.String("format") {
		case "json":
			return printJSON(r)
		case "text":
		default:
			return fmt.Errorf("invalid --format %q: want text or json", cmd.String("format"))
		}
		p, h := r.Process, r.Hypervisor
		systemd := "not running"
		if p.Systemd {
			systemd = "running"
		}
		fmt.Printf("process isolation:    %s (cgroup %s, driver %s, systemd %s; libseccomp %s)\n", usable(p.Usable, p.Reason), p.Cgroup, p.CgroupDriver, systemd, p.Seccomp)
		fmt.Printf("hypervisor isolation: %s\n", usable(h.Usable, h.Reason))
		fmt.Printf("  accelerator:  %s (%s)\n", h.Accel, h.AccelReason)
		fmt.Printf("  transport:    %s (vhost-vsock: %v)\n", h.Transport, h.VhostVsock)
		fmt.Printf("  qemu:         %s %s\n", orNone(h.QEMU), h.QEMUVersion)
		if h.QEMU != "" {
			fmt.Printf("  firmware:     %s\n", orNone(h.Firmware))
			sf := h.SpecialFiles
			if sf == "yes" {
				sf = "unix sockets and FIFOs on the container's files work"
			}
			fmt.Printf("  special files: %s\n", sf)
		}
		fmt.Printf("  guest kernel: %s %s, %s (%d modules)\n", orNone(h.Kernel), h.KernelVersion, orNone(h.KernelFlavor), h.Modules)
		fmt.Printf("  initrd:       %s (cache %s)\n", orNone(h.Initrd), h.InitrdCache)
		fmt.Printf("  network:      %s\n", h.Network)
		c := h.Confinement
		fmt.Printf("  confinement:  seccomp (%s), %s\n", c.Seccomp, c.Jail)
		fmt.Printf("                namespaces %s, user %s, capabilities %s, no_new_privs, rlimits %s\n",
			strings.Join(c.Namespaces, ","), c.User, strings.Join(c.Capabilities, ","), strings.Join(c.Rlimits, ","))
		fmt.Printf("  templates:    %d in %s (made on first use or by `runh template`; --vm-template=false boots instead)\n", h.Templates, h.TemplateDir)
		return nil
	},
}

func cgroupMode() string {
	switch {
	case cgroups.IsCgroup2UnifiedMode():
		return "v2"
	case cgroups.IsCgroup2HybridMode():
		return "v1 (hybrid)"
	}
	return "v1"
}

func usable(ok bool, reason string) string {
	if ok {
		return "usable"
	}
	return "not usable: " + reason
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
