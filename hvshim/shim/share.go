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
)

// prepareShare fills the share directory exported over 9p: the rootfs and
// every bind-mount source of spec, each bind-mounted in, and rewrites the
// spec's paths to where the guest sees them. The shim runs in its own mount
// namespace, so these mounts vanish with it, whatever way it dies.
func prepareShare(share string, spec *specs.Spec, rootfs string) error {
	if err := os.MkdirAll(share, 0o700); err != nil {
		return err
	}
	// The share is its own private mount so nothing propagates to or from it.
	if err := unix.Mount(share, share, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	if err := unix.Mount("", share, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	if err := bindInto(rootfs, filepath.Join(share, "rootfs"), true); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	spec.Root.Path = agent.ShareDir + "/rootfs"
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(m) {
			continue
		}
		if !filepath.IsAbs(m.Source) {
			return fmt.Errorf("mount %s: source %q is not absolute", m.Destination, m.Source)
		}
		name := "m" + strconv.Itoa(i)
		if err := bindInto(m.Source, filepath.Join(share, name), false); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		m.Source = agent.ShareDir + "/" + name
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
// match). Symlinks in src are host paths the engine chose (e.g. a
// resolv.conf link) and are resolved once; the result is then opened and
// the mount made from that descriptor, so a path swapped meanwhile cannot
// redirect it.
func bindInto(src, dst string, dirOnly bool) error {
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
	if isDir {
		err = os.Mkdir(dst, 0o700)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	if err := unix.Mount(proc, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}
