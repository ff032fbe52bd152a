package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim"
	"github.com/runh-project/runh/libruntime"
	"github.com/runh-project/runh/libruntime/linux"
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
	// Rootless is --rootless resolved: cgroups best effort. UID is the
	// effective user; InUserNS says it is root of a user namespace (as
	// under rootless podman) rather than the host's root.
	Rootless bool `json:"rootless"`
	UID      int  `json:"uid"`
	InUserNS bool `json:"inUserNamespace"`
	// StateDir is the state root (--root, or its default for this user)
	// and whether this user can write it.
	StateDir         string `json:"stateDir"`
	StateDirWritable bool   `json:"stateDirWritable"`
	// Cgroups says whether this user may make containers' cgroups:
	// "writable", "not writable", "writable: <controllers>; not: ..." or,
	// with the systemd driver, who makes them.
	Cgroups string `json:"cgroups"`
	Usable  bool   `json:"usable"`
	Reason  string `json:"reason,omitempty"`
}

var checkCommand = &cli.Command{
	Name:  "check",
	Usage: "report what this host offers each isolation mode",
	Flags: []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "text", Usage: "output format: text or json"}},
	Action: func(_ context.Context, cmd *cli.Command) error {
		r := checkReport{Hypervisor: hvshim.Check()}
		p, err := checkProcess(cmd.Root())
		if err != nil {
			return err
		}
		r.Process = p
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
		who := fmt.Sprintf("uid %d", p.UID)
		if p.InUserNS {
			who += " in a user namespace"
		}
		if p.Rootless {
			fmt.Printf("  rootless:     yes (%s): cgroups this user cannot write are skipped, a limit that needs one fails\n", who)
		} else {
			fmt.Printf("  rootless:     no (%s)\n", who)
		}
		state := "writable"
		if !p.StateDirWritable {
			state = "not writable"
		}
		fmt.Printf("  state dir:    %s (%s)\n", p.StateDir, state)
		fmt.Printf("  cgroups:      %s\n", p.Cgroups)
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

// checkProcess reports what process isolation can do for this user with
// the global flags given.
func checkProcess(root *cli.Command) (processCheck, error) {
	p := processCheck{Cgroup: cgroupMode(), CgroupDriver: "cgroupfs", Seccomp: seccompVersion(),
		UID: os.Geteuid(), InUserNS: libruntime.InUserNamespace()}
	systemd := root.Bool("systemd-cgroup")
	if systemd {
		p.CgroupDriver = "systemd"
	}
	_, err := os.Stat("/run/systemd/system")
	p.Systemd = err == nil
	if p.Rootless, err = linux.RootlessCgroups(root.String("rootless"), systemd); err != nil {
		return p, err
	}
	if p.StateDir, err = filepath.Abs(root.String("root")); err != nil {
		return p, err
	}
	p.StateDirWritable = writable(p.StateDir)

	var reasons []string
	if !p.StateDirWritable {
		reasons = append(reasons, "state dir "+p.StateDir+" is not writable (set --root, or XDG_RUNTIME_DIR)")
	}
	if p.UID != 0 {
		// An ordinary user's containers need a user namespace that
		// maps the user to root (runh spec --rootless).
		if err := unprivilegedUserNS(); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	allWritable := true
	switch {
	case systemd && p.Rootless:
		p.Cgroups = "made by the user's systemd (a delegated subtree on cgroup v2)"
	case systemd:
		p.Cgroups = "made by systemd"
	default:
		p.Cgroups, allWritable = cgroupAccess()
	}
	if !allWritable && !p.Rootless {
		reasons = append(reasons, "cgroups are not writable and --rootless is false")
	}
	if systemd && !p.Systemd {
		reasons = append(reasons, "--systemd-cgroup: systemd is not running")
	}
	p.Usable = len(reasons) == 0
	p.Reason = strings.Join(reasons, "; ")
	return p, nil
}

// writable says whether this user can write dir, or make it: the nearest
// directory that exists must be writable.
func writable(dir string) bool {
	for {
		if _, err := os.Stat(dir); err == nil {
			return unix.Access(dir, unix.W_OK|unix.X_OK) == nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
}

// unprivilegedUserNS says why an ordinary user cannot make a user
// namespace here, or nil.
func unprivilegedUserNS() error {
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("user namespaces are disabled (user.max_user_namespaces=0)")
	}
	return nil
}

// cgroupAccess says whether this user may make, with the cgroupfs driver,
// the cgroups of a container whose bundle names no cgroupsPath (rootless
// podman's do not): the directories libcontainer would make them in must
// be writable. all says every controller's is.
func cgroupAccess() (desc string, all bool) {
	m, err := manager.New(&cgroups.Cgroup{Name: "runh-check", Rootless: true, Resources: &cgroups.Resources{}})
	if err != nil {
		return "unknown: " + err.Error(), false
	}
	var yes, no []string
	for ctrl, path := range m.GetPaths() {
		if ctrl == "" {
			ctrl = "unified"
		}
		if writable(filepath.Dir(path)) {
			yes = append(yes, ctrl)
		} else {
			no = append(no, ctrl)
		}
	}
	sort.Strings(yes)
	sort.Strings(no)
	switch {
	case len(no) == 0:
		return "writable", true
	case len(yes) == 0:
		return "not writable: containers stay in the cgroups runh is started in, a limit fails", false
	}
	return "writable: " + strings.Join(yes, ",") + "; not writable: " + strings.Join(no, ",") + " (a limit there fails)", false
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
