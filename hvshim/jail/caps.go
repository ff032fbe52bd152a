package jail

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// Caps are the capabilities the program keeps: those virtio-9p with
// security_model=passthrough needs to act on the share as the guest asks,
// measured one by one. It creates each file and then gives it the guest's
// owner (CHOWN), reaches files whatever their mode, as guest root does
// (DAC_OVERRIDE), changes the mode and times of files it does not own
// (FOWNER), and keeps the setgid bit of a directory whose group it is not
// in (FSETID). Not MKNOD: QEMU refuses to open special files and removes
// the device nodes and FIFOs it has just created, so the guest gets an
// error either way; not SETFCAP: the guest kernel does not pass
// security.capability over 9p. Nothing else: no SYS_ADMIN, NET_ADMIN,
// SYS_PTRACE, SYS_MODULE, SYS_RAWIO, BPF, KILL, SETUID or SETGID.
var Caps = []int{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID}

var capNames = map[int]string{
	unix.CAP_CHOWN: "CHOWN", unix.CAP_DAC_OVERRIDE: "DAC_OVERRIDE", unix.CAP_FOWNER: "FOWNER", unix.CAP_FSETID: "FSETID",
}

// CapNames returns the names of Caps, without CAP_.
func CapNames() []string {
	var s []string
	for _, c := range Caps {
		s = append(s, capNames[c])
	}
	return s
}

// CapMask returns Caps as the bit mask /proc/PID/status shows.
func CapMask() uint64 {
	var m uint64
	for _, c := range Caps {
		m |= 1 << c
	}
	return m
}

// lastCap reads the highest capability the kernel knows (before the
// pivot: the jail's /proc has no sys).
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// dropPrivileges leaves the thread with keep only, as uid and gid when
// they are not 0 (without supplementary groups unless keepGroups): out of
// the bounding set (so that executing the program cannot give them back),
// then the user, then the permitted, effective and inheritable sets; the
// ambient set carries them across execve for a user other than root.
func dropPrivileges(last int, keep uint64, uid, gid int, keepGroups bool) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := 0; c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if uid != 0 || gid != 0 {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return err
		}
		if !keepGroups {
			if err := unix.Setgroups(nil); err != nil && !setgroupsDenied() {
				return fmt.Errorf("setgroups: %w", err)
			}
		}
		if err := unix.Setresgid(gid, gid, gid); err != nil {
			return fmt.Errorf("setresgid %d: %w", gid, err)
		}
		if err := unix.Setresuid(uid, uid, uid); err != nil {
			return fmt.Errorf("setresuid %d: %w", uid, err)
		}
	}
	inh := uint64(0)
	if uid != 0 {
		inh = keep
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep), Inheritable: uint32(inh)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	for c := 0; c <= last && uid != 0; c++ {
		if keep&(1<<c) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("ambient capability %d: %w", c, err)
		}
	}
	return nil
}

// limits are the program's resource limits, soft = hard so that it cannot
// raise them. QEMU's 9p server keeps a host descriptor per file the guest
// has open and closes the least used ones near the limit, so NOFILE
// bounds the host's descriptors without failing the guest. No core dumps:
// one would hold the guest's memory.
var limits = []struct {
	name     string
	resource int
	value    uint64
}{
	{"NOFILE", unix.RLIMIT_NOFILE, 4096},
	{"CORE", unix.RLIMIT_CORE, 0},
	{"MSGQUEUE", unix.RLIMIT_MSGQUEUE, 0},
}

// Limits returns the program's resource limits as NAME=value.
func Limits() []string {
	var s []string
	for _, l := range limits {
		s = append(s, fmt.Sprintf("%s=%d", l.name, l.value))
	}
	return s
}

func setLimits() error {
	for _, l := range limits {
		if err := unix.Setrlimit(l.resource, &unix.Rlimit{Cur: l.value, Max: l.value}); err != nil {
			return fmt.Errorf("RLIMIT_%s: %w", l.name, err)
		}
	}
	return nil
}

// UIDBase is the first user (and group) ID the program runs as. Each jail
// has its own: UIDBase plus the number of its PID namespace (the inode of
// /proc/PID/ns/pid, from 0xF0000000), which no two live namespaces share,
// whichever PID namespace the caller is in. The IDs lie above systemd's
// container ranges (which end at 0x6FFFFFFF) and below 2^31. It is not
// root: objects root owns on the host (keyrings, files a capability does
// not cover) are not its own.
const UIDBase = 0x7F000000

// UID returns the user ID of the jail whose PID namespace has inode ino.
func UID(ino uint64) int {
	return UIDBase + int((ino-0xF0000000)&0xFFFFFF)
}

// jailIDs returns the user and group IDs to run as, in the helper: in
// the host's user namespace, UID of its PID namespace for both. In another
// one (rootless: the namespace a rootless engine made, whose root is the
// user), only the IDs mapped there exist and UIDBase cannot be taken:
// the highest ID mapped, which in podman's namespace is the last of the
// user's subordinate range, not the user's own ID (so nothing the user
// owns outside the jail, its processes or keyrings, is QEMU's), and
// rarely any file's; 0 (the user) when nothing else is mapped.
func jailIDs() (uid, gid int, err error) {
	if !userns.RunningInUserNS() {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
			return 0, 0, err
		}
		return UID(st.Ino), UID(st.Ino), nil
	}
	return RootlessIDs()
}

// RootlessIDs returns the user and group IDs a jail takes in a user
// namespace other than the host's: the highest mapped.
func RootlessIDs() (uid, gid int, err error) {
	if uid, err = highestMapped("/proc/self/uid_map"); err == nil {
		gid, err = highestMapped("/proc/self/gid_map")
	}
	return uid, gid, err
}

// highestMapped returns the highest ID an ID map (/proc/self/uid_map's
// format: inside, outside, count per line) maps.
func highestMapped(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	top := -1
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var in, out, n int
		if _, err := fmt.Sscan(line, &in, &out, &n); err != nil || n < 1 {
			return 0, fmt.Errorf("%s: bad line %q", path, line)
		}
		top = max(top, in+n-1)
	}
	if top < 0 {
		return 0, fmt.Errorf("%s: no ID mapped", path)
	}
	return top, nil
}

// setgroupsDenied reports whether the user namespace forbids setgroups
// (unshare --map-root-user's): the groups are then what they are.
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}
