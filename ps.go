package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/urfave/cli/v3"
)

var psCommand = &cli.Command{
	Name:         "ps",
	Usage:        "list the processes of a container",
	ArgsUsage:    "<container-id> [ps options]",
	StopOnNthArg: &one,
	Flags:        []cli.Flag{formatFlag},
	Action: func(_ context.Context, cmd *cli.Command) error {
		rt, id, err := target(cmd, 0)
		if err != nil {
			return err
		}
		if cmd.String("format") == "table" {
			table, ok, err := rt.PsTable(id, cmd.Args().Slice()[1:])
			if err != nil {
				return err
			}
			if ok {
				_, err = os.Stdout.Write(table)
				return err
			}
		}
		pids, err := rt.Processes(id)
		if err != nil {
			return err
		}
		switch cmd.String("format") {
		case "json":
			if pids == nil {
				pids = []int{}
			}
			return printJSON(pids)
		case "table":
			return psTable(pids, cmd.Args().Slice()[1:])
		}
		return fmt.Errorf("invalid --format %q: want table or json", cmd.String("format"))
	},
}

// psTable runs the host's ps and keeps its header and the container's
// lines, as runc does.
func psTable(pids []int, args []string) error {
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	out, err := exec.Command("ps", args...).Output()
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	col := -1
	for i, f := range strings.Fields(lines[0]) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("ps: no PID column in the output of ps %s", strings.Join(args, " "))
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	var b bytes.Buffer
	b.WriteString(lines[0] + "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= col {
			continue
		}
		if p, err := strconv.Atoi(f[col]); err == nil && want[p] {
			b.WriteString(l + "\n")
		}
	}
	_, err = os.Stdout.Write(b.Bytes())
	return err
}
