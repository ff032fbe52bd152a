package libruntime

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runtime runs the verbs on the containers of one state root. It does the
// isolation-agnostic part of each verb (IDs, bundle checks, state
// transitions, locking) and hands the rest to the container's backend.
type Runtime struct {
	Store Store
	// Default is the isolation used when a bundle does not choose one.
	Default  Mode
	Backends map[Mode]Backend
}

func (r *Runtime) backend(m Mode) (Backend, error) {
	if b, ok := r.Backends[m]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("isolation %q is not available in this build", m)
}

// Create makes a container from a bundle and leaves it waiting for start.
// On any error nothing is left behind.
func (r *Runtime) Create(id, bundleDir, pidFile string, o *CreateOpts) (Process, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := LoadBundle(bundleDir)
	if err != nil {
		return nil, err
	}
	return r.create(id, b, pidFile, o)
}

// create is Create for a validated ID and a loaded bundle.
func (r *Runtime) create(id string, b *Bundle, pidFile string, o *CreateOpts) (p Process, err error) {
	iso, err := ParseIsolation(b.Spec.Annotations, r.Default)
	if err != nil {
		return nil, err
	}
	release, err := r.joinPod(&iso, b.Spec.Annotations)
	if err != nil {
		return nil, err
	}
	defer release()
	be, err := r.backend(iso.Mode)
	if err != nil {
		return nil, err
	}
	if err := checkTerminal(b.Spec.Process.Terminal, o.ConsoleSocket != nil, o.Foreground); err != nil {
		return nil, err
	}
	meta := &Meta{
		ID:          id,
		Bundle:      b.Dir,
		Rootfs:      b.Rootfs,
		Isolation:   iso.Mode,
		Created:     time.Now().UTC(),
		Owner:       owner(),
		Annotations: b.Spec.Annotations,
	}
	h, err := r.Store.Reserve(meta)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			be.Destroy(h)
			h.Remove()
		}
		h.Close()
	}()
	if p, err = be.Create(h, b, iso, o); err != nil {
		return nil, err
	}
	if err = writePidFile(pidFile, p.Pid()); err != nil {
		p.Signal(unix.SIGKILL)
		return nil, err
	}
	return p, nil
}

func checkTerminal(terminal, socket, foreground bool) error {
	switch {
	case terminal && !socket && !foreground:
		return errors.New("process.terminal is set but no --console-socket was given")
	case !terminal && socket:
		return errors.New("--console-socket was given but process.terminal is not set")
	}
	return nil
}

func owner() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return ""
}

// writePidFile writes pid atomically, as engines read the file as soon as
// it appears.
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	if err := WriteFileAtomic(path, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// open locks a container and finds its backend.
func (r *Runtime) open(id string, exclusive bool) (*Handle, Backend, error) {
	h, err := r.Store.Open(id, exclusive)
	if err != nil {
		return nil, nil, err
	}
	be, err := r.backend(h.Meta.Isolation)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, be, nil
}

// with runs fn on a locked container after checking its status is one of
// allowed; verb names the action for the error message.
func (r *Runtime) with(id string, exclusive bool, verb string, allowed []Status, fn func(*Handle, Backend, Status) error) error {
	h, be, err := r.open(id, exclusive)
	if err != nil {
		return err
	}
	defer h.Close()
	st, _, err := be.Status(h)
	if err != nil {
		return fmt.Errorf("container %q: %w", id, err)
	}
	if allowed != nil && !hasStatus(allowed, st) {
		return fmt.Errorf("cannot %s container %q: it is %s, not %s", verb, id, st, joinStatuses(allowed))
	}
	return fn(h, be, st)
}

func joinStatuses(list []Status) string {
	s := make([]string, len(list))
	for i, x := range list {
		s[i] = string(x)
	}
	return strings.Join(s, " or ")
}

func hasStatus(list []Status, s Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Start runs the user process of a created container.
func (r *Runtime) Start(id string) error {
	return r.with(id, true, "start", []Status{Created}, func(h *Handle, be Backend, _ Status) error {
		return be.Start(h)
	})
}

// State reports a container's state.
func (r *Runtime) State(id string) (*State, error) {
	h, be, err := r.open(id, false)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	st, pid, err := be.Status(h)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	return h.Meta.state(st, pid), nil
}

// List reports the state of every container. It takes no locks, so a
// long create elsewhere does not stall it; containers that disappear
// while it looks are left out.
func (r *Runtime) List() ([]*State, error) {
	ids, err := r.Store.List()
	if err != nil {
		return nil, err
	}
	var out []*State
	for _, id := range ids {
		dir := r.Store.dir(id)
		meta, err := readMeta(dir)
		if err != nil {
			continue
		}
		be, err := r.backend(meta.Isolation)
		if err != nil {
			continue
		}
		st, pid, err := be.Status(&Handle{ID: id, Dir: dir, Meta: meta})
		if err != nil {
			st, pid = Stopped, 0
		}
		out = append(out, meta.state(st, pid))
	}
	return out, nil
}

// Kill sends sig to the container's init, or with all to every process.
//
// As with runc, --all on a stopped container succeeds: engines send it to
// sweep up what a pod-shared PID namespace may have left, and the error
// for a plain kill says "container not running", which they recognise.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	return r.with(id, true, "kill", nil, func(h *Handle, be Backend, st Status) error {
		if st == Stopped {
			if all {
				be.Signal(h, sig, true)
				return nil
			}
			return fmt.Errorf("cannot kill container %q: container not running", id)
		}
		return be.Signal(h, sig, all)
	})
}

// Delete removes a stopped or created container; with force, a running
// or paused one too. A container whose state cannot be read is removed
// with force as well, so that an operator can always clean up.
func (r *Runtime) Delete(id string, force bool) error {
	h, be, err := r.open(id, true)
	if err != nil {
		if force && errors.Is(err, ErrCorrupt) {
			return r.salvage(id)
		}
		return err
	}
	defer h.Close()
	st, _, err := be.Status(h)
	if err != nil {
		if !force {
			return fmt.Errorf("container %q: %w (use --force to remove it)", id, err)
		}
		st = Running
	}
	switch st {
	case Running, Paused:
		if !force {
			return fmt.Errorf("cannot delete container %q that is not stopped: %s", id, st)
		}
		fallthrough
	case Created:
		if err := be.Signal(h, unix.SIGKILL, true); err != nil && st == Created {
			return err
		}
	}
	if err := be.Destroy(h); err != nil {
		return err
	}
	return h.Remove()
}

// salvage removes a container whose metadata is lost: without knowing
// its isolation, it lets every backend release what it finds of its own.
func (r *Runtime) salvage(id string) error {
	h, err := r.Store.openBroken(id)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, be := range r.Backends {
		if err := be.Destroy(h); err != nil {
			return fmt.Errorf("container %q: %w", id, err)
		}
	}
	return h.Remove()
}

// Pause freezes all processes of a running container.
func (r *Runtime) Pause(id string) error {
	return r.with(id, true, "pause", []Status{Running, Created}, func(h *Handle, be Backend, _ Status) error {
		return be.Pause(h)
	})
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error {
	return r.with(id, true, "resume", []Status{Paused}, func(h *Handle, be Backend, _ Status) error {
		return be.Resume(h)
	})
}

// Processes lists the host PIDs of the container's processes.
func (r *Runtime) Processes(id string) (pids []int, err error) {
	err = r.with(id, false, "list processes of", nil, func(h *Handle, be Backend, _ Status) error {
		pids, err = be.Processes(h)
		return err
	})
	return pids, err
}

// Update changes the resource limits of a live container.
func (r *Runtime) Update(id string, res *specs.LinuxResources) error {
	return r.with(id, true, "update", []Status{Created, Running, Paused}, func(h *Handle, be Backend, _ Status) error {
		return be.Update(h, res)
	})
}

// Stats reads the container's resource usage.
func (r *Runtime) Stats(id string) (s *types.Stats, err error) {
	err = r.with(id, false, "read stats of", []Status{Created, Running, Paused}, func(h *Handle, be Backend, _ Status) error {
		s, err = be.Stats(h)
		return err
	})
	return s, err
}

// Exec starts an additional process in a created or running container.
// The lock is held only until the process has started.
func (r *Runtime) Exec(id string, p *specs.Process, pidFile string, o *ExecOpts) (proc Process, err error) {
	if err := CheckProcess(p); err != nil {
		return nil, err
	}
	if err := checkTerminal(p.Terminal, o.ConsoleSocket != nil, !o.Detach); err != nil {
		return nil, err
	}
	err = r.with(id, true, "exec in", []Status{Created, Running}, func(h *Handle, be Backend, _ Status) error {
		proc, err = be.Exec(h, p, o)
		if err != nil {
			return err
		}
		if err := writePidFile(pidFile, proc.Pid()); err != nil {
			proc.Signal(unix.SIGKILL)
			return err
		}
		return nil
	})
	return proc, err
}

// Config reads the spec of a container's bundle, for exec's defaults.
func (r *Runtime) Config(id string) (*specs.Spec, error) {
	h, err := r.Store.Open(id, false)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	b, err := LoadBundle(h.Meta.Bundle)
	if err != nil {
		return nil, err
	}
	return b.Spec, nil
}

// PsTabler is implemented by backends whose processes the host's ps(1)
// cannot see (their PIDs live in a VM): they format the table themselves.
type PsTabler interface {
	PsTable(h *Handle, args []string) ([]byte, error)
}

// PsTable returns the ps table of a container whose backend makes its
// own, or ok == false when the host's ps should be used.
func (r *Runtime) PsTable(id string, args []string) (table []byte, ok bool, err error) {
	err = r.with(id, false, "list processes of", nil, func(h *Handle, be Backend, _ Status) error {
		t, is := be.(PsTabler)
		if !is {
			return nil
		}
		ok = true
		table, err = t.PsTable(h, args)
		return err
	})
	return table, ok, err
}
