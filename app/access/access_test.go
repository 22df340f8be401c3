package access

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	admin := Identity{UserID: "a", Role: RoleAdmin, Via: "token"}
	uploader := Identity{UserID: "u", Role: RoleUploader, Via: "session"}
	runner := Identity{UserID: "a", Role: RoleAdmin, Scopes: []Scope{ScopeFilesRead, ScopeEventsRead}, Via: "token"}
	anon := Identity{}
	cases := []struct {
		name  string
		p     Policy
		id    Identity
		op    Op
		reach Reach
		err   error
	}{
		{"admin reads any file", Policy{}, admin, FileRead, Any, nil},
		{"uploader reads own files", Policy{}, uploader, FileRead, Own, nil},
		{"uploader may not read events", Policy{}, uploader, EventRead, None, ErrForbidden},
		{"anonymous may not read files", Policy{}, anon, FileRead, None, ErrUnauthenticated},
		{"anonymous may not upload by default", Policy{}, anon, UploadCreate, None, ErrUnauthenticated},
		{"anonymous uploads", Policy{AnonymousUploads: true}, anon, UploadCreate, Own, nil},
		{"anonymous never downloads", Policy{AnonymousUploads: true}, anon, UploadRead, None, ErrUnauthenticated},
		{"runner reads any file", Policy{}, runner, FileRead, Any, nil},
		{"runner reads events", Policy{}, runner, EventRead, Any, nil},
		{"runner may not delete", Policy{}, runner, FileDelete, None, ErrForbidden},
		{"runner may not manage users", Policy{}, runner, UserWrite, None, ErrForbidden},
		{"runner may not upload", Policy{}, runner, UploadCreate, None, ErrForbidden},
		{"a scoped token still knows who it is", Policy{}, runner, Me, Own, nil},
		{"unknown operation", Policy{}, admin, Op("nope"), None, ErrForbidden},
	}
	for _, tc := range cases {
		reach, err := tc.p.Check(tc.id, tc.op)
		if reach != tc.reach || !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, reach, err, tc.reach, tc.err)
		}
	}
	if err := (Policy{}).CheckOwned(uploader, FileRead, "someone else"); !errors.Is(err, ErrHidden) {
		t.Errorf("someone else's file: %v, want ErrHidden", err)
	}
	if err := (Policy{}).CheckOwned(admin, FileRead, "someone else"); err != nil {
		t.Errorf("admin on someone else's file: %v", err)
	}
	if err := (Policy{AnonymousUploads: true}).CheckOwned(anon, UploadWrite, ""); err != nil {
		t.Errorf("anonymous on an anonymous upload: %v", err)
	}
	if err := (Policy{AnonymousUploads: true}).CheckOwned(anon, UploadWrite, "u"); !errors.Is(err, ErrHidden) {
		t.Errorf("anonymous on an account's upload: %v, want ErrHidden", err)
	}
}

func TestEveryOperationHasARule(t *testing.T) {
	for _, op := range []Op{FileRead, FileDelete, FileExpiry, UploadCreate, UploadWrite, UploadRead, EventRead,
		EndpointRead, EndpointWrite, DeliveryRetry, UserRead, UserWrite, TokenRead, TokenWrite, Dashboard, Me} {
		if _, ok := Rules[op]; !ok {
			t.Errorf("no rule for %s", op)
		}
	}
	if _, err := ParseScopes([]string{"files:read", "files:read"}); err == nil {
		t.Error("a scope named twice was accepted")
	}
	if _, err := ParseScopes([]string{"files:admin"}); err == nil {
		t.Error("an unknown scope was accepted")
	}
}
