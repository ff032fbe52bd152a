package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"
)

var updateCommand = &cli.Command{
	Name:      "update",
	Usage:     "change the resource limits of a container",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "JSON file with runtime-spec linux.resources ('-' for stdin)"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit (bytes, or with a unit: 64m)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit"},
		&cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit (-1: unlimited)"},
		&cli.StringFlag{Name: "cpu-shares", Aliases: []string{"cpu-share"}, Usage: "CPU shares (relative weight)"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS quota in microseconds"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period in microseconds"},
		&cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs to run on (0-3, 0,1)"},
		&cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes to use"},
		&cli.StringFlag{Name: "pids-limit", Usage: "maximum number of processes (0 or -1: unlimited)"},
		&cli.StringFlag{Name: "blkio-weight", Usage: "block IO weight (10 to 1000)"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		id, err := containerID(cmd, 1)
		if err != nil {
			return err
		}
		r, err := updateResources(cmd)
		if err != nil {
			return err
		}
		rt, err := newRuntime(cmd.Root())
		if err != nil {
			return err
		}
		return rt.Update(id, r)
	},
}

// updateResources reads --resources, then lets the single flags override.
func updateResources(cmd *cli.Command) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{}
	if path := cmd.String("resources"); path != "" {
		var in io.Reader = os.Stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("--resources: %w", err)
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(io.LimitReader(in, 1<<20)).Decode(r); err != nil {
			return nil, fmt.Errorf("--resources: invalid JSON: %w", err)
		}
	}
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	for _, f := range []struct {
		name string
		dst  **int64
	}{{"memory", &r.Memory.Limit}, {"memory-reservation", &r.Memory.Reservation}, {"memory-swap", &r.Memory.Swap}} {
		if v := cmd.String(f.name); v != "" {
			n, err := parseBytes(v)
			if err != nil {
				return nil, fmt.Errorf("--%s: %w", f.name, err)
			}
			*f.dst = &n
		}
	}
	for _, f := range []struct {
		name string
		dst  **uint64
	}{{"cpu-shares", &r.CPU.Shares}, {"cpu-period", &r.CPU.Period}} {
		if v := cmd.String(f.name); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("--%s: invalid number %q", f.name, v)
			}
			*f.dst = &n
		}
	}
	if v := cmd.String("cpu-quota"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--cpu-quota: invalid number %q", v)
		}
		r.CPU.Quota = &n
	}
	if v := cmd.String("cpuset-cpus"); v != "" {
		r.CPU.Cpus = v
	}
	if v := cmd.String("cpuset-mems"); v != "" {
		r.CPU.Mems = v
	}
	if v := cmd.String("pids-limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--pids-limit: invalid number %q", v)
		}
		r.Pids = &specs.LinuxPids{Limit: &n}
	}
	if v := cmd.String("blkio-weight"); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--blkio-weight: invalid number %q", v)
		}
		w := uint16(n)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	}
	return r, nil
}

// parseBytes reads a size such as 1048576, 64m or 1g; -1 means unlimited.
func parseBytes(v string) (int64, error) {
	if v == "-1" {
		return -1, nil
	}
	n, err := units.RAMInBytes(v)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n, nil
}
