package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/libruntime"
)

// deferredFile holds the rlimits that start applies instead of create.
const deferredFile = "deferred-rlimits.json"

// deferAddressSpaceLimit takes RLIMIT_AS out of the init's limits. The
// init is runh itself until it execs the container's program, and a Go
// program reserves more address space than a container's limit may allow
// (1 GiB in the OCI conformance suite), so libcontainer's own allocations
// after the limit is set (the seccomp filter) would fail. start sets the
// limit on the waiting init just before it execs, when the program's fresh
// address space is what the limit governs.
func deferAddressSpaceLimit(h *libruntime.Handle, p *libcontainer.Process) error {
	var keep, later []configs.Rlimit
	for _, r := range p.Rlimits {
		if r.Type == unix.RLIMIT_AS {
			later = append(later, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(later) == 0 {
		return nil
	}
	p.Rlimits = keep
	return h.WriteJSON(deferredFile, later)
}

// applyDeferredLimits sets the deferred limits on the container's init.
func applyDeferredLimits(h *libruntime.Handle, pid int) error {
	data, err := os.ReadFile(filepath.Join(h.Dir, deferredFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var limits []configs.Rlimit
	if err := json.Unmarshal(data, &limits); err != nil {
		return fmt.Errorf("%s: %w", deferredFile, err)
	}
	for _, r := range limits {
		l := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(pid, r.Type, &l, nil); err != nil {
			return fmt.Errorf("set rlimit %d of the container: %w", r.Type, err)
		}
	}
	return nil
}
