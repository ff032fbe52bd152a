package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

var listCommand = &cli.Command{
	Name:  "list",
	Usage: "list the containers under --root",
	Flags: []cli.Flag{
		formatFlag,
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only container IDs"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		if cmd.Args().Len() != 0 {
			return fmt.Errorf("list: unexpected argument %q", cmd.Args().First())
		}
		rt, err := newRuntime(cmd.Root())
		if err != nil {
			return err
		}
		states, err := rt.List()
		if err != nil {
			return err
		}
		switch {
		case cmd.Bool("quiet"):
			for _, s := range states {
				fmt.Println(s.ID)
			}
		case cmd.String("format") == "json":
			if states == nil {
				states = []*libruntime.State{}
			}
			return printJSON(states)
		case cmd.String("format") == "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range states {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle,
					s.Created.Format(time.RFC3339Nano), s.Owner)
			}
			return w.Flush()
		default:
			return fmt.Errorf("invalid --format %q: want table or json", cmd.String("format"))
		}
		return nil
	},
}
