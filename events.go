package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"time"

	"github.com/opencontainers/runc/types"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/libruntime"
)

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "print the container's resource usage as JSON events",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between stats events"},
		&cli.BoolFlag{Name: "stats", Usage: "print the stats once and exit"},
	},
	Action: func(ctx context.Context, cmd *cli.Command) error {
		id, err := containerID(cmd, 1)
		if err != nil {
			return err
		}
		interval := cmd.Duration("interval")
		if interval <= 0 {
			return errors.New("--interval must be positive")
		}
		rt, err := newRuntime(cmd.Root())
		if err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		emit := func() error {
			s, err := rt.Stats(id)
			if err != nil {
				return err
			}
			return enc.Encode(types.Event{Type: "stats", ID: id, Data: s})
		}
		if cmd.Bool("stats") {
			return emit()
		}
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if err := emit(); err != nil {
				// The stream ends quietly when the container goes away.
				if st, serr := rt.State(id); serr != nil || st.Status == libruntime.Stopped {
					return nil
				}
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	},
}
