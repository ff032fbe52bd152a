package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/libruntime"
)

// MemberArg is argv[2] of `runh shim member DIR`.
const MemberArg = "member"

// MemberMain is `runh shim member DIR`: the host process of a pod's
// container (state directory DIR) that runs in its sandbox's VM. In the
// host's mount namespace, where the engine mounted the container's rootfs
// and volumes, it takes them as detached mount trees and gives them, with
// its stdio, to the sandbox's shim; it runs the host's hooks, reports the
// create on fd SyncFd, forwards the signals it gets and exits with the
// container's status. It is the PID engines wait on.
func MemberMain(dir string) int {
	sync := os.NewFile(SyncFd, "sync")
	fail := func(err error) int {
		json.NewEncoder(sync).Encode(SyncMsg{Ready: Ready{Error: err.Error()}})
		sync.Close()
		return 1
	}
	var cfg Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", ConfigFile, err))
	}
	bundle, err := libruntime.LoadBundle(cfg.Bundle)
	if err != nil {
		return fail(err)
	}
	spec := bundle.Spec
	var hooks *specs.Hooks
	hooks, spec.Hooks = libruntime.HostHooks(spec.Hooks)
	req := JoinRequest{ID: cfg.ID, Spec: spec, Terminal: cfg.HasConsole, HostPid: os.Getpid()}
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	if cfg.HasConsole {
		files = []*os.File{os.NewFile(ConsoleFd, "console-socket")}
	}
	trees, err := memberTrees(bundle, &req)
	defer func() {
		for _, t := range trees {
			t.Close()
		}
	}()
	if err != nil {
		return fail(err)
	}
	// The engine reads the pod's usage from the sandbox's cgroup, where
	// the VM is; this process goes to the container's own.
	if spec.Linux != nil {
		cg := &specs.Spec{Linux: &specs.Linux{CgroupsPath: spec.Linux.CgroupsPath}}
		if err := joinHostCgroup(dir, cfg.ID, cg, 0, cfg.SystemdCgroup, cfg.Rootless, os.Getpid(), nil); err != nil {
			return fail(err)
		}
	}
	c, err := Dial(cfg.Sandbox)
	if err != nil {
		return fail(errors.New("pod sandbox is not running"))
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	var pid proto.PidReply
	if err := call(c, OpJoin, req, &pid, append(files, trees...)); err != nil {
		return fail(err)
	}
	c.SetDeadline(time.Time{})
	if cfg.HasConsole {
		files[0].Close()
	}
	if hooks != nil {
		st := &specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateCreating, Pid: os.Getpid(),
			Bundle: bundle.Dir, Annotations: spec.Annotations}
		err := runHostHooks(sync, "prestart", hooks.Prestart, st)
		if err == nil {
			err = runHostHooks(sync, "createRuntime", hooks.CreateRuntime, st)
		}
		if err != nil {
			Call(cfg.Sandbox, OpRemove, proto.IDRequest{ID: cfg.ID}, nil, time.Minute)
			return fail(err)
		}
	}
	json.NewEncoder(sync).Encode(SyncMsg{Ready: Ready{Pid: os.Getpid()}})
	sync.Close()
	// Our stdio now belongs to the shim's relay; keep none open here so
	// that the engine sees EOF when the container ends.
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			unix.Dup3(int(devnull.Fd()), fd, 0)
		}
	}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGWINCH, unix.SIGCONT, unix.SIGALRM, unix.SIGPWR, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU)
	go func() {
		for sig := range ch {
			proto.WriteFrame(c, proto.KillRequest{Signal: int(sig.(unix.Signal))})
		}
	}()
	var w proto.WaitReply
	if err := readResponse(c, OpJoin, &w); err != nil {
		return 255 // the sandbox's shim is gone, and the VM with it
	}
	// The engine watches this process's host cgroup for OOM kills, as it
	// does the shim's of a VM of its own (oom.go).
	if w.OOMKills > 0 {
		reflectOOM(dir)
	}
	return w.Status
}

// memberTrees takes the rootfs and every bind-mount source of the bundle
// as detached mount trees and lists the mounts in req.
func memberTrees(bundle *libruntime.Bundle, req *JoinRequest) ([]*os.File, error) {
	spec := bundle.Spec
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle.Dir, rootfs)
	}
	var trees []*os.File
	t, _, err := openTree(rootfs, true)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	trees = append(trees, t)
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(m) {
			continue
		}
		if !filepath.IsAbs(m.Source) {
			return trees, fmt.Errorf("mount %s: source %q is not absolute", m.Destination, m.Source)
		}
		if len(trees) >= maxFds-3 {
			return trees, fmt.Errorf("more than %d bind mounts", maxFds-4)
		}
		p, err := planBind(m)
		if err != nil {
			return trees, err
		}
		t, real, err := openTree(m.Source, p.recursive)
		if err != nil {
			return trees, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		trees = append(trees, t)
		req.Mounts = append(req.Mounts, i)
		// The submounts are seen here, where their flags are still the
		// host's: the shim's copy has QEMU's restrictions (moveTree).
		if p.recursive && p.remount {
			subs, err := findSubmounts(real)
			if err != nil {
				return trees, fmt.Errorf("mount %s: %w", m.Destination, err)
			}
			if len(subs) > 0 {
				if req.Submounts == nil {
					req.Submounts = map[int][]Submount{}
				}
				req.Submounts[i] = subs
			}
		}
	}
	return trees, nil
}

// openTree copies the mount at path, with those beneath it if recursive,
// into a detached tree; it also returns the path resolved. Symlinks on
// the way are the engine's and are followed once; the last component
// must not be one.
func openTree(path string, recursive bool) (*os.File, string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, "", fmt.Errorf("source %s: %w", path, errors.Unwrap(err))
	}
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_SYMLINK_NOFOLLOW
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, real, uint(flags))
	if err != nil {
		return nil, "", fmt.Errorf("source %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), real), real, nil
}
