package httpkind

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzPath checks the promise of splitPath for any text it accepts: the
// request URL airlock builds stays on the resource's origin and under its
// base path, its decoded segments hold no dot segment and no "/", and
// normalising the path (as a server or proxy might) changes nothing.
//
//	go test -run '^$' -fuzz FuzzPath -fuzztime 30s ./tools/http/
func FuzzPath(f *testing.F) {
	for _, s := range []string{"/v1/users", "/a/../b", "/%2e%2e/x", "//evil/x", "https://evil/", "/a%2fb", "/a/./b",
		"/.%2e/", "/%252e%252e/", "/a\\b", "/a?b", "/x/", "/", "/a%00", "/%25", "/100%25/x", "/@evil.example", "/:80/x", "/;x=..;/"} {
		f.Add(s)
	}
	base := &url.URL{Scheme: "https", Host: "api.example.com:8443", Path: "/base"}
	r := &Resource{base: base}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := splitPath(p)
		if err != nil {
			return
		}
		for _, s := range segs {
			if s == "." || s == ".." || strings.ContainsAny(s, "/\\") {
				t.Fatalf("%q accepted with segment %q", p, s)
			}
		}
		a := &RequestArgs{Path: escapedPath(p), segments: segs}
		u := r.requestURL(a)
		back, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("%q: built URL %q does not parse: %v", p, u, err)
		}
		if back.Scheme != "https" || back.Host != base.Host || back.User != nil || back.RawQuery != "" || back.Fragment != "" {
			t.Fatalf("%q: built URL %q leaves the origin", p, u)
		}
		if !strings.HasPrefix(back.EscapedPath(), "/base/") && back.EscapedPath() != "/base" {
			t.Fatalf("%q: built URL %q leaves the base path", p, u)
		}
		clean := path.Clean(back.Path)
		if strings.HasSuffix(back.Path, "/") && clean != "/" {
			clean += "/"
		}
		if clean != back.Path {
			t.Fatalf("%q: the path %q normalises to %q", p, back.Path, clean)
		}
	})
}
