package libruntime

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Run creates and starts a container. Detached, it returns once the
// container runs; otherwise it relays signals (and the terminal) until the
// container exits, deletes it unless keep, and returns its exit status.
func (r *Runtime) Run(id, bundleDir, pidFile string, o *CreateOpts, detach, keep bool) (int, error) {
	if detach {
		if _, err := r.Create(id, bundleDir, pidFile, o); err != nil {
			return 0, err
		}
		if err := r.Start(id); err != nil {
			r.Delete(id, true)
			return 0, err
		}
		return 0, nil
	}
	if err := ValidateID(id); err != nil {
		return 0, err
	}
	b, err := LoadBundle(bundleDir)
	if err != nil {
		return 0, err
	}
	terminal := b.Spec.Process.Terminal
	if terminal && o.ConsoleSocket != nil {
		return 0, fmt.Errorf("--console-socket cannot be used with run in the foreground")
	}
	fg, sock, err := NewForeground(terminal)
	if err != nil {
		return 0, err
	}
	defer fg.Close()
	o.Foreground = true
	if sock != nil {
		o.ConsoleSocket = sock
	}
	p, err := r.create(id, b, pidFile, o)
	if sock != nil {
		sock.Close()
	}
	if err != nil {
		return 0, err
	}
	fg.Ready()
	if err := r.Start(id); err != nil {
		p.Signal(unix.SIGKILL)
		r.Delete(id, true)
		return 0, err
	}
	status, err := fg.Wait(p)
	if !keep {
		if derr := r.Delete(id, true); err == nil {
			err = derr
		}
	}
	return status, err
}

// ExecForeground starts a process in a container and relays to it until
// it exits, returning its exit status.
func (r *Runtime) ExecForeground(id string, p *ExecSpec, o *ExecOpts) (int, error) {
	fg, sock, err := NewForeground(p.Process.Terminal)
	if err != nil {
		return 0, err
	}
	defer fg.Close()
	if sock != nil {
		o.ConsoleSocket = sock
	}
	proc, err := r.Exec(id, p.Process, p.PidFile, o)
	if sock != nil {
		sock.Close()
	}
	if err != nil {
		return 0, err
	}
	return fg.Wait(proc)
}

// ExecSpec is a process to exec and where to record its PID.
type ExecSpec struct {
	Process *specs.Process
	PidFile string
}
