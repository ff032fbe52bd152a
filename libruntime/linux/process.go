package linux

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/libruntime"
)

var rlimits = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// newProcess turns a spec process into libcontainer's description of it.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	nnp := p.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &nnp,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		LogLevel:        fmt.Sprint(int(logrus.GetLevel())),
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(p.ConsoleSize.Width), uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		t, ok := rlimits[r.Type]
		if !ok {
			return nil, fmt.Errorf("process.rlimits: unknown type %q", r.Type)
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("process.rlimits: %s soft limit %d is above the hard limit %d", r.Type, r.Soft, r.Hard)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	lp.CPUAffinity = aff
	return lp, nil
}

// setIO hands the caller's streams to the process as they are: no copy
// loop stands between a container and its stdio. With a terminal, the
// container makes its own pty and sends the master over the socket.
func setIO(p *libcontainer.Process, s *libruntime.Stdio, console *os.File, extra []*os.File) {
	p.ExtraFiles = extra
	if console != nil {
		p.ConsoleSocket = console
		return
	}
	// Assigning a nil *os.File would make a non-nil interface.
	if s.Stdin != nil {
		p.Stdin = s.Stdin
	}
	if s.Stdout != nil {
		p.Stdout = s.Stdout
	}
	if s.Stderr != nil {
		p.Stderr = s.Stderr
	}
}

// setSubreaper makes this process adopt the container's processes, which
// libcontainer starts through intermediate processes that exit, so that a
// foreground run or exec can wait for them.
func setSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	return nil
}

// process is a container process seen from the host by its PID.
type process struct {
	pid int
}

func (p *process) Pid() int { return p.pid }

func (p *process) Signal(sig unix.Signal) error { return unix.Kill(p.pid, sig) }

// Wait reaps the process, which is our child (directly or adopted as
// subreaper). Without that, it polls until the PID is gone.
func (p *process) Wait() (int, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.ECHILD):
			for unix.Kill(p.pid, 0) == nil {
				time.Sleep(50 * time.Millisecond)
			}
			return 0, fmt.Errorf("process %d is not a child of runh; its exit status is unknown", p.pid)
		case err != nil:
			return 0, err
		}
		return ExitStatus(ws), nil
	}
}

// ExitStatus maps a wait status to the shell's convention.
func ExitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
