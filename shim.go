package main

import (
	"context"
	"errors"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/hvshim/shim"
)

// shimCommand is the hidden `runh shim DIR`, the host process of one
// VM-isolated container (or pod), `runh shim exec DIR [ID]`, the stand-in
// for one process exec'd in it, and `runh shim member DIR`, the stand-in
// for a pod's container that runs in its sandbox's VM. Both are started by the hypervisor backend
// (libruntime/vm), never by hand.
var shimCommand = &cli.Command{
	Name:            "shim",
	Hidden:          true,
	SkipFlagParsing: true,
	Action: func(_ context.Context, cmd *cli.Command) error {
		args := cmd.Args().Slice()
		switch {
		case len(args) == 1 && args[0] == shim.OOMHelperArg:
			os.Exit(shim.OOMHelperMain())
		case len(args) == 1:
			os.Exit(shim.Main(args[0]))
		case len(args) == 2 && args[0] == "exec":
			os.Exit(shim.ExecMain(args[1], ""))
		case len(args) == 3 && args[0] == "exec":
			os.Exit(shim.ExecMain(args[1], args[2]))
		case len(args) == 2 && args[0] == shim.MemberArg:
			os.Exit(shim.MemberMain(args[1]))
		}
		return errors.New("runh shim is started by runh itself")
	},
}
