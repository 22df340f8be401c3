package app

import (
	"errors"
	"maps"
	"mime"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Fuzz targets of the upload metadata a client sends: the Upload-Metadata
// header as tusd parses it, the checks at creation, and what finalize and
// downloads make of it. Seeds: testdata/fuzz/<target>/.

// checkCleanFilename fails t unless name is what cleanFilename promises: a
// base name (no slash or backslash, not . or ..), no control characters,
// valid UTF-8, no surrounding space, 1 to 255 bytes, unchanged when
// cleaned again.
func checkCleanFilename(t *testing.T, in, name string) {
	t.Helper()
	switch {
	case name == "" || len(name) > maxFilenameLen:
		t.Fatalf("cleanFilename(%q) = %q: %d bytes", in, name, len(name))
	case strings.ContainsAny(name, `/\`) || name == "." || name == "..":
		t.Fatalf("cleanFilename(%q) = %q: not a base name", in, name)
	case !utf8.ValidString(name):
		t.Fatalf("cleanFilename(%q) = %q: not UTF-8", in, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		t.Fatalf("cleanFilename(%q) = %q: control character", in, name)
	case strings.TrimSpace(name) != name:
		t.Fatalf("cleanFilename(%q) = %q: surrounding space", in, name)
	}
	if again := cleanFilename(name); again != name {
		t.Fatalf("cleanFilename not idempotent: %q -> %q -> %q", in, name, again)
	}
}

func FuzzCleanFilename(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		checkCleanFilename(t, name, cleanFilename(name))
	})
}

// FuzzCleanTusDisposition: whatever Content-Disposition tusd builds for a
// download (from the client's raw filename), the portal sends a header that
// parses, says inline or attachment, and names the file as the API does.
func FuzzCleanTusDisposition(f *testing.F) {
	f.Fuzz(func(t *testing.T, filename string, raw string) {
		for _, disp := range []string{"inline", "attachment"} {
			v := cleanTusDisposition(disp + ";filename=" + strconv.Quote(filename))
			got, params, err := mime.ParseMediaType(v)
			if err != nil || got != disp {
				t.Fatalf("cleanTusDisposition of %q: %q (%v)", filename, v, err)
			}
			if want := cleanFilename(filename); params["filename"] != want {
				t.Fatalf("cleanTusDisposition of %q names %q, the API %q", filename, params["filename"], want)
			}
		}
		// Any other value (tusd never sends one) still gives a safe header.
		v := cleanTusDisposition(raw)
		disp, params, err := mime.ParseMediaType(v)
		if err != nil || (disp != "inline" && disp != "attachment") {
			t.Fatalf("cleanTusDisposition(%q) = %q (%v)", raw, v, err)
		}
		if name, ok := params["filename"]; ok {
			checkCleanFilename(t, raw, name)
		}
	})
}

// FuzzUploadMetadata: an Upload-Metadata header, parsed by tusd as the
// server does, then checked at creation (checkMetadata) and recorded at
// finalize. Properties: a refusal is an errBadMetadata (a 400); everything
// creation accepts is recorded as sent, within the bounds; the recorded
// name, type and TTL are well-formed whatever was sent.
func FuzzUploadMetadata(f *testing.F) {
	a := &App{cfg: Config{FileTTL: DefaultFileTTL, FileTTLMax: DefaultFileTTLMax}}
	f.Fuzz(func(t *testing.T, header string) {
		meta := handler.ParseMetadataHeader(header)
		err := checkMetadata(meta)
		var bad errBadMetadata
		if err != nil && !errors.As(err, &bad) {
			t.Fatalf("checkMetadata: %T %v, want errBadMetadata", err, err)
		}

		checkCleanFilename(t, meta["filename"], cleanFilename(firstNonEmpty(meta["filename"], meta["name"])))
		ct := cleanContentType(contentTypeOf(meta))
		if mt, _, perr := mime.ParseMediaType(ct); perr != nil || !strings.Contains(mt, "/") || cleanContentType(ct) != ct {
			t.Fatalf("cleanContentType(%q) = %q (%v)", contentTypeOf(meta), ct, perr)
		}
		if ttl := a.fileTTL(meta); ttl <= 0 || ttl > a.cfg.FileTTLMax {
			t.Fatalf("fileTTL(%q) = %s", meta[ttlMetaKey], ttl)
		}

		extra := extraMetadata(meta)
		total := 0
		for k, v := range extra {
			total += len(k) + len(v)
			if reservedMeta[k] || meta[k] != v || len(k) > maxMetaKeyLen || len(v) > maxMetaValueLen {
				t.Fatalf("extraMetadata kept %q=%q", k, v)
			}
		}
		if len(extra) > maxMetaKeys || total > maxMetaTotal {
			t.Fatalf("extraMetadata: %d keys, %d bytes", len(extra), total)
		}
		if err != nil {
			return
		}
		// Accepted at creation: finalize records all of it.
		want := maps.Clone(meta)
		maps.DeleteFunc(want, func(k, _ string) bool { return reservedMeta[k] })
		if !maps.Equal(extra, want) {
			t.Fatalf("creation accepted %d metadata keys, finalize records %d", len(want), len(extra))
		}
		for k, v := range extra {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("accepted metadata %q=%q is not UTF-8", k, v)
			}
		}
		if v := meta[ttlMetaKey]; v != "" {
			if _, err := parseTTL(v); err != nil {
				t.Fatalf("accepted ttl %q: %v", v, err)
			}
		}
	})
}
