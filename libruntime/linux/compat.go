package linux

import (
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

// Bundles written for runc 1.0/1.1 (and the OCI conformance suite) carry a
// few things that newer libcontainer rejects although they change nothing.
// runh accepts them, so that such bundles keep working.

// adjustSpec fixes the spec before conversion.
func adjustSpec(s *specs.Spec) {
	if s.Linux == nil {
		return
	}
	for i := range s.Linux.Devices {
		d := &s.Linux.Devices[i]
		// mknod ignores the numbers of a FIFO, and libcontainer's check
		// of the made node would then fail on them.
		if d.Type == "p" {
			d.Major, d.Minor = 0, 0
		}
	}
}

// adjustConfig fixes libcontainer's config after conversion.
func adjustConfig(c *configs.Config) {
	for _, m := range c.Mounts {
		// The kernel ignores filesystem options on a bind mount; runc
		// 1.1 passed them on, libcontainer now refuses them.
		if m.IsBind() && m.Data != "" {
			logrus.Warnf("mount %s: ignoring options %q of a bind mount", m.Destination, m.Data)
			m.Data = ""
		}
	}
	allowStatx(c.Seccomp)
}

// allowStatx grants statx(2) to a seccomp profile that predates it but
// already allows the stat family it replaces. libcontainer's init calls
// statx after installing the container's filter (to check /proc is not
// overmounted before closing leaked fds) and fails when the filter denies
// it; allowing what the profile already allows under another name keeps
// the profile's intent.
func allowStatx(s *configs.Seccomp) {
	if s == nil || s.DefaultAction == configs.Allow {
		return
	}
	stat := false
	for _, sc := range s.Syscalls {
		switch sc.Name {
		case "statx":
			return // the profile decided
		case "newfstatat", "fstatat64", "stat", "lstat":
			if sc.Action == configs.Allow && len(sc.Args) == 0 {
				stat = true
			}
		}
	}
	if stat {
		s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: "statx", Action: configs.Allow})
	}
}
