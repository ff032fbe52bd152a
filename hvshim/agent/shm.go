package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
)

var (
	tmpfsMu   sync.Mutex
	tmpfsMade = map[string]bool{}
)

// makeTmpfs mounts, under ShmDir, each tmpfs in list not made yet: the
// guest's stand-in for an engine's /dev/shm (hvshim/shim/shm.go). A pod's
// later containers find the one its sandbox made. They last as long as
// the VM.
func makeTmpfs(list []proto.Tmpfs) error {
	tmpfsMu.Lock()
	defer tmpfsMu.Unlock()
	for _, t := range list {
		if t.Name == "" || t.Name == "." || t.Name == ".." || strings.ContainsAny(t.Name, "/\x00,") {
			return fmt.Errorf("tmpfs: bad name %q", t.Name)
		}
		if tmpfsMade[t.Name] {
			continue
		}
		dir := filepath.Join(ShmDir, t.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		data := fmt.Sprintf("mode=%o,uid=%d,gid=%d", t.Mode&0o7777, t.UID, t.GID)
		if t.Size > 0 {
			data += fmt.Sprintf(",size=%d", t.Size)
		}
		if err := unix.Mount("shm", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
			return fmt.Errorf("tmpfs for /dev/shm: %w", err)
		}
		tmpfsMade[t.Name] = true
	}
	return nil
}
