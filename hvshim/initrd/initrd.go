package initrd

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runh-project/runh/libruntime"
)

// Paths inside the initrd, read by the agent.
const (
	InitPath    = "/init"
	ModulesDir  = "/modules"
	OrderFile   = "/modules/order" // module file names, one a line, load order
	EnvCacheDir = libruntime.EnvCacheDir
	// format is part of the cache key: bump it when the layout changes.
	format = "runh-initrd-1"
)

// Spec says what goes into an initrd.
type Spec struct {
	Init     string   // host path of the static binary that becomes /init
	Modules  []string // host paths of kernel modules, in load order
	Compress bool     // gzip the archive
}

// CacheDir returns the directory of runh's cache: $RUNH_CACHE_DIR,
// /var/cache/runh, or a user's own (libruntime.CacheDir).
func CacheDir() string { return libruntime.CacheDir() }

// Key is the content hash of everything that goes into the initrd.
func (s Spec) Key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\ncompress=%v\n", format, s.Compress)
	for _, p := range append([]string{s.Init}, s.Modules...) {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n", filepath.Base(p))
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Ensure returns the path of the initrd for s in dir, writing it first if
// it is not there yet. Writes are atomic (temp file + rename), so concurrent
// callers at worst both write the same bytes.
func Ensure(dir string, s Spec) (string, error) {
	key, err := s.Key()
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	path := filepath.Join(dir, "initrd-"+key[:32]+".cpio")
	if s.Compress {
		path += ".gz"
	}
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		os.Chtimes(path, now, now) // in use: not stale
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".initrd-*")
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := s.Write(tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initrd: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	// Linked, not renamed, into place: a concurrent writer's file stays,
	// so a VM about to start never finds the file its jail binds replaced
	// (a bind of the unlinked one fails with ENOENT).
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("initrd: %w", err)
	}
	removeStale(dir, path)
	return path, nil
}

// staleAfter is how long an initrd no VM started from stays cached.
const staleAfter = time.Hour

// removeStale deletes initrds unused for a while, so the cache does not
// grow with every rebuilt binary. Not the others: several runh binaries
// (an upgrade under running engines, a test build beside an installed
// one) and kernels may be in use at once, and a VM about to start must
// find its initrd.
func removeStale(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "initrd-*"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && p != keep && time.Since(st.ModTime()) > staleAfter {
			os.Remove(p)
		}
	}
}

// Write writes the archive for s to w.
func (s Spec) Write(w io.Writer) error {
	var zw *gzip.Writer
	if s.Compress {
		// BestSpeed: the guest decompresses under emulation; level barely
		// changes its time, and the host writes faster.
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		w = zw
	}
	c := NewWriter(w)
	c.Dir("/dev", 0o755)
	c.CharDev("/dev/console", 0o600, 5, 1)
	if err := addFile(c, InitPath, s.Init, 0o755); err != nil {
		return err
	}
	if len(s.Modules) > 0 {
		c.Dir(ModulesDir, 0o755)
		var order strings.Builder
		for _, m := range s.Modules {
			name := filepath.Base(m)
			if err := addFile(c, ModulesDir+"/"+name, m, 0o644); err != nil {
				return err
			}
			order.WriteString(name + "\n")
		}
		b := []byte(order.String())
		if err := c.File(OrderFile, 0o644, int64(len(b)), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

func addFile(c *Writer, name, src string, perm uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return c.File(name, perm, fi.Size(), f)
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".initrd-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
