package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v3"
)

// Checkpoint and restore are not supported; engines probe for them with
// "checkpoint --help" and treat a non-zero exit as "unsupported".
var errNoCheckpoint = errors.New("checkpoint/restore is not supported by runh")

var checkpointCommand = &cli.Command{
	Name:            "checkpoint",
	Usage:           "not supported",
	SkipFlagParsing: true,
	Action:          func(context.Context, *cli.Command) error { return errNoCheckpoint },
}

var restoreCommand = &cli.Command{
	Name:            "restore",
	Usage:           "not supported",
	SkipFlagParsing: true,
	Action:          func(context.Context, *cli.Command) error { return errNoCheckpoint },
}
