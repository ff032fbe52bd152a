package libruntime

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Status is a container's lifecycle status, as the OCI runtime spec names
// it, plus runc's "paused".
type Status string

// The statuses a container can be in.
const (
	Creating Status = "creating"
	Created  Status = "created"
	Running  Status = "running"
	Paused   Status = "paused"
	Stopped  Status = "stopped"
)

// State is what `state` and `list --format json` print: the OCI state with
// runc's extra fields, so tools written for runc read it unchanged.
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      Status            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// Meta is runh's own record of a container, written once at create as
// runh.json in the container's state directory.
type Meta struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Isolation   Mode              `json:"isolation"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociState is the state handed to hooks and printed by `state`.
func (m *Meta) state(st Status, pid int) *State {
	if st == Stopped {
		pid = 0
	}
	return &State{
		OCIVersion:  specs.Version,
		ID:          m.ID,
		Pid:         pid,
		Status:      st,
		Bundle:      m.Bundle,
		Rootfs:      m.Rootfs,
		Created:     m.Created,
		Annotations: m.Annotations,
		Owner:       m.Owner,
	}
}
