package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// adminPassword is the password of the portals the harness starts.
const adminPassword = "portalcrash-admin"

// portal is the real portal binary, started and killed again and again
// on one data directory and one loopback port. Its log (all lives) goes
// to portal.log beside the data directory.
type portal struct {
	bin, dataDir, logPath string
	addr                  string   // 127.0.0.1:port, the same for every life
	extra                 []string // more serve flags

	cmd  *exec.Cmd
	done chan error
	// starts counts the lives; restarts holds how long each start took
	// from exec to a ready answer.
	starts   int
	restarts []time.Duration
}

// freeAddr finds a loopback port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func newPortal(bin, dataDir, logPath string, extra ...string) (*portal, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("portal binary: %w (run make build, or pass -bin)", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &portal{bin: abs, dataDir: dataDir, logPath: logPath, addr: addr, extra: extra}, nil
}

func (p *portal) url() string { return "http://" + p.addr }

// start runs `portal serve` and waits until /readyz answers 200.
func (p *portal) start(ctx context.Context) error {
	if p.cmd != nil {
		return errors.New("portal already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== portalcrash: start %d at %s\n", p.starts+1, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"serve", "--listen", p.addr, "--data-dir", p.dataDir, "--allow-private-endpoints"}, p.extra...)
	began := time.Now()
	// The port of the previous life may take a moment to be free again.
	for try := 0; ; try++ {
		cmd := exec.Command(p.bin, args...)
		cmd.Env = append(os.Environ(), "PORTAL_ADMIN_PASSWORD="+adminPassword)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		p.cmd, p.done = cmd, make(chan error, 1)
		go func(done chan error) { done <- cmd.Wait() }(p.done)
		err := p.waitReady(ctx, 30*time.Second)
		if err == nil {
			break
		}
		p.kill()
		if try == 20 || ctx.Err() != nil || !p.lastLifeSaid("address already in use") {
			return fmt.Errorf("start portal: %w (log in %s)", err, p.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.starts++
	if p.starts > 1 {
		p.restarts = append(p.restarts, time.Since(began))
	}
	return nil
}

// waitReady polls /readyz until it answers 200, the process exits or the
// time is up.
func (p *portal) waitReady(ctx context.Context, limit time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(limit)
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("portal exited at start: %v", err)
		default:
		}
		resp, err := hc.Get(p.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("portal not ready after %s: %v", limit, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastLifeSaid reports whether the log since the last start contains s.
func (p *portal) lastLifeSaid(s string) bool {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return false
	}
	if i := bytes.LastIndex(b, []byte("=== portalcrash: start")); i >= 0 {
		b = b[i:]
	}
	return bytes.Contains(b, []byte(s))
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *portal) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (p *portal) stop() error {
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		p.kill()
		return errors.New("portal did not stop within 30s; killed")
	}
}

// logFacts are what the portal's log tells about a run.
type logFacts struct {
	SweepFinalized int // uploads the start-up (or periodic) sweep finalized
	Errors         int // lines at level ERROR
	Panics         int // Go panics and fatal runtime errors
	ErrorSamples   []string
}

var sweepCount = regexp.MustCompile(`msg="sweep finalized uploads".* count=(\d+)`)

func (p *portal) logFacts() (logFacts, error) {
	var f logFacts
	file, err := os.Open(p.logPath)
	if err != nil {
		return f, err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := sweepCount.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			f.SweepFinalized += n
		}
		if strings.Contains(line, "level=ERROR") {
			f.Errors++
			if len(f.ErrorSamples) < 5 {
				f.ErrorSamples = append(f.ErrorSamples, truncate(line, 300))
			}
		}
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			f.Panics++
		}
	}
	return f, sc.Err()
}

// adminToken issues an API token for the admin (HTTP Basic).
func adminToken(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/tokens", nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("admin", adminPassword)
	var t struct {
		Token string `json:"token"`
	}
	if err := doJSON(req, http.StatusCreated, &t); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return t.Token, nil
}

// createEndpoint registers a webhook endpoint for every event type and
// returns its signing secret.
func createEndpoint(ctx context.Context, base, token, url string) (string, error) {
	body, _ := json.Marshal(map[string]any{"url": url, "description": "portalcrash"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/endpoints", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	var out struct {
		Secret string `json:"secret"`
	}
	if err := doJSON(req, http.StatusCreated, &out); err != nil || out.Secret == "" {
		return "", fmt.Errorf("create endpoint: no secret (%v)", err)
	}
	return out.Secret, nil
}

// doJSON sends req and decodes the JSON answer, which must have status want.
func doJSON(req *http.Request, want int, out any) error {
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
