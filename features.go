package main

import (
	"context"
	"strings"

	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/libruntime"
)

var featuresCommand = &cli.Command{
	Name:  "features",
	Usage: "print what this runtime supports, as runtime-spec features JSON",
	Action: func(context.Context, *cli.Command) error {
		yes, no := true, false
		seccompOn := seccompVersion() != ""
		f := features.Features{
			OCIVersionMin: "1.0.0",
			OCIVersionMax: specs.Version,
			Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
			MountOptions:  specconv.KnownMountOptions(),
			Linux: &features.Linux{
				Namespaces:   specconv.KnownNamespaces(),
				Capabilities: capabilities.KnownCapabilities(),
				Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &yes},
				Seccomp: &features.Seccomp{
					Enabled:        &seccompOn,
					Actions:        seccomp.KnownActions(),
					Operators:      seccomp.KnownOperators(),
					Archs:          seccomp.KnownArchs(),
					KnownFlags:     seccomp.KnownFlags(),
					SupportedFlags: seccomp.SupportedFlags(),
				},
				Apparmor:        &features.Apparmor{Enabled: &yes},
				Selinux:         &features.Selinux{Enabled: &yes},
				IntelRdt:        &features.IntelRdt{Enabled: &yes},
				MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}},
				NetDevices:      &features.NetDevices{Enabled: &no},
			},
			Annotations: map[string]string{
				"io.runh.version":                            version,
				"io.runh.isolation.modes":                    strings.Join([]string{string(libruntime.ProcessIsolation), string(libruntime.HypervisorIsolation)}, ","),
				"io.runh.annotations":                        strings.Join(libruntime.Annotations, ","),
				"org.opencontainers.runc.checkpoint.enabled": "false",
			},
		}
		return printJSON(f)
	},
}
