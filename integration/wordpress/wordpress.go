// Package wordpress drives the WordPress demo site (the images of
// scripts/mkapp.sh, docs/demo-app.md) over HTTP as its installer, its
// administrator and its visitors do: for the engine tests and for the app
// section of the benchmarks, which must deploy and install the site alike.
package wordpress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

const (
	// Admin is the administrator Install creates.
	Admin = "admin"
	// InstallerMark is in the installer's first page, which PHP serves
	// only once it has reached the database: the site's first page.
	InstallerMark = `name="weblog_title"`
	// InstallerPath is that page.
	InstallerPath = "/wp-admin/install.php"
)

// Transport never goes through a proxy the environment names: the sites
// are on the host's loopback.
var Transport = &http.Transport{Proxy: nil}

// Client is one visitor of a site: it keeps cookies and does not follow
// redirects (a login answers one).
type Client struct {
	Site string // http://host:port
	HTTP *http.Client
}

// New returns a client of site. PHP in a TCG VM is an order of magnitude
// slower than on the host: requests may take minutes.
func New(site string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{Site: site, HTTP: &http.Client{
		Jar:           jar,
		Transport:     Transport,
		Timeout:       3 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Do sends req with c and reads the whole answer, which lets a keep-alive
// connection be reused.
func Do(c *http.Client, req *http.Request) (int, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Get GETs url with c.
func Get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	return Do(c, req)
}

// Get GETs path of the site.
func (c *Client) Get(ctx context.Context, path string) (int, string, error) {
	return Get(ctx, c.HTTP, c.Site+path)
}

// PostForm posts a form to path of the site.
func (c *Client) PostForm(ctx context.Context, path string, v url.Values) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.Site+path, strings.NewReader(v.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return Do(c.HTTP, req)
}

// InstallerReady GETs the installer's page once: nil once it is served,
// else what came instead.
func (c *Client) InstallerReady(ctx context.Context) error {
	code, body, err := c.Get(ctx, InstallerPath)
	if err == nil && code == 200 && strings.Contains(body, InstallerMark) {
		return nil
	}
	return fmt.Errorf("GET %s: status %d, err %v, body %.300q", InstallerPath, code, err, body)
}

// Install completes the installer's second step, as its form posts it: the
// tables, the administrator (Admin, password) and the first post.
func (c *Client) Install(ctx context.Context, title, password string) error {
	code, body, err := c.PostForm(ctx, InstallerPath+"?step=2", url.Values{
		"weblog_title": {title}, "user_name": {Admin},
		"admin_password": {password}, "admin_password2": {password}, "pw_weak": {"1"},
		"admin_email": {"admin@example.invalid"}, "blog_public": {"0"},
		"Submit": {"Install WordPress"}, "language": {""},
	})
	if err != nil || code != 200 || !strings.Contains(body, "Success!") {
		return fmt.Errorf("install: status %d, err %v, body %.500q", code, err, body)
	}
	return nil
}

// Login posts the login form (after the GET that sets WordPress's test
// cookie) and checks the logged-in cookie came back.
func (c *Client) Login(ctx context.Context, password string) error {
	if code, _, err := c.Get(ctx, "/wp-login.php"); err != nil || code != 200 {
		return fmt.Errorf("GET wp-login.php: status %d, err %v", code, err)
	}
	code, body, err := c.PostForm(ctx, "/wp-login.php", url.Values{
		"log": {Admin}, "pwd": {password}, "wp-submit": {"Log In"},
		"redirect_to": {c.Site + "/wp-admin/"}, "testcookie": {"1"},
	})
	if err != nil || code != 302 {
		return fmt.Errorf("login: status %d (want a 302 to wp-admin), err %v, body %.500q", code, err, body)
	}
	u, _ := url.Parse(c.Site + "/")
	for _, k := range c.HTTP.Jar.Cookies(u) {
		if strings.HasPrefix(k.Name, "wordpress_logged_in_") {
			return nil
		}
	}
	return fmt.Errorf("login: no wordpress_logged_in cookie (got %v)", c.HTTP.Jar.Cookies(u))
}

// Publish creates a published post through the REST API, authenticated by
// the login's cookies and the nonce WordPress hands a logged-in user, and
// returns its ID.
func (c *Client) Publish(ctx context.Context, title string) (int, error) {
	code, nonce, err := c.Get(ctx, "/wp-admin/admin-ajax.php?action=rest-nonce")
	nonce = strings.TrimSpace(nonce)
	if err != nil || code != 200 || nonce == "" || nonce == "0" {
		return 0, fmt.Errorf("rest nonce: status %d, err %v, body %.200q", code, err, nonce)
	}
	b, _ := json.Marshal(map[string]string{"title": title, "content": "Written through the published port: " + title, "status": "publish"})
	req, err := http.NewRequestWithContext(ctx, "POST", c.Site+"/?rest_route=/wp/v2/posts", strings.NewReader(string(b)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-WP-Nonce", nonce)
	code, body, err := Do(c.HTTP, req)
	var post struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	}
	if err != nil || code != 201 || json.Unmarshal([]byte(body), &post) != nil || post.ID == 0 || post.Status != "publish" {
		return 0, fmt.Errorf("publish: status %d, err %v, body %.500q", code, err, body)
	}
	return post.ID, nil
}

// DBAddr is the database's fixed address in a podman network's IPv4
// subnet (.10 of its first /24): podman 4.3's CNI networks have no name
// service, and a restarted container must keep its address.
func DBAddr(subnet string) (string, error) {
	ip, n, err := net.ParseCIDR(strings.TrimSpace(subnet))
	if err != nil || ip.To4() == nil {
		return "", fmt.Errorf("subnet %q is not IPv4", subnet)
	}
	if ones, _ := n.Mask.Size(); ones > 24 {
		return "", fmt.Errorf("subnet %s is smaller than a /24", subnet)
	}
	a := n.IP.To4()
	return fmt.Sprintf("%d.%d.%d.10", a[0], a[1], a[2]), nil
}
