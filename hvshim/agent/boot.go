package agent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/initrd"
)

// Paths in the guest.
const (
	newRoot  = "/newroot"
	ShareDir = "/run/runh/share" // the host's share directory (9p)
	ShareTag = "runh"
	stateEnv = "RUNH_AGENT_STAGE"
)

// loadModules inserts the initrd's modules in the order the host wrote.
func loadModules() error {
	f, err := os.Open(initrd.OrderFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		path := filepath.Join(initrd.ModulesDir, name)
		m, err := os.Open(path)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load module %s: %w", name, err)
		}
		os.Remove(path) // frees initramfs memory
	}
	return sc.Err()
}

// switchRoot moves out of the initramfs, as an initramfs init must before
// pivot_root can work for containers (pivot_root refuses the initramfs
// mount itself), then re-executes /init there so that /proc/self/exe, from
// which libcontainer starts its init, is reachable from the new root. It
// does not return on success.
//
// The new root is a directory of the initramfs bind-mounted onto itself: a
// mount with a parent, which pivot_root accepts, holding /init by a rename
// rather than a copy of the whole binary (time under TCG, and guest memory).
func switchRoot() error {
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	// Before the bind mount: rename does not cross mounts.
	if err := os.Rename(initrd.InitPath, newRoot+initrd.InitPath); err != nil {
		return fmt.Errorf("move /init: %w", err)
	}
	os.RemoveAll(initrd.ModulesDir) // loaded: free their initramfs memory
	if err := unix.Mount(newRoot, newRoot, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind new root: %w", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	env := append(os.Environ(), stateEnv+"=2")
	return unix.Exec(initrd.InitPath, []string{initrd.InitPath}, env)
}

type mount struct {
	src, dst, fstype string
	flags            uintptr
	data             string
}

// baseMounts are the guest's own filesystems. cgroup2 is the only cgroup
// hierarchy in the guest, so libcontainer works in unified mode.
var baseMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// guestSysctls make the guest's memory behave as the host's does for a
// container: an allocation beyond the VM's free RAM succeeds (as the host,
// with far more RAM, lets it), and the container's own memory limit, not
// the guest's overcommit heuristic, ends the process (OOM kill, exit 137).
// (The agent keeps the default OOM score: its children inherit it, and a
// container whose processes could not be killed would hang at its limit.)
var guestSysctls = [][2]string{
	{"/proc/sys/vm/overcommit_memory", "1"},
}

func mountBase() error {
	for _, m := range baseMounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	os.Symlink("pts/ptmx", "/dev/ptmx")
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		os.Symlink(l[0], l[1])
	}
	// Controllers must be enabled for the containers' child cgroups.
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		var ctl []string
		for _, c := range strings.Fields(string(b)) {
			ctl = append(ctl, "+"+c)
		}
		os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte(strings.Join(ctl, " ")), 0)
	}
	unix.Sethostname([]byte("runh"))
	for _, w := range guestSysctls {
		if err := os.WriteFile(w[0], []byte(w[1]), 0); err != nil {
			return fmt.Errorf("%s: %w", w[0], err)
		}
	}
	return loopbackUp()
}

// mountShare mounts the host's share directory, if the VM has one.
func mountShare() error {
	if err := os.MkdirAll(ShareDir, 0o755); err != nil {
		return err
	}
	// msize: larger 9p messages mean fewer round trips through QEMU.
	opts := "trans=virtio,version=9p2000.L,msize=262144,cache=none,access=client"
	if err := unix.Mount(ShareTag, ShareDir, "9p", 0, opts); err != nil {
		return fmt.Errorf("mount 9p share: %w", err)
	}
	return nil
}

// hasShare reports whether the host attached the share device.
func hasShare() bool {
	b, _ := os.ReadFile("/proc/cmdline")
	return strings.Contains(string(b), "runh.share=1")
}
