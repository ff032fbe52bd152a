package proto

import (
	"strings"

	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Operations of the agent.
const (
	OpPing    = "ping"
	OpCreate  = "create"
	OpStart   = "start"
	OpExec    = "exec"
	OpWait    = "wait"
	OpKill    = "kill"
	OpSignal  = "signal" // one process, by its process key
	OpResize  = "resize"
	OpState   = "state"
	OpPause   = "pause"
	OpResume  = "resume"
	OpPs      = "ps"
	OpUpdate  = "update"
	OpStats   = "stats"
	OpCloseIn = "close-stdin"
	// OpSync writes the guest's dirty pages back to the host's files.
	OpSync = "sync"
	// OpBoot is the host's first call (a BootRequest).
	OpBoot = "boot"
	// OpNetwork gives the guest the container's network (a vmnet.Config)
	// before OpCreate; it answers a NetworkReply.
	OpNetwork = "network"
)

// NetworkReply names the guest network namespace the container joins.
type NetworkReply struct {
	Path string `json:"path,omitempty"`
}

// Stdio says which streams the host opened for a process (named by its
// process key): a "tty" stream, or any of "stdin", "stdout", "stderr".
type Stdio struct {
	Terminal bool `json:"terminal,omitempty"`
	Stdin    bool `json:"stdin,omitempty"`
	Stdout   bool `json:"stdout,omitempty"`
	Stderr   bool `json:"stderr,omitempty"`
}

// CreateRequest creates the container; the spec's paths are guest paths.
type CreateRequest struct {
	ID    string      `json:"id"`
	Spec  *specs.Spec `json:"spec"`
	Stdio Stdio       `json:"stdio"`
	// Tmpfs lists the guest tmpfs mounts the spec's bind mounts name
	// (under the guest's shm directory) that the agent makes first.
	Tmpfs []Tmpfs `json:"tmpfs,omitempty"`
}

// Tmpfs is a tmpfs the guest makes in place of a host one the VM cannot
// share as memory: an engine's /dev/shm. One Name is one tmpfs, whichever
// containers of a pod bind it.
type Tmpfs struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
}

// ExecRequest starts a process in the container.
type ExecRequest struct {
	ID      string         `json:"id"`
	Key     string         `json:"key"` // the process key its stdio streams use
	Process *specs.Process `json:"process"`
	Stdio   Stdio          `json:"stdio"`
}

// PidReply gives a guest PID.
type PidReply struct {
	Pid int `json:"pid"`
}

// ProcessRequest names a process by key (a container's init is
// InitKey(id)).
type ProcessRequest struct {
	Key string `json:"key"`
}

// initPrefix starts the process key of a container's init.
const initPrefix = "init/"

// InitKey is the process key of the init of container id: one VM may
// hold the containers of a pod, each with its init.
func InitKey(id string) string { return initPrefix + id }

// IsInitKey reports whether key names a container's init.
func IsInitKey(key string) bool { return strings.HasPrefix(key, initPrefix) }

// OpDelete removes a stopped (or, killed first, running) container from
// a pod's VM: its guest state, cgroups and bundle (an IDRequest).
const OpDelete = "delete"

// WaitReply is a process's exit status (128+n for signal n). For the
// container's init it also counts the container's processes the kernel
// killed for want of memory (OOM), read once init has exited.
type WaitReply struct {
	Status   int    `json:"status"`
	OOMKills uint64 `json:"oomKills,omitempty"`
}

// KillRequest signals the container (all: every process) or, with Key,
// one process.
type KillRequest struct {
	ID     string `json:"id"`
	Key    string `json:"key,omitempty"`
	Signal int    `json:"signal"`
	All    bool   `json:"all,omitempty"`
}

// ResizeRequest sets a process's terminal size.
type ResizeRequest struct {
	Key    string `json:"key"`
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// IDRequest names the container.
type IDRequest struct {
	ID string `json:"id"`
}

// StateReply is the container's status in the guest.
type StateReply struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// PsReply lists guest PIDs.
type PsReply struct {
	Pids []int `json:"pids"`
}

// UpdateRequest changes resources.
type UpdateRequest struct {
	ID        string                `json:"id"`
	Resources *specs.LinuxResources `json:"resources"`
}

// StatsReply is the container's usage.
type StatsReply struct {
	Stats *types.Stats `json:"stats"`
}

// OpPsInfo describes the container's processes for a ps table.
const OpPsInfo = "ps-info"

// PsInfoReply describes the container's processes, read from the guest's
// /proc; the host formats the table.
type PsInfoReply struct {
	MemTotalKiB uint64   `json:"memTotalKiB"`
	Procs       []PsProc `json:"procs"`
}

// PsProc is one process. Times are durations, not dates, so the guest's
// clock does not matter.
type PsProc struct {
	Pid     int      `json:"pid"`
	Ppid    int      `json:"ppid"`
	Pgid    int      `json:"pgid"`
	Sid     int      `json:"sid"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	User    string   `json:"user,omitempty"`  // from the container's /etc/passwd
	Group   string   `json:"group,omitempty"` // from the container's /etc/group
	Stat    string   `json:"stat"`            // state letter and BSD flags
	Tty     string   `json:"tty"`             // "pts/0", or "?"
	Comm    string   `json:"comm"`
	Args    []string `json:"args,omitempty"`
	CPU     float64  `json:"cpu"` // user+system seconds
	Age     float64  `json:"age"` // seconds since the process started
	VSZ     uint64   `json:"vsz"` // KiB
	RSS     uint64   `json:"rss"` // KiB
	Nice    int      `json:"nice"`
	Threads int      `json:"threads"`
}

// BootRequest makes a booted or restored guest this container's.
type BootRequest struct {
	TimeNs  int64  `json:"timeNs"`  // the host's wall clock
	Entropy []byte `json:"entropy"` // fresh random bytes to reseed with
	Share   bool   `json:"share,omitempty"`
	Volumes bool   `json:"volumes,omitempty"`
}

// OpOOM waits until the container's count of OOM kills exceeds Seen, its
// init exits, or WaitMs pass, and answers an OOMReply.
const OpOOM = "oom"

// OOMRequest asks for the OOM kills beyond Seen.
type OOMRequest struct {
	ID     string `json:"id"`
	Seen   uint64 `json:"seen"`
	WaitMs int    `json:"waitMs,omitempty"`
}

// OOMReply is the container's count of OOM kills; Exited says init has
// exited, so no more will come.
type OOMReply struct {
	Count  uint64 `json:"count"`
	Exited bool   `json:"exited,omitempty"`
}
