package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete a container and everything it holds",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill the container first if it is running"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		rt, id, err := target(cmd, 1)
		if err != nil {
			return err
		}
		err = rt.Delete(id, cmd.Bool("force"))
		// Like runc, a forced delete of a container that is already gone
		// succeeds: engines retry deletes after crashes.
		if cmd.Bool("force") && errors.Is(err, libruntime.ErrNotExist) {
			return nil
		}
		return err
	},
}
