package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/integration/wordpress"
)

// The app section: issue 17's WordPress (nginx, php-fpm) and MariaDB under
// the host's podman, as `make demo-app` runs them, for every assignment of
// the two containers to runh's two modes, with both under Debian's runc as
// the reference. Per round and contender: a fresh volume and containers,
// the time from the first `podman run` to the installer's page, the
// installation over HTTP, then the front page of the installed site under
// a few keep-alive clients for a fixed time. Its names (containers,
// network, volume, images) are its own, apart from the demo's, and all of
// it is removed at the end, on failure too.
//
// podman runs in the mount namespace the harness was started in, not in
// its private one: the containers' network namespaces and overlays must be
// mounted where every other podman looks for them (the host's `podman ps`
// fails on a netns mount it cannot see, and so would a cleanup after a
// crash), and the containers then run as `make demo-app` runs them.

const (
	app = "app" // report section and -sections name

	rowAppFirst   = "first `podman run` to the installer's page (s)"
	rowAppInstall = "installation over HTTP (s)"
	rowAppRPS     = "front page of the installed site (requests/s)"

	appName     = "runh-bench-app" // network; prefix of the rest
	appDB       = appName + "-db"  // container and volume
	appWeb      = appName + "-web"
	appDBImage  = "localhost/" + appName + "-db"
	appWebImage = "localhost/" + appName + "-web"
	appDBPass   = "runh-bench-db"
	appTitle    = "runh bench app"
	appAdminPw  = "runh-bench-admin-secret"
	appWarm     = 3 // untimed GETs of the front page before the load

	// appRef is the reference contender's series: both containers with runc.
	appRef = "runc"
)

// AppInfo is what the app figures ran on.
type AppInfo struct {
	Images  string `json:"images"` // scripts/mkapp.sh's cache directory
	Podman  string `json:"podman"`
	Clients int    `json:"clients"`
	Seconds int    `json:"seconds"`
	Page    int    `json:"pageBytes,omitempty"` // the front page's size
}

// appCombo is one contender: the runtimes (podman's --runtime paths) of
// the database and of the web server. Its name is "db+web", or appRef.
type appCombo struct {
	name, db, web string
	vms           int
}

func appComboName(db, web string) string { return db + "+" + web }

// appFront says whether a front page is the installed site's: its title
// and the post every installation starts with.
func appFront(code int, body string) bool {
	return code == 200 && strings.Contains(body, "<title>"+appTitle) && strings.Contains(body, "Hello world!") &&
		strings.Contains(body, "</html>")
}

// appLoad GETs url with clients keep-alive clients (one connection each)
// until d has passed, and returns the good answers (good(code, body)),
// the others, and the time until the last answer came.
func appLoad(ctx context.Context, url string, clients int, d time.Duration, good func(int, string) bool) (ok, bad int, elapsed time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for time.Since(start) < d && ctx.Err() == nil {
				code, body, err := wordpress.Get(ctx, c, url)
				mu.Lock()
				if err == nil && good(code, body) {
					ok++
				} else {
					bad++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, bad, time.Since(start)
}

// appRun is the section's podman state: what exists and must be removed.
type appRun struct {
	b      *bench
	hostNS *os.File // the harness's original mount namespace
	key    string   // the images' tag: mkapp.sh's cache key
	dbIP   string
	ulimit []string
	made   []string // "image REF", "network": removed at teardown
}

// podman runs one podman command. Its own timeout, not the run's context:
// the teardown must still work after an interrupt.
func (a *appRun) podman(timeout time.Duration, args ...string) (string, error) {
	if a.hostNS == nil {
		return "", errors.New("podman: no host mount namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stderr bytes.Buffer
	// nsenter's fd 3 is hostNS.
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--mount=/proc/self/fd/3", "--", "podman"}, args...)...)
	cmd.ExtraFiles = []*os.File{a.hostNS}
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		what := strings.Join(args[:min(2, len(args))], " ")
		if s := lastLine(stderr.Bytes()); s != "" {
			return "", fmt.Errorf("podman %s: %v: %s", what, err, s)
		}
		return "", fmt.Errorf("podman %s: %w", what, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// setup imports the images scripts/mkapp.sh built (it builds them once if
// they are not cached) and makes the network. An error means "skip".
func (b *bench) appSetup(a *appRun) (*AppInfo, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, errors.New("podman not installed (apt-get install podman)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return nil, errors.New("nsenter not installed (apt-get install util-linux)")
	}
	// The re-executing parent (ns.go) is in the original namespace.
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		return nil, fmt.Errorf("the harness's original mount namespace: %w", err)
	}
	a.hostNS = ns
	dir, err := b.cached(b.c.Mkapp)
	if err != nil {
		return nil, fmt.Errorf("no images: %w", err)
	}
	a.key = filepath.Base(dir)
	info := &AppInfo{Images: dir, Clients: b.c.AppClients, Seconds: b.c.AppSeconds}
	info.Podman, _ = a.podman(time.Minute, "version", "--format", "{{.Client.Version}}")
	a.remove() // a crashed run's leftovers
	a.podman(time.Minute, "network", "rm", "-f", appName)
	t0 := time.Now()
	for _, im := range []struct{ tar, ref, entry string }{
		{"db.tar", appDBImage, "app-db"}, {"web.tar", appWebImage, "app-web"},
	} {
		ref := im.ref + ":" + a.key
		a.made = append(a.made, "image "+ref)
		if _, err := a.podman(10*time.Minute, "import", "-q", "--change", `ENTRYPOINT ["/usr/local/bin/`+im.entry+`"]`,
			filepath.Join(dir, im.tar), ref); err != nil {
			return nil, err
		}
	}
	logf("app: images imported into podman in %.0f s", time.Since(t0).Seconds())
	a.made = append(a.made, "network")
	if _, err := a.podman(time.Minute, "network", "create", appName); err != nil {
		return nil, err
	}
	subnet, err := a.podman(time.Minute, "network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}", appName)
	if err != nil {
		return nil, err
	}
	if a.dbIP, err = wordpress.DBAddr(subnet); err != nil {
		return nil, err
	}
	// podman's default ulimits exceed the hard limits of a root without
	// CAP_SYS_RESOURCE (docs/engines.md): ask for the hard limits.
	var nofile, nproc unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	nproc.Max = min(nproc.Max, 32768)
	a.ulimit = []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max),
		"--ulimit", fmt.Sprintf("nproc=%d:%d", nproc.Max, nproc.Max)}
	return info, nil
}

// remove removes one round's containers and volume.
func (a *appRun) remove() {
	a.podman(3*time.Minute, "rm", "-f", "-t", "0", appWeb, appDB)
	a.podman(time.Minute, "volume", "rm", "-f", appDB)
}

// teardown removes everything the section made, and says what it could not.
func (a *appRun) teardown() {
	if a.hostNS == nil {
		return
	}
	defer a.hostNS.Close()
	a.remove()
	for i := len(a.made) - 1; i >= 0; i-- {
		var err error
		switch what, ref, _ := strings.Cut(a.made[i], " "); what {
		case "network":
			_, err = a.podman(time.Minute, "network", "rm", "-f", appName)
		case "image":
			_, err = a.podman(time.Minute, "rmi", "-f", ref)
		}
		if err != nil {
			logf("app: teardown: %v", err)
		}
	}
	for _, ls := range [][]string{{"ps", "-a"}, {"volume", "ls"}, {"network", "ls"}} {
		out, _ := a.podman(time.Minute, append(ls, "--format", "{{.Name}}")...)
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, appName) {
				logf("app: teardown: podman %s still lists %s", ls[0], n)
			}
		}
	}
}

// appSample is one round's figures for one contender.
type appSample struct {
	first, install time.Duration
	rps            float64
	ok, bad        int
	page           int
}

// round runs the site once with contender c and measures it.
func (a *appRun) round(c appCombo) (s appSample, err error) {
	defer a.remove()
	if _, err := a.podman(time.Minute, "volume", "create", appDB); err != nil {
		return s, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, err
	}
	site := "http://" + l.Addr().String()
	l.Close()
	db := append([]string{"run", "-d", "--runtime", c.db, "--name", appDB, "--network", appName, "--ip", a.dbIP,
		"-v", appDB + ":/var/lib/mysql", "-e", "DB_PASSWORD=" + appDBPass}, a.ulimit...)
	web := append([]string{"run", "-d", "--runtime", c.web, "--name", appWeb, "--network", appName,
		"-p", strings.TrimPrefix(site, "http://") + ":80", "--add-host", "wp-db:" + a.dbIP,
		"-e", "DB_HOST=wp-db", "-e", "DB_PASSWORD=" + appDBPass}, a.ulimit...)
	t0 := time.Now()
	for _, args := range [][]string{append(db, appDBImage+":"+a.key), append(web, appWebImage+":"+a.key)} {
		if _, err := a.podman(5*time.Minute, args...); err != nil {
			return s, err
		}
	}
	wp := wordpress.New(site)
	defer wp.HTTP.CloseIdleConnections()
	// The first page, as the demo waits for it: the installer's form,
	// served by PHP once it reached the database.
	for {
		last := wp.InstallerReady(a.b.ctx)
		if last == nil {
			break
		}
		if time.Since(t0) > 5*time.Minute || a.b.ctx.Err() != nil {
			return s, fmt.Errorf("no installer page after %s (%v); %s", time.Since(t0).Round(time.Second), last, a.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.first = time.Since(t0)
	t1 := time.Now()
	if err := wp.Install(a.b.ctx, appTitle, appAdminPw); err != nil {
		return s, err
	}
	s.install = time.Since(t1)
	// A few untimed pages: the first renders after the installation fill
	// PHP's and MariaDB's caches.
	for range appWarm {
		code, body, err := wp.Get(a.b.ctx, "/")
		if err != nil || !appFront(code, body) {
			return s, fmt.Errorf("front page: status %d, %v, %.300q", code, err, body)
		}
		s.page = len(body)
	}
	d := time.Duration(a.b.c.AppSeconds) * time.Second
	var elapsed time.Duration
	s.ok, s.bad, elapsed = appLoad(a.b.ctx, site+"/", a.b.c.AppClients, d, appFront)
	if a.b.ctx.Err() != nil {
		return s, a.b.ctx.Err()
	}
	if s.ok == 0 {
		return s, fmt.Errorf("no good front page in %s (%d others)", elapsed.Round(time.Second), s.bad)
	}
	s.rps = float64(s.ok) / elapsed.Seconds()
	return s, nil
}

// logs is the end of both containers' logs, for an error.
func (a *appRun) logs() string {
	var parts []string
	for _, n := range []string{appDB, appWeb} {
		out, err := a.podman(time.Minute, "logs", "--tail", "5", n)
		if err != nil {
			out = err.Error()
		}
		parts = append(parts, n+": "+oneLine(out))
	}
	return strings.Join(parts, "; ")
}

func (b *bench) benchApp() error {
	a := &appRun{b: b}
	defer a.teardown()
	info, err := b.appSetup(a)
	if err != nil {
		b.rep.skip(app, err.Error())
		return nil
	}
	b.rep.App = info
	// podman names runh's mode by the runtime's path: runh-vm is runh
	// under that name (a symlink of the run's own, to this -runh).
	vm := filepath.Join(b.dir, "app", "runh-vm")
	if err := os.MkdirAll(filepath.Dir(vm), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(b.c.Runh, vm); err != nil {
		return err
	}
	paths := map[string]string{"runh": b.c.Runh, "runh-vm": vm}
	combos := []appCombo{{name: appRef, db: b.c.Runc, web: b.c.Runc}}
	for _, db := range []string{"runh", "runh-vm"} {
		for _, web := range []string{"runh", "runh-vm"} {
			c := appCombo{name: appComboName(db, web), db: paths[db], web: paths[web]}
			for _, m := range []string{db, web} {
				if m == "runh-vm" {
					c.vms++
				}
			}
			combos = append(combos, c)
		}
	}
	var cols, pairs []string
	for _, c := range combos {
		cols = append(cols, c.name)
		if c.name != appRef {
			pairs = append(pairs, c.name+"/"+appRef)
		}
	}
	first := b.rep.result(app, app, rowAppFirst, "s", false, cols...)
	first.Note = "both `podman run -d` (the database's named volume fresh, copied up from the image) and the polling of " +
		"`/wp-admin/install.php` every 250 ms until it shows the installer's form, as `make demo-app` waits for it; " +
		"a VM's boot is in it"
	install := b.rep.result(app, app, rowAppInstall, "s", false, cols...)
	install.Note = "the installer's second step (`POST /wp-admin/install.php?step=2`), which creates the tables and the first post"
	rps := b.rep.result(app, app, rowAppRPS, "requests/s", true, cols...)
	rps.Note = fmt.Sprintf("GET / with %d keep-alive clients for %d s after %d untimed ones; counted: 200 answers with the "+
		"site's title and its first post, divided by the time to the last answer", b.c.AppClients, b.c.AppSeconds, appWarm)
	for _, x := range []*Result{first, install, rps} {
		x.RatioPairs = pairs
	}
	_, _, vmErr := b.check()
	for i := 0; i < b.c.AppN && b.ctx.Err() == nil; i++ {
		for j := range combos {
			c := combos[(i+j)%len(combos)]
			if b.ctx.Err() != nil {
				break
			}
			if c.vms > 0 && vmErr != nil {
				first.fail(c.name, vmErr)
				continue
			}
			s, err := a.round(c)
			if err != nil {
				first.fail(c.name, err)
				continue
			}
			first.add(c.name, s.first.Seconds())
			install.add(c.name, s.install.Seconds())
			rps.add(c.name, s.rps)
			info.Page = s.page
			logf("app round %d: %s: first page %.1f s, install %.1f s, %.1f requests/s (%d good, %d other)",
				i, c.name, s.first.Seconds(), s.install.Seconds(), s.rps, s.ok, s.bad)
		}
	}
	return nil
}

// appPreamble says what the app section ran.
func (r *Report) appPreamble(b *strings.Builder) {
	a := r.App
	if a == nil {
		return
	}
	n := 0
	if r.Config != nil {
		n = r.Config.AppN
	}
	fmt.Fprintf(b, "Method: WordPress (nginx, php-fpm) and MariaDB as `make demo-app` runs them (docs/demo-app.md), "+
		"images from `scripts/mkapp.sh` (`%s`), under the host's podman %s with `--runtime` naming the runtime of each "+
		"container; podman runs in the host's mount namespace, not the harness's private one (so these runtimes see "+
		"the host's cgroup layout as it is). A contender is `database+web`: `runh` is process isolation, `runh-vm` hypervisor isolation (a VM each, "+
		"TCG on a host without usable KVM); `%s` runs both with Debian's runc, the reference of the ratios. "+
		"%d rounds, the contenders rotated; each round a fresh volume and fresh containers, removed after. "+
		"The front page is %s.\n\n", a.Images, a.Podman, appRef, n, pageSize(a.Page))
}

func pageSize(n int) string {
	if n == 0 {
		return "of unknown size"
	}
	return strconv.FormatFloat(float64(n)/1024, 'f', 1, 64) + " KiB"
}

// appReading gives the app rows' medians and each combination against runc.
func (r *Report) appReading() []string {
	return r.rowReadings(app, "", "WordPress, ", "; against runc: ", func(name string) string {
		return strings.TrimSuffix(name, "/"+appRef)
	})
}
