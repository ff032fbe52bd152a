// Package jail confines the VMM. QEMU emulates devices for an untrusted
// guest, so a bug in one of them must land in a process that reaches
// nothing but its own VM: Command wraps QEMU's command line in a
// re-execution of this binary (the helper) that, as PID 1 of new mount,
// PID, IPC and UTS namespaces, pivots into a jail holding only what QEMU
// opens, sets resource limits, keeps only the capabilities in Caps, sets
// no_new_privs and executes QEMU, whose -sandbox then adds its seccomp
// filter. Go cannot run code between fork and exec, hence the helper.
// docs/security.md describes the threat model.
package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Config is what to run in the jail. Paths are absolute host paths, and
// the program sees them at the same paths: its command line, its working
// directory and /proc/PID/cwd as the host reads it stay what they were.
type Config struct {
	Binary   string   `json:"binary"`             // the program
	Args     []string `json:"args"`               // its arguments after argv[0]
	Dir      string   `json:"dir"`                // working directory, read-write
	Files    []string `json:"files,omitempty"`    // read-only files it opens; ELF objects bring their libraries
	Writable []string `json:"writable,omitempty"` // files it writes (they must exist)
	Shares   []Share  `json:"shares,omitempty"`   // directories exported to the guest
	Devices  []string `json:"devices,omitempty"`  // device nodes beyond BaseDevices, e.g. /dev/kvm
}

// Share is a directory the program serves to the guest, with every mount
// beneath it.
type Share struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// BaseDevices are the device nodes every jail has.
var BaseDevices = []string{"/dev/null", "/dev/zero", "/dev/urandom"}

// Namespaces are the namespaces the helper, then the program, gets of its
// own (the network namespace is the shim's own already).
var Namespaces = []string{"mnt", "pid", "ipc", "uts"}

const cloneFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS

// helperArg is argv[1] of the helper.
const helperArg = "vmm-jail"

// Command returns the command that runs c confined, with files as its
// descriptors 3, 4, ... (nil leaves one closed); the caller adds stdio and
// starts it. Nothing else open in the caller reaches the program. The
// command's process becomes the program once jailed, so its PID is the
// program's, and SIGKILL or the parent's death (the command has Pdeathsig)
// ends it.
func Command(c *Config, files []*os.File) (*exec.Cmd, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(helperConfig{Config: c, Fds: 3 + len(files)})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe", helperArg, string(b))
	cmd.Dir = c.Dir
	cmd.Env = []string{} // the program's environment too
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// helperConfig is the helper's argument.
type helperConfig struct {
	*Config
	Fds int `json:"fds"` // descriptors below this one are the program's
}

func (c *Config) check() error {
	paths := append([]string{c.Binary, c.Dir}, c.Files...)
	paths = append(paths, c.Writable...)
	paths = append(paths, c.Devices...)
	for _, s := range c.Shares {
		paths = append(paths, s.Path)
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("jail: %q is not an absolute path", p)
		}
	}
	return nil
}

// The helper runs before main: a binary that imports this package (runh,
// its tests, the benchmarks) can jail. PID 1 is the proof that it was
// started by Command, in namespaces of its own, and not by hand on the
// host, where its mounts would land in the host's namespace.
func init() {
	if len(os.Args) != 3 || os.Args[1] != helperArg {
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "jail: the helper runs only as started by jail.Command")
		os.Exit(127)
	}
	// Capabilities, no_new_privs and the parent-death signal are per
	// thread: everything happens on the thread that executes the program.
	runtime.LockOSThread()
	c := helperConfig{Config: &Config{}}
	err := json.Unmarshal([]byte(os.Args[2]), &c)
	if err == nil {
		err = run(c.Config, c.Fds) // returns only on error
	}
	fmt.Fprintf(os.Stderr, "jail: %v\n", err)
	os.Exit(127)
}

var errELOOP = errors.New("too many levels of symbolic links")

// Supported says why this kernel cannot build the jail, or nil: it needs
// the mount API of Linux 5.12 (open_tree, move_mount, mount_setattr),
// openat2 and procfs's subset=pid.
func Supported() error {
	if err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{}); err == unix.ENOSYS {
		return errors.New("the kernel has no mount_setattr (Linux 5.12)")
	}
	if _, err := unix.Openat2(-1, "", &unix.OpenHow{}); err == unix.ENOSYS {
		return errors.New("the kernel has no openat2 (Linux 5.6)")
	}
	return nil
}
