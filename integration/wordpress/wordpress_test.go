package wordpress

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDBAddr(t *testing.T) {
	for subnet, want := range map[string]string{
		"10.89.0.0/24\n": "10.89.0.10",
		"10.88.7.0/24":   "10.88.7.10",
		"172.16.0.0/16":  "172.16.0.10",
	} {
		if got, err := DBAddr(subnet); err != nil || got != want {
			t.Errorf("DBAddr(%q) = %q, %v; want %q", subnet, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.89.0.0/25", "fd00::/64", "10.89.0.0"} {
		if got, err := DBAddr(bad); err == nil {
			t.Errorf("DBAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// TestInstall: the installer's page is waited for until it has its form,
// and the second step posts what WordPress's form does.
func TestInstall(t *testing.T) {
	ready := false
	var form map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET" && r.URL.Path == InstallerPath && ready:
			w.Write([]byte(`<form><input name="weblog_title"></form>`))
		case r.Method == "GET" && r.URL.Path == InstallerPath:
			http.Error(w, "Error establishing a database connection", http.StatusInternalServerError)
		case r.Method == "POST" && r.URL.RequestURI() == InstallerPath+"?step=2":
			r.ParseForm()
			form = map[string]string{}
			for k := range r.PostForm {
				form[k] = r.PostForm.Get(k)
			}
			w.Write([]byte("<h1>Success!</h1>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx := context.Background()
	if err := c.InstallerReady(ctx); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("installer before the database answers: %v, want status 500", err)
	}
	ready = true
	if err := c.InstallerReady(ctx); err != nil {
		t.Errorf("installer: %v", err)
	}
	if err := c.Install(ctx, "a site", "pw"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"weblog_title": "a site", "user_name": Admin, "admin_password": "pw", "admin_password2": "pw"} {
		if form[k] != want {
			t.Errorf("posted %s = %q, want %q", k, form[k], want)
		}
	}
	if err := New(srv.URL+"/nowhere").Install(ctx, "x", "y"); err == nil {
		t.Error("install without a Success! page: no error")
	}
}
