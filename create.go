package main

import (
	"context"

	"github.com/urfave/cli/v3"
)

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container, which then waits for start",
	ArgsUsage: "<container-id>",
	Flags:     []cli.Flag{bundleFlag, consoleSocketFlag, pidFileFlag, noPivotFlag, noNewKeyringFlag, preserveFdsFlag},
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
		_, err = rt.Create(id, cmd.String("bundle"), pidFile, o)
		return err
	},
}
