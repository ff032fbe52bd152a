package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/agent"
	"github.com/runh-project/runh/hvshim/proto"
)

// prepareShare fills the share directories exported over 9p: the rootfs
// into share, every bind-mount source of spec into vols (returned, "" when
// there are none), each bind-mounted in, and rewrites the spec's paths to
// where the guest sees them. The shim runs in its own mount namespace, so
// these mounts vanish with it, whatever way it dies.
//
// An engine's /dev/shm is not shared but replaced by a guest tmpfs, added
// to shm (shm.go). Submounts of a source keep their own flags as in
// process isolation (submounts.go).
//
// A pod's sandbox always has both, shared mounts to which its other
// containers' files are added while the VM runs (pod.go).
func prepareShare(share, vols string, spec *specs.Spec, rootfs string, pod bool, shm *[]proto.Tmpfs) (string, error) {
	if err := privateDir(share); err != nil {
		return "", err
	}
	if err := bindInto(rootfs, filepath.Join(share, "rootfs"), true, true); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	spec.Root.Path = agent.ShareDir + "/rootfs"
	used := false
	subs := map[int][]Submount{}
	if pod {
		if err := privateDir(vols); err != nil {
			return "", err
		}
		used = true
	}
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(m) {
			continue
		}
		if !filepath.IsAbs(m.Source) {
			return "", fmt.Errorf("mount %s: source %q is not absolute", m.Destination, m.Source)
		}
		if guestShmPath(m, shm) {
			continue
		}
		if !used {
			if err := privateDir(vols); err != nil {
				return "", err
			}
			used = true
		}
		// In a directory of its own, under the source's own name: the
		// guest's mountinfo then shows the mount's root as .../etc for a
		// bind of /etc, as the host's does.
		name := "m" + strconv.Itoa(i) + "/" + volumeName(m.Source)
		if err := os.Mkdir(filepath.Join(vols, filepath.Dir(name)), 0o711); err != nil {
			return "", err
		}
		p, err := planBind(m)
		if err != nil {
			return "", err
		}
		dst := filepath.Join(vols, name)
		if err := bindInto(m.Source, dst, false, p.recursive); err != nil {
			return "", fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if p.recursive && p.remount {
			if subs[i], err = findSubmounts(dst); err != nil {
				return "", fmt.Errorf("mount %s: %w", m.Destination, err)
			}
		}
		m.Source = agent.VolumeDir + "/" + name
	}
	if !used {
		vols = ""
	}
	return vols, keepSubmountFlags(spec, subs)
}

// volumeName is the name a bind-mount source keeps in the share.
func volumeName(src string) string {
	if b := filepath.Base(src); b != "/" && b != "." && b != ".." {
		return b
	}
	return "root"
}

// privateDir makes dir a mount of its own, cut from the host's mounts:
// nothing propagates from it to the host or from the host to it. It is searchable by all: in the guest it is
// the root of a 9p mount, which a container's user namespace (--uidmap)
// must traverse to reach its rootfs or volumes, as on the host.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	// Then shared, in a peer group of its own: QEMU's jail holds a slave
	// of it, which sees the mounts a pod's containers add later.
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	return nil
}

func isBind(m *specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// bindInto bind-mounts src at dst (created as a file or directory to
// match), with the mounts beneath it if recursive. Symlinks in src are
// host paths the engine chose (e.g. a resolv.conf link) and are resolved
// once; the result is then opened and the mount made from that
// descriptor, so a path swapped meanwhile cannot redirect it.
func bindInto(src, dst string, dirOnly, recursive bool) error {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, errors.Unwrap(err))
	}
	fd, err := unix.Open(real, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("source %s: is a symlink", src)
	}
	if dirOnly && !isDir {
		return fmt.Errorf("%s: not a directory", src)
	}
	if err := mountPoint(dst, isDir); err != nil {
		return err
	}
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(proc, dst, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// mountPoint makes a new directory or empty file at dst to mount on.
func mountPoint(dst string, isDir bool) error {
	if isDir {
		return os.Mkdir(dst, 0o700)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
	}
	return err
}
