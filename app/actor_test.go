package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// The actor of file.uploaded is the authenticated creator of the upload,
// whatever the client puts in its metadata; null for an anonymous upload.
// Both payloads validate against the file.uploaded schema.
func TestActorFromAuthenticatedRequest(t *testing.T) {
	a := MustOpen(t, Config{AnonymousUploads: true})
	up := mustUser(t, a, "uma", RoleUploader)
	other := mustUser(t, a, "otto", RoleUploader)
	tok := mustToken(t, a, up, nil)

	// Metadata that tries to name someone else changes nothing.
	spoof := map[string]string{"filename": "a.txt", "user_id": other.ID, "username": other.Username,
		"owner_id": other.ID, "owner_username": other.Username, "actor": other.Username}
	url := createAs(t, a, tok, 5, map[string]string{"Upload-Metadata": encodeMeta(spoof)})
	fillAs(t, tok, url, []byte("hello"))
	f := fileOfUpload(t, a, url)
	if f.OwnerID == nil || *f.OwnerID != up.ID || f.OwnerUsername == nil || *f.OwnerUsername != "uma" {
		t.Fatalf("file owner = %v/%v, want %s/uma", deref(f.OwnerID), deref(f.OwnerUsername), up.ID)
	}
	p := uploadedEvent(t, a, f.ID)
	if deref(p.Actor.UserID) != up.ID || deref(p.Actor.Username) != "uma" {
		t.Fatalf("actor = %s/%s, want %s/uma", deref(p.Actor.UserID), deref(p.Actor.Username), up.ID)
	}
	// The API shows the owner too.
	var got File
	if st := getJSON(t, a.URL()+"/api/v1/files/"+f.ID, &got); st != 200 || deref(got.OwnerUsername) != "uma" {
		t.Fatalf("GET file: %d owner %v", st, deref(got.OwnerUsername))
	}

	anon := createAs(t, a, "", 2, nil)
	fillAs(t, "", anon, []byte("hi"))
	af := fileOfUpload(t, a, anon)
	ap := uploadedEvent(t, a, af.ID)
	if af.OwnerID != nil || ap.Actor.UserID != nil || ap.Actor.Username != nil {
		t.Fatalf("anonymous upload: owner %v, actor %+v; want null", deref(af.OwnerID), ap.Actor)
	}
}

// The sweep finalizes without a request; it finds the owner recorded at
// creation.
func TestActorWhenSweepFinalizes(t *testing.T) {
	a := MustOpen(t, Config{})
	up := mustUser(t, a, "uma", RoleUploader)
	tok := mustToken(t, a, up, nil)
	restore := failEvents(t, a)
	url := createAs(t, a, tok, 4, nil)
	st, _ := doAs(t, tok, http.MethodPatch, url, strings.NewReader("data"), patchHdr)
	if st < 500 {
		t.Fatalf("PATCH with a failing finalize: %d, want 5xx", st)
	}
	restore()
	a.sweep(context.Background())
	f := fileOfUpload(t, a, url)
	p := uploadedEvent(t, a, f.ID)
	if deref(f.OwnerID) != up.ID || deref(p.Actor.UserID) != up.ID || deref(p.Actor.Username) != "uma" {
		t.Fatalf("swept file owner %s, actor %+v; want %s", deref(f.OwnerID), p.Actor, up.ID)
	}
}

// identityActor names the authenticated user (for events a request causes,
// such as a user's delete) and is null without one.
func TestRequestActor(t *testing.T) {
	r, _ := http.NewRequest(http.MethodDelete, "/", nil)
	if act := identityActor(requestIdentity(r)); act.UserID != nil || act.Username != nil {
		t.Fatalf("anonymous actor = %+v", act)
	}
	u := &User{ID: "01a207ca-0673-7e8a-93d4-b765bcb0528a", Username: "uma", Role: RoleUploader}
	r = r.WithContext(context.WithValue(r.Context(), principalKey, principal{user: u, via: "token"}))
	if act := identityActor(requestIdentity(r)); deref(act.UserID) != u.ID || deref(act.Username) != "uma" {
		t.Fatalf("actor = %+v", act)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
