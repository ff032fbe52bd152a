package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/signal"
	"sync"
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
		var mu sync.Mutex
		enc := json.NewEncoder(os.Stdout)
		encode := func(e types.Event) error {
			mu.Lock()
			defer mu.Unlock()
			return enc.Encode(e)
		}
		emit := func() error {
			s, err := rt.Stats(id)
			if err != nil {
				return err
			}
			return encode(types.Event{Type: "stats", ID: id, Data: s})
		}
		if cmd.Bool("stats") {
			return emit()
		}
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		oomDone := make(chan struct{})
		go func() {
			defer close(oomDone)
			watchOOM(ctx, rt, id, encode)
		}()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if err := emit(); err != nil {
				// The stream ends quietly when the container goes away,
				// after the OOM kill that may have ended it.
				if st, serr := rt.State(id); serr != nil || st.Status == libruntime.Stopped {
					select {
					case <-oomDone:
					case <-time.After(5 * time.Second):
					}
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

// watchOOM emits an "oom" event, as runc does, for each process of the
// container the kernel kills for want of memory from now on, until the
// container stops or ctx ends.
func watchOOM(ctx context.Context, rt *libruntime.Runtime, id string, encode func(types.Event) error) {
	done := make(chan struct{})
	close(done)
	seen, err := rt.WaitOOM(id, math.MaxUint64, done) // the count so far
	for err == nil && ctx.Err() == nil {
		var n uint64
		if n, err = rt.WaitOOM(id, seen, ctx.Done()); err != nil {
			return
		}
		for ; seen < n; seen++ {
			encode(types.Event{Type: "oom", ID: id})
		}
		if st, serr := rt.State(id); serr != nil || st.Status == libruntime.Stopped {
			return
		}
	}
}
