package libruntime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxConfigSize bounds config.json: a real one is a few KiB, and a huge
// file is more likely an attack or a mistake than a container.
const maxConfigSize = 4 << 20

// Bundle is a loaded and checked OCI bundle.
type Bundle struct {
	Dir    string // absolute, clean
	Rootfs string // absolute
	Spec   *specs.Spec
}

// LoadBundle reads dir/config.json and checks what every isolation mode
// needs before anything is created. Deeper checks (namespaces, mounts,
// cgroups) are done by the backend's own config conversion.
func LoadBundle(dir string) (*Bundle, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, unwrapPathErr(err))
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: not a directory", dir)
	}
	spec, err := readSpec(filepath.Join(abs, "config.json"))
	if err != nil {
		return nil, err
	}
	b := &Bundle{Dir: abs, Spec: spec}
	if err := b.check(); err != nil {
		return nil, err
	}
	return b, nil
}

func readSpec(path string) (*specs.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("config.json not found in the bundle")
		}
		return nil, fmt.Errorf("config.json: %w", unwrapPathErr(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config.json: larger than %d bytes", maxConfigSize)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("config.json: not a JSON object")
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("config.json: %s", jsonError(err))
	}
	return &spec, nil
}

func (b *Bundle) check() error {
	s := b.Spec
	if err := checkOCIVersion(s.Version); err != nil {
		return err
	}
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("config.json: root.path is required")
	}
	root := s.Root.Path
	if !filepath.IsAbs(root) {
		// Relative to the bundle's real path, as runc resolves it from
		// its working directory there.
		dir, err := filepath.EvalSymlinks(b.Dir)
		if err != nil {
			dir = b.Dir
		}
		root = filepath.Join(dir, root)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", s.Root.Path, unwrapPathErr(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("rootfs %s: not a directory", s.Root.Path)
	}
	// As libcontainer refuses it, for both isolation modes: a symlinked
	// rootfs could be switched to another tree between check and use.
	if real, err := filepath.EvalSymlinks(root); err != nil || real != filepath.Clean(root) {
		return fmt.Errorf("rootfs %s: invalid rootfs: not an absolute path, or a symlink", s.Root.Path)
	}
	b.Rootfs = filepath.Clean(root)
	if s.Linux == nil {
		return errors.New("config.json: linux section is required")
	}
	return CheckProcess(s.Process)
}

// CheckProcess checks a process description, from config.json or exec.
func CheckProcess(p *specs.Process) error {
	if p == nil {
		return errors.New("config.json: process is required")
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return errors.New("process.args must not be empty")
	}
	if p.Cwd == "" || !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("process.cwd %q must be an absolute path", p.Cwd)
	}
	for _, e := range p.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return fmt.Errorf("process.env: invalid entry %q (want KEY=value)", e)
		}
	}
	return nil
}

// checkOCIVersion accepts any 1.x spec version, as runc does.
func checkOCIVersion(v string) error {
	if v == "" {
		return errors.New("config.json: ociVersion is required")
	}
	if !strings.HasPrefix(v, "1.") {
		return fmt.Errorf("config.json: unsupported ociVersion %q (want 1.x)", v)
	}
	return nil
}

// jsonError shortens encoding/json errors to what a user can act on.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s: cannot use a JSON %s as %s", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Error() == "unexpected end of JSON input" {
		return "truncated JSON"
	}
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
