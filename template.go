package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/hvshim/shim"
	"github.com/runh-project/runh/hvshim/template"
	"github.com/runh-project/runh/libruntime"
)

var templateCommand = &cli.Command{
	Name:  "template",
	Usage: "make the VM template that hypervisor containers are restored from, ahead of the first create",
	Flags: []cli.Flag{
		&cli.IntFlag{Name: "memory", Usage: "guest memory in MiB, rounded up to a template size (default: a container's without limits)"},
		&cli.IntFlag{Name: "cpus", Usage: "vCPUs (default: a container's without limits)"},
		&cli.IntFlag{Name: "nics", Value: 1, Usage: "network interfaces (a container in a new network namespace has one)"},
	},
	Action: func(ctx context.Context, cmd *cli.Command) error {
		if !cmd.Bool("vm-template") {
			return errors.New("templates are disabled (--vm-template=false)")
		}
		mem, cpus, nics := cmd.Int("memory"), cmd.Int("cpus"), cmd.Int("nics")
		if mem < 0 || cpus < 0 || nics < 0 || nics > 8 {
			return errors.New("--memory and --cpus must not be negative, --nics between 0 and 8")
		}
		// Interrupted, the build stops its VM and removes what it wrote.
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		t0 := time.Now()
		cfg := shim.Config{Debug: cmd.Bool("debug"), VM: libruntime.VMConfig{MemoryMiB: int(mem), CPUs: int(cpus)}}
		how, key, err := shim.MakeTemplate(ctx, cfg, int(nics))
		if err != nil {
			return fmt.Errorf("template: %w", err)
		}
		if how == template.Built {
			fmt.Printf("template %s: made in %.1f s\n", key, time.Since(t0).Seconds())
		} else {
			fmt.Printf("template %s: present\n", key)
		}
		return nil
	},
}
