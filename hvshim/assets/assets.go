// Package assets finds the guest kernel and its modules on the host.
//
// The directory layout is the one `make guest-kernel` (mk/guest.mk) writes:
// vmlinuz, modules/*.ko and modules.dep.
package assets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvDir overrides the guest asset directory.
const EnvDir = "RUNH_GUEST_DIR"

// Guest is a located set of guest assets.
type Guest struct {
	Dir     string   // the asset directory
	Kernel  string   // path of vmlinuz
	Version string   // kernel release, if recorded
	Modules []string // module paths, each after its dependencies
}

// SearchDirs returns the directories Find tries, in order.
func SearchDirs() []string {
	var dirs []string
	if d := os.Getenv(EnvDir); d != "" {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Join(filepath.Dir(exe), "..", "build", "guest"))
		}
	}
	return append(dirs, "/usr/local/share/runh/guest", "/usr/share/runh/guest")
}

// Find returns the first directory of SearchDirs holding a kernel.
func Find() (*Guest, error) {
	dirs := SearchDirs()
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "vmlinuz")); err == nil {
			return Load(filepath.Clean(d))
		}
	}
	return nil, fmt.Errorf("no guest kernel found (looked in %s; run `make guest-kernel` or set %s)",
		strings.Join(dirs, ", "), EnvDir)
}

// Load reads the assets of one directory.
func Load(dir string) (*Guest, error) {
	g := &Guest{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz")}
	if _, err := os.Stat(g.Kernel); err != nil {
		return nil, fmt.Errorf("guest kernel: %w", err)
	}
	// The uncompressed kernel, where guest-kernel.sh could extract one,
	// boots through PVH and skips the bzImage's own decompression, which
	// costs seconds under TCG.
	if _, err := os.Stat(filepath.Join(dir, "vmlinux")); err == nil {
		g.Kernel = filepath.Join(dir, "vmlinux")
	}
	if v, err := os.ReadFile(filepath.Join(dir, "version")); err == nil {
		g.Version = strings.TrimSpace(string(v))
	}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if errors.Is(err, os.ErrNotExist) {
		return g, nil // a kernel with everything built in
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps, err := ParseDeps(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	order, err := LoadOrder(deps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	for _, m := range order {
		p := filepath.Join(dir, "modules", m)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("guest module: %w", err)
		}
		g.Modules = append(g.Modules, p)
	}
	return g, nil
}

// ParseDeps reads modules.dep lines ("a.ko: b.ko c.ko"), keeping basenames,
// so both depmod's output and guest-kernel.sh's are accepted.
func ParseDeps(r io.Reader) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad line %q", line)
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, filepath.Base(d))
		}
		deps[filepath.Base(strings.TrimSpace(name))] = ds
	}
	return deps, sc.Err()
}

// LoadOrder returns every module of deps after all of its dependencies,
// otherwise in name order so the result is stable.
func LoadOrder(deps map[string][]string) ([]string, error) {
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	sort.Strings(names)
	const (
		visiting = 1
		done     = 2
	)
	mark := map[string]int{}
	var order []string
	var visit func(string) error
	visit = func(n string) error {
		switch mark[n] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle at %s", n)
		}
		ds, ok := deps[n]
		if !ok {
			return fmt.Errorf("module %s is needed but not listed", n)
		}
		mark[n] = visiting
		for _, d := range ds {
			if err := visit(d); err != nil {
				return err
			}
		}
		mark[n] = done
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}
