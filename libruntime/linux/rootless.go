package linux

import (
	"os"

	"github.com/opencontainers/cgroups/systemd"
	"github.com/sirupsen/logrus"

	"github.com/runh-project/runh/libruntime"
)

// RootlessCgroups resolves --rootless for the cgroup manager, as runc
// does. In rootless mode a cgroup that cannot be made or joined is
// skipped when the container asks for no limit in it (libcontainer then
// fails only on a limit it cannot apply), and the systemd driver talks to
// the user's systemd instead of the system's.
//
// auto: rootless for an ordinary user; for root of a user namespace too,
// except under --systemd-cgroup when the systemd on the user bus is owned
// by root, which then manages the cgroups with full rights.
func RootlessCgroups(flag string, systemdCgroup bool) (bool, error) {
	b, err := libruntime.ParseRootless(flag)
	if err != nil {
		return false, err
	}
	if b != nil {
		return *b, nil
	}
	if os.Geteuid() != 0 {
		return true, nil
	}
	if !libruntime.InUserNamespace() {
		return false, nil
	}
	if systemdCgroup {
		uid, err := systemd.DetectUID()
		if err != nil {
			// No user bus to ask (no DBUS_SESSION_BUS_ADDRESS): take
			// the systemd to be root's, as runc does.
			logrus.Debugf("rootless: owner of the user bus's systemd: %v; assuming root", err)
			uid = 0
		}
		return uid != 0, nil
	}
	// With cgroupfs, whether the cgroups are writable depends on paths
	// not known yet: best effort is safe either way.
	return true, nil
}
