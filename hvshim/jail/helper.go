package jail

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// An item is one thing in the jail, at its host path: a symbolic link as
// on the host, or a mount of the host's file or directory there.
type item struct {
	path string
	link string // symlink target; "" for a mount
	dir  bool
	rec  bool   // with the mounts beneath it
	attr uint64 // MOUNT_ATTR_* set on the mount
}

const (
	roExec = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	roData = roExec | unix.MOUNT_ATTR_NOEXEC
	rwData = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
	device = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
)

// run builds the jail and executes the program in it, with descriptors
// 0 to fds-1. It runs as PID 1 of the new namespaces, still with every
// capability.
func run(c *Config, fds int) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	uid, gid, err := jailIDs()
	if err != nil {
		return err
	}
	// Nothing done here may propagate to the shim's namespace; what the
	// shim mounts in a share later (a pod's next container) reaches the
	// jail's copy, a slave of the shim's shared share directory.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave: %w", err)
	}
	items, err := plan(c)
	if err != nil {
		return err
	}
	// Every source is taken as a detached copy before the jail's tmpfs
	// covers anything, and put in place by descriptor.
	trees := make([]int, len(items))
	for i, it := range items {
		if it.link != "" {
			continue
		}
		if trees[i], err = detach(it); err != nil {
			return err
		}
	}
	dir, err := filepath.EvalSymlinks(c.Dir)
	if err != nil {
		return err
	}
	// The jail's root: an empty tmpfs over the VM directory (in this
	// namespace only; the directory itself was copied above).
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return fmt.Errorf("jail root: %w", err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	for i, it := range items {
		if err := place(root, it, trees[i]); err != nil {
			return fmt.Errorf("jail %s: %w", it.path, err)
		}
	}
	if err := unix.Mkdirat(root, "proc", 0o555); err != nil {
		return err
	}
	// QEMU's 9p server changes modes through /proc/self/fd. subset=pid
	// leaves only the PID directories, of this PID namespace: no
	// /proc/sys, /proc/sysrq-trigger or /proc/kcore, which root could
	// write or read whatever its capabilities. Mounted before the pivot:
	// in a user namespace other than the host's (rootless) the kernel
	// lets a procfs be mounted only while a whole one is visible in the
	// mount namespace, as the shim's /proc is until then.
	if err := unix.Mount("proc", filepath.Join(dir, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "subset=pid"); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Fchdir(root); err != nil {
		return err
	}
	// pivot_root(".", "."): the old root ends up stacked over the new
	// one, and detaching it leaves the jail alone.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	if err := unix.Chdir(c.Dir); err != nil {
		return err
	}
	if err := setLimits(); err != nil {
		return err
	}
	// Rootless, QEMU keeps the user's supplementary groups when it opens
	// /dev/kvm, which a user usually may through the kvm group: a group
	// not mapped in the namespace cannot be set alone.
	keepGroups := userns.RunningInUserNS() && slices.Contains(c.Devices, "/dev/kvm")
	if err := dropPrivileges(last, CapMask(), uid, gid, keepGroups); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// Changing user cleared the parent-death signal: the program must
	// still die with the shim.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return err
	}
	// Descriptors the shim inherited without close-on-exec (the host's
	// network namespace among them) must not reach the program.
	if err := unix.CloseRange(uint(fds), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	argv := append([]string{c.Binary}, c.Args...)
	return fmt.Errorf("exec %s: %w", c.Binary, unix.Exec(c.Binary, argv, []string{}))
}

// plan lists what the jail holds, parents before children: the program,
// its libraries and the files (read-only), the working directory, the
// shares and the writable files (read-write unless said, never executable,
// never honouring devices or set-id bits), the devices.
func plan(c *Config) ([]item, error) {
	p := planner{byPath: map[string]*item{}}
	ro := append([]string{c.Binary}, c.Files...)
	for _, l := range libraries(ro) {
		if err := p.mirror(l, item{attr: roExec}); err != nil {
			return nil, err
		}
	}
	if err := p.mirror(c.Binary, item{attr: roExec}); err != nil {
		return nil, err
	}
	if err := p.mirror(c.Dir, item{dir: true, attr: rwData}); err != nil {
		return nil, err
	}
	for _, s := range c.Shares {
		it := item{dir: true, rec: true, attr: rwData}
		if s.ReadOnly {
			it.attr |= unix.MOUNT_ATTR_RDONLY
		}
		if err := p.mirror(s.Path, it); err != nil {
			return nil, err
		}
	}
	for _, f := range c.Files {
		attr := uint64(roData)
		if isLibrary(f) {
			attr = roExec // the program maps it executable
		}
		if err := p.mirror(f, item{attr: attr}); err != nil {
			return nil, err
		}
	}
	for _, f := range c.Writable {
		if err := p.mirror(f, item{attr: rwData}); err != nil {
			return nil, err
		}
	}
	for _, d := range append(append([]string{}, BaseDevices...), c.Devices...) {
		if err := p.mirror(d, item{attr: device}); err != nil {
			return nil, err
		}
	}
	// What lies inside a directory mounted read-write is there already
	// (a file in the VM directory, as in tests): only a share, with the
	// mounts beneath it, is mounted again over its own directory.
	var out []item
	for _, it := range p.items {
		if p.under(it.path) && !it.rec {
			continue
		}
		out = append(out, *it)
	}
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i].path) < depth(out[j].path) })
	return out, nil
}

type planner struct {
	items  []*item
	byPath map[string]*item
	dirs   []string // directories mounted
}

// mirror adds path to the jail as it is on the host: every symbolic link
// met on the way is recreated and followed, and the file or directory it
// ends at is mounted with the attributes of it.
func (p *planner) mirror(path string, it item) error {
	path = filepath.Clean(path)
	for hops := 0; ; hops++ {
		if hops == 40 {
			return fmt.Errorf("%s: %w", path, errELOOP)
		}
		link, rest, err := firstLink(path)
		if err != nil {
			return err
		}
		if link == "" {
			break
		}
		target, err := os.Readlink(link)
		if err != nil {
			return err
		}
		if p.byPath[link] == nil {
			p.add(&item{path: link, link: target})
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(link), target)
		}
		path = filepath.Join(target, rest)
	}
	if old := p.byPath[path]; old != nil {
		old.attr &= it.attr // the least restrictive wins: both users need it
		return nil
	}
	it.path = path
	p.add(&it)
	if it.dir {
		p.dirs = append(p.dirs, path)
	}
	return nil
}

func (p *planner) add(it *item) {
	p.items = append(p.items, it)
	p.byPath[it.path] = it
}

// under reports whether path lies inside a directory mounted in the jail.
func (p *planner) under(path string) bool {
	for _, d := range p.dirs {
		if path != d && strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// firstLink returns the first symbolic link on path, and what follows it.
func firstLink(path string) (link, rest string, err error) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	cur := ""
	for i, c := range parts {
		cur += "/" + c
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return cur, strings.Join(parts[i+1:], "/"), nil
		}
	}
	return "", "", nil
}

func depth(p string) int { return strings.Count(p, "/") }

// isLibrary reports whether path is a shared object (a kernel image is an
// ELF executable, which the program only reads).
func isLibrary(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Type == elf.ET_DYN
}

// detach copies the mount at it.path (with those beneath it if it.rec)
// into a detached tree, with its attributes set.
func detach(it item) (int, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	set := uint(unix.AT_EMPTY_PATH)
	if it.rec {
		flags |= unix.AT_RECURSIVE
		set |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, it.path, flags)
	if err != nil {
		return -1, fmt.Errorf("copy %s: %w", it.path, err)
	}
	if err := unix.MountSetattr(fd, "", set, &unix.MountAttr{Attr_set: it.attr}); err != nil {
		return -1, fmt.Errorf("restrict %s: %w", it.path, err)
	}
	return fd, nil
}

// place puts it into the jail whose root is the directory root: nothing
// on the way is followed, so nothing lands outside.
func place(root int, it item, tree int) error {
	rel := strings.TrimPrefix(it.path, "/")
	parent, err := mkdirAll(root, filepath.Dir(rel))
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	name := filepath.Base(rel)
	switch {
	case it.link != "":
		return unix.Symlinkat(it.link, parent, name)
	case it.dir:
		if err = unix.Mkdirat(parent, name, 0o755); err == unix.EEXIST {
			err = nil // inside a directory already mounted
		}
	default:
		var fd int
		if fd, err = unix.Openat(parent, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o444); err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return err
	}
	target, err := openBeneath(parent, name, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	defer unix.Close(tree)
	return unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// mkdirAll makes the directories of rel under root and returns the last.
func mkdirAll(root int, rel string) (int, error) {
	fd, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	for _, c := range strings.Split(rel, "/") {
		if err := unix.Mkdirat(fd, c, 0o755); err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return -1, err
		}
		next, err := openBeneath(fd, c, unix.O_PATH|unix.O_DIRECTORY)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func openBeneath(dir int, name string, flags uint64) (int, error) {
	return unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
}
