package vm

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/shim"
	"github.com/runh-project/runh/libruntime"
)

// createMember puts a pod's container into its sandbox's VM: a `runh shim
// member` process takes the container's files and stdio to the sandbox's
// shim and stands for the container on the host.
func (b *Backend) createMember(h *libruntime.Handle, bundle *libruntime.Bundle, iso libruntime.Isolation, o *libruntime.CreateOpts) (libruntime.Process, error) {
	var sb shim.Config
	if err := readJSON(filepath.Join(iso.SandboxDir, shim.ConfigFile), &sb); err != nil || !sb.Pod {
		return nil, errors.New("pod sandbox " + iso.Pod.SandboxID + " has no VM to join (it was not created as a pod sandbox with hypervisor isolation)")
	}
	if shimAlive(&libruntime.Handle{Dir: iso.SandboxDir}) == 0 {
		return nil, errors.New("pod sandbox " + iso.Pod.SandboxID + " is stopped: its VM is gone")
	}
	cfg := shim.Config{ID: h.ID, Bundle: bundle.Dir, HasConsole: o.ConsoleSocket != nil, Debug: o.Debug, Sandbox: iso.SandboxDir, SystemdCgroup: b.SystemdCgroup, Rootless: b.Rootless}
	if err := h.WriteJSON(shim.ConfigFile, cfg); err != nil {
		return nil, err
	}
	if err := saveHooks(h, bundle.Spec.Hooks); err != nil {
		return nil, err
	}
	cmd, extra := b.shimCommand(&o.Stdio, o.ConsoleSocket, "shim", shim.MemberArg, h.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // it outlives create
	p, _, err := startHelper(cmd, extra, nil)
	if err != nil {
		return nil, err
	}
	if err := recordHelper(h, p); err != nil {
		shim.Call(iso.SandboxDir, shim.OpRemove, proto.IDRequest{ID: h.ID}, nil, callTimeout)
		return nil, err
	}
	return p, nil
}

// ctlDir is the state directory of the shim that runs the container: its
// own, or its pod sandbox's.
func ctlDir(h *libruntime.Handle) string {
	if sb := sandboxDir(h); sb != "" {
		return sb
	}
	return h.Dir
}

// sandboxDir is, for a pod's container in its sandbox's VM, the
// sandbox's state directory; "" otherwise.
func sandboxDir(h *libruntime.Handle) string {
	var cfg shim.Config
	if readJSON(filepath.Join(h.Dir, shim.ConfigFile), &cfg) != nil {
		return ""
	}
	return cfg.Sandbox
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// destroyMember removes a pod's container from its sandbox's VM (when
// the sandbox still runs), ends its host process and removes its files.
func destroyMember(h *libruntime.Handle, sandbox string) error {
	if shimAlive(&libruntime.Handle{Dir: sandbox}) != 0 {
		err := shim.Call(sandbox, shim.OpRemove, proto.IDRequest{ID: h.ID}, nil, callTimeout)
		if err != nil && shim.Answered(err) {
			return err
		}
	}
	if pid := shimAlive(h); pid != 0 {
		awaitHelper(h, pid, 5*time.Second) // it exits once removed
	}
	if err := shim.RemoveHostCgroup(h.Dir); err != nil {
		return err
	}
	for _, n := range []string{pidFile, shim.ConfigFile, poststartFile} {
		os.Remove(filepath.Join(h.Dir, n))
	}
	runPoststop(h)
	return nil
}
