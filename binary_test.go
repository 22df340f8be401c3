package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binary the tests build once (see portalBinary).
var binDir struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir.dir != "" {
		os.RemoveAll(binDir.dir)
	}
	os.Exit(code)
}

// portalBinary returns PORTAL_BIN, or the portal built once for this test
// run, as `go build` builds it.
func portalBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PORTAL_BIN"); bin != "" {
		return bin
	}
	binDir.once.Do(func() {
		if binDir.dir, binDir.err = os.MkdirTemp("", "portal-bin-"); binDir.err != nil {
			return
		}
		os.Chmod(binDir.dir, 0o755) // tests run the binary as another user too
		binDir.bin = filepath.Join(binDir.dir, "portal")
		cmd := exec.Command("go", "build", "-o", binDir.bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		binDir.out, binDir.err = cmd.CombinedOutput()
	})
	if binDir.err != nil {
		t.Fatalf("build the portal: %v\n%s", binDir.err, binDir.out)
	}
	return binDir.bin
}

// portalProc is one `portal serve` process of the real binary.
type portalProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	stdout bytes.Buffer
	mu     sync.Mutex
	logs   strings.Builder
	exited chan error
}

// startPortal starts bin serve with JSON logs on a free loopback port and
// a fresh data directory (unless args name others), in the environment
// env (added to a copy of the test's, without PORTAL_ variables), and waits
// until it logs that it started. The process is killed when the test ends.
func startPortal(t *testing.T, bin string, env []string, args ...string) *portalProc {
	t.Helper()
	p := &portalProc{t: t, exited: make(chan error, 1)}
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json"}, args...)
	p.cmd = exec.Command(bin, all...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTAL_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var l struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "portal started" {
				started <- l.Listen
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("portal log:\n%s", p.log())
		}
	})
	select {
	case addr := <-started:
		p.base = "http://" + addr
	case err := <-p.exited:
		t.Fatalf("portal exited before it started: %v\n%s", err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("portal did not start within 30 s\n%s", p.log())
	}
	return p
}

// log returns what the portal wrote to stderr so far.
func (p *portalProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and returns the exit code.
func (p *portalProc) stop() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("portal did not stop within 30 s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

// call makes a request to the portal and returns the response and body.
func (p *portalProc) call(method, path, token string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// token issues an API token for admin with password.
func (p *portalProc) token(password string) string {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.base+"/api/v1/tokens", strings.NewReader(`{"name":"test"}`))
	req.SetBasicAuth("admin", password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != http.StatusCreated || tok.Token == "" {
		p.t.Fatalf("POST /api/v1/tokens: %s", resp.Status)
	}
	return tok.Token
}
