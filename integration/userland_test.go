package integration

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// pyApp uses what real programs do: shared libraries and many small files
// (Python's startup), sqlite on a file with fsync, threads, and an HTTP
// server and client over loopback inside the container.
const pyApp = `
import hashlib, http.server, json, os, sqlite3, threading, urllib.request
db = sqlite3.connect("/tmp/app.db")
db.execute("create table t (k integer primary key, h text)")
db.executemany("insert into t values (?, ?)", ((i, hashlib.sha256(str(i).encode()).hexdigest()) for i in range(2000)))
db.commit()
count, = db.execute("select count(*) from t").fetchone()
last, = db.execute("select h from t where k = 1999").fetchone()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "rows": count}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
got = urllib.request.urlopen("http://127.0.0.1:%d/hello" % srv.server_port, timeout=30).read().decode()
srv.shutdown()
print("rows", count)
print("last", last[:16])
print("http", got)
print("uid", os.getuid())
`

// TestUserland runs a Python program on a Debian rootfs: the same output in
// both modes (scripts/mkdebian.sh builds the rootfs; make integration
// passes it as RUNH_TEST_DEBIAN_ROOTFS).
func TestUserland(t *testing.T) {
	root := os.Getenv("RUNH_TEST_DEBIAN_ROOTFS")
	forEachMode(t, func(t *testing.T, x *h) {
		if root == "" {
			t.Skip("RUNH_TEST_DEBIAN_ROOTFS not set (make integration builds it with scripts/mkdebian.sh)")
		}
		if _, err := os.Stat(filepath.Join(root, "usr/bin/python3")); err != nil {
			t.Skipf("no python3 in %s: %v", root, err)
		}
		id := x.id("userland")
		stdout := createFile(t, x.dir, "userland.out")
		bundle := x.bundle("userland", func(s *specs.Spec) { s.Root = &specs.Root{Path: root, Readonly: true} }, "python3", "-c", pyApp)
		if r := x.runO(opts{stdout: stdout}, "run", "--bundle", bundle, id); r.code != 0 {
			t.Fatalf("run: %v: %s", r, readFile(fileName(stdout)))
		}
		want := "rows 2000\nlast ce8457d59078a699\nhttp {\"path\": \"/hello\", \"rows\": 2000}\nuid 0\n"
		if out := readFile(fileName(stdout)); out != want {
			t.Errorf("output:\n%s\nwant:\n%s", out, want)
		}
	})
}
