package libruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// HostHooks splits off the hooks that the runtime spec runs in the
// runtime's namespaces (prestart, createRuntime, poststart, poststop) from
// those run in the container's (createContainer, startContainer). A
// backend that builds the container elsewhere (in a VM) runs the first set
// itself, on the host, and hands the rest on.
func HostHooks(h *specs.Hooks) (host, container *specs.Hooks) {
	if h == nil {
		return nil, nil
	}
	host = &specs.Hooks{Prestart: h.Prestart, CreateRuntime: h.CreateRuntime, Poststart: h.Poststart, Poststop: h.Poststop}
	container = &specs.Hooks{CreateContainer: h.CreateContainer, StartContainer: h.StartContainer}
	return host, container
}

// RunHooks runs hooks in order with the container's state on stdin, as
// the runtime spec describes; the first failure stops the run.
func RunHooks(name string, hooks []specs.Hook, st *specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		timeout := time.Minute
		if h.Timeout != nil && *h.Timeout > 0 {
			timeout = time.Duration(*h.Timeout) * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		cmd := exec.CommandContext(ctx, h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		cmd.Stdin = bytes.NewReader(state)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			return fmt.Errorf("%s hook #%d (%s): %v: %s", name, i, h.Path, err, bytes.TrimSpace(out.Bytes()))
		}
	}
	return nil
}
