package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"
)

// concatRecorder is a tusd store that has every upload as a finished
// partial of 0 bytes, and a pre-create hook that records the partial
// uploads tusd parsed from Upload-Concat (then refuses the creation).
type concatRecorder struct {
	parsed []string
	called bool
}

type finishedPartial struct{ handler.Upload }

func (finishedPartial) GetInfo(context.Context) (handler.FileInfo, error) {
	return handler.FileInfo{IsPartial: true}, nil
}

func (c *concatRecorder) NewUpload(context.Context, handler.FileInfo) (handler.Upload, error) {
	return nil, errors.New("not used")
}

func (c *concatRecorder) GetUpload(context.Context, string) (handler.Upload, error) {
	return finishedPartial{}, nil
}

func (c *concatRecorder) AsConcatableUpload(handler.Upload) handler.ConcatableUpload { return nil }

// FuzzConcatParts: the guard checks the partial uploads of a concatenation
// with the ids concatParts finds in Upload-Concat; tusd concatenates the ids
// it parses itself. Property: whenever tusd would go on to create the final
// upload, it names exactly the partials concatParts found, so none escapes
// the ownership check. The oracle is tusd v2's own handler.
func FuzzConcatParts(f *testing.F) {
	handlers := map[string]*handler.UnroutedHandler{}
	recorders := map[string]*concatRecorder{}
	for _, base := range []string{"/files/", "https://portal.example/files/"} {
		rec := &concatRecorder{}
		composer := handler.NewStoreComposer()
		composer.UseCore(rec)
		composer.UseConcater(rec)
		h, err := handler.NewUnroutedHandler(handler.Config{StoreComposer: composer, BasePath: base,
			Logger: expslog.New(expslog.NewTextHandler(io.Discard, nil)),
			PreUploadCreateCallback: func(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
				rec.called, rec.parsed = true, ev.Upload.PartialUploads
				return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_STOP", "stop", http.StatusTeapot)
			}})
		if err != nil {
			f.Fatal(err)
		}
		handlers[base], recorders[base] = h, rec
	}
	f.Fuzz(func(t *testing.T, header string, absolute bool) {
		base := "/files/"
		if absolute {
			base = "https://portal.example/files/"
		}
		rec := recorders[base]
		rec.called, rec.parsed = false, nil
		r := httptest.NewRequest(http.MethodPost, "/files/", nil)
		r.Header.Set("Tus-Resumable", "1.0.0")
		r.Header.Set("Upload-Concat", header)
		handlers[base].PostFile(httptest.NewRecorder(), r)

		ours := concatParts(r.Header.Get("Upload-Concat"), base)
		for _, id := range ours {
			if strings.Contains(id, " ") || strings.HasPrefix(id, "/") || strings.HasSuffix(id, "/") {
				t.Fatalf("concatParts(%q): id %q", header, id)
			}
		}
		if rec.called && len(rec.parsed) > 0 && !slices.Equal(rec.parsed, ours) {
			t.Fatalf("Upload-Concat %q: tusd concatenates %q, the guard checks %q", header, rec.parsed, ours)
		}
	})
}

// tusPartial creates a finished partial upload of 8 bytes with the bearer
// token and returns its id.
func tusPartial(tb testing.TB, p *fuzzPortal, token string) string {
	tb.Helper()
	cred := fuzzCred{"", "Authorization", "Bearer " + token}
	hdr := http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Concat": {"partial"}, "Upload-Length": {"8"}}
	req, _ := http.NewRequest(http.MethodPost, p.a.URL()+"/files/", nil)
	req.Header = hdr
	req.Header.Set(cred.header, cred.value)
	resp, err := p.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		tb.Fatalf("create a partial upload: %v %v", resp, err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if st, off := tusPatchAs(tb, p, cred, loc, []byte("partial!")); st != http.StatusNoContent || off != 8 {
		tb.Fatalf("PATCH the partial upload: %d, offset %d", st, off)
	}
	return uploadID(loc)
}

func tusPatchAs(tb testing.TB, p *fuzzPortal, cred fuzzCred, loc string, b []byte) (int, int) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(b))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set(cred.header, cred.value)
	resp, err := p.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	off, _ := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	return resp.StatusCode, off
}

// uploadInfo reads the .info tusd keeps of an upload (nil: none).
func uploadInfo(p *fuzzPortal, id string) *handler.FileInfo {
	b, err := os.ReadFile(filepath.Join(p.a.UploadDir(), id+".info"))
	if err != nil {
		return nil
	}
	var info handler.FileInfo
	if json.Unmarshal(b, &info) != nil {
		return nil
	}
	return &info
}

// fuzzTusTargets are what a fuzzed tus request is sent to: the creation
// URL, an upload of the client's made for the request, the victim's
// partial upload, the fuzzer's partial upload, a fuzzed id, the admin's
// stored upload.
var fuzzTusTargets = []string{"", "{fresh}", "{victim}", "{partial}", "", "{upload}"}

var fuzzTusMethods = []string{"POST", "HEAD", "PATCH", "DELETE", "GET", "OPTIONS"}

// FuzzTusRequest sends fuzzed tus requests (method, upload id, the headers
// the portal or tusd reads, more headers as "Name: value" lines, a body)
// to /files/ on a portal with anonymous uploads and the IETF draft on.
// Properties beyond the answer checks:
//   - a credential that is present and invalid is refused with 401;
//   - a malformed upload id is 404, and nothing named after it exists in
//     the upload directory;
//   - a refused creation records no upload;
//   - a created concatenation names each partial once, and only partials
//     the client may write (never the victim's, unless an admin asks);
//   - a created upload is within the size limit.
func FuzzTusRequest(f *testing.F) {
	p := newFuzzPortal(f, Config{AnonymousUploads: true, IETFDraft: true})
	victim := mustUser(f, p.a, "victim", RoleUploader)
	p.ids["{victim}"] = tusPartial(f, p, mustToken(f, p.a, victim, nil))
	fuzzer, _, err := userByName(context.Background(), p.a.db.R, "fuzzer")
	if err != nil {
		f.Fatal(err)
	}
	fuzzerToken := mustToken(f, p.a, fuzzer, nil)
	p.ids["{partial}"] = tusPartial(f, p, fuzzerToken)
	mayUseVictims := map[string]bool{"admin": true, "admin session": true}
	badCred := map[string]bool{"bad token": true, "basic": true, "bad session": true}
	f.Fuzz(func(t *testing.T, who, method, target uint8, rawID, length, offset, meta, concat, override, extra string, body []byte) {
		cred := p.cred(who)
		m := fuzzTusMethods[int(method)%len(fuzzTusMethods)]
		// The client's own fresh upload of 16 bytes, removed afterwards.
		fresh := ""
		if tgt := fuzzTusTargets[int(target)%len(fuzzTusTargets)]; tgt == "{fresh}" || strings.Contains(concat, "{fresh}") {
			req, _ := http.NewRequest(http.MethodPost, p.a.URL()+"/files/", nil)
			req.Header.Set("Tus-Resumable", "1.0.0")
			req.Header.Set("Upload-Length", "16")
			req.Header.Set("Authorization", "Bearer "+fuzzerToken)
			resp, err := p.client.Do(req)
			if err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("create an upload: %v %v", resp, err)
			}
			resp.Body.Close()
			fresh = uploadID(resp.Header.Get("Location"))
			defer p.do(t, http.MethodDelete, "/files/"+fresh, fuzzCred{"", "Authorization", "Bearer " + fuzzerToken},
				http.Header{"Tus-Resumable": {"1.0.0"}}, nil)
		}
		subst := func(s string) string { return strings.ReplaceAll(p.subst(s), "{fresh}", fresh) }
		id := subst(fuzzTusTargets[int(target)%len(fuzzTusTargets)])
		if int(target)%len(fuzzTusTargets) == 4 {
			id = escapeFuzz(subst(rawID))
		}
		hdr := http.Header{"Tus-Resumable": {"1.0.0"}}
		for k, v := range map[string]string{"Upload-Length": length, "Upload-Offset": offset, "Upload-Metadata": meta,
			"Upload-Concat": subst(concat), "X-HTTP-Method-Override": override} {
			if v != "" {
				hdr.Set(k, v)
			}
		}
		if m == http.MethodPatch || len(body) > 0 {
			hdr.Set("Content-Type", "application/offset+octet-stream")
		}
		for _, line := range strings.Split(subst(extra), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		before := p.state(t)
		ans, ok := p.do(t, m, "/files/"+id, cred, hdr, body)
		if !ok {
			return
		}
		p.check(t, ans, false)
		redirected := ans.status == http.StatusMovedPermanently || ans.status == http.StatusTemporaryRedirect
		if badCred[cred.who] && m != http.MethodOptions && !redirected && ans.status != http.StatusUnauthorized {
			t.Fatalf("%s: an invalid credential (%s) was not refused with 401", ans, cred.who)
		}
		effective := m
		if m == http.MethodPost && override != "" {
			effective = override
		}
		sid := strings.Trim(pathOf("/files/" + id)[len("/files/"):], "/")
		if sid != "" && !p.a.tus.ValidID(sid) && m != http.MethodOptions && !redirected && !badCred[cred.who] {
			if ans.status != http.StatusNotFound {
				t.Fatalf("%s: the malformed upload id %q answered %d, want 404", ans, sid, ans.status)
			}
			for _, suffix := range []string{"", ".info", ".sha256", ".lock"} {
				if _, err := os.Lstat(filepath.Join(p.a.UploadDir(), sid+suffix)); err == nil {
					t.Fatalf("%s: %q exists in the upload directory", ans, sid+suffix)
				}
			}
		}
		if ans.status >= 400 && effective == http.MethodPost {
			if after := p.state(t); after != before {
				t.Fatalf("%s: the refused creation changed the database:\nbefore %s\nafter  %s", ans, before, after)
			}
		}
		if ans.status == http.StatusCreated {
			p.checkCreated(t, ans, cred, mayUseVictims[cred.who])
		}
		if ans.status < 300 && m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions {
			p.refreshTus(t, fuzzerToken, victim)
		}
	})
}

// checkCreated checks an upload a fuzzed request created, then removes it.
func (p *fuzzPortal) checkCreated(t *testing.T, ans fuzzAnswer, cred fuzzCred, mayUseVictims bool) {
	t.Helper()
	id := uploadID(ans.header.Get("Location"))
	info := uploadInfo(p, id)
	if info == nil {
		t.Fatalf("%s: created upload %q has no .info", ans, id)
	}
	defer p.do(t, http.MethodDelete, "/files/"+id, p.creds[0], http.Header{"Tus-Resumable": {"1.0.0"}}, nil)
	if info.Size > p.a.cfg.MaxUploadSize {
		t.Fatalf("%s: an upload of %d bytes, over the limit of %d", ans, info.Size, p.a.cfg.MaxUploadSize)
	}
	seen := map[string]bool{}
	for _, part := range info.PartialUploads {
		if seen[part] {
			t.Fatalf("%s: the concatenation names %s twice: %q", ans, part, info.PartialUploads)
		}
		seen[part] = true
	}
	if seen[p.subst("{victim}")] && !mayUseVictims {
		t.Fatalf("%s: %s concatenated the victim's partial upload: %q", ans, cred.who, info.PartialUploads)
	}
}

// refreshTus recreates the partial uploads a fuzzed request deleted, and
// the other fixtures.
func (p *fuzzPortal) refreshTus(t *testing.T, fuzzerToken string, victim User) {
	t.Helper()
	p.refresh(t)
	if uploadInfo(p, p.subst("{partial}")) == nil {
		id := tusPartial(t, p, fuzzerToken)
		p.mu.Lock()
		p.ids["{partial}"] = id
		p.mu.Unlock()
	}
	if uploadInfo(p, p.subst("{victim}")) == nil {
		id := tusPartial(t, p, mustToken(t, p.a, victim, nil))
		p.mu.Lock()
		p.ids["{victim}"] = id
		p.mu.Unlock()
	}
}
