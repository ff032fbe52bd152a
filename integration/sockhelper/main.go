// Command sockhelper is the unix socket server and client that
// TestSpecialFiles copies into a container's rootfs: the busybox userland
// of the test bundles has no unix socket tool (its nc speaks TCP and UDP
// only). The test builds it static (CGO_ENABLED=0), so it runs in any
// rootfs and in the VM's guest.
//
//	sockhelper listen PATH [N]  socket, bind PATH, listen, print "listening PATH",
//	                            then answer N connections (default 1, 0 for ever):
//	                            read a line, write "pong LINE" back, close.
//	                            PATH is left in place (no unlink).
//	sockhelper dial PATH MSG    connect to PATH, send MSG, print the answer.
//	sockhelper shm PATH [MSG]   map PATH (made one page long) shared and
//	                            writable, as POSIX shared memory does; with
//	                            MSG write it there, then print what the page
//	                            holds up to its first NUL.
//
// It makes the system calls itself so that a failure is reported with its
// errno: "OP PATH: ENAME (text) after DURATION", exit status 1. A dial, or
// a listen with N > 0, that takes more than 20 s prints "timeout" and exits
// with status 2 rather than hang.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	path := os.Args[2]
	switch {
	case os.Args[1] == "listen" && len(os.Args) <= 4:
		n := 1
		if len(os.Args) == 4 {
			var err error
			if n, err = strconv.Atoi(os.Args[3]); err != nil || n < 0 {
				usage()
			}
		}
		if n > 0 {
			deadline()
		}
		listen(path, n)
	case os.Args[1] == "dial" && len(os.Args) == 4:
		deadline()
		dial(path, os.Args[3])
	case os.Args[1] == "shm" && len(os.Args) <= 4:
		msg := ""
		if len(os.Args) == 4 {
			msg = os.Args[3]
		}
		shm(path, msg)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sockhelper listen PATH [N] | sockhelper dial PATH MSG | sockhelper shm PATH [MSG]")
	os.Exit(64)
}

func deadline() {
	time.AfterFunc(20*time.Second, func() {
		fmt.Println("timeout")
		os.Exit(2)
	})
}

// fail reports a failed call with its errno name and how long it took.
func fail(op, path string, start time.Time, err error) {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = fmt.Errorf("%s (%v)", unix.ErrnoName(errno), errno)
	}
	fmt.Printf("%s %s: %v after %v\n", op, path, err, time.Since(start))
	os.Exit(1)
}

func socket() int {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket", "", time.Now(), err)
	}
	return fd
}

func listen(path string, n int) {
	fd := socket()
	start := time.Now()
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		fail("bind", path, start, err)
	}
	if err := syscall.Listen(fd, 8); err != nil {
		fail("listen", path, start, err)
	}
	fmt.Println("listening", path)
	for i := 0; n == 0 || i < n; i++ {
		c, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
		if err != nil {
			fail("accept", path, start, err)
		}
		conn := os.NewFile(uintptr(c), "conn")
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err == nil {
			_, err = fmt.Fprintf(conn, "pong %s", line)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
		}
		conn.Close()
	}
}

func dial(path, msg string) {
	fd := socket()
	start := time.Now()
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		fail("connect", path, start, err)
	}
	conn := os.NewFile(uintptr(fd), "conn")
	if _, err := fmt.Fprintln(conn, msg); err != nil {
		fail("write", path, start, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fail("read", path, start, err)
	}
	fmt.Println(strings.TrimSuffix(line, "\n"))
}

func shm(path, msg string) {
	start := time.Now()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		fail("open", path, start, err)
	}
	const size = 4096
	if err := unix.Ftruncate(fd, size); err != nil {
		fail("ftruncate", path, start, err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fail("mmap", path, start, err)
	}
	if msg != "" {
		copy(mem, msg+"\x00")
	}
	n := 0
	for n < size && mem[n] != 0 {
		n++
	}
	fmt.Println(string(mem[:n]))
}
