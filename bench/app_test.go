package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAppFront(t *testing.T) {
	page := "<html><head><title>" + appTitle + " &#8211; Just another site</title></head><body>Hello world!</body></html>"
	if !appFront(200, page) {
		t.Error("the installed front page not recognised")
	}
	for name, c := range map[string]struct {
		code int
		body string
	}{
		"error status":  {500, page},
		"installer":     {200, strings.Replace(page, appTitle, "WordPress › Installation", 1)},
		"no first post": {200, strings.Replace(page, "Hello world!", "", 1)},
		"cut short":     {200, strings.TrimSuffix(page, "</html>")},
	} {
		if appFront(c.code, c.body) {
			t.Errorf("%s: taken for the front page", name)
		}
	}
}

// TestAppLoad: only good answers count, the clients reuse their
// connections, and the load stops after its time.
func TestAppLoad(t *testing.T) {
	var n atomic.Int64
	var connCount atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("good"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			connCount.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	start := time.Now()
	ok, bad, elapsed := appLoad(context.Background(), srv.URL, 3, 200*time.Millisecond,
		func(code int, body string) bool { return code == 200 && body == "good" })
	if time.Since(start) > 5*time.Second || elapsed < 200*time.Millisecond {
		t.Errorf("load took %s (elapsed %s), want about 200ms", time.Since(start), elapsed)
	}
	if ok == 0 || bad == 0 || int64(ok+bad) != n.Load() {
		t.Errorf("ok %d, bad %d, requests served %d", ok, bad, n.Load())
	}
	if bad > ok {
		t.Errorf("ok %d, bad %d: one in three should fail", ok, bad)
	}
	if c := connCount.Load(); c > 3 {
		t.Errorf("%d connections for 3 keep-alive clients", c)
	}
}

func TestAppReading(t *testing.T) {
	r := &Report{Config: &config{AppN: 2, Sections: []string{app}}}
	cols := []string{appRef, appComboName("runh", "runh"), appComboName("runh-vm", "runh-vm")}
	x := r.result(app, app, rowAppRPS, "requests/s", true, cols...)
	x.RatioPairs = []string{cols[1] + "/" + appRef, cols[2] + "/" + appRef}
	for _, v := range []float64{50, 60} {
		x.add(appRef, v)
		x.add(cols[1], v)
		x.add(cols[2], v/10)
	}
	r.finalize()
	lines := r.appReading()
	if len(lines) != 1 {
		t.Fatalf("reading: %q", lines)
	}
	for _, want := range []string{"runc 55.0 requests/s", "runh-vm+runh-vm 5.50 requests/s", "against runc: runh+runh 1.00, runh-vm+runh-vm 0.10"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("reading %q lacks %q", lines[0], want)
		}
	}
	if reportSection(app) != app {
		t.Errorf("section %q reported under %q", app, reportSection(app))
	}
	r.App = &AppInfo{Images: "/cache/app/k", Podman: "4.3.1", Page: 2048}
	md := r.markdown("")
	for _, want := range []string{"## A real application", tableTitles[app], "| " + rowAppRPS + " |", "2.0 KiB"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
