package libruntime

import (
	"fmt"
	"strconv"
	"strings"
)

// Mode is a container's isolation mode.
type Mode string

// The two isolation modes.
const (
	ProcessIsolation    Mode = "process"
	HypervisorIsolation Mode = "hypervisor"
)

// Annotations runh reads from a bundle's config.json.
const (
	AnnotationIsolation = "io.runh.isolation"
	AnnotationUntrusted = "io.kubernetes.cri.untrusted-workload"
	AnnotationVMMemory  = "io.runh.vm.memory"
	AnnotationVMCPUs    = "io.runh.vm.cpus"
	AnnotationVMAccel   = "io.runh.vm.accel"
	// AnnotationVMTemplate "false" boots the VM instead of restoring it
	// from a saved template.
	AnnotationVMTemplate = "io.runh.vm.template"
)

// Annotations lists runh's own annotations, for `features`.
var Annotations = []string{AnnotationIsolation, AnnotationVMMemory, AnnotationVMCPUs, AnnotationVMAccel, AnnotationVMTemplate}

// Limits on VM sizing: below the minimum the guest kernel cannot boot,
// above the maximum QEMU would refuse or the host could not honour it.
const (
	MinVMMemoryMiB = 64
	MaxVMMemoryMiB = 1 << 20
	MaxVMCPUs      = 255
)

// ParseMode turns a mode name into a Mode.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ProcessIsolation, HypervisorIsolation:
		return Mode(s), nil
	}
	return "", fmt.Errorf("invalid isolation %q: want %q or %q", s, ProcessIsolation, HypervisorIsolation)
}

// VMConfig is the sizing of a container's utility VM; zero values mean
// "derive from the spec or use the default".
type VMConfig struct {
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	Accel     string `json:"accel,omitempty"`
	// NoTemplate boots the VM rather than restoring a saved one.
	NoTemplate bool `json:"noTemplate,omitempty"`
}

// Isolation is what a bundle's annotations ask for.
type Isolation struct {
	Mode Mode
	VM   VMConfig
	// Pod is the container's place in a Kubernetes pod.
	Pod Pod
	// SandboxDir is the state directory of a PodMember's sandbox when
	// the container joins it (hypervisor isolation: its VM).
	SandboxDir string
}

// ParseIsolation picks the isolation mode and VM sizing from a bundle's
// annotations. This is the one place the mode is decided: def is the
// default from the command line (--isolation, or the runh-vm name).
// Unknown io.runh.* keys and bad values are errors naming the annotation.
func ParseIsolation(annotations map[string]string, def Mode) (Isolation, error) {
	iso := Isolation{Mode: def}
	if v, ok := annotations[AnnotationUntrusted]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return iso, fmt.Errorf("annotation %s: invalid boolean %q", AnnotationUntrusted, v)
		}
		if b {
			iso.Mode = HypervisorIsolation
		}
	}
	for k, v := range annotations {
		if !strings.HasPrefix(k, "io.runh.") {
			continue
		}
		var err error
		switch k {
		case AnnotationIsolation:
			iso.Mode, err = ParseMode(v)
		case AnnotationVMMemory:
			iso.VM.MemoryMiB, err = parseBounded(v, MinVMMemoryMiB, MaxVMMemoryMiB, "MiB")
		case AnnotationVMCPUs:
			iso.VM.CPUs, err = parseBounded(v, 1, MaxVMCPUs, "vCPUs")
		case AnnotationVMTemplate:
			var b bool
			if b, err = strconv.ParseBool(v); err != nil {
				err = fmt.Errorf("invalid boolean %q", v)
			}
			iso.VM.NoTemplate = !b
		case AnnotationVMAccel:
			if v != "kvm" && v != "tcg" {
				err = fmt.Errorf("invalid accelerator %q: want kvm or tcg", v)
			}
			iso.VM.Accel = v
		default:
			err = fmt.Errorf("unknown runh annotation")
		}
		if err != nil {
			return iso, fmt.Errorf("annotation %s: %w", k, err)
		}
	}
	var err error
	if iso.Pod, err = ParsePod(annotations); err != nil {
		return iso, err
	}
	return iso, nil
}

func parseBounded(v string, min, max int, unit string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", v)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("%d out of range (%d to %d %s)", n, min, max, unit)
	}
	return n, nil
}
