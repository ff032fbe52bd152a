package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// nsEnv marks the re-executed harness that runs inside the private mount
// namespace.
const nsEnv = "RUNH_BENCH_NS"

// reexecInPrivateNS runs this program again in a new mount namespace and
// returns its exit status. Go's Unshareflags makes / recursively private in
// the child before exec, so the unmount there never reaches the host, and
// whatever a crashed run leaves mounted goes away with the namespace.
func reexecInPrivateNS() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	// Signals are passed on so the child can clean up; it acts on the
	// first one only, so a terminal's SIGINT arriving twice is harmless.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: re-exec in a private mount namespace: %v\n", err)
		return 1
	}
	go func() {
		for s := range term {
			cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}

// hideCgroup2 unmounts the cgroup2 hierarchy of a hybrid layout
// (/sys/fs/cgroup/unified), which crun refuses, and says what it found.
func hideCgroup2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var v1, v2 []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		mp, fstype := fields[4], fields[sep+1]
		switch {
		case fstype == "cgroup" && strings.HasPrefix(mp, "/sys/fs/cgroup/"):
			v1 = append(v1, mp)
		case fstype == "cgroup2" && strings.HasPrefix(mp, "/sys/fs/cgroup"):
			v2 = append(v2, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	switch {
	case len(v1) == 0 && len(v2) > 0:
		return "cgroup v2 (unified); nothing hidden", nil
	case len(v2) == 0:
		return "cgroup v1; nothing hidden", nil
	}
	for _, mp := range v2 {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return "", fmt.Errorf("unmount %s in the benchmark's mount namespace: %w", mp, err)
		}
	}
	return fmt.Sprintf("cgroup v1 hybrid; %s unmounted in the benchmark's private mount namespace (all runtimes run there)",
		strings.Join(v2, ", ")), nil
}
