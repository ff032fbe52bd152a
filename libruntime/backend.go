package libruntime

import (
	"os"

	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Backend is one isolation mode. Each method gets the container's locked
// state directory; libruntime does the bookkeeping (IDs, metadata, locks,
// pid files) so that backends only build and drive containers.
type Backend interface {
	// Create builds the container and leaves its process waiting for
	// Start. The returned Process is the one a supervisor waits on: the
	// container's init, or whatever stands in for it on the host.
	Create(h *Handle, b *Bundle, iso Isolation, o *CreateOpts) (Process, error)
	Start(h *Handle) error
	// Status reports the status and the PID of the process a supervisor
	// should watch (0 when stopped).
	Status(h *Handle) (Status, int, error)
	Signal(h *Handle, sig unix.Signal, all bool) error
	Exec(h *Handle, p *specs.Process, o *ExecOpts) (Process, error)
	Pause(h *Handle) error
	Resume(h *Handle) error
	Processes(h *Handle) ([]int, error)
	Update(h *Handle, r *specs.LinuxResources) error
	Stats(h *Handle) (*types.Stats, error)
	// Destroy releases everything the container holds (processes,
	// cgroups, mounts, VMs). It is called only on a stopped or created
	// container, or with force after a SIGKILL, and must be idempotent.
	Destroy(h *Handle) error
}

// Stdio is the standard streams handed to a container process.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts are create's options, shared by `create` and `run`.
type CreateOpts struct {
	Stdio
	// ConsoleSocket is a connected unix socket that receives the pty
	// master when process.terminal is set.
	ConsoleSocket *os.File
	ExtraFiles    []*os.File // --preserve-fds
	NoPivot       bool
	NoNewKeyring  bool
	// Foreground is set by `run` without --detach: the caller waits on
	// the returned Process, so it must be able to reap it.
	Foreground bool
	// Debug and LogFile pass the CLI's logging on to helper processes.
	Debug   bool
	LogFile string
}

// ExecOpts are exec's options.
type ExecOpts struct {
	Stdio
	ConsoleSocket *os.File
	ExtraFiles    []*os.File
	Detach        bool
}

// Process is a started container process.
type Process interface {
	Pid() int
	// Wait returns the exit status in the shell's convention: the exit
	// code, or 128+n when killed by signal n.
	Wait() (int, error)
	// Signal delivers sig to the process, or on the host to whatever
	// stands in for it and forwards signals.
	Signal(sig unix.Signal) error
}
