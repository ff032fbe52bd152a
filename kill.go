package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "send a signal (default SIGTERM) to a container's init",
	ArgsUsage: "<container-id> [signal]",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the signal to every process of the container"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		id, err := containerID(cmd, 0)
		if err != nil {
			return err
		}
		sigName := "SIGTERM"
		switch cmd.Args().Len() {
		case 1:
		case 2:
			sigName = cmd.Args().Get(1)
		default:
			return errors.New("kill: expected <container-id> [signal]")
		}
		sig, err := libruntime.ParseSignal(sigName)
		if err != nil {
			return err
		}
		rt, err := newRuntime(cmd.Root())
		if err != nil {
			return err
		}
		return rt.Kill(id, sig, cmd.Bool("all"))
	},
}
