package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/urfave/cli/v3"
)

var specCommand = &cli.Command{
	Name:  "spec",
	Usage: "write a default config.json for a bundle",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "bundle directory to write config.json in"},
		&cli.BoolFlag{Name: "rootless", Usage: "a config for a container run by an unprivileged user"},
	},
	Action: func(_ context.Context, cmd *cli.Command) error {
		spec := specconv.Example()
		spec.Hostname = "runh" // libcontainer's example names runc
		if cmd.Bool("rootless") {
			specconv.ToRootless(spec)
		}
		path := filepath.Join(cmd.String("bundle"), "config.json")
		data, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err != nil {
			if os.IsExist(err) {
				return fmt.Errorf("%s exists: remove it first", path)
			}
			return err
		}
		if _, err := f.Write(append(data, '\n')); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	},
}
