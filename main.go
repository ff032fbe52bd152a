// runh is an OCI container runtime with runc's command line and two
// isolation modes: containers as namespaced processes (libcontainer), or
// each container inside its own small utility VM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	_ "github.com/opencontainers/cgroups/devices" // registers the device-rule manager
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v3"

	"github.com/runh-project/runh/hvshim/agent"
	"github.com/runh-project/runh/libruntime"
	"github.com/runh-project/runh/libruntime/linux"
	"github.com/runh-project/runh/libruntime/vm"
)

// Set by the Makefile.
var (
	version = "0.1.0-dev"
	commit  = ""
)

// vmName is the name (e.g. of a symlink) under which runh defaults to
// hypervisor isolation, for engines that cannot pass annotations.
const vmName = "runh-vm"

func init() {
	// libcontainer re-executes this binary as "runh init" to set up the
	// container from inside its namespaces; nsenter's C constructor has
	// already run by now.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	// The shim and the agent enter other network namespaces on threads of
	// their own (vmnet). /proc/PID/ns/net shows the main thread's, which
	// engines' hooks use to find the container's network: keep the main
	// goroutine on the main thread (locked during init, it stays so), so
	// no other goroutine ever runs there.
	if (len(os.Args) > 1 && os.Args[1] == "shim") || agent.IsAgent() {
		runtime.LockOSThread()
	}
}

func main() {
	// In the utility VM this binary is the guest agent, PID 1.
	if agent.IsAgent() {
		agent.Main()
	}
	// As runc: an ordinary user's state goes under $XDG_RUNTIME_DIR.
	defRoot, xdgRoot := libruntime.DefaultRoot()
	app := &cli.Command{
		Name:    "runh",
		Usage:   "OCI runtime with process or hypervisor isolation",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: defRoot, Usage: "directory for container state (on tmpfs)"},
			&cli.StringFlag{Name: "log", Usage: "log file (default stderr)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "debug", Usage: "debug logging"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "manage cgroups with systemd"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "ignore cgroup permission errors when no limit needs the cgroup: true, false or auto"},
			&cli.StringFlag{Name: "isolation", Usage: "default isolation for bundles that do not choose: process or hypervisor"},
			&cli.BoolFlag{Name: "vm-template", Value: true, Usage: "start VMs from a saved template (--vm-template=false boots each)"},
			&cli.StringFlag{Name: "criu", Hidden: true, Usage: "accepted for runc compatibility; unused"},
		},
		Commands: []*cli.Command{
			createCommand, startCommand, stateCommand, killCommand, deleteCommand,
			runCommand, execCommand, listCommand, psCommand, pauseCommand, resumeCommand,
			updateCommand, eventsCommand, featuresCommand, specCommand,
			checkpointCommand, restoreCommand, checkCommand, templateCommand, shimCommand,
		},
		Before: func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
			useXDGRoot = xdgRoot && !cmd.IsSet("root")
			return setupLogging(ctx, cmd)
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Present() {
				return fmt.Errorf("unknown command %q", cmd.Args().First())
			}
			return cli.ShowRootCommandHelp(cmd)
		},
		UseShortOptionHandling: true,
		HideHelpCommand:        true,
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return err
		},
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	// Usage errors are reported like any other error: one line, no help.
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
	}
	cli.VersionPrinter = printVersion
	if err := app.Run(context.Background(), os.Args); err != nil {
		fatal(err)
	}
}

// fatal reports err on one line, on stderr and in the log, and exits 1.
func fatal(err error) {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	var ec exitCode
	if errors.As(err, &ec) {
		os.Exit(int(ec))
	}
	if logFile != nil {
		logrus.Error(msg)
	}
	fmt.Fprintln(os.Stderr, "runh: "+msg)
	os.Exit(1)
}

// exitCode is returned by verbs that exit with a container's status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

var logFile *os.File

// useXDGRoot says the state root is the default one under
// $XDG_RUNTIME_DIR, which runh makes itself.
var useXDGRoot bool

func setupLogging(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	// Without --log, runh's stderr is often the container's stderr too
	// (create hands its stdio down), so only --debug writes logs there.
	switch {
	case cmd.Bool("debug"):
		logrus.SetLevel(logrus.DebugLevel)
	case cmd.String("log") != "":
		logrus.SetLevel(logrus.WarnLevel)
	default:
		logrus.SetOutput(io.Discard)
	}
	switch f := cmd.String("log-format"); f {
	case "text":
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return ctx, fmt.Errorf("invalid --log-format %q: want text or json", f)
	}
	if path := cmd.String("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return ctx, fmt.Errorf("log file: %w", err)
		}
		logFile = f
		logrus.SetOutput(f)
	}
	return ctx, nil
}

func printVersion(cmd *cli.Command) {
	fmt.Printf("runh version %s\n", version)
	if commit != "" {
		fmt.Printf("commit: %s\n", commit)
	}
	fmt.Printf("spec: %s\ngo: %s\n", specs.Version, runtime.Version())
	if v := seccompVersion(); v != "" {
		fmt.Printf("libseccomp: %s\n", v)
	}
}

// newRuntime builds the runtime for the global flags: the state root and
// the isolation backends.
func newRuntime(cmd *cli.Command) (*libruntime.Runtime, error) {
	root, err := filepath.Abs(cmd.String("root"))
	if err != nil {
		return nil, err
	}
	if root == "/" {
		return nil, errors.New("--root must not be /")
	}
	if useXDGRoot {
		if err := libruntime.PrepareUserRoot(root); err != nil {
			return nil, err
		}
	}
	def := libruntime.ProcessIsolation
	if filepath.Base(os.Args[0]) == vmName {
		def = libruntime.HypervisorIsolation
	}
	if s := cmd.String("isolation"); s != "" {
		if def, err = libruntime.ParseMode(s); err != nil {
			return nil, fmt.Errorf("--isolation: %w", err)
		}
	}
	systemd := cmd.Bool("systemd-cgroup")
	if systemd {
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			return nil, errors.New("--systemd-cgroup: systemd is not running on this host")
		}
	}
	rootless, err := linux.RootlessCgroups(cmd.String("rootless"), systemd)
	if err != nil {
		return nil, err
	}
	return &libruntime.Runtime{
		Store:   libruntime.Store{Root: root},
		Default: def,
		Backends: map[libruntime.Mode]libruntime.Backend{
			libruntime.ProcessIsolation:    &linux.Backend{SystemdCgroup: systemd, Rootless: rootless},
			libruntime.HypervisorIsolation: &vm.Backend{NoTemplate: !cmd.Bool("vm-template"), SystemdCgroup: systemd, Rootless: rootless},
		},
	}, nil
}
