package access

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseScopes: the scopes of a new token (API, web UI, portal token
// create --scopes). Properties: an accepted list has as many scopes as
// names, each a known scope equal to its trimmed name, none twice; the
// policy never grants a scoped token what its scopes leave out.
func FuzzParseScopes(f *testing.F) {
	f.Fuzz(func(t *testing.T, names string) {
		var list []string
		if names != "" {
			list = strings.Split(names, ",")
		}
		scopes, err := ParseScopes(list)
		if err != nil {
			return
		}
		if len(scopes) != len(list) {
			t.Fatalf("ParseScopes(%q) = %q", list, scopes)
		}
		for i, s := range scopes {
			if !slices.Contains(Scopes(), s) || string(s) != strings.TrimSpace(list[i]) || slices.Contains(scopes[:i], s) {
				t.Fatalf("ParseScopes(%q) = %q", list, scopes)
			}
		}
		if len(scopes) == 0 {
			return // stored as none: an unscoped token (docs/auth.md)
		}
		id := Identity{UserID: "u", Role: "admin", Scopes: scopes, Via: "token"}
		for op, rule := range Rules {
			if rule.Scope == "" || slices.Contains(scopes, rule.Scope) {
				continue
			}
			if _, err := (Policy{}).Check(id, op); err == nil {
				t.Fatalf("a token scoped %q may %s", scopes, op)
			}
		}
	})
}
