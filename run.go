package main

import (
	"context"

	"github.com/urfave/cli/v3"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and start a container; in the foreground, wait for it and delete it",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		bundleFlag, consoleSocketFlag, pidFileFlag, noPivotFlag, noNewKeyringFlag, preserveFdsFlag, detachFlag,
		&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
		&cli.BoolFlag{Name: "no-subreaper", Usage: "accepted for runc compatibility; runh always reaps its container"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		rt, id, err := target(cmd, 1)
		if err != nil {
			return err
		}
		pidFile, err := absPath(cmd, "pid-file")
		if err != nil {
			return err
		}
		o, err := createOpts(cmd)
		if err != nil {
			return err
		}
		status, err := rt.Run(id, cmd.String("bundle"), pidFile, o, cmd.Bool("detach"), cmd.Bool("keep"))
		if err != nil {
			return err
		}
		if status != 0 {
			return exitCode(status)
		}
		return nil
	},
}
