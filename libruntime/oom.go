package libruntime

import "errors"

// OOMWaitFunc waits, without holding the container's lock, until the count
// of the container's processes the kernel killed for want of memory exceeds
// seen, or done is closed; it returns the count then.
type OOMWaitFunc func(seen uint64, done <-chan struct{}) (uint64, error)

// OOMWatcher is implemented by backends that can count a container's OOM
// kills.
type OOMWatcher interface {
	// OOMWaiter prepares, under the container's lock, a wait for OOM
	// kills of h.
	OOMWaiter(h *Handle) (OOMWaitFunc, error)
}

// ErrNoOOM says a backend cannot report OOM kills.
var ErrNoOOM = errors.New("OOM kills cannot be reported for this container")

// OOMWaiter prepares, under the container's lock, a wait for its OOM
// kills; the wait itself holds no lock, so that other verbs (delete) are
// not held up. A closed done makes it read the count once.
func (r *Runtime) OOMWaiter(id string) (wait OOMWaitFunc, err error) {
	err = r.with(id, false, "watch", nil, func(h *Handle, be Backend, _ Status) error {
		w, ok := be.(OOMWatcher)
		if !ok {
			return ErrNoOOM
		}
		wait, err = w.OOMWaiter(h)
		return err
	})
	return wait, err
}

// WaitOOM waits until the container's count of OOM kills exceeds seen, or
// done is closed, and returns the count.
func (r *Runtime) WaitOOM(id string, seen uint64, done <-chan struct{}) (uint64, error) {
	wait, err := r.OOMWaiter(id)
	if err != nil {
		return 0, err
	}
	return wait(seen, done)
}
