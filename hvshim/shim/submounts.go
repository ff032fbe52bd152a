package shim

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Submounts of a volume. In process isolation, libcontainer's rbind brings
// the host mounts beneath a bind mount's source along, and options such as
// "ro" then remount only the top mount: the submounts keep their own
// flags (only the "rro" kind, mount_setattr with AT_RECURSIVE, reaches
// them). In the guest, the volume's 9p share shows the submounts as plain
// directories of one mount, which the top's flags cover whole. So the
// guest gets, after such a mount, a bind of each submount whose flags
// would differ, with its own flags. A plain "bind" brings no submount
// along (their mount points show the directories beneath): the share then
// binds the source alone.

// Submount is a host mount beneath a bind mount's source.
type Submount struct {
	Path  string `json:"path"`  // relative to the source, clean
	Flags uint64 `json:"flags"` // its own flags, of submountFlags
}

// submountFlags are the per-mount flags a submount's guest bind restores.
const submountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOSYMFOLLOW

// flagOptions names the submountFlags as mount options (and in mountinfo).
var flagOptions = []struct {
	flag   uint64
	attr   uint64 // its mount_setattr counterpart
	option string
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY, "ro"},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID, "nosuid"},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV, "nodev"},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC, "noexec"},
	{unix.MS_NOSYMFOLLOW, unix.MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow"},
}

// bindPlan is what libcontainer will do with a bind mount of the spec.
type bindPlan struct {
	recursive bool   // submounts come along
	remount   bool   // the top mount gets exactly flags
	flags     uint64 // of submountFlags
	// Flags set and cleared on the whole tree ("rro", "rnoexec"...), as
	// mount flags.
	recSet, recClr uint64
}

// planBind reads m's options with libcontainer's own parser, which the
// guest's libcontainer will apply.
func planBind(m *specs.Mount) (bindPlan, error) {
	spec := &specs.Spec{Root: &specs.Root{Path: "/"}, Mounts: []specs.Mount{*m}}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{Spec: spec})
	if err != nil {
		return bindPlan{}, fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	c := cfg.Mounts[0]
	p := bindPlan{
		// Without MS_BIND (type "bind" alone) libcontainer binds nothing:
		// the share stays recursive, as it always was.
		recursive: c.Flags&unix.MS_REC != 0 || c.Flags&unix.MS_BIND == 0,
		// libcontainer's condition for its MS_REMOUNT of a bind mount.
		remount: c.Flags&^(unix.MS_BIND|unix.MS_REC|unix.MS_REMOUNT) != 0 || c.ClearedFlags != 0,
		flags:   uint64(c.Flags) & submountFlags,
	}
	if c.RecAttr != nil {
		for _, f := range flagOptions {
			if c.RecAttr.Attr_set&f.attr != 0 {
				p.recSet |= f.flag
			}
			if c.RecAttr.Attr_clr&f.attr != 0 {
				p.recClr |= f.flag
			}
		}
	}
	return p, nil
}

// keepSubmountFlags adds to spec, right after each bind mount spec.Mounts[i]
// (its source already the guest's), a bind of each of its submounts subs[i]
// whose flags would differ in the guest from what they are in process
// isolation.
func keepSubmountFlags(spec *specs.Spec, subs map[int][]Submount) error {
	if len(subs) == 0 {
		return nil
	}
	var out []specs.Mount
	for i, m := range spec.Mounts {
		out = append(out, m)
		if len(subs[i]) == 0 {
			continue
		}
		p, err := planBind(&m)
		if err != nil {
			return err
		}
		if !p.recursive || !p.remount {
			continue
		}
		out = append(out, submountBinds(&m, p, subs[i])...)
	}
	spec.Mounts = out
	return nil
}

// submountBinds returns the guest binds of the submounts of m. Each gets
// its flags as its parent's guest bind gives them: its own, then those
// set or cleared on the whole tree. One whose parent's are the same needs
// none: the parent's bind covers it in the guest.
func submountBinds(m *specs.Mount, p bindPlan, subs []Submount) []specs.Mount {
	eff := func(f uint64) uint64 { return f&^p.recClr | p.recSet }
	top := eff(p.flags)
	sort.Slice(subs, func(a, b int) bool { return subs[a].Path < subs[b].Path })
	var out []specs.Mount
	for i, s := range subs {
		// The parent is the nearest submount above (sorted before it), or
		// the top.
		parent := top
		for j := i - 1; j >= 0; j-- {
			if strings.HasPrefix(s.Path, subs[j].Path+"/") {
				parent = eff(subs[j].Flags)
				break
			}
		}
		f := eff(s.Flags)
		if f == parent {
			continue
		}
		// libcontainer's remount sets exactly these ("rw" alone too).
		opts := []string{"bind"}
		if f&unix.MS_RDONLY == 0 {
			opts = append(opts, "rw")
		}
		for _, o := range flagOptions {
			if f&o.flag != 0 {
				opts = append(opts, o.option)
			}
		}
		out = append(out, specs.Mount{
			Destination: path.Join(m.Destination, s.Path),
			Type:        "bind",
			Source:      m.Source + "/" + s.Path,
			Options:     opts,
		})
	}
	return out
}

// findSubmounts lists the mounts one sees beneath dir in this process's
// mount namespace. A mount stacked over another, or over a directory
// above it, hides it: only those to which their path leads count. One
// whose mount point cannot be reached (a FUSE mount of another user) is
// left out, as QEMU could not reach it either.
func findSubmounts(dir string) ([]Submount, error) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, prefix), false
	})
	if err != nil {
		return nil, err
	}
	var out []Submount
	for _, m := range mounts {
		var st unix.Statx_t
		if unix.Statx(unix.AT_FDCWD, m.Mountpoint, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st) != nil ||
			st.Mask&unix.STATX_MNT_ID == 0 || st.Mnt_id != uint64(m.ID) {
			continue
		}
		var flags uint64
		for _, o := range strings.Split(m.Options, ",") {
			for _, fo := range flagOptions {
				if o == fo.option {
					flags |= fo.flag
				}
			}
		}
		out = append(out, Submount{Path: strings.TrimPrefix(m.Mountpoint, prefix), Flags: flags})
	}
	return out, nil
}

// checkSubmounts checks the submounts a pod member lists: each beneath a
// bind mount of its spec, under a relative, clean path.
func checkSubmounts(subs map[int][]Submount, listed map[int]bool) error {
	for i, list := range subs {
		if !listed[i] {
			return fmt.Errorf("join: submounts of mount %d, not a bind mount of the spec", i)
		}
		for _, s := range list {
			if s.Path == "" || filepath.IsAbs(s.Path) || filepath.Clean(s.Path) != s.Path ||
				s.Path == ".." || strings.HasPrefix(s.Path, "../") || s.Flags&^submountFlags != 0 {
				return fmt.Errorf("join: bad submount %q of mount %d", s.Path, i)
			}
		}
	}
	return nil
}
