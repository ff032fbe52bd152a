// Package linux is runh's process-isolation backend: containers made of
// namespaces and cgroups by runc's libcontainer. The guest agent of the
// hypervisor backend uses it too, so a container is built by the same code
// in both modes.
package linux

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/libruntime"
)

// Backend builds containers with libcontainer. libcontainer keeps its own
// state in a subdirectory of runh's state directory named by the ID.
type Backend struct {
	SystemdCgroup bool
	// Rootless makes cgroups best effort (RootlessCgroups, from
	// --rootless): cgroups this process may not write are skipped unless
	// the container asks for a limit in them.
	Rootless bool

	// open holds the containers this process created or loaded, so that a
	// verb sequence in one process (run: create, start, wait, delete; or
	// the guest agent serving many verbs) loads each from disk once, as
	// libcontainer intends its Container to be used. A CLI verb is one
	// process, so nothing outlives the verb that another process could
	// have changed underneath.
	mu   sync.Mutex
	open map[string]*libcontainer.Container
}

var _ libruntime.Backend = (*Backend)(nil)

// cwdMu serialises the chdir that spec conversion needs, for callers such
// as the guest agent that create several containers at once.
var cwdMu sync.Mutex

// Create implements libruntime.Backend.
func (b *Backend) Create(h *libruntime.Handle, bundle *libruntime.Bundle, _ libruntime.Isolation, o *libruntime.CreateOpts) (libruntime.Process, error) {
	cfg, err := b.config(h.ID, bundle, o)
	if err != nil {
		return nil, err
	}
	c, err := libcontainer.Create(h.Dir, h.ID, cfg)
	if err != nil {
		return nil, err
	}
	p, err := newProcess(bundle.Spec.Process)
	if err != nil {
		c.Destroy()
		return nil, err
	}
	p.Init = true
	if err := deferAddressSpaceLimit(h, p); err != nil {
		c.Destroy()
		return nil, err
	}
	setIO(p, &o.Stdio, o.ConsoleSocket, o.ExtraFiles)
	if o.Foreground {
		if err := setSubreaper(); err != nil {
			c.Destroy()
			return nil, err
		}
	}
	if err := c.Start(p); err != nil {
		c.Destroy()
		return nil, err
	}
	pid, err := p.Pid()
	if err != nil {
		c.Destroy()
		return nil, err
	}
	b.keep(h.ID, c)
	return &process{pid: pid}, nil
}

func (b *Backend) config(id string, bundle *libruntime.Bundle, o *libruntime.CreateOpts) (cfg *configs.Config, err error) {
	cwdMu.Lock()
	defer cwdMu.Unlock()
	// specconv resolves the relative paths of a spec against the working
	// directory, which must be the bundle.
	old, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if err := os.Chdir(bundle.Dir); err != nil {
		return nil, err
	}
	defer os.Chdir(old)
	adjustSpec(bundle.Spec)
	cfg, err = specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: b.SystemdCgroup,
		NoPivotRoot:      o.NoPivot,
		NoNewKeyring:     o.NoNewKeyring,
		Spec:             bundle.Spec,
		RootlessEUID:     os.Geteuid() != 0,
		RootlessCgroups:  b.Rootless,
	})
	if err != nil {
		return nil, err
	}
	adjustConfig(cfg)
	cfg.Labels = append(cfg.Labels, "bundle="+bundle.Dir)
	return cfg, nil
}

func (b *Backend) load(h *libruntime.Handle) (*libcontainer.Container, error) {
	b.mu.Lock()
	c := b.open[h.ID]
	b.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := libcontainer.Load(h.Dir, h.ID)
	if err != nil {
		return nil, err
	}
	b.keep(h.ID, c)
	return c, nil
}

func (b *Backend) keep(id string, c *libcontainer.Container) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open == nil {
		b.open = map[string]*libcontainer.Container{}
	}
	b.open[id] = c
}

func (b *Backend) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.open, id)
}

// Start implements libruntime.Backend.
func (b *Backend) Start(h *libruntime.Handle) error {
	c, err := b.load(h)
	if err != nil {
		return err
	}
	st, err := c.State()
	if err != nil {
		return err
	}
	if err := applyDeferredLimits(h, st.InitProcessPid); err != nil {
		return err
	}
	return c.Exec()
}

// Status implements libruntime.Backend.
func (b *Backend) Status(h *libruntime.Handle) (libruntime.Status, int, error) {
	c, err := b.load(h)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			// create was interrupted before libcontainer saved anything.
			return libruntime.Stopped, 0, nil
		}
		return "", 0, err
	}
	st, err := c.State()
	if err != nil {
		return "", 0, err
	}
	s, err := c.Status()
	if err != nil {
		return "", 0, err
	}
	switch s {
	case libcontainer.Created:
		return libruntime.Created, st.InitProcessPid, nil
	case libcontainer.Running:
		return libruntime.Running, st.InitProcessPid, nil
	case libcontainer.Paused:
		return libruntime.Paused, st.InitProcessPid, nil
	}
	return libruntime.Stopped, 0, nil
}

// Signal implements libruntime.Backend. With all, every process of the
// container's cgroup gets the signal, not only init.
func (b *Backend) Signal(h *libruntime.Handle, sig unix.Signal, all bool) error {
	c, err := b.load(h)
	if err != nil {
		return err
	}
	if all {
		pids, _ := c.Processes()
		for _, pid := range pids {
			unix.Kill(pid, sig)
		}
	}
	err = c.Signal(sig)
	if sig == unix.SIGKILL {
		thaw(c)
	}
	if err != nil {
		// Init may die between libcontainer's check and its signal,
		// and be reaped by a parent that waits on it (the VM's agent):
		// Go then says the process is done. Either way it has stopped.
		if errors.Is(err, os.ErrProcessDone) {
			err = libcontainer.ErrNotRunning
		}
		if all && errors.Is(err, libcontainer.ErrNotRunning) {
			return nil
		}
		return err
	}
	return nil
}

// thaw thaws the cgroup of a container killed while paused. On cgroup v1
// a frozen process dies only once thawed. On v2 it dies at once, so
// libcontainer's own thaw after signalling init is skipped when init was
// already gone (kill --all killed it first, or it died between two
// signals), and an empty frozen cgroup reads as paused for ever: the
// container could then be neither deleted nor killed again.
func thaw(c *libcontainer.Container) {
	if s, err := c.Status(); err == nil && s == libcontainer.Paused {
		if err := c.Resume(); err != nil {
			logrus.Debugf("thaw %s after SIGKILL: %v", c.ID(), err)
		}
	}
}

// Exec implements libruntime.Backend.
func (b *Backend) Exec(h *libruntime.Handle, ps *specs.Process, o *libruntime.ExecOpts) (libruntime.Process, error) {
	c, err := b.load(h)
	if err != nil {
		return nil, err
	}
	p, err := newProcess(ps)
	if err != nil {
		return nil, err
	}
	setIO(p, &o.Stdio, o.ConsoleSocket, o.ExtraFiles)
	if !o.Detach {
		if err := setSubreaper(); err != nil {
			return nil, err
		}
	}
	if err := c.Run(p); err != nil {
		return nil, err
	}
	pid, err := p.Pid()
	if err != nil {
		return nil, err
	}
	return &process{pid: pid}, nil
}

// Pause implements libruntime.Backend.
func (b *Backend) Pause(h *libruntime.Handle) error {
	c, err := b.load(h)
	if err != nil {
		return err
	}
	return c.Pause()
}

// Resume implements libruntime.Backend.
func (b *Backend) Resume(h *libruntime.Handle) error {
	c, err := b.load(h)
	if err != nil {
		return err
	}
	return c.Resume()
}

// Processes implements libruntime.Backend.
func (b *Backend) Processes(h *libruntime.Handle) ([]int, error) {
	c, err := b.load(h)
	if err != nil {
		return nil, err
	}
	return c.Processes()
}

// Stats implements libruntime.Backend.
func (b *Backend) Stats(h *libruntime.Handle) (*types.Stats, error) {
	c, err := b.load(h)
	if err != nil {
		return nil, err
	}
	s, err := c.Stats()
	if err != nil {
		return nil, err
	}
	return ConvertStats(s), nil
}

// Destroy implements libruntime.Backend. A container that still has
// processes is killed and given a few seconds to die first.
func (b *Backend) Destroy(h *libruntime.Handle) error {
	c, err := b.load(h)
	defer b.forget(h.ID)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return b.destroyUnsaved(h)
		}
		return err
	}
	if s, _ := c.Status(); s != libcontainer.Stopped {
		c.Signal(unix.SIGKILL)
		thaw(c)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if s, err := c.Status(); err != nil || s == libcontainer.Stopped {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("container %q did not die after SIGKILL", h.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := c.Destroy(); err != nil {
		logrus.Debugf("destroy %s: %v", h.ID, err)
		return err
	}
	return nil
}

// destroyUnsaved removes the cgroup of a container whose create was
// interrupted before libcontainer saved its state: the cgroup path is
// derived again from the bundle, as create derived it.
func (b *Backend) destroyUnsaved(h *libruntime.Handle) error {
	if h.Meta == nil {
		return nil
	}
	bundle, err := libruntime.LoadBundle(h.Meta.Bundle)
	if err != nil {
		return nil // nothing to derive the cgroup from
	}
	cfg, err := b.config(h.ID, bundle, &libruntime.CreateOpts{})
	if err != nil {
		return nil
	}
	// Not cm.Exists(): with cgroup v1 it looks at one hierarchy only, and
	// an interrupted create may have made only some.
	cm, err := manager.New(cfg.Cgroups)
	if err != nil {
		return nil
	}
	if pids, err := cm.GetAllPids(); err == nil {
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	var derr error
	for i := 0; i < 50; i++ { // killed tasks leave the cgroup once reaped
		if derr = cm.Destroy(); derr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup of interrupted create: %w", derr)
}
