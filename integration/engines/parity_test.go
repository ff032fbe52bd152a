package engines

// Scenarios of issue 13: what an engine sees of a container must not depend
// on its isolation mode. The OOM kill (podman's OOMKilled), user namespaces
// (podman --uidmap) and podman top are scenarios of podman_test.go; the rest
// are here.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostCgroupFile reads a file of the host cgroup that the process pid is in,
// on controller's hierarchy (cgroup v1, as on this host; the v2 tree else).
func hostCgroupFile(t *testing.T, pid, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		dir := ""
		switch {
		case f[0] == "0" && f[1] == "":
			dir = "/sys/fs/cgroup" + f[2]
		case strings.Contains(","+f[1]+",", ","+controller+","):
			dir = filepath.Join("/sys/fs/cgroup", f[1], f[2])
		default:
			continue
		}
		if v, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("no %s in the %s cgroup of PID %s: %s", file, controller, pid, b)
	return ""
}

func TestPodmanParity(t *testing.T) {
	runScenarios(t, "podman", podmanSetup, []scenario{
		{name: "bind-propagation", fn: func(t *testing.T, mode string) {
			// Bind mounts with each propagation option are there, with the
			// source's own name as the mount's root.
			dir := t.TempDir()
			opts := []string{"shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"}
			args := []string{"run", "--rm"}
			check := ""
			for _, o := range opts {
				args = append(args, "-v", dir+":/mnt/"+o+":"+o)
				check += `awk -v d=/mnt/` + o + ` '$5 == d {print $4}' /proc/self/mountinfo | sed 's|.*/||'; `
			}
			args = append(args, imageName, "sh", "-c", check+"echo x > /mnt/rslave/f")
			want := strings.TrimSpace(strings.Repeat(filepath.Base(dir)+"\n", len(opts)))
			expectOut(t, newPodman(t, mode).run(args...), 0, want)
			checkFile(t, filepath.Join(dir, "f"), "x")
		}},
		{name: "host-cgroup-cpu", fn: func(t *testing.T, mode string) {
			// The host cgroup of the PID the runtime reports has the CPU
			// limits, which `update` changes: as process isolation has it.
			p := newPodman(t, mode)
			n := p.detached("--cpus", "0.5", "--cpuset-cpus", "0", "--cpu-shares", "512")
			pid := p.ok("inspect", "--format", "{{.State.Pid}}", n)
			for _, c := range []struct{ ctl, file, want string }{
				{"cpu", "cpu.cfs_quota_us", "50000"}, {"cpu", "cpu.cfs_period_us", "100000"},
				{"cpu", "cpu.shares", "512"}, {"cpuset", "cpuset.cpus", "0"},
			} {
				if got := hostCgroupFile(t, pid, c.ctl, c.file); got != c.want {
					t.Fatalf("host %s: %q, want %s", c.file, got, c.want)
				}
			}
			p.ok("update", "--cpus", "0.25", n)
			if got := hostCgroupFile(t, pid, "cpu", "cpu.cfs_quota_us"); got != "25000" {
				t.Fatalf("host cpu.cfs_quota_us after update: %q, want 25000", got)
			}
			expectOut(t, p.run("exec", n, "sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"), 0, "25000")
		}},
	})
}

func TestCtrParity(t *testing.T) {
	runScenarios(t, "ctr", containerdSetup, []scenario{
		{name: "oom-event", fn: func(t *testing.T, mode string) {
			// containerd's shim reports the OOM kill (TaskOOM) from the host
			// cgroup of the PID the runtime reports.
			c := newCtr(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout(mode)+30*time.Second)
			defer cancel()
			var events strings.Builder
			ev := exec.CommandContext(ctx, "ctr", "-a", ctrdSock, "events")
			ev.Stdout = &events
			if err := ev.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); ev.Wait() }()
			r := c.run([]string{"--rm", "--memory-limit", "33554432"}, "sh", "-c", memHog)
			if r.code != 137 {
				t.Fatalf("want exit 137, got %s", r)
			}
			if !waitFor(10*time.Second, func() bool { return hasOOMEvent(events.String(), c.id) }) {
				cancel()
				ev.Wait()
				t.Fatalf("no /tasks/oom event for %s in:\n%s", c.id, events.String())
			}
		}},
		{name: "readonly-device", fn: func(t *testing.T, mode string) {
			// A readonlyPaths entry naming a device node of the rootfs is a
			// read-only mount in the container.
			c := newCtr(t, mode)
			root := filepath.Join(t.TempDir(), "rootfs")
			if out, err := exec.Command("cp", "-a", rootfsDir, root).CombinedOutput(); err != nil {
				t.Fatalf("cp rootfs: %v: %s", err, out)
			}
			// A device without a driver: the runtime must not open it.
			if out, err := exec.Command("mknod", filepath.Join(root, "rodev"), "c", "0", "0").CombinedOutput(); err != nil {
				t.Fatalf("mknod: %v: %s", err, out)
			}
			r := ctr("default", runOpts{}, "oci", "spec")
			var spec map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
				t.Fatalf("ctr oci spec: %v: %s", err, r)
			}
			spec["root"] = map[string]any{"path": root}
			proc := spec["process"].(map[string]any)
			proc["args"] = []string{"/bin/sh", "-c", `awk '$5 == "/rodev" {split($6, o, ","); print o[1]}' /proc/self/mountinfo`}
			linux := spec["linux"].(map[string]any)
			linux["cgroupsPath"] = "/default/" + c.id
			linux["readonlyPaths"] = append(linux["readonlyPaths"].([]any), "/rodev")
			b, _ := json.Marshal(spec)
			cfg := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(cfg, b, 0o644); err != nil {
				t.Fatal(err)
			}
			argv := append(c.runArgs(), "--rm", "--config", cfg, c.id)
			expectOut(t, c.do(argv...), 0, "ro")
		}},
	})
}

// hasOOMEvent finds containerd's OOM event for id in `ctr events` output.
func hasOOMEvent(out, id string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "/tasks/oom") && strings.Contains(l, id) {
			return true
		}
	}
	return false
}

func TestDockerParity(t *testing.T) {
	runScenarios(t, "docker", dockerSetup, []scenario{
		{name: "oom-killed", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			n := d.name()
			r := d.do(d.runArgs("--name", n, "--memory", "32m", "--memory-swap", "32m", imageName, "sh", "-c", memHog)...)
			if r.code != 137 {
				t.Fatalf("want exit 137, got %s", r)
			}
			if got := d.ok("inspect", "--format", "{{.State.OOMKilled}}", n); got != "true" {
				t.Fatalf("OOMKilled: %q", got)
			}
		}},
	})
}
