package main

import (
	"context"

	"github.com/urfave/cli/v3"
)

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "freeze all processes of a container",
	ArgsUsage: "<container-id>",
	Action: func(_ context.Context, cmd *cli.Command) error {
		id, err := containerID(cmd, 1)
		if err != nil {
			return err
		}
		rt, err := newRuntime(cmd.Root())
		if err != nil {
			return err
		}
		return rt.Pause(id)
	},
}
