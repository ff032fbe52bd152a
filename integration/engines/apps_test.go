package engines

// An application corpus (issue 23): ordinary server images, built offline
// from Debian 12's packages by scripts/mkapp.sh, whose daemons make their
// unix sockets (and a shell its FIFO) on the container's own files, which in
// hypervisor isolation are the VM's 9p share: no --tmpfs anywhere. Under
// podman: PostgreSQL 15 (initdb at its first start, psql over the unix
// socket and over TCP), MariaDB (the WordPress demo's image: its client over
// the socket and over TCP), Redis (redis-cli over /run/redis/redis.sock and
// over TCP), nginx in front of php-fpm over a unix socket (a PHP page through
// a published port) and a busybox pipeline through a FIFO. Under
// containerd's CRI (crictl): PostgreSQL, Redis and the FIFO, a pod each.
// Every scenario runs in both modes and returns its answers (query results,
// replies, the page); TestApps/same-answers then checks that each scenario
// answered the same in every mode and engine.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// appImage is one of scripts/mkapp.sh's images: its name (the tarball
// NAME.tar), the reference the tests import it as, and its entrypoint.
type appImage struct{ name, ref, entry string }

var (
	appDB     = appImage{"db", "localhost/runh-app-db:latest", "/usr/local/bin/app-db"}
	appWeb    = appImage{"web", "localhost/runh-app-web:latest", "/usr/local/bin/app-web"}
	appPG     = appImage{"pg", "localhost/runh-app-pg:latest", "/usr/local/bin/app-pg"}
	appRedis  = appImage{"redis", "localhost/runh-app-redis:latest", "/usr/local/bin/app-redis"}
	appFPM    = appImage{"fpm", "localhost/runh-app-fpm:latest", "/usr/local/bin/app-fpm"}
	appImages = []appImage{appDB, appWeb, appPG, appRedis, appFPM}
)

const appPGPass = "runh-pg-secret"

// appSkip marks a setup failure that skips (a tool missing) rather than fails.
type appSkip struct{ error }

// appImageDir runs scripts/mkapp.sh once for every image the engine tests
// use (one debootstrap, then an apt-get per image; cached under
// /var/cache/runh/app after the first build).
var appImageDir = sync.OnceValues(func() (string, error) {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", appSkip{fmt.Errorf("debootstrap not installed (apt-get install debootstrap): the images are built with it")}
	}
	argv := []string{filepath.Join(repoRoot, "scripts/mkapp.sh")}
	for _, im := range appImages {
		argv = append(argv, im.name)
	}
	start := time.Now()
	r := runCmd(runOpts{timeout: 30 * time.Minute}, argv...)
	if r.code != 0 || r.err != nil {
		return "", fmt.Errorf("scripts/mkapp.sh: %s", r)
	}
	dir := strings.TrimSpace(r.stdout)
	fmt.Printf("apps: images in %s (%s)\n", dir, time.Since(start).Round(time.Second))
	return dir, nil
})

var (
	appImportMu sync.Mutex
	appImported = map[string]bool{} // "engine ref"
)

// appImport imports each image into engine with imp, once per run.
func appImport(engine string, imp func(dir string, im appImage) error, ims ...appImage) error {
	dir, err := appImageDir()
	if err != nil {
		return err
	}
	appImportMu.Lock()
	defer appImportMu.Unlock()
	start := time.Now()
	var done []string
	for _, im := range ims {
		if appImported[engine+" "+im.ref] {
			continue
		}
		if err := imp(dir, im); err != nil {
			return fmt.Errorf("%s: %w", engine, err)
		}
		appImported[engine+" "+im.ref] = true
		done = append(done, im.name)
	}
	if len(done) > 0 {
		fmt.Printf("apps: images %s imported into %s in %s\n", strings.Join(done, ", "), engine, time.Since(start).Round(time.Second))
	}
	return nil
}

// cliImporter imports with podman's or docker's `import`, the entrypoint
// given by --change, and removes the image when the suite ends.
func cliImporter(cli func(runOpts, ...string) result) func(string, appImage) error {
	return func(dir string, im appImage) error {
		r := cli(runOpts{timeout: 10 * time.Minute}, "import", "--change", `ENTRYPOINT ["`+im.entry+`"]`,
			filepath.Join(dir, im.name+".tar"), im.ref)
		if r.code != 0 || r.err != nil {
			return fmt.Errorf("import %s.tar: %s", im.name, r)
		}
		atExit(func() { cli(runOpts{timeout: 2 * time.Minute}, "rmi", "-f", im.ref) })
		return nil
	}
}

// podmanCLI runs podman with the engines' private configuration.
func podmanCLI(o runOpts, args ...string) result {
	o.env = append(o.env, podmanEnv...)
	return runCmd(o, append([]string{"podman"}, args...)...)
}

// criImport imports an image into the CRI's namespace: an OCI archive with
// the image's tarball as its one layer, removed once imported.
func criImport(dir string, im appImage) error {
	archive := filepath.Join(baseDir, im.name+"-oci.tar")
	defer os.Remove(archive)
	if err := writeOCIArchive(archive, []ociImage{
		{im.ref, filepath.Join(dir, im.name+".tar"), map[string]any{"Entrypoint": []string{im.entry}}},
	}); err != nil {
		return fmt.Errorf("OCI archive of %s: %w", im.name, err)
	}
	if r := ctr("k8s.io", runOpts{timeout: 10 * time.Minute}, "images", "import", archive); r.code != 0 || r.err != nil {
		return fmt.Errorf("ctr images import %s: %s", im.name, r)
	}
	atExit(func() { ctr("k8s.io", runOpts{timeout: time.Minute}, "images", "rm", im.ref) })
	// The CRI plugin learns of images imported behind its back on a periodic sync.
	if !waitFor(time.Minute, func() bool {
		return strings.Contains(runCmd(runOpts{}, crictlArgs("images", "-q", im.ref)...).stdout, "sha256:")
	}) {
		return fmt.Errorf("CRI does not list %s: %s", im.ref, runCmd(runOpts{}, crictlArgs("images")...))
	}
	return nil
}

var appsPodmanSetup = sync.OnceValue(func() error {
	if err := podmanNetSetup(); err != nil {
		return appSkip{err}
	}
	return appImport("podman", cliImporter(podmanCLI), appDB, appPG, appRedis, appFPM)
})

var appsCRISetup = sync.OnceValue(func() error {
	if err := criNetSetup(); err != nil {
		return appSkip{err}
	}
	return appImport("crictl", criImport, appPG, appRedis)
})

// ---- the answers of every scenario, engine and mode ----

var (
	appAnsMu   sync.Mutex
	appAnswers = map[string]map[string]string{} // scenario -> "engine/mode" -> answers
)

func appAnswer(scenario, where, answers string) {
	appAnsMu.Lock()
	defer appAnsMu.Unlock()
	if appAnswers[scenario] == nil {
		appAnswers[scenario] = map[string]string{}
	}
	appAnswers[scenario][where] = answers
}

// ---- a running application container, whatever its engine ----

type appCtr struct {
	t       *testing.T
	where   string                      // "podman/process", ...
	exec    func(args ...string) result // a command in the container
	logs    func(n int) string          // its last n log lines
	running func() bool                 // whether it still runs
}

func (c *appCtr) sh(script string) result { return c.exec("sh", "-c", script) }

// ok runs script in the container; it must succeed. Its trimmed stdout.
func (c *appCtr) ok(script string) string {
	c.t.Helper()
	r := c.sh(script)
	if r.code != 0 || r.err != nil {
		c.t.Fatalf("%s: %s: %s\n--- logs:\n%s", c.where, script, r, c.logs(30))
	}
	return strings.TrimSpace(strings.ReplaceAll(r.stdout, "\r", ""))
}

// until runs script until it succeeds (a server starting), for at most d,
// and fails at once if the container stops meanwhile.
func (c *appCtr) until(d time.Duration, what, script string) {
	c.t.Helper()
	start := time.Now()
	var last result
	stopped := false
	if !waitFor(d, func() bool {
		last = c.sh(script)
		if last.code == 0 && last.err == nil {
			return true
		}
		if stopped = !c.running(); stopped {
			return true
		}
		time.Sleep(time.Second)
		return false
	}) || stopped {
		state := map[bool]string{true: "the container stopped", false: "not ready after " + d.String()}[stopped]
		c.t.Fatalf("%s: %s: %s: %s\n--- logs:\n%s", c.where, what, state, last, c.logs(30))
	}
	c.t.Logf("%s ready after %s", what, time.Since(start).Round(100*time.Millisecond))
}

// onOwnFiles checks that path is a unix socket (test -S) or a FIFO (-p)
// whose directory is on the container's own files (the VM's 9p share in
// hypervisor isolation), not on a tmpfs.
func (c *appCtr) onOwnFiles(test, path string) {
	c.t.Helper()
	out := c.ok("test " + test + " " + path + " && stat -f -c %T " + filepath.Dir(path))
	if out == "tmpfs" {
		c.t.Fatalf("%s: %s is on a tmpfs: the scenario must use the container's own files", c.where, path)
	}
	c.t.Logf("%s: %s on %s", c.where, path, out)
}

// ---- the applications ----

// script runs the commands in one shell (set -e), one exec for all: an
// exec into a VM costs a second or more under TCG. Its trimmed stdout.
func (c *appCtr) script(cmds ...string) string {
	c.t.Helper()
	return c.ok("set -e\n" + strings.Join(cmds, "\n"))
}

// probePostgres: the entrypoint ran initdb at this start; psql over the unix
// socket as the trusted superuser, then over TCP with the password, and a
// wrong password refused.
func probePostgres(c *appCtr) string {
	psql := "psql -X -q -A -t -U postgres "
	sock := psql + "-h /var/run/postgresql "
	c.until(5*time.Minute, "postgres over its socket", sock+"-c 'select 1'")
	c.onOwnFiles("-S", "/run/postgresql/.s.PGSQL.5432")
	if logs := c.logs(1000); !strings.Contains(logs, "app-pg: initdb") || !strings.Contains(logs, "Success.") {
		c.t.Fatalf("%s: the entrypoint did not run initdb:\n%s", c.where, logs)
	}
	return c.script(
		"cat /var/lib/postgresql/data/PG_VERSION",
		sock+"-c 'select 1' -c 'create table t (n int)' -c 'insert into t select generate_series(1, 1000)' -c 'select count(*), sum(n) from t'",
		"PGPASSWORD="+appPGPass+" "+psql+"-h 127.0.0.1 -c "+
			`"select sum(n), inet_server_addr(), current_setting('server_version_num')::int / 10000 from t"`,
		"if PGPASSWORD=wrong "+psql+"-h 127.0.0.1 -c 'select 1' 2>/tmp/err; then exit 1; fi",
		"grep -o 'password authentication failed for user \"postgres\"' /tmp/err",
	)
}

// probeMariaDB: the demo's database, no --tmpfs: root over the unix socket
// (unix_socket authentication), the application's account over TCP.
func probeMariaDB(c *appCtr) string {
	my := "mariadb -N -B "
	c.until(5*time.Minute, "mariadb over its socket", my+"-e 'select 1'")
	c.onOwnFiles("-S", "/run/mysqld/mysqld.sock")
	return c.script(
		my+"-e 'select current_user(), @@socket'",
		my+"-h 127.0.0.1 -u wordpress -p"+wpDBPass+" wordpress -e "+
			"'create table x (n int); insert into x values (1), (2), (3); select current_user(), @@port, count(*), sum(n) from x'",
		my+"-e 'select sum(n) * 7 from wordpress.x'",
	)
}

// probeRedis: redis-cli over /run/redis/redis.sock, then over TCP.
func probeRedis(c *appCtr) string {
	cli := "redis-cli -s /run/redis/redis.sock "
	c.until(3*time.Minute, "redis over its socket", cli+"ping | grep -qx PONG")
	c.onOwnFiles("-S", "/run/redis/redis.sock")
	return c.script(
		cli+"ping",
		cli+"set runh hello",
		cli+"get runh",
		cli+"incrby n 40 >/dev/null",
		cli+"incr n",
		cli+"rpush l a b c >/dev/null",
		cli+"lrange l 0 -1",
		"redis-cli -h 127.0.0.1 get runh",
	)
}

// probePHP: a PHP page from nginx, which passes it to php-fpm over its unix
// socket, fetched from the host through a published port.
func probePHP(c *appCtr, url string) string {
	c.t.Helper()
	start := time.Now()
	var body string
	var err error
	if !waitFor(3*time.Minute, func() bool {
		body, err = httpGet(url)
		if err == nil && !strings.HasPrefix(body, "fpm-fcgi\n") {
			err = fmt.Errorf("got %q", body)
		}
		if err != nil {
			time.Sleep(time.Second)
		}
		return err == nil
	}) {
		c.t.Fatalf("%s: GET %s: %v\n--- logs:\n%s", c.where, url, err, c.logs(30))
	}
	c.t.Logf("page after %s", time.Since(start).Round(100*time.Millisecond))
	c.onOwnFiles("-S", "/run/php/php8.2-fpm.sock")
	return strings.TrimSpace(body)
}

// appFIFOScript: a pipeline through a FIFO in /tmp (the container's own
// files), then a larger one, compressed on one side of a FIFO and
// uncompressed on the other.
const appFIFOScript = `set -e
mkfifo /tmp/f
(echo hi > /tmp/f &)
cat /tmp/f
ls -l /tmp/f | cut -c1
mkfifo /tmp/g
(seq 1 20000 | gzip -c > /tmp/g &)
gunzip -c < /tmp/g | sha256sum | cut -d' ' -f1`

func probeFIFO(c *appCtr) string {
	ans := c.ok(appFIFOScript)
	c.onOwnFiles("-p", "/tmp/f")
	return ans
}

// ---- under podman ----

// appPodman runs in mode with runh (process) or runh-vm (hypervisor), the
// second runtime's path as an engine would have it configured.
func appPodman(t *testing.T, mode string) *podman {
	p := newPodman(t, mode)
	if mode == modeHypervisor && vmBin != "" {
		p.runtime = vmBin
	}
	return p
}

// app starts image detached (opts before it, args after it): the container.
func (p *podman) app(opts []string, image string, args ...string) *appCtr {
	p.t.Helper()
	n := p.name()
	start := time.Now()
	p.ok(append(append(append([]string{"run", "-d", "--name", n}, opts...), image), args...)...)
	p.t.Logf("podman run %s: %s", image, time.Since(start).Round(100*time.Millisecond))
	return &appCtr{
		t: p.t, where: "podman/" + p.mode,
		exec: func(args ...string) result { return p.run(append([]string{"exec", n}, args...)...) },
		logs: func(lines int) string {
			r := p.run("logs", "--tail", strconv.Itoa(lines), n)
			return r.stdout + r.stderr
		},
		running: func() bool {
			return strings.TrimSpace(p.run("inspect", "--format", "{{.State.Status}}", n).stdout) == "running"
		},
	}
}

// appScenario wraps a scenario's body: its answers recorded under the
// scenario's name, its time printed.
func appScenario(name, engine string, body func(t *testing.T, mode string) string) scenario {
	return scenario{name: name, fn: func(t *testing.T, mode string) {
		start := time.Now()
		defer func() {
			fmt.Printf("apps: %s/%s %s: %s%s\n", engine, mode, name, time.Since(start).Round(100*time.Millisecond),
				map[bool]string{true: " (FAILED)"}[t.Failed()])
		}()
		ans := body(t, mode)
		t.Logf("answers:\n%s", ans)
		appAnswer(name, engine+"/"+mode, ans)
	}}
}

func appsPodmanScenarios() []scenario {
	return []scenario{
		appScenario("postgres", "podman", func(t *testing.T, mode string) string {
			p := appPodman(t, mode)
			return probePostgres(p.app([]string{"-e", "PG_PASSWORD=" + appPGPass}, appPG.ref))
		}),
		appScenario("mariadb", "podman", func(t *testing.T, mode string) string {
			p := appPodman(t, mode)
			return probeMariaDB(p.app([]string{"-e", "DB_PASSWORD=" + wpDBPass}, appDB.ref))
		}),
		appScenario("redis", "podman", func(t *testing.T, mode string) string {
			p := appPodman(t, mode)
			return probeRedis(p.app(nil, appRedis.ref))
		}),
		appScenario("nginx-php", "podman", func(t *testing.T, mode string) string {
			p := appPodman(t, mode)
			network, _ := p.network(false)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			c := p.app([]string{"--network", network, "-p", addr + ":80"}, appFPM.ref)
			return probePHP(c, "http://"+addr+"/index.php")
		}),
		appScenario("fifo", "podman", func(t *testing.T, mode string) string {
			p := appPodman(t, mode)
			return probeFIFO(p.app(nil, imageName, "sleep", "100000"))
		}),
	}
}

// ---- under the CRI ----

// app runs a pod with one container of image (command nil: the image's
// entrypoint) and returns the container.
func (c *criT) app(name, image string, command []string, env map[string]string) *appCtr {
	c.t.Helper()
	start := time.Now()
	pod, podCfg := c.pod("app-"+name, false, 0)
	var envs []map[string]string
	for k, v := range env {
		envs = append(envs, map[string]string{"key": k, "value": v})
	}
	cfg := map[string]any{"metadata": map[string]any{"name": name}, "image": map[string]any{"image": image}, "envs": envs}
	if command != nil {
		cfg["command"] = command
	}
	id := c.containerOf(pod, podCfg, cfg)
	c.t.Logf("pod and container %s: %s", name, time.Since(start).Round(100*time.Millisecond))
	// Removed here, so that what is left of them can be checked.
	c.t.Cleanup(func() {
		if c.t.Failed() {
			return
		}
		for _, verb := range []string{"stopp", "rmp"} {
			if r := c.crictl(verb, pod); r.code != 0 {
				c.t.Errorf("crictl %s %s: %s", verb, pod, r)
			}
		}
		if left := runtimeLeftovers(pod, id); len(left) > 0 {
			c.t.Errorf("left after rmp:\n%s", strings.Join(left, "\n"))
		}
	})
	return &appCtr{
		t: c.t, where: "crictl/" + c.mode,
		exec: func(args ...string) result { return c.crictl(append([]string{"exec", "-s", id}, args...)...) },
		logs: func(lines int) string {
			r := c.crictl("logs", "--tail", strconv.Itoa(lines), id)
			return r.stdout + r.stderr
		},
		running: func() bool {
			r := c.crictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", id)
			return strings.TrimSpace(r.stdout) == "CONTAINER_RUNNING"
		},
	}
}

// appsCRIScenarios: PostgreSQL runs under podman only. Its initdb takes
// two minutes of TCG in a VM, and what it needs of the guest (sockets on
// the rootfs, the engine's /dev/shm as a guest tmpfs) is the same under
// either engine; TestCRI checks a pod's containers share /dev/shm, and
// the integration suite's TestEngineShm maps it. APPS_CRI_POSTGRES=1
// adds it.
func appsCRIScenarios() []scenario {
	newCRI := func(t *testing.T, mode string) *criT { return &criT{t: t, mode: mode, dir: t.TempDir()} }
	var list []scenario
	if os.Getenv("APPS_CRI_POSTGRES") != "" {
		list = append(list, appScenario("postgres", "crictl", func(t *testing.T, mode string) string {
			return probePostgres(newCRI(t, mode).app("pg", appPG.ref, nil, map[string]string{"PG_PASSWORD": appPGPass}))
		}))
	}
	return append(list,
		appScenario("redis", "crictl", func(t *testing.T, mode string) string {
			return probeRedis(newCRI(t, mode).app("redis", appRedis.ref, nil, nil))
		}),
		appScenario("fifo", "crictl", func(t *testing.T, mode string) string {
			return probeFIFO(newCRI(t, mode).app("fifo", imageName, []string{"sleep", "100000"}, nil))
		}),
	)
}

// TestApps runs the corpus under podman and under the CRI at once (the VM
// slots bound the VMs), each engine in both modes, then compares the answers.
func TestApps(t *testing.T) {
	t.Run("engines", func(t *testing.T) {
		for _, e := range []struct {
			name  string
			setup func() error
			list  []scenario
		}{
			{"podman", appsPodmanSetup, appsPodmanScenarios()},
			{"crictl", appsCRISetup, appsCRIScenarios()},
		} {
			t.Run(e.name, func(t *testing.T) {
				t.Parallel()
				// A missing tool skips (runScenarios says why); a failed build fails.
				if err := e.setup(); err != nil {
					if _, skip := err.(appSkip); !skip {
						t.Fatal(err)
					}
				}
				runScenarios(t, "apps-"+e.name, e.setup, e.list)
			})
		}
	})
	t.Run("same-answers", func(t *testing.T) {
		record(t, "apps", "same-answers")
		appAnsMu.Lock()
		defer appAnsMu.Unlock()
		var names []string
		for n := range appAnswers {
			names = append(names, n)
		}
		sort.Strings(names)
		compared := 0
		for _, n := range names {
			var wheres []string
			for w := range appAnswers[n] {
				wheres = append(wheres, w)
			}
			sort.Strings(wheres)
			if len(wheres) < 2 {
				continue
			}
			compared++
			first := appAnswers[n][wheres[0]]
			for _, w := range wheres[1:] {
				if got := appAnswers[n][w]; got != first {
					t.Errorf("%s: %s answered\n%s\nbut %s answered\n%s", n, wheres[0], first, w, got)
				}
			}
			fmt.Printf("apps: %s answered the same in %s\n", n, strings.Join(wheres, ", "))
		}
		if compared == 0 {
			t.Skip("no scenario ran in two places")
		}
	})
}
