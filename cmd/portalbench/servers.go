package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/doorito/portal/app"
	"github.com/doorito/portal/tus"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"
)

// benchPassword is the admin password of the portals the benchmark starts.
const benchPassword = "portalbench-admin"

// server is something the client uploads to: the portal or the baseline.
type server interface {
	URL() string
	// Clear removes the stored uploads (between repetitions, untimed).
	Clear() error
	Close() error
}

// baseline is tusd's handler with its filestore and nothing else: no
// hashing, no finalize, no database, no locker, no middleware. The durable
// baseline adds one thing: before an upload's last answer it fdatasyncs the
// stored bytes (what the durability promise costs at the least).
type baseline struct {
	dir string
	ln  net.Listener
	srv *http.Server
}

func startBaseline(dir string, durable bool) (*baseline, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	composer := handler.NewStoreComposer()
	filestore.New(dir).UseIn(composer)
	cfg := handler.Config{
		BasePath:      "/files/",
		StoreComposer: composer,
		Logger:        expslog.New(expslog.NewTextHandler(io.Discard, nil)),
	}
	if durable {
		cfg.PreFinishResponseCallback = func(ev handler.HookEvent) (handler.HTTPResponse, error) {
			return handler.HTTPResponse{}, fdatasync(ev.Upload.Storage["Path"])
		}
	}
	h, err := handler.NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", h))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baseline{dir: dir, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 20 * time.Second}}
	// The label marks the server's goroutines in a CPU profile (-cpuprofile).
	pprof.Do(context.Background(), pprof.Labels("server", "baseline"), func(context.Context) { go b.srv.Serve(ln) })
	return b, nil
}

// fdatasync flushes a file's bytes to stable storage.
func fdatasync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return syscall.Fdatasync(int(f.Fd()))
}

func (b *baseline) URL() string  { return "http://" + b.ln.Addr().String() }
func (b *baseline) Clear() error { return clearDir(b.dir) }
func (b *baseline) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

// portal is the real portal, in this process, over loopback HTTP.
type portal struct {
	app *app.App
	dir string
}

// portalConfig is the configuration of the portals the benchmark starts.
func portalConfig(dir string) app.Config {
	return app.Config{
		Listen:           "127.0.0.1:0",
		DataDir:          dir,
		AnonymousUploads: true,
		AdminPassword:    benchPassword,
		Console:          io.Discard,
		Logger:           slog.New(slog.DiscardHandler),
	}
}

func startPortal(ctx context.Context, dir string) (*portal, error) {
	return openPortal(ctx, portalConfig(dir))
}

func openPortal(ctx context.Context, cfg app.Config) (*portal, error) {
	a, err := app.New(cfg)
	if err != nil {
		return nil, err
	}
	// The label marks the portal's goroutines in a CPU profile (-cpuprofile).
	pprof.Do(ctx, pprof.Labels("server", "portal"), func(ctx context.Context) { err = a.Open(ctx) })
	if err != nil {
		return nil, err
	}
	return &portal{app: a, dir: cfg.DataDir}, nil
}

func (p *portal) URL() string                  { return "http://" + p.app.Addr() }
func (p *portal) Clear() error                 { return clearDir(p.app.UploadDir()) }
func (p *portal) Close() error                 { return p.app.Close() }
func (p *portal) store() *tus.HashStore        { return p.app.UploadStore() }
func (p *portal) rehashed() int64              { return p.store().BytesRehashed() }
func (p *portal) lastFinish() tus.FinishTiming { return p.store().LastFinish() }

// clearDir removes everything inside dir and flushes the file system, so
// one repetition's writeback does not slow the next.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	syscall.Sync()
	return errors.Join(errs...)
}

// adminToken issues an API token for the portal's admin over HTTP.
func adminToken(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/tokens", nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("admin", benchPassword)
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("create token: %s", resp.Status)
	}
	var t struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return t.Token, nil
}

// fileList is a page of GET /api/v1/files, as much as the benchmark reads.
type fileList struct {
	Items []struct {
		UploadID  string `json:"upload_id"`
		SizeBytes int64  `json:"size_bytes"`
		SHA256    string `json:"sha256"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// listFiles fetches the first page of the file list.
func listFiles(ctx context.Context, hc *http.Client, base, token string, limit int) (fileList, error) {
	return listFilesAfter(ctx, hc, base, token, limit, "")
}

// listFilesAfter fetches the page of the file list after cursor.
func listFilesAfter(ctx context.Context, hc *http.Client, base, token string, limit int, cursor string) (fileList, error) {
	var fl fileList
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/api/v1/files?limit=%d&cursor=%s", base, limit, url.QueryEscape(cursor)), nil)
	if err != nil {
		return fl, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return fl, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fl, fmt.Errorf("list files: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&fl)
	return fl, err
}
