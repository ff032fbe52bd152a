package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

// Flags shared by several verbs.
var (
	bundleFlag        = &cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the OCI bundle"}
	consoleSocketFlag = &cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master (with process.terminal)"}
	pidFileFlag       = &cli.StringFlag{Name: "pid-file", Usage: "file to write the process's PID to"}
	preserveFdsFlag   = &cli.IntFlag{Name: "preserve-fds", Usage: "pass N file descriptors beyond stdio (3 to 3+N-1) to the process"}
	noPivotFlag       = &cli.BoolFlag{Name: "no-pivot", Usage: "use chroot instead of pivot_root (for ramdisk roots)"}
	noNewKeyringFlag  = &cli.BoolFlag{Name: "no-new-keyring", Usage: "do not create a new session keyring"}
	detachFlag        = &cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"}
	formatFlag        = &cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "output format: table or json"}
)

// containerID returns the single container-ID argument of a verb, with
// exactly want arguments in all.
func containerID(cmd *cli.Command, want int) (string, error) {
	n := cmd.Args().Len()
	if n == 0 {
		return "", errors.New(cmd.Name + ": container id is required")
	}
	if want > 0 && n != want {
		return "", fmt.Errorf("%s: expected %d argument(s), got %d", cmd.Name, want, n)
	}
	id := cmd.Args().First()
	return id, libruntime.ValidateID(id)
}

// target returns the container ID a verb names (want as for containerID)
// and the runtime of the state root it lives in.
func target(cmd *cli.Command, want int) (*libruntime.Runtime, string, error) {
	id, err := containerID(cmd, want)
	if err != nil {
		return nil, "", err
	}
	rt, err := newRuntime(cmd.Root())
	return rt, id, err
}

// absPath resolves a path flag now, before anything changes directory.
func absPath(cmd *cli.Command, name string) (string, error) {
	p := cmd.String(name)
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

// extraFiles returns the descriptors kept by --preserve-fds.
func extraFiles(cmd *cli.Command) ([]*os.File, error) {
	n := cmd.Int("preserve-fds")
	if n < 0 || n > 1024 {
		return nil, fmt.Errorf("--preserve-fds %d out of range", n)
	}
	var files []*os.File
	for fd := 3; fd < 3+n; fd++ {
		files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
	}
	return files, nil
}

func stdio() libruntime.Stdio {
	return libruntime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

// createOpts gathers the options create and run share.
func createOpts(cmd *cli.Command) (*libruntime.CreateOpts, error) {
	extra, err := extraFiles(cmd)
	if err != nil {
		return nil, err
	}
	o := &libruntime.CreateOpts{
		Stdio:        stdio(),
		ExtraFiles:   extra,
		NoPivot:      cmd.Bool("no-pivot"),
		NoNewKeyring: cmd.Bool("no-new-keyring"),
		Debug:        cmd.Root().Bool("debug"),
		LogFile:      cmd.Root().String("log"),
	}
	if path := cmd.String("console-socket"); path != "" {
		if o.ConsoleSocket, err = libruntime.DialConsoleSocket(path); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// idVerb builds a verb that takes exactly one container ID and calls fn
// on it, which is all that start, pause and resume do.
func idVerb(name, usage string, fn func(*libruntime.Runtime, string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "<container-id>",
		Action: func(_ context.Context, cmd *cli.Command) error {
			rt, id, err := target(cmd, 1)
			if err != nil {
				return err
			}
			return fn(rt, id)
		},
	}
}
