package engines

// A real two-container application (issue 17): WordPress (nginx, php-fpm)
// and MariaDB, images built offline by scripts/mkapp.sh from Debian's
// packages, on a network of their own with the database on a named volume
// and the site on a published port. Every assignment of the two containers
// to the two isolation modes runs under podman, the all-VM one under Docker
// too. Over HTTP through the published port: WordPress's installation, a
// login, a post published through the REST API with the login's cookies and
// read back. The all-VM combinations then restart both containers, SIGKILL
// the database's VM (its QEMU) and restart it, and find every post again;
// the others stop after the read-back, which keeps make test's time in
// bounds (WP_FULL=1 runs the whole flow in every combination).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runh-project/runh/integration/wordpress"
)

const (
	wpDBPass  = "runh-db-secret"
	wpAdminPw = "runh-wp-admin-secret"
)

var wpPodmanSetup = sync.OnceValue(func() error {
	if err := podmanNetSetup(); err != nil {
		return appSkip{err}
	}
	return appImport("podman", cliImporter(podmanCLI), appDB, appWeb)
})

var wpDockerSetup = sync.OnceValue(func() error {
	if err := dockerNetSetup(); err != nil {
		return appSkip{err}
	}
	return appImport("docker", cliImporter(func(o runOpts, args ...string) result {
		o.env = dockerNetEnv
		return runCmd(o, append([]string{dockerCLI}, args...)...)
	}), appDB, appWeb)
})

// wpSlots takes one VM slot per VM of a combination, all at once (under a
// lock, so that two combinations never each hold half of what they need).
var wpSlotMu sync.Mutex

func wpSlots(t *testing.T, n int) {
	wpSlotMu.Lock()
	for range n {
		vmSlots <- struct{}{}
	}
	wpSlotMu.Unlock()
	t.Cleanup(func() {
		for range n {
			<-vmSlots
		}
	})
}

func TestWordPress(t *testing.T) {
	full := os.Getenv("WP_FULL") != ""
	type combo struct {
		engine, db, web string
	}
	var combos []combo
	for _, db := range []string{modeProcess, modeHypervisor} {
		for _, web := range []string{modeProcess, modeHypervisor} {
			combos = append(combos, combo{"podman", db, web})
		}
	}
	combos = append(combos, combo{"docker", modeHypervisor, modeHypervisor})
	for _, c := range combos {
		name := fmt.Sprintf("%s/db=%s,web=%s", c.engine, c.db, c.web)
		t.Run(name, func(t *testing.T) {
			record(t, "wordpress-"+c.engine, "db="+c.db[:1]+",web="+c.web[:1])
			skip := func(why string) {
				fmt.Printf("wordpress: %s skipped: %s\n", name, why)
				t.Skip(why)
			}
			vms := 0
			for _, md := range []string{c.db, c.web} {
				if !wpWantMode(md) {
					skip("mode " + md + " not in RUNH_TEST_MODES")
				}
				if md == modeHypervisor {
					vms++
					if ok, reason := hypervisorUsable(); !ok {
						skip("hypervisor isolation not usable: " + reason)
					}
				}
			}
			setup := wpPodmanSetup
			if c.engine == "docker" {
				setup = wpDockerSetup
			}
			if err := setup(); err != nil {
				if _, ok := err.(appSkip); ok {
					skip(err.Error())
				}
				t.Fatal(err)
			}
			t.Parallel()
			wpSlots(t, vms)
			a := newWPApp(t, c.engine, c.db, c.web)
			// Restarts and a killed database (the long part, VMs booted
			// again) under podman with both in VMs; Docker's restart of a
			// VM container is TestDocker's. WP_FULL=1: everywhere.
			a.scenario(full || (c.engine == "podman" && c.db == modeHypervisor && c.web == modeHypervisor))
		})
	}
}

func wpWantMode(md string) bool {
	for _, m := range testModes {
		if m == md {
			return true
		}
	}
	return false
}

// wpApp is one deployment: its engine's CLI, the two containers, their
// network and volume, and the site's published port.
type wpApp struct {
	t               *testing.T
	engine          string
	dbMode, webMode string
	cli             func(args ...string) result
	db, web         string // container names
	network, volume string
	site            string // http://127.0.0.1:PORT
	procs           []procID
	timings         []string
}

func newWPApp(t *testing.T, engine, dbMode, webMode string) *wpApp {
	a := &wpApp{t: t, engine: engine, dbMode: dbMode, webMode: webMode}
	env, bin := podmanEnv, "podman"
	if engine == "docker" {
		env, bin = dockerNetEnv, dockerCLI
	}
	a.cli = func(args ...string) result {
		// VM boots and stops of two containers under TCG: twice a VM's time.
		return runCmd(runOpts{env: env, timeout: 2 * cmdTimeout(modeHypervisor)}, append([]string{bin}, args...)...)
	}
	s := nextSubnet(t)
	tag := fmt.Sprintf("wp%d", s.n)
	a.db, a.web, a.network, a.volume = tag+"-db", tag+"-web", tag+"-net", tag+"-data"
	// Registered first, so it runs last: after the test's own cleanups.
	t.Cleanup(a.teardown)
	if engine == "docker" {
		a.ok("network", "create", "-o", "com.docker.network.bridge.name="+s.bridge, "--subnet", s.v4, a.network)
	} else {
		a.ok("network", "create", "--subnet", s.v4, a.network)
	}
	a.ok("volume", "create", a.volume)
	a.site = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	return a
}

func (a *wpApp) ok(args ...string) string {
	a.t.Helper()
	r := a.cli(args...)
	if r.code != 0 || r.err != nil {
		a.t.Fatalf("%s %s: %s", a.engine, strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// runtime is the --runtime value for a mode: runh's two paths for podman
// (as `--runtime runh` and `--runtime runh-vm` name them once configured),
// the daemon's runtime names for Docker.
func (a *wpApp) runtime(mode string) string {
	switch {
	case a.engine == "docker" && mode == modeHypervisor:
		return "runh-vm"
	case a.engine == "docker":
		return "runh"
	case mode == modeHypervisor:
		return vmBin
	}
	return runtimeBin
}

// start runs both containers: the database at a fixed address (podman's CNI
// networks have no name service here; Docker's embedded DNS finds it by name).
func (a *wpApp) start() {
	dbHost := a.db
	// The servers' unix sockets (/run/mysqld, /run/php) are on the
	// containers' own files, in both modes: no tmpfs.
	dbArgs := []string{"run", "-d", "--runtime", a.runtime(a.dbMode), "--name", a.db, "--network", a.network,
		"-v", a.volume + ":/var/lib/mysql", "-e", "DB_PASSWORD=" + wpDBPass}
	webArgs := []string{"run", "-d", "--runtime", a.runtime(a.webMode), "--name", a.web, "--network", a.network,
		"-p", strings.TrimPrefix(a.site, "http://") + ":80", "-e", "DB_PASSWORD=" + wpDBPass}
	if a.engine == "podman" {
		ip, err := wordpress.DBAddr(a.ok("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}", a.network))
		if err != nil {
			a.t.Fatal(err)
		}
		dbArgs = append(dbArgs, "--ip", ip)
		webArgs = append(webArgs, "--add-host", "wp-db:"+ip)
		dbHost = "wp-db"
	}
	for _, run := range [][]string{append(dbArgs, appDB.ref), append(webArgs, "-e", "DB_HOST="+dbHost, appWeb.ref)} {
		start := time.Now()
		a.ok(run...)
		a.t.Logf("%s run %s: %s", a.engine, run[5], time.Since(start).Round(100*time.Millisecond))
	}
	for _, n := range []string{a.db, a.web} {
		a.procs = append(a.procs, processTree(a.pid(n))...)
	}
}

// pid is the runtime's pid of a container (the shim in hypervisor isolation).
func (a *wpApp) pid(n string) int {
	a.t.Helper()
	p, err := strconv.Atoi(a.ok("inspect", "--format", "{{.State.Pid}}", n))
	if err != nil || p <= 0 {
		a.t.Fatalf("%s has no pid (%v): is it running?\n%s", n, err, a.logs())
	}
	return p
}

func (a *wpApp) status(n string) string {
	return strings.TrimSpace(a.cli("inspect", "--format", "{{.State.Status}}", n).stdout)
}

func (a *wpApp) logs() string {
	var b strings.Builder
	for _, n := range []string{a.db, a.web} {
		r := a.cli("logs", "--tail", "15", n)
		fmt.Fprintf(&b, "--- %s (%s) logs:\n%s%s", n, a.status(n), r.stdout, r.stderr)
	}
	return b.String()
}

// step times f and keeps the figure for the summary line.
func (a *wpApp) step(what string, f func()) {
	start := time.Now()
	f()
	d := time.Since(start).Round(100 * time.Millisecond)
	a.timings = append(a.timings, fmt.Sprintf("%s %s", what, d))
	a.t.Logf("%s: %s", what, d)
}

func (a *wpApp) scenario(full bool) {
	t := a.t
	begin := time.Now()
	defer func() {
		fmt.Printf("wordpress: %s db=%s web=%s: %s; total %s%s\n", a.engine, a.dbMode, a.webMode,
			strings.Join(a.timings, ", "), time.Since(begin).Round(time.Second), map[bool]string{true: " (FAILED)"}[t.Failed()])
	}()
	w := newWPClient(t, a.site, a.logs)
	a.step("first page", func() {
		a.start()
		// The installer's form: served by PHP, which reached the database.
		w.waitInstaller(5 * time.Minute)
	})
	a.step("install", w.install)
	a.step("login", w.login)
	var posts []wpPost
	a.step("post", func() { posts = append(posts, w.publish("runh post one "+a.tag())) })
	a.step("read back", func() { w.expectPosts(posts, time.Minute) })
	a.checkIsolation()
	if !full {
		return
	}
	a.step("restart both", func() {
		a.ok("stop", a.web, a.db)
		a.ok("start", a.db, a.web)
		a.procs = append(a.procs, processTree(a.pid(a.db))...)
		a.procs = append(a.procs, processTree(a.pid(a.web))...)
		w.expectPosts(posts, 5*time.Minute)
	})
	// Acknowledged (201) just before the kill: it must survive it.
	posts = append(posts, w.publish("runh post two "+a.tag()))
	a.step("db killed, restarted", func() {
		a.killDB()
		a.ok("start", a.db)
		a.procs = append(a.procs, processTree(a.pid(a.db))...)
		w.expectPosts(posts, 5*time.Minute)
	})
}

// checkIsolation asks each container which kernel it runs on: the host's in
// process isolation, its VM's in hypervisor isolation.
func (a *wpApp) checkIsolation() {
	host := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
	for _, c := range [][2]string{{a.db, a.dbMode}, {a.web, a.webMode}} {
		k := a.ok("exec", c[0], "uname", "-r")
		if (k == host) != (c[1] == modeProcess) {
			a.t.Fatalf("%s runs on kernel %s (the host's is %s), want %s isolation", c[0], k, host, c[1])
		}
	}
}

func (a *wpApp) tag() string { return a.engine + " " + a.dbMode + " " + a.webMode }

// killDB SIGKILLs the database: its VM's QEMU in hypervisor isolation
// (found below the runtime's pid, the shim), mariadbd (the container's init)
// in process isolation; the engine must see the container exit.
func (a *wpApp) killDB() {
	t := a.t
	procs := processTree(a.pid(a.db))
	target := procs[0]
	if a.dbMode == modeHypervisor {
		target = procID{}
		for _, p := range procs[1:] {
			if strings.Contains(p.comm(), "qemu") {
				target = p
			}
		}
		if target.pid == 0 {
			t.Fatalf("no QEMU below the database's shim %d", procs[0].pid)
		}
	}
	t.Logf("SIGKILL %d (%s)", target.pid, target.comm())
	if err := syscall.Kill(target.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Minute, func() bool { s := a.status(a.db); return s == "exited" || s == "stopped" }) {
		t.Fatalf("database after SIGKILL of %s: status %q, want exited", target.comm(), a.status(a.db))
	}
}

// teardown removes the containers, network and volume, then checks that
// nothing is left: not in the engine, and no process of the containers.
func (a *wpApp) teardown() {
	t := a.t
	rm := []string{"rm", "-f", a.web, a.db}
	if a.engine == "podman" {
		rm = []string{"rm", "-f", "-t", "0", a.web, a.db}
	}
	a.cli(rm...)
	a.cli("network", "rm", a.network)
	a.cli("volume", "rm", a.volume)
	for _, ls := range [][]string{
		{"ps", "-a", "--format", "{{.Names}}"},
		{"network", "ls", "--format", "{{.Name}}"},
		{"volume", "ls", "--format", "{{.Name}}"},
	} {
		for _, l := range strings.Fields(a.cli(ls...).stdout) {
			if l == a.db || l == a.web || l == a.network || l == a.volume {
				t.Errorf("after teardown %s %s still lists %s", a.engine, ls[0], l)
			}
		}
	}
	if !waitFor(30*time.Second, func() bool {
		for _, p := range a.procs {
			if p.alive() {
				return false
			}
		}
		return true
	}) {
		for _, p := range a.procs {
			if p.alive() {
				t.Errorf("after teardown process %d (%s) still runs", p.pid, p.comm())
			}
		}
	}
}

// ---- WordPress over HTTP ----

// wpClient is a wordpress.Client that fails the test, with both
// containers' logs, when a step fails.
type wpClient struct {
	*wordpress.Client
	t    *testing.T
	logs func() string
}

type wpPost struct {
	id    int
	title string
}

func newWPClient(t *testing.T, site string, logs func() string) *wpClient {
	return &wpClient{Client: wordpress.New(site), t: t, logs: logs}
}

func (w *wpClient) fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf(format+"\n%s", append(args, w.logs())...)
}

// waitInstaller polls the installer's page until PHP serves it.
func (w *wpClient) waitInstaller(d time.Duration) {
	w.t.Helper()
	var last error
	if !waitFor(d, func() bool {
		last = w.InstallerReady(context.Background())
		if last != nil {
			time.Sleep(time.Second)
		}
		return last == nil
	}) {
		w.fatalf("no installer page after %s: %v", d, last)
	}
}

func (w *wpClient) install() {
	w.t.Helper()
	if err := w.Install(context.Background(), "runh demo", wpAdminPw); err != nil {
		w.fatalf("%v", err)
	}
}

func (w *wpClient) login() {
	w.t.Helper()
	if err := w.Login(context.Background(), wpAdminPw); err != nil {
		w.fatalf("%v", err)
	}
}

func (w *wpClient) publish(title string) wpPost {
	w.t.Helper()
	id, err := w.Publish(context.Background(), title)
	if err != nil {
		w.fatalf("%v", err)
	}
	return wpPost{id, title}
}

// expectPosts waits until every post's page, fetched without cookies, shows
// its title, and the front page lists them all.
func (w *wpClient) expectPosts(posts []wpPost, d time.Duration) {
	w.t.Helper()
	anon := &http.Client{Timeout: w.HTTP.Timeout, Transport: wordpress.Transport}
	fetch := func(path string) (string, error) {
		code, body, err := wordpress.Get(context.Background(), anon, w.Site+path)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d: %.300q", code, body)
		}
		return body, err
	}
	var last error
	if !waitFor(d, func() bool {
		for _, p := range posts {
			body, err := fetch(fmt.Sprintf("/?p=%d", p.id))
			if err == nil && !strings.Contains(body, p.title) {
				err = fmt.Errorf("post %d's page lacks %q", p.id, p.title)
			}
			if last = err; err != nil {
				time.Sleep(time.Second)
				return false
			}
		}
		body, err := fetch("/")
		for _, p := range posts {
			if err == nil && !strings.Contains(body, p.title) {
				err = fmt.Errorf("front page lacks %q", p.title)
			}
		}
		last = err
		return err == nil
	}) {
		w.fatalf("posts not found after %s: %v", d, last)
	}
}
