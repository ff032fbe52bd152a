// Package template starts utility VMs from a saved one instead of booting
// them: the VM-templating of Kata Containers and the snapshots of
// Firecracker, done with QEMU's own migration.
//
// A template is a VM booted to the point where its agent waits for the
// host, before any share is mounted (QEMU refuses to migrate a mounted
// 9p share), then stopped and saved: its RAM in a file it mapped shared,
// its device state (some tens of KB) in another, written by QEMU's
// migration with the x-ignore-shared capability, which leaves the RAM in
// its file. A VM restored from it maps that file privately (copy on
// write: pages it only reads stay shared between every VM of the
// template, in the host's page cache) and loads the device state
// (-incoming). Host-side paths (sockets, share directories, tap devices)
// may differ between the template and the restored VM; the device set may
// not, so the key of a template is everything QEMU is given but those.
//
// Templates live in <cache>/templates/<key>/ (mem, state, meta.json),
// written atomically (a temporary directory renamed into place). One
// create makes a missing template while holding <key>.lock; the others
// boot cold meanwhile. A template that fails to restore is removed, and
// the VM boots cold. The agent reseeds the guest's random generator and
// sets its clock before anything else (the agent's OpBoot).
package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/hvshim/transport"
	"github.com/runh-project/runh/libruntime"
)

// Sizes are the guest memory sizes (MiB) templates are made for; a VM's
// size is rounded up to one of them.
var Sizes = []int{256, 512, 1024, 2048, 4096}

// keep is how many templates the cache holds; older ones are pruned.
const keep = 6

// Marker is what the agent prints on the console when a template VM
// waits for the host, as hvshim/agent does.
const Marker = "runh-agent: waiting for the host"

// Arg on the guest's command line asks the agent for the Marker.
const Arg = "runh.template=1"

// Outcome says how a VM started, for its boot record.
type Outcome string

const (
	Restored Outcome = "restored" // from an existing template
	Built    Outcome = "built"    // the template was made first, then restored
	Cold     Outcome = "cold"     // booted
)

// Dir is where templates are kept.
func Dir() string { return filepath.Join(initrd.CacheDir(), "templates") }

// Size rounds mib up to a template size; false when it is beyond them.
func Size(mib int) (int, bool) {
	for _, s := range Sizes {
		if mib <= s {
			return s, true
		}
	}
	return mib, false
}

// Key identifies qc's template: QEMU's arguments with the host-side paths
// and descriptors left out, and the identity of the QEMU binary, kernel
// and initrd files.
func Key(qc *qemu.Config) (string, error) {
	if qc.Transport != nil && qc.Transport.Kind != transport.Serial {
		return "", errors.New("templates need the virtio-serial transport (a vsock guest's CID is in its saved state)")
	}
	n := *qc
	n.Dir, n.MemoryFile, n.MemoryShared, n.Incoming = "", "template", true, nil
	n.Shares = nil
	for i, s := range qc.Shares {
		n.Shares = append(n.Shares, qemu.Share{Tag: s.Tag, Path: fmt.Sprintf("share%d", i), ReadOnly: s.ReadOnly})
	}
	n.NICs = nil
	for _, nic := range qc.NICs {
		n.NICs = append(n.NICs, qemu.NIC{MAC: nic.MAC, MTU: nic.MTU})
	}
	args, _ := n.Args()
	h := sha256.New()
	bin := qc.Binary
	if bin == "" {
		bin, _ = qemu.FindBinary()
	}
	// The initrd's name is its content hash (it is touched when used);
	// the kernel and QEMU are told by size and time.
	for _, f := range []string{bin, qc.Kernel} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	fmt.Fprintln(h, strings.Join(args, "\x00"))
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

type meta struct {
	Key       string  `json:"key"`
	MemoryMiB int     `json:"memoryMiB"`
	State     string  `json:"stateSha256"`
	Created   string  `json:"created"`
	BuildSecs float64 `json:"buildSeconds"`
	// Memory identifies the memory file as made: its inode and change
	// time. QEMU 7.2 can only open it read-write, so a VMM a guest took
	// over could write it; any write (or utime) moves its ctime, which no
	// one can set back, and the template is then refused.
	Memory fileID `json:"memory"`
	// ReadOnly: the QEMU that made it opens the memory file read-only for
	// a private mapping (8.2 and later), as restored VMs then do.
	ReadOnly bool `json:"readOnly,omitempty"`
}

type fileID struct {
	Ino   uint64 `json:"ino"`
	Ctime int64  `json:"ctimeNs"`
}

func memoryID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{Ino: st.Ino, Ctime: st.Ctim.Nano()}, nil
}

// Prepare points qc at its template, making the template first when
// there is none and no other create is making it (scratchTaps gives the
// template VM tap devices of its own). It returns how, or an error that
// says why the VM must boot cold; qc is then unchanged.
func Prepare(ctx context.Context, qc *qemu.Config, scratchTaps func(int) ([]*os.File, error)) (Outcome, string, error) {
	key, err := Key(qc)
	if err != nil {
		return Cold, "", err
	}
	dir := filepath.Join(Dir(), key)
	how := Restored
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		if err := build(ctx, qc, key, scratchTaps); err != nil {
			return Cold, key, err
		}
		how = Built
	}
	state, m, err := open(dir, qc.MemoryMiB)
	if err != nil {
		Invalidate(key)
		return Cold, key, err
	}
	qc.MemoryFile, qc.MemoryShared, qc.MemoryReadOnly, qc.Incoming = filepath.Join(dir, "mem"), false, m.ReadOnly, state
	return how, key, nil
}

// open checks a template and opens its device state.
func open(dir string, mib int) (*os.File, *meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("template %s: meta: %w", dir, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "mem")); err != nil || st.Size() != int64(mib)<<20 || m.MemoryMiB != mib {
		return nil, nil, fmt.Errorf("template %s: memory file does not match %d MiB", dir, mib)
	}
	if id, err := memoryID(filepath.Join(dir, "mem")); err != nil || id != m.Memory {
		return nil, nil, fmt.Errorf("template %s: memory file changed since it was made", dir)
	}
	f, err := os.Open(filepath.Join(dir, "state"))
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 64<<20)); err != nil || hex.EncodeToString(h.Sum(nil)) != m.State {
		f.Close()
		return nil, nil, fmt.Errorf("template %s: device state is corrupt", dir)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, &m, nil
}

// Invalidate removes a template that failed: the next create makes it anew.
func Invalidate(key string) {
	if key == "" {
		return
	}
	dir := filepath.Join(Dir(), key)
	// Renamed first: a create opening it meanwhile sees it whole or not at all.
	gone := dir + ".gone-" + fmt.Sprint(os.Getpid())
	if os.Rename(dir, gone) == nil {
		os.RemoveAll(gone)
	}
}

// ErrBusy says another create is making the template.
var ErrBusy = errors.New("another create is making the template")

// build makes qc's template, unless another create is making it.
func build(ctx context.Context, qc *qemu.Config, key string, scratchTaps func(int) ([]*os.File, error)) (err error) {
	root := Dir()
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(root, key+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return ErrBusy
	}
	defer prune(root) // also after a failed build: what killed ones left
	if _, err := os.Stat(filepath.Join(root, key, "meta.json")); err == nil {
		return nil // made while we looked
	}
	t0 := time.Now()
	tmp, err := os.MkdirTemp(root, key+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := *qc
	b.Dir, b.MemoryFile, b.MemoryShared, b.Incoming = tmp, filepath.Join(tmp, "mem"), true, nil
	b.Append = append(append([]string{}, qc.Append...), Arg)
	mem, err := os.OpenFile(b.MemoryFile, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err == nil {
		err = mem.Truncate(int64(qc.MemoryMiB) << 20)
		mem.Close()
	}
	if err != nil {
		return err
	}
	b.Shares = nil
	for i, s := range qc.Shares {
		d := filepath.Join(tmp, fmt.Sprintf("share%d", i))
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		b.Shares = append(b.Shares, qemu.Share{Tag: s.Tag, Path: d, ReadOnly: s.ReadOnly})
	}
	if len(qc.NICs) > 0 {
		taps, err := scratchTaps(len(qc.NICs))
		if err != nil {
			return fmt.Errorf("template taps: %w", err)
		}
		defer func() {
			for _, t := range taps {
				t.Close()
			}
		}()
		b.NICs = nil
		for i, nic := range qc.NICs {
			b.NICs = append(b.NICs, qemu.NIC{Tap: taps[i], MAC: nic.MAC, MTU: nic.MTU})
		}
	}
	tr, err := transport.NewHost(transport.Serial, tmp)
	if err != nil {
		return err
	}
	defer tr.Close()
	b.Transport = tr
	q, err := qemu.Start(ctx, &b)
	if err != nil {
		return err
	}
	defer q.Kill()
	if err := waitMarker(ctx, q, filepath.Join(tmp, qemu.ConsoleLog)); err != nil {
		return err
	}
	st, err := save(q, filepath.Join(tmp, "state"))
	if err != nil {
		return err
	}
	q.Shutdown(5 * time.Second)
	for _, n := range []string{qemu.QMPSocket, transport.SocketName, "qemu.pid", qemu.StderrLog, qemu.ConsoleLog} {
		os.Remove(filepath.Join(tmp, n))
	}
	for i := range qc.Shares {
		os.Remove(filepath.Join(tmp, fmt.Sprintf("share%d", i)))
	}
	for _, n := range []string{"mem", "state"} {
		if f, err := os.Open(filepath.Join(tmp, n)); err == nil {
			f.Sync()
			f.Close()
		}
	}
	id, err := memoryID(filepath.Join(tmp, "mem"))
	if err != nil {
		return err
	}
	bin := qc.Binary
	if bin == "" {
		bin, _ = qemu.FindBinary()
	}
	v, _ := qemu.Version(bin)
	m, _ := json.Marshal(meta{Key: key, MemoryMiB: qc.MemoryMiB, State: st, Created: time.Now().UTC().Format(time.RFC3339),
		BuildSecs: time.Since(t0).Seconds(), Memory: id, ReadOnly: qemu.ReadOnlyPrivateMemory(v)})
	if err := libruntime.WriteFileAtomic(filepath.Join(tmp, "meta.json"), m, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(root, key))
}

// waitMarker waits until the guest's agent says it waits for the host.
func waitMarker(ctx context.Context, q *qemu.VM, console string) error {
	for {
		if b, _ := os.ReadFile(console); strings.Contains(string(b), Marker) {
			return nil
		}
		select {
		case <-q.Done():
			return errors.New("template VM exited while booting")
		case <-ctx.Done():
			return fmt.Errorf("template VM: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// save stops the VM and writes its device state to path through a
// descriptor QEMU is handed (no helper process: QEMU's sandbox may forbid
// spawning one); it returns the state's sha256.
func save(q *qemu.VM, path string) (string, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := q.QMP.Execute("stop", nil, 10*time.Second); err != nil {
		return "", err
	}
	if _, err := q.QMP.Execute("migrate-set-capabilities", qemu.IgnoreShared, 10*time.Second); err != nil {
		return "", err
	}
	if err := q.QMP.SendFd("state", f, 10*time.Second); err != nil {
		return "", err
	}
	if _, err := q.QMP.Execute("migrate", map[string]any{"uri": "fd:state"}, 10*time.Second); err != nil {
		return "", err
	}
	if err := q.WaitMigration(60 * time.Second); err != nil {
		return "", fmt.Errorf("save template: %w", err)
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// prune keeps the newest templates.
func prune(root string) {
	ents, _ := os.ReadDir(root)
	type t struct {
		name string
		mod  time.Time
	}
	var ts []t
	for _, e := range ents {
		if !e.IsDir() || strings.Contains(e.Name(), ".") {
			continue
		}
		if info, err := e.Info(); err == nil {
			ts = append(ts, t{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].mod.After(ts[j].mod) })
	for _, x := range ts[min(keep, len(ts)):] {
		Invalidate(x.name)
		os.Remove(filepath.Join(root, x.name+".lock"))
	}
	sweep(root, ents)
	// Locks of templates that were never made (their build failed) or
	// are gone, once no build can still hold them.
	locks, _ := filepath.Glob(filepath.Join(root, "*.lock"))
	for _, l := range locks {
		st, err := os.Stat(l)
		if _, derr := os.Stat(strings.TrimSuffix(l, ".lock")); err == nil && os.IsNotExist(derr) && time.Since(st.ModTime()) > 10*time.Minute {
			os.Remove(l)
		}
	}
}

// sweep removes what creates that were killed left behind: a build's
// temporary directory, once no build of its key holds the key's lock, and
// a template renamed away to be removed (Invalidate).
func sweep(root string, ents []os.DirEntry) {
	for _, e := range ents {
		name := e.Name()
		if i := strings.Index(name, ".tmp-"); i > 0 && e.IsDir() {
			if idle(filepath.Join(root, name[:i]+".lock")) {
				os.RemoveAll(filepath.Join(root, name))
			}
		} else if strings.Contains(name, ".gone-") && e.IsDir() {
			os.RemoveAll(filepath.Join(root, name))
		}
	}
}

// idle says whether no one holds the lock file (a missing one included).
func idle(lock string) bool {
	f, err := os.Open(lock)
	if err != nil {
		return os.IsNotExist(err)
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// List returns the templates present, for runh check.
func List() []string {
	ents, _ := os.ReadDir(Dir())
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.Contains(e.Name(), ".") {
			if _, err := os.Stat(filepath.Join(Dir(), e.Name(), "meta.json")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}
