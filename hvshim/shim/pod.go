package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/agent"
	"github.com/runh-project/runh/hvshim/client"
	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/libruntime"
)

// One VM per Kubernetes pod: the shim of a pod's sandbox also runs the
// pod's other containers ("members") in its VM. Each member has a host
// process of its own, `runh shim member` (MemberMain), which brings the
// member's stdio and files over the control socket, stands for it on the
// host (the PID engines wait on) and exits with its status.

// Operations of the control socket for a pod's members.
const (
	// OpJoin creates a member in the VM (a JoinRequest, with the member's
	// descriptors); the connection then carries its signals and, at the
	// end, its exit status, as for exec.
	OpJoin = "join"
	// OpRemove removes a member from the VM (a proto.IDRequest).
	OpRemove = "remove"
)

// podDefaultMiB is a pod VM's memory when neither an annotation nor the
// engine says: room for several containers. Only the pages the guest
// touches cost host memory.
const podDefaultMiB = 512

// JoinRequest comes with descriptors: the member's stdin, stdout and
// stderr (or its console socket), its rootfs, then the source of each
// bind mount listed in Mounts, the last two as detached mount trees
// (open_tree) made in the host's mount namespace, where the engine
// mounted them after the sandbox's shim had started.
type JoinRequest struct {
	ID       string      `json:"id"`
	Spec     *specs.Spec `json:"spec"` // without the hooks run on the host
	Terminal bool        `json:"terminal"`
	HostPid  int         `json:"hostPid"` // the member's host process
	Mounts   []int       `json:"mounts"`  // indices of spec.Mounts whose sources follow
	// The host's submounts of some of them (by index), which their
	// detached trees do not tell with their own flags (submounts.go).
	Submounts map[int][]Submount `json:"submounts,omitempty"`
}

// member is a container of the pod other than the sandbox.
type member struct {
	id       string
	hostPid  int
	guestPid int
	exited   chan struct{}
	status   int
	once     sync.Once
}

func (m *member) setExit(status int) {
	m.once.Do(func() {
		m.status = status
		close(m.exited)
	})
}

func (m *member) hasExited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// member returns the member id, or nil.
func (s *shim) member(id string) *member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[id]
}

// join creates a member from a JoinRequest and relays it until it exits.
func (s *shim) join(c *net.UnixConn, body json.RawMessage, files []*os.File) {
	fail := func(err error) { proto.WriteFrame(c, proto.Response{Error: err.Error()}) }
	var r JoinRequest
	if err := json.Unmarshal(body, &r); err != nil {
		fail(err)
		return
	}
	m, err := s.addMember(&r, len(files))
	if err != nil {
		fail(err)
		return
	}
	pid, relays, err := s.createMember(m, &r, files)
	if err != nil {
		s.removeMember(r.ID)
		fail(err)
		return
	}
	b, _ := json.Marshal(proto.PidReply{Pid: pid})
	if proto.WriteFrame(c, proto.Response{Body: b}) != nil {
		s.removeMember(r.ID)
		return
	}
	key := proto.InitKey(r.ID)
	go func() {
		for {
			var sig proto.KillRequest
			err := proto.ReadFrame(c, &sig, 4096)
			if err != nil && m.hasExited() {
				return
			}
			if err != nil {
				// The member's host process is gone (killed): so is the
				// container, as a process container dies with its init.
				sig.Signal = int(unix.SIGKILL)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.agent.Call(ctx, proto.OpKill, proto.KillRequest{ID: r.ID, Key: key, Signal: sig.Signal}, nil)
			cancel()
			if err != nil {
				return
			}
		}
	}()
	var w proto.WaitReply
	if err := s.agent.Call(client.NoTimeout(context.Background()), proto.OpWait, proto.ProcessRequest{Key: key}, &w); err != nil {
		// The VM is gone: killed with the sandbox, or crashed.
		w.Status = 255
		if s.stopping.Load() {
			w.Status = 137
		}
	}
	waitRelays(relays)
	m.setExit(w.Status)
	b, _ = json.Marshal(proto.WaitReply{Status: w.Status, OOMKills: w.OOMKills})
	proto.WriteFrame(c, proto.Response{Body: b})
}

// addMember checks a join and records the member.
func (s *shim) addMember(r *JoinRequest, nfiles int) (*member, error) {
	if !s.cfg.Pod {
		return nil, fmt.Errorf("container %q is not a pod sandbox", s.cfg.ID)
	}
	if err := libruntime.ValidateID(r.ID); err != nil {
		return nil, err
	}
	if r.Spec == nil || r.Spec.Process == nil || r.Spec.Root == nil {
		return nil, errors.New("join: spec without process or root")
	}
	want := 3 + 1 + len(r.Mounts)
	if r.Terminal {
		want = 1 + 1 + len(r.Mounts)
	}
	if nfiles != want {
		return nil, fmt.Errorf("join: %d descriptors, want %d", nfiles, want)
	}
	select {
	case <-s.exited:
		return nil, fmt.Errorf("pod sandbox %q is stopped", s.cfg.ID)
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[r.ID]; ok || r.ID == s.cfg.ID {
		return nil, fmt.Errorf("container %q is already in the pod", r.ID)
	}
	m := &member{id: r.ID, hostPid: r.HostPid, exited: make(chan struct{})}
	if s.members == nil {
		s.members = map[string]*member{}
	}
	s.members[r.ID] = m
	return m, nil
}

// createMember shares the member's files with the guest, points its
// namespaces at the pod's and creates it in the guest; it returns its
// guest PID.
func (s *shim) createMember(m *member, r *JoinRequest, files []*os.File) (int, *sync.WaitGroup, error) {
	var console, in, out, errf *os.File
	if r.Terminal {
		console, files = files[0], files[1:]
	} else {
		in, out, errf, files = files[0], files[1], files[2], files[3:]
	}
	spec := r.Spec
	shm, err := s.shareMember(r.ID, spec, r.Mounts, r.Submounts, files[0], files[1:])
	if err != nil {
		return 0, nil, err
	}
	if err := s.podNamespaces(spec); err != nil {
		return 0, nil, err
	}
	relays := &sync.WaitGroup{}
	st, err := s.openStdio(proto.InitKey(r.ID), spec.Process.Terminal, console, in, out, errf, false, relays)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var pid proto.PidReply
	if err := s.agent.Call(ctx, proto.OpCreate, proto.CreateRequest{ID: r.ID, Spec: spec, Stdio: st, Tmpfs: shm}, &pid); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	m.guestPid = pid.Pid
	s.mu.Unlock()
	return pid.Pid, relays, nil
}

// memberShare is where a member's files are in the share directories.
func memberShare(id string) string { return filepath.Join("c", id) }

// shareMember puts a member's rootfs and bind-mount sources into the
// shares, under c/ID, and rewrites the spec's paths to the guest's. The
// share directories are shared mounts of which QEMU's jail holds slaves
// (hvshim/jail), so mounts made here after QEMU started reach it. It
// returns the guest tmpfs mounts that replace an engine's /dev/shm. subs
// are the host's submounts of the mounts, whose own flags the guest
// restores (submounts.go).
func (s *shim) shareMember(id string, spec *specs.Spec, mounts []int, subs map[int][]Submount, rootfs *os.File, trees []*os.File) ([]proto.Tmpfs, error) {
	listed := map[int]bool{}
	for _, i := range mounts {
		if i < 0 || i >= len(spec.Mounts) || listed[i] || !isBind(&spec.Mounts[i]) {
			return nil, fmt.Errorf("join: mount %d is not a bind mount of the spec", i)
		}
		listed[i] = true
	}
	for i := range spec.Mounts {
		if isBind(&spec.Mounts[i]) && !listed[i] {
			return nil, fmt.Errorf("join: bind mount %s without its source", spec.Mounts[i].Destination)
		}
	}
	if err := checkSubmounts(subs, listed); err != nil {
		return nil, err
	}
	sub := memberShare(id)
	dir := filepath.Join(s.dir, ShareName, sub)
	if err := mkdirShared(dir); err != nil {
		return nil, err
	}
	if err := moveTree(rootfs, filepath.Join(dir, "rootfs"), true); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	spec.Root.Path = agent.ShareDir + "/" + sub + "/rootfs"
	var shm []proto.Tmpfs
	for j, i := range mounts {
		m := &spec.Mounts[i]
		if guestShm(m, int(trees[j].Fd()), &shm) {
			delete(subs, i)
			continue
		}
		name := "m" + strconv.Itoa(i) + "/" + volumeName(m.Source)
		vdir := filepath.Join(s.dir, VolumesName, sub)
		if err := mkdirShared(filepath.Join(vdir, filepath.Dir(name))); err != nil {
			return nil, err
		}
		if err := moveTree(trees[j], filepath.Join(vdir, name), false); err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		m.Source = agent.VolumeDir + "/" + sub + "/" + name
	}
	return shm, keepSubmountFlags(spec, subs)
}

// mkdirShared makes dir and its missing parents, searchable by all as the
// share's directories are (a user namespace's root must pass them).
func mkdirShared(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return os.Chmod(dir, 0o711)
}

// moveTree mounts the detached mount tree at dst, a new directory or
// file, with nothing in it executable, setuid or a device for QEMU.
func moveTree(tree *os.File, dst string, dirOnly bool) error {
	fd := int(tree.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if dirOnly && !isDir {
		return errors.New("not a directory")
	}
	if err := mountPoint(dst, isDir); err != nil {
		return err
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("restrict: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move mount: %w", err)
	}
	return nil
}

// podNamespaces points the namespaces a member shares with the pod at the
// guest's: a path /proc/PID/ns/TYPE names the sandbox (the shim's PID) or
// another member (its host process); any other path (a pinned namespace,
// as CRI-O gives) is the sandbox's. The host paths mean nothing in the VM.
func (s *shim) podNamespaces(spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		file, ok := nsFiles[ns.Type]
		if !ok {
			return fmt.Errorf("namespace %s: joining it by path is not supported in a pod's VM", ns.Type)
		}
		guest := s.guestPid(ns.Path)
		if guest == 0 {
			return fmt.Errorf("namespace %s: %s is not a process of pod sandbox %q", ns.Type, ns.Path, s.cfg.ID)
		}
		spec.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", guest, file)
	}
	return nil
}

var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
	specs.PIDNamespace: "pid", specs.UserNamespace: "user", specs.CgroupNamespace: "cgroup",
}

// guestPid maps a namespace path of the host to the guest PID of the pod
// container it names, or 0.
func (s *shim) guestPid(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok {
		return s.initPid
	}
	p, _, _ := strings.Cut(rest, "/")
	hostPid, err := strconv.Atoi(p)
	if err != nil {
		return 0
	}
	if hostPid == s.pid {
		return s.initPid
	}
	for _, m := range s.members {
		if m.hostPid == hostPid && !m.hasExited() {
			return m.guestPid
		}
	}
	return 0
}

// removeMember deletes a member from the guest and its files from the
// shares. Unmounting is lazy: QEMU may still hold files of it open.
func (s *shim) removeMember(id string) error {
	var err error
	select {
	case <-s.vm.QEMU.Done():
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.agent.Call(ctx, proto.OpDelete, proto.IDRequest{ID: id}, nil)
		cancel()
		if err != nil && strings.Contains(err.Error(), libruntime.ErrNotExist.Error()) {
			err = nil // it failed before it was made
		}
	}
	sub := memberShare(id)
	root := filepath.Join(s.dir, ShareName, sub)
	unmountRemove(filepath.Join(root, "rootfs"))
	os.Remove(root)
	vols := filepath.Join(s.dir, VolumesName, sub)
	ents, _ := os.ReadDir(vols)
	for _, e := range ents {
		d := filepath.Join(vols, e.Name())
		inner, _ := os.ReadDir(d)
		for _, f := range inner {
			unmountRemove(filepath.Join(d, f.Name()))
		}
		os.Remove(d)
	}
	os.Remove(vols)
	s.mu.Lock()
	if m := s.members[id]; m != nil {
		m.setExit(137)
		delete(s.members, id)
	}
	s.mu.Unlock()
	return err
}

// unmountRemove detaches the mount at path and removes the mount point,
// never what was mounted: a mount point still in use is left.
func unmountRemove(path string) {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return
	}
	os.Remove(path)
}

// waitMembers gives the members' relays a moment to report their exit
// once the VM has stopped.
func (s *shim) waitMembers() {
	s.mu.Lock()
	var chans []chan struct{}
	for _, m := range s.members {
		chans = append(chans, m.exited)
	}
	s.mu.Unlock()
	deadline := time.After(3 * time.Second)
	for _, ch := range chans {
		select {
		case <-ch:
		case <-deadline:
			return
		}
	}
}
