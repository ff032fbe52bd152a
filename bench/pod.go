package main

import (
	"fmt"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/integration"
)

// The pod section: a Kubernetes pod as containerd's CRI drives the
// runtime (a sandbox, then two containers that join its network, IPC and
// UTS namespaces by /proc path), in both isolation modes with runc and
// crun beside: runh-vm puts the whole pod in one VM.

const (
	pods = "pods" // report section

	rowPodStart = "sandbox + two containers, created and started (ms)"
	rowPodPSS   = "host memory of the pod, idle (PSS, MiB)"

	podRounds = 5
)

func (b *bench) benchPod() error {
	rts := append(append([]*runtime{}, b.rts...), b.vm)
	start := b.rep.result(pods, "pod", rowPodStart, "ms", false, names(rts)...)
	start.Note = fmt.Sprintf("wall time from the sandbox's `create` to the second container's `start` returning, "+
		"%d rounds, contenders rotated; the containers' bundles are written once the sandbox's PID is known, as an engine does", podRounds)
	mem := b.rep.result(pods, "pod", rowPodPSS, "MiB", false, names(rts)...)
	mem.Note = "PSS of the sandbox's and both containers' host processes and their descendants (runh-vm: the shim, QEMU " +
		"and the two member processes), 5 samples 1 s apart after 3 s of settling, in each contender's last round"
	for _, x := range []*Result{start, mem} {
		x.RatioPairs = []string{"runh/runc", "runh/crun", b.vm.Name + "/runh"}
	}
	root := filepath.Join(b.dir, "pods")
	for i := 0; i < podRounds && b.ctx.Err() == nil; i++ {
		for _, rt := range rotate(rts, i) {
			d, pids, err := b.startPod(rt, root, i)
			if err != nil {
				start.fail(rt.Name, err)
			} else {
				start.add(rt.Name, ms(d))
				if i == podRounds-1 {
					for _, s := range b.samplePSS(pids) {
						mem.add(rt.Name, mib(s.shim+s.qemu))
					}
				}
			}
			for _, id := range podIDs(b, rt, i) {
				b.workers[0].forceDelete(rt, id)
			}
		}
	}
	return nil
}

// podIDs are the sandbox's and its two containers' IDs.
func podIDs(b *bench, rt *runtime, i int) []string {
	return []string{b.id(rt, "pod", i), b.id(rt, "poda", i), b.id(rt, "podb", i)}
}

// startPod creates and starts a sandbox and two containers of it, and
// returns the time taken and their host PIDs.
func (b *bench) startPod(rt *runtime, root string, i int) (time.Duration, []int, error) {
	w := b.workers[0]
	ids := podIDs(b, rt, i)
	dir := filepath.Join(root, rt.Name+fmt.Sprint(i))
	rootfs := filepath.Join(b.dir, "rootfs")
	oldest := func(s *specs.Spec) { s.Version = "1.0.2" }
	sb := filepath.Join(dir, "sandbox")
	if err := integration.NewBundle(sb, rootfs, "", func(s *specs.Spec) {
		oldest(s)
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	}, "/bin/sleep", "1000000"); err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	_, sbPid, fd, err := w.create(rt, ids[0], sb)
	if err != nil {
		return 0, nil, err
	}
	unix.Close(fd)
	if _, _, err := w.call(rt, "start", ids[0]); err != nil {
		return 0, nil, err
	}
	pids := []int{sbPid}
	for k, id := range ids[1:] {
		bundle := filepath.Join(dir, fmt.Sprint("c", k))
		if err := integration.NewBundle(bundle, rootfs, "", func(s *specs.Spec) {
			oldest(s)
			s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": ids[0]}
			s.Hostname = ""
			for j, ns := range s.Linux.Namespaces {
				if f, ok := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[ns.Type]; ok {
					s.Linux.Namespaces[j].Path = fmt.Sprintf("/proc/%d/ns/%s", sbPid, f)
				}
			}
		}, "/bin/sleep", "1000000"); err != nil {
			return 0, nil, err
		}
		_, pid, fd, err := w.create(rt, id, bundle)
		if err != nil {
			return 0, nil, err
		}
		unix.Close(fd)
		if _, _, err := w.call(rt, "start", id); err != nil {
			return 0, nil, err
		}
		pids = append(pids, pid)
	}
	return time.Since(t0), pids, nil
}
