package webui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// assets serves the embedded static files under content-hashed URLs:
// /static/<hash>/<name>. A URL with the current hash is cached for a
// year (its content can never change); any other is served with
// revalidation, so a page from an older build still works.
type assets struct {
	files map[string]asset
}

type asset struct {
	data []byte
	hash string // first 16 hex digits of the SHA-256
}

func newAssets(fsys fs.FS) (*assets, error) {
	a := &assets{files: map[string]asset{}}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		a.files[name] = asset{data: data, hash: hex.EncodeToString(sum[:8])}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webui: read assets: %w", err)
	}
	return a, nil
}

// url returns the content-hashed URL of an asset, or "" when the build
// lacks it (the Uppy bundle before `make ui`).
func (a *assets) url(name string) string {
	f, ok := a.files[name]
	if !ok {
		return ""
	}
	return "/static/" + f.hash + "/" + name
}

// ServeHTTP serves /static/ with the prefix stripped.
func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hash, name, ok := strings.Cut(r.URL.Path, "/")
	if !ok {
		hash, name = "", r.URL.Path
	}
	f, found := a.files[name]
	if !found {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if hash == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", `"`+f.hash+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
}
