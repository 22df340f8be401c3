package webui

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeNext: the next= of the sign-in page and form, where a signed-in
// user is sent afterwards. Properties: the answer is "/" or next itself;
// a kept next is a path on this site (no scheme, host or user; not
// protocol-relative, no backslash or control character a browser would
// drop or turn into a slash) and resolves to this site; LoginURL carries it
// intact.
func FuzzSafeNext(f *testing.F) {
	base, _ := url.Parse("https://portal.example/ui/files")
	f.Fuzz(func(t *testing.T, next string) {
		got := SafeNext(next)
		if got == "/" {
			return
		}
		if got != next {
			t.Fatalf("SafeNext(%q) = %q", next, got)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || len(got) > 2000 ||
			strings.IndexFunc(got, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) >= 0 {
			t.Fatalf("SafeNext kept %q", got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			t.Fatalf("SafeNext kept %q (%v)", got, err)
		}
		if r := base.ResolveReference(u); r.Host != base.Host || r.Scheme != base.Scheme {
			t.Fatalf("SafeNext kept %q, which leads to %s", got, r)
		}
		lu, err := url.Parse(LoginURL(got))
		if err != nil || lu.Path != "/login" || lu.Query().Get("next") != got {
			t.Fatalf("LoginURL(%q) = %q", got, LoginURL(got))
		}
	})
}
