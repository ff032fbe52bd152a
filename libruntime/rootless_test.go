package libruntime

import "testing"

func TestDefaultRoot(t *testing.T) {
	for _, c := range []struct {
		name    string
		euid    int
		inNS    bool
		env     map[string]string
		want    string
		wantXDG bool
	}{
		{"host root ignores its XDG_RUNTIME_DIR", 0, false, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0", "USER": "root"}, "/run/runh", false},
		{"host root", 0, false, nil, "/run/runh", false},
		{"user", 1000, false, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/runh", true},
		{"user without XDG_RUNTIME_DIR", 1000, false, nil, "/run/runh", false},
		{"user with an empty XDG_RUNTIME_DIR", 1000, false, map[string]string{"XDG_RUNTIME_DIR": ""}, "/run/runh", false},
		{"root of a user namespace", 0, true, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "USER": "alice"}, "/run/user/1000/runh", true},
		{"root of a user namespace, no USER", 0, true, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/runh", true},
		{"root of a user namespace, USER=root", 0, true, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0", "USER": "root"}, "/run/runh", false},
	} {
		lookup := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
		got, xdg := defaultRoot(c.euid, func() bool { return c.inNS }, lookup)
		if got != c.want || xdg != c.wantXDG {
			t.Errorf("%s: got %s (xdg %v), want %s (xdg %v)", c.name, got, xdg, c.want, c.wantXDG)
		}
	}
}

func TestParseRootless(t *testing.T) {
	for in, want := range map[string]string{"": "auto", "auto": "auto", "AUTO": "auto", "true": "true", "1": "true", "false": "false", "0": "false", "maybe": "error"} {
		b, err := ParseRootless(in)
		got := "auto"
		switch {
		case err != nil:
			got = "error"
		case b != nil && *b:
			got = "true"
		case b != nil:
			got = "false"
		}
		if got != want {
			t.Errorf("ParseRootless(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCacheDir(t *testing.T) {
	for _, c := range []struct {
		name         string
		unprivileged bool
		env          map[string]string
		want         string
	}{
		{"host root", false, map[string]string{"HOME": "/root", "XDG_CACHE_HOME": "/root/.cache"}, "/var/cache/runh"},
		{"RUNH_CACHE_DIR wins", true, map[string]string{"RUNH_CACHE_DIR": "/srv/c", "HOME": "/home/u"}, "/srv/c"},
		{"user, XDG_CACHE_HOME", true, map[string]string{"XDG_CACHE_HOME": "/home/u/cache", "HOME": "/home/u"}, "/home/u/cache/runh"},
		{"user, HOME", true, map[string]string{"HOME": "/home/u"}, "/home/u/.cache/runh"},
		{"user, relative XDG_CACHE_HOME ignored", true, map[string]string{"XDG_CACHE_HOME": "cache", "HOME": "/home/u"}, "/home/u/.cache/runh"},
		{"user without a home", true, nil, "/var/cache/runh"},
	} {
		got := cacheDir(c.unprivileged, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
		if got != c.want {
			t.Errorf("%s: cacheDir = %q, want %q", c.name, got, c.want)
		}
	}
}
