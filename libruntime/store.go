package libruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MetaFile is runh's record in each container's state directory.
const MetaFile = "runh.json"

// ErrNotExist is returned for a container ID that is not in the store.
var ErrNotExist = errors.New("container does not exist")

// ErrCorrupt is returned for a state directory whose metadata is missing
// or unreadable; only a forced delete can remove it.
var ErrCorrupt = errors.New("container state is missing or corrupt")

// ErrExist is returned when creating a container whose ID is taken.
var ErrExist = errors.New("container already exists")

// Store keeps one state directory per container under Root. A container's
// directory is also its lock: every verb holds flock(2) on it while it
// works, so verbs on one container never interleave.
type Store struct {
	Root string
}

// Handle is an open, locked container state directory.
type Handle struct {
	ID   string
	Dir  string
	Meta *Meta
	f    *os.File
}

func (s *Store) dir(id string) string { return filepath.Join(s.Root, id) }

// Reserve creates the state directory of a new container, locked and with
// its metadata already written. The directory is prepared under a
// temporary name and renamed into place without replacing, so exactly one
// of several concurrent creates of one ID wins and no verb ever sees a
// half-made directory.
func (s *Store) Reserve(meta *Meta) (*Handle, error) {
	if err := ValidateID(meta.ID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	if _, err := os.Lstat(s.dir(meta.ID)); err == nil {
		return nil, fmt.Errorf("container %q: %w", meta.ID, ErrExist)
	}
	tmp, err := os.MkdirTemp(s.Root, ".new-")
	if err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	h, err := lockDir(tmp, unix.LOCK_EX)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	h.ID, h.Meta = meta.ID, meta
	fail := func(err error) (*Handle, error) {
		h.Close()
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o711); err != nil {
		return fail(err)
	}
	if err := h.WriteJSON(MetaFile, meta); err != nil {
		return fail(err)
	}
	dst := s.dir(meta.ID)
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("container %q: %w", meta.ID, ErrExist)
		}
		return fail(err)
	}
	h.Dir = dst
	return h, nil
}

// Open locks an existing container's directory, shared for reading verbs
// and exclusive for verbs that change the container.
func (s *Store) Open(id string, exclusive bool) (*Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	h, err := lockDir(s.dir(id), how)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %q: %w", id, ErrNotExist)
		}
		return nil, err
	}
	h.ID = id
	// A delete that held the lock before us may have removed the directory.
	var st unix.Stat_t
	if err := unix.Fstat(int(h.f.Fd()), &st); err != nil || st.Nlink == 0 {
		h.Close()
		return nil, fmt.Errorf("container %q: %w", id, ErrNotExist)
	}
	meta, err := readMeta(h.Dir)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			err = ErrCorrupt
		}
		h.Close()
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if meta.ID != id {
		h.Close()
		return nil, fmt.Errorf("container %q: state records id %q", id, meta.ID)
	}
	h.Meta = meta
	return h, nil
}

// openBroken locks a container directory without reading its metadata,
// for a forced delete of a container whose state is damaged.
func (s *Store) openBroken(id string) (*Handle, error) {
	h, err := lockDir(s.dir(id), unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	h.ID = id
	return h, nil
}

func lockDir(dir string, how int) (*Handle, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	for {
		err = unix.Flock(fd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Handle{Dir: dir, f: f}, nil
}

func readMeta(dir string) (*Meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, MetaFile, err)
	}
	return &m, nil
}

// Close releases the lock.
func (h *Handle) Close() {
	if h.f != nil {
		h.f.Close()
		h.f = nil
	}
}

// Remove deletes the container's state directory and releases the lock.
func (h *Handle) Remove() error {
	err := os.RemoveAll(h.Dir)
	h.Close()
	return err
}

// WriteJSON writes v to name in the state directory atomically.
func (h *Handle) WriteJSON(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(h.Dir, name), data, 0o600)
}

// WriteFileAtomic writes data to path through a temporary file and a
// rename, so that readers see the old content or the new, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// List returns the IDs of all containers in the store.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".new-") {
			s.sweep(e.Name())
			continue
		}
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// sweep removes a directory that a create left half-made when it was
// killed before renaming it into place; a live create holds its lock.
func (s *Store) sweep(name string) {
	dir := filepath.Join(s.Root, name)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		os.RemoveAll(dir)
	}
}
