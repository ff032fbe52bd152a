package libruntime

import (
	"errors"
	"fmt"
	"strconv"
)

// PodRole is a container's place in a Kubernetes pod, as the CRI
// implementations mark it in the bundle's annotations.
type PodRole int

const (
	// NotInPod is a container of its own.
	NotInPod PodRole = iota
	// PodSandbox is a pod's sandbox ("pause") container: with hypervisor
	// isolation it starts the pod's VM.
	PodSandbox
	// PodMember is a container of a pod: with hypervisor isolation it
	// runs in its sandbox's VM.
	PodMember
)

// Pod is a container's pod membership.
type Pod struct {
	Role PodRole
	// SandboxID is the sandbox's container ID, for a PodMember.
	SandboxID string
	// MemoryBytes is the pod's memory limit (the sum of its containers'
	// limits, which containerd passes on the sandbox), 0 if unknown.
	MemoryBytes int64
}

// The annotations containerd's CRI plugin and CRI-O set on a pod's
// sandbox and containers.
const (
	AnnotationCRIContainerType  = "io.kubernetes.cri.container-type"
	AnnotationCRISandboxID      = "io.kubernetes.cri.sandbox-id"
	AnnotationCRISandboxMemory  = "io.kubernetes.cri.sandbox-memory"
	AnnotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	AnnotationCRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
)

// ParsePod reads a container's pod membership from its annotations
// (containerd's first, then CRI-O's). A container type other than
// "sandbox" or "container", or a container without a valid sandbox ID,
// is an error naming the annotation.
func ParsePod(annotations map[string]string) (Pod, error) {
	var p Pod
	for _, k := range [][2]string{
		{AnnotationCRIContainerType, AnnotationCRISandboxID},
		{AnnotationCRIOContainerType, AnnotationCRIOSandboxID},
	} {
		typ, ok := annotations[k[0]]
		if !ok {
			continue
		}
		switch typ {
		case "sandbox":
			p.Role = PodSandbox
		case "container":
			p.Role = PodMember
			p.SandboxID = annotations[k[1]]
			if err := ValidateID(p.SandboxID); err != nil {
				return Pod{}, fmt.Errorf("annotation %s: %w", k[1], err)
			}
		default:
			return Pod{}, fmt.Errorf("annotation %s: invalid container type %q: want sandbox or container", k[0], typ)
		}
		break
	}
	if v, ok := annotations[AnnotationCRISandboxMemory]; ok && p.Role == PodSandbox {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return Pod{}, fmt.Errorf("annotation %s: invalid size %q", AnnotationCRISandboxMemory, v)
		}
		p.MemoryBytes = n
	}
	return p, nil
}

// joinPod settles the isolation of a pod's container: it is its
// sandbox's, since the two share namespaces (with hypervisor isolation,
// the sandbox's VM, whose state directory goes into iso.SandboxDir). The
// sandbox stays locked, shared, until release is called: it cannot be
// deleted while a container joins it. A container that asks for the
// other isolation, or joins a VM sandbox that is not there, is refused.
func (r *Runtime) joinPod(iso *Isolation, annotations map[string]string) (release func(), err error) {
	release = func() {}
	if iso.Pod.Role != PodMember {
		return release, nil
	}
	sb, err := r.Store.Open(iso.Pod.SandboxID, false)
	if errors.Is(err, ErrNotExist) {
		if iso.Mode == HypervisorIsolation {
			return release, fmt.Errorf("pod sandbox %q does not exist: a container of a pod with hypervisor isolation runs in its sandbox's VM", iso.Pod.SandboxID)
		}
		return release, nil // process isolation joins namespaces by path
	}
	if err != nil {
		return release, fmt.Errorf("pod sandbox: %w", err)
	}
	if v, ok := annotations[AnnotationIsolation]; ok && Mode(v) != sb.Meta.Isolation {
		sb.Close()
		return release, fmt.Errorf("annotation %s: %s isolation asked for a container of pod sandbox %q, which uses %s isolation",
			AnnotationIsolation, v, iso.Pod.SandboxID, sb.Meta.Isolation)
	}
	iso.Mode = sb.Meta.Isolation
	if iso.Mode == HypervisorIsolation {
		iso.SandboxDir = sb.Dir
	}
	return sb.Close, nil
}
