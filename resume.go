package main

import (
	"context"

	"github.com/urfave/cli/v3"
)

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
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
		return rt.Resume(id)
	},
}
