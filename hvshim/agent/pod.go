package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/libruntime"
)

// A pod's VM holds several containers; the host removes each one from it
// when the engine deletes it, while the others run on.
func init() {
	handlers[proto.OpDelete] = deleteContainer
}

// deleteContainer kills what is left of the container, waits for its init
// to be reaped, writes its files back to the host (the host unmounts its
// share next) and removes it.
func deleteContainer(_ *server, b json.RawMessage) (any, error) {
	var r proto.IDRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if err := libruntime.ValidateID(r.ID); err != nil {
		return nil, err
	}
	if p, err := lookup(proto.InitKey(r.ID)); err == nil {
		select {
		case <-p.done:
		default:
			rt.Kill(r.ID, unix.SIGKILL, true)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
	procMu.Lock()
	for k, p := range procs {
		if p.id == r.ID {
			delete(procs, k)
		}
	}
	procMu.Unlock()
	unix.Sync()
	err := rt.Delete(r.ID, true)
	os.RemoveAll(filepath.Join(bundlesDir, r.ID))
	// The host unmounts the container's files next: drop the guest's
	// cached dentries and inodes of them, which a file system mounted
	// there again (the same rootfs, another container) would otherwise
	// find under their old names.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0)
	return nil, err
}
