package shim

import (
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/agent"
	"github.com/runh-project/runh/hvshim/proto"
)

// engineShm reports whether the bind mount m, whose source is open as fd,
// is an engine's /dev/shm: a tmpfs of its own (podman's per-container or
// per-pod shm, containerd's sandbox shm), not the host's /dev/shm. Shared
// over 9p it would hold files but no shared memory: a writable MAP_SHARED
// mapping of an uncached 9p file fails with EINVAL, and POSIX shared
// memory is exactly that (PostgreSQL cannot start). So the guest makes a
// tmpfs of the same size, mode and owner instead, named after the host
// tmpfs, so that the containers of a pod binding the same one share it as
// they share their IPC namespace. The host no longer sees its files; no
// host process could share that memory with a VM anyway.
func engineShm(m *specs.Mount, fd int) (proto.Tmpfs, bool) {
	if filepath.Clean(m.Destination) != "/dev/shm" || !isBind(m) {
		return proto.Tmpfs{}, false
	}
	var fs unix.Statfs_t
	if unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.TMPFS_MAGIC {
		return proto.Tmpfs{}, false
	}
	var st, host unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return proto.Tmpfs{}, false
	}
	if unix.Stat("/dev/shm", &host) == nil && host.Dev == st.Dev {
		return proto.Tmpfs{}, false // the host's own: a share the user asked for
	}
	return proto.Tmpfs{
		Name: fmt.Sprintf("%x-%x", st.Dev, st.Ino),
		Size: fs.Blocks * uint64(fs.Bsize),
		Mode: st.Mode & 0o7777,
		UID:  st.Uid, GID: st.Gid,
	}, true
}

// guestShm points m at the guest tmpfs that replaces the engine's
// /dev/shm open as fd, adding it to list once; it reports false for any
// other mount.
func guestShm(m *specs.Mount, fd int, list *[]proto.Tmpfs) bool {
	t, ok := engineShm(m, fd)
	if !ok {
		return false
	}
	m.Source = agent.ShmDir + "/" + t.Name
	for _, o := range *list {
		if o.Name == t.Name {
			return true
		}
	}
	*list = append(*list, t)
	return true
}

// guestShmPath is guestShm for a mount source given as a host path.
func guestShmPath(m *specs.Mount, list *[]proto.Tmpfs) bool {
	if filepath.Clean(m.Destination) != "/dev/shm" {
		return false // before any I/O: the one mount this concerns
	}
	real, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return false // bindInto reports it
	}
	fd, err := unix.Open(real, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return guestShm(m, fd, list)
}
