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
	newRoot   = "/newroot"
	ShareDir  = "/run/runh/share" // the host's share directory (9p): the rootfs
	ShareTag  = "runh"
	VolumeDir = "/run/runh/vol" // bind-mount sources (9p, uncached)
	VolumeTag = "runhvol"
	ShmDir    = "/run/runh/shm" // the guest's own tmpfs mounts (shm.go)
	stateEnv  = "RUNH_AGENT_STAGE"
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

// baseMounts are the guest's own filesystems; mountCgroups adds the cgroup
// hierarchies.
var baseMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// CgroupV1Arg on the kernel command line lists the host's cgroup v1
// hierarchies by directory name, colon-separated ("cpu,cpuacct:memory:
// systemd:unified"). The guest then mounts the same, and libcontainer
// works in v1 (or hybrid) mode as it does on the host: a container sees
// memory/memory.limit_in_bytes where process isolation shows it. Without
// it the guest has cgroup v2 alone.
const CgroupV1Arg = "runh.cgroupv1="

const cgroupFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountCgroups mounts the guest's cgroup hierarchies.
func mountCgroups() error {
	b, _ := os.ReadFile("/proc/cmdline")
	var v1 string
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, CgroupV1Arg) {
			v1 = strings.TrimPrefix(f, CgroupV1Arg)
		}
	}
	if v1 == "" {
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", cgroupFlags, ""); err != nil {
			return fmt.Errorf("mount cgroup2: %w", err)
		}
		// Controllers must be enabled for the containers' child cgroups.
		if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			var ctl []string
			for _, c := range strings.Fields(string(b)) {
				ctl = append(ctl, "+"+c)
			}
			os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte(strings.Join(ctl, " ")), 0)
		}
		return nil
	}
	if err := unix.Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", cgroupFlags, "mode=755"); err != nil {
		return fmt.Errorf("mount cgroup tmpfs: %w", err)
	}
	have := guestControllers()
	for _, name := range strings.Split(v1, ":") {
		dir := "/sys/fs/cgroup/" + name
		fstype, opts := "cgroup", name
		switch {
		case name == "unified":
			fstype, opts = "cgroup2", ""
		case name == "systemd":
			opts = "none,name=systemd"
		default:
			ok := true
			for _, c := range strings.Split(name, ",") {
				ok = ok && have[c]
			}
			if !ok || strings.ContainsAny(name, "/.") {
				continue // a controller this kernel lacks
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("cgroup", dir, fstype, cgroupFlags, opts); err != nil {
			return fmt.Errorf("mount cgroup %s: %w", name, err)
		}
		if strings.Contains(name, ",") {
			for _, c := range strings.Split(name, ",") {
				os.Symlink(name, "/sys/fs/cgroup/"+c)
			}
		}
	}
	return nil
}

// guestControllers returns the cgroup controllers the guest kernel has.
func guestControllers() map[string]bool {
	b, _ := os.ReadFile("/proc/cgroups")
	have := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
			have[f[0]] = true
		}
	}
	return have
}

// guestSysctls make the guest's memory behave as the host's does for a
// container: an allocation beyond the VM's free RAM succeeds (as the host,
// with far more RAM, lets it), and the container's own memory limit, not
// the guest's overcommit heuristic, ends the process (OOM kill, exit 137).
// (The agent keeps the default OOM score: its children inherit it, and a
// container whose processes could not be killed would hang at its limit.)
var guestSysctls = [][2]string{
	{"/proc/sys/vm/overcommit_memory", "1"},
	// New network namespaces (the container's) without the fallback
	// tunnel devices (sit0) that an IPv6 kernel otherwise puts in each:
	// the host's containers do not have them.
	{"/proc/sys/net/core/fb_tunnels_only_for_init_net", "2"},
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
	if err := mountCgroups(); err != nil {
		return err
	}
	unix.Sethostname([]byte("runh"))
	for _, w := range guestSysctls {
		if err := os.WriteFile(w[0], []byte(w[1]), 0); err != nil {
			return fmt.Errorf("%s: %w", w[0], err)
		}
	}
	return loopbackUp()
}

// The share is two 9p devices. The rootfs (ShareTag) is cached in the
// guest's page cache (cache=loose): while the container runs only the guest
// changes it, so every open, stat and read need not cross to QEMU, and a
// second read of a file is served from guest memory. Bind-mount sources
// (VolumeTag) are volumes the host may change meanwhile: uncached, every
// access goes to the host. Dirty pages of the rootfs are written back by
// fsync (which QEMU turns into an fsync on the host) and by the sync the
// agent does when a container's init exits, before the host hears of it.
// runh's kernel makes cache=loose cheaper still (kernel/patches: shared
// read-only fids, large writes sent at once); docs/hypervisor.md.
const (
	rootfsOpts = "trans=virtio,version=9p2000.L,msize=262144,access=client,cache=loose"
	volumeOpts = "trans=virtio,version=9p2000.L,msize=262144,access=client,cache=none"
)

// mountShares mounts the share directories the VM was given.
func mountShares(share, volumes bool) error {
	for _, m := range []struct {
		want           bool
		tag, dir, opts string
	}{
		{share, ShareTag, ShareDir, rootfsOpts},
		{volumes, VolumeTag, VolumeDir, volumeOpts},
	} {
		if !m.want {
			continue
		}
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.tag, m.dir, "9p", 0, m.opts); err != nil {
			return fmt.Errorf("mount 9p share %s: %w", m.tag, err)
		}
	}
	return nil
}
