package libruntime

import (
	"strings"
	"testing"
)

func TestParsePod(t *testing.T) {
	good := []struct {
		ann  map[string]string
		want Pod
	}{
		{nil, Pod{}},
		{map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-memory": "268435456"},
			Pod{Role: PodSandbox, MemoryBytes: 256 << 20}},
		{map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "abc123"},
			Pod{Role: PodMember, SandboxID: "abc123"}},
		// CRI-O's annotations.
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "sandbox"}, Pod{Role: PodSandbox}},
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "f00d"},
			Pod{Role: PodMember, SandboxID: "f00d"}},
		// A sandbox's memory means nothing on a container.
		{map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "s", "io.kubernetes.cri.sandbox-memory": "1"},
			Pod{Role: PodMember, SandboxID: "s"}},
	}
	for _, c := range good {
		if got, err := ParsePod(c.ann); err != nil || got != c.want {
			t.Errorf("ParsePod(%v) = %+v, %v; want %+v", c.ann, got, err, c.want)
		}
	}
	bad := []struct {
		ann  map[string]string
		name string // the annotation the error must name
	}{
		{map[string]string{"io.kubernetes.cri.container-type": "pause"}, "io.kubernetes.cri.container-type"},
		{map[string]string{"io.kubernetes.cri.container-type": "container"}, "io.kubernetes.cri.sandbox-id"},
		{map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "../x"}, "io.kubernetes.cri.sandbox-id"},
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": ""}, "io.kubernetes.cri-o.SandboxID"},
		{map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-memory": "-1"}, "io.kubernetes.cri.sandbox-memory"},
	}
	for _, c := range bad {
		_, err := ParsePod(c.ann)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("ParsePod(%v): error %v, want one naming %s", c.ann, err, c.name)
		}
	}
}
