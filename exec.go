package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

var one = 1

var execCommand = &cli.Command{
	Name:         "exec",
	Usage:        "run a new process in a running container",
	ArgsUsage:    "<container-id> <command> [args...]",
	StopOnNthArg: &one,
	Flags: []cli.Flag{
		consoleSocketFlag, pidFileFlag, preserveFdsFlag, detachFlag,
		&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "JSON file with the runtime-spec process to run"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-terminal"},
		&cli.StringFlag{Name: "cwd", Usage: "working directory in the container"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set an environment variable (KEY=value)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "uid[:gid] to run as"},
		&cli.StringSliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional group IDs"},
		&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability"},
		&cli.BoolFlag{Name: "no-new-privs", Usage: "set no_new_privs for the process"},
		&cli.StringFlag{Name: "process-label", Usage: "SELinux label for the process"},
		&cli.StringFlag{Name: "apparmor", Usage: "AppArmor profile for the process"},
		&cli.BoolFlag{Name: "ignore-paused", Hidden: true},
		&cli.StringFlag{Name: "cgroup", Hidden: true},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		rt, id, err := target(cmd, 0)
		if err != nil {
			return err
		}
		p, err := execProcess(cmd, rt, id)
		if err != nil {
			return err
		}
		pidFile, err := absPath(cmd, "pid-file")
		if err != nil {
			return err
		}
		extra, err := extraFiles(cmd)
		if err != nil {
			return err
		}
		o := &libruntime.ExecOpts{Stdio: stdio(), ExtraFiles: extra, Detach: cmd.Bool("detach")}
		if path := cmd.String("console-socket"); path != "" {
			if o.ConsoleSocket, err = libruntime.DialConsoleSocket(path); err != nil {
				return err
			}
		}
		if o.Detach {
			_, err = rt.Exec(id, p, pidFile, o)
			return err
		}
		status, err := rt.ExecForeground(id, &libruntime.ExecSpec{Process: p, PidFile: pidFile}, o)
		if err == nil && status != 0 {
			err = exitCode(status)
		}
		return err
	},
}

// execProcess builds the process to exec: from --process, or from the
// container's own process with the command line's changes, as runc does.
func execProcess(cmd *cli.Command, rt *libruntime.Runtime, id string) (*specs.Process, error) {
	if path := cmd.String("process"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--process: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("--process %s: invalid JSON: %w", path, err)
		}
		return &p, nil
	}
	if cmd.Args().Len() < 2 {
		return nil, errors.New("exec: a command is required (or --process)")
	}
	spec, err := rt.Config(id)
	if err != nil {
		return nil, err
	}
	p := spec.Process
	p.Args = cmd.Args().Slice()[1:]
	p.Terminal = cmd.Bool("tty")
	p.ConsoleSize = nil
	if cwd := cmd.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Env = append(p.Env, cmd.StringSlice("env")...)
	if u := cmd.String("user"); u != "" {
		uid, gid, hasGid := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: want uid[:gid]", u)
		}
		p.User.UID = uint32(n)
		if hasGid {
			n, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: want uid[:gid]", u)
			}
			p.User.GID = uint32(n)
		}
	}
	for _, g := range cmd.StringSlice("additional-gids") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--additional-gids %q: not a number", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	if caps := cmd.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, c := range caps {
			c = strings.ToUpper(c)
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			pc := p.Capabilities
			pc.Bounding = append(pc.Bounding, c)
			pc.Effective = append(pc.Effective, c)
			pc.Permitted = append(pc.Permitted, c)
			// Ambient only where the process may inherit, as runc does.
			if pc.Inheritable != nil {
				pc.Ambient = append(pc.Ambient, c)
			}
		}
	}
	if cmd.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	if l := cmd.String("process-label"); l != "" {
		p.SelinuxLabel = l
	}
	if a := cmd.String("apparmor"); a != "" {
		p.ApparmorProfile = a
	}
	return p, nil
}
