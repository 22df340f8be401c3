package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorito/portal/app"
)

func TestServeFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"PORTAL_LISTEN":          "127.0.0.1:9999",
		"PORTAL_DATA_DIR":        "/env/dir",
		"PORTAL_FILE_TTL":        "48h",
		"PORTAL_MAX_UPLOAD_SIZE": "2GiB",
		"PORTAL_CORS_ORIGINS":    "https://a.example, https://b.example",
	}
	cfg, _, err := parseServe([]string{"--data-dir", "/flag/dir"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.DataDir != "/flag/dir" || cfg.FileTTL != 48*time.Hour ||
		cfg.MaxUploadSize != 2<<30 || len(cfg.CORSOrigins) != 2 || cfg.CORSOrigins[1] != "https://b.example" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if _, _, err := parseServe(nil, func(k string) string {
		if k == "PORTAL_FILE_TTL" {
			return "forever"
		}
		return ""
	}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "PORTAL_FILE_TTL") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, _, err := parseServe([]string{"--max-upload-size", "lots"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("bad size accepted")
	}
}

func TestHelpListsFlagsWithEnv(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"serve", "--help"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--listen", "PORTAL_LISTEN", "--data-dir", "PORTAL_DATA_DIR", "--public-url",
		"--file-ttl", "--file-ttl-max", "--max-upload-size", "--cors-origins", "PORTAL_CORS_ORIGINS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s:\n%s", want, out.String())
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "5MiB": 5 << 20, "1GB": 1e9, "10 KiB": 10240} {
		if got, err := app.ParseSize(in); err != nil || got != want {
			t.Errorf("app.ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GB", "GB", "9999999999TiB"} {
		if _, err := app.ParseSize(in); err == nil {
			t.Errorf("app.ParseSize(%q) accepted", in)
		}
	}
}

func TestHealthcheckExitCode(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	var errOut bytes.Buffer
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, io.Discard, &errOut); code != 0 {
		t.Fatalf("ready portal: exit %d: %s", code, errOut.String())
	}
	status = http.StatusServiceUnavailable
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, io.Discard, &errOut); code == 0 {
		t.Fatal("unready portal: exit 0")
	}
	srv.Close()
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, io.Discard, &errOut); code == 0 {
		t.Fatal("unreachable portal: exit 0")
	}
}

// The default listen address is loopback wherever the binary runs; the
// Docker image opts into 0.0.0.0 through PORTAL_LISTEN.
func TestDefaultListenIsLoopback(t *testing.T) {
	cfg, _, err := parseServe(nil, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.DataDir != "./data" {
		t.Fatalf("defaults: listen %q, data dir %q", cfg.Listen, cfg.DataDir)
	}
}

// portal, portal help and portal --help list every command; a bare portal
// is a usage error.
func TestCommandList(t *testing.T) {
	commands := []string{"serve", "healthcheck", "backup", "user add", "token create", "version", "help"}
	for _, c := range []struct {
		args []string
		code int
	}{{nil, 2}, {[]string{"help"}, 0}, {[]string{"--help"}, 0}, {[]string{"-h"}, 0}} {
		var out, errOut bytes.Buffer
		code := run(c.args, &out, &errOut)
		text := out.String() + errOut.String()
		if code != c.code {
			t.Errorf("portal %v: exit %d, want %d", c.args, code, c.code)
		}
		for _, cmd := range commands {
			if !strings.Contains(text, "\n  "+cmd+" ") {
				t.Errorf("portal %v does not list %q:\n%s", c.args, cmd, text)
			}
		}
	}
	var errOut bytes.Buffer
	if code := run([]string{"--listen", ":80"}, io.Discard, &errOut); code != 2 ||
		errOut.String() != "portal: flag --listen before a command: flags follow the command, e.g. portal serve --listen (portal help lists the commands)\n" {
		t.Errorf("a flag before the command: exit %d: %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"sevre"}, io.Discard, &errOut); code != 2 || strings.Count(errOut.String(), "\n") != 1 ||
		!strings.Contains(errOut.String(), `unknown command "sevre"`) {
		t.Errorf("an unknown command: exit %d: %q", code, errOut.String())
	}
}

func TestVersionCommands(t *testing.T) {
	var a, b bytes.Buffer
	if run([]string{"version"}, &a, io.Discard) != 0 || run([]string{"--version"}, &b, io.Discard) != 0 {
		t.Fatal("version: non-zero exit")
	}
	if a.String() != b.String() || !strings.HasPrefix(a.String(), "doorito-portal ") || strings.Count(a.String(), "\n") != 1 {
		t.Fatalf("portal version %q, portal --version %q", a.String(), b.String())
	}
	defer func(v string) { version = v }(version)
	version = "v9.8.7"
	if got := versionLine(); !strings.HasPrefix(got, "doorito-portal v9.8.7 (") || !strings.Contains(got, runtime.Version()) {
		t.Errorf("with -X main.version: %q", got)
	}
}

// portal serve --help lists every flag once, under its concern, with its
// environment variable, and the defaults rather than the environment.
func TestServeHelpGroupsFlags(t *testing.T) {
	t.Setenv("PORTAL_FILE_TTL", "3h")
	var out bytes.Buffer
	if code := run([]string{"serve", "--help"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := out.String()
	last := -1
	for _, g := range []string{"Network", "Storage", "Lifecycle", "Webhooks", "Auth", "Logging"} {
		i := strings.Index(help, "\n"+g+":\n")
		if i < last {
			t.Fatalf("group %s missing or out of order:\n%s", g, help)
		}
		last = i
	}
	f := newServeFlags()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	for _, d := range f.defs {
		if !slices.Contains(flagGroups, d.group) {
			t.Errorf("--%s is in no group of --help (%q)", d.name, d.group)
		}
		fs.Var(d.value, d.name, d.usage)
		if n := strings.Count(help, "  --"+d.name+" "); n != 1 {
			t.Errorf("--help lists --%s %d times", d.name, n)
		}
		if !strings.Contains(help, envName(d.name)) {
			t.Errorf("--help lacks %s", envName(d.name))
		}
	}
	if !strings.Contains(help, "PORTAL_FILE_TTL, default 168h") {
		t.Errorf("--help shows the environment's value as the default:\n%s", help)
	}
	if !strings.Contains(help, "PORTAL_ADMIN_PASSWORD") || !strings.Contains(help, "SSL_CERT_FILE") {
		t.Error("--help does not say which settings come from the environment only")
	}
}

// Every serve flag refuses a bad value with one line naming the flag and
// what it wants, exit code 2, before anything is created.
func TestServeRefusesEveryBadFlag(t *testing.T) {
	for _, d := range newServeFlags().defs {
		bad := "!!"
		if _, ok := d.value.(*textValue); ok {
			bad = " "
		}
		t.Run(d.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			var out, errOut bytes.Buffer
			code := run([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--" + d.name + "=" + bad}, &out, &errOut)
			prefix := fmt.Sprintf("portal: --%s %q: ", d.name, bad)
			msg := errOut.String()
			if code != 2 || !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, d.value.want()+"\n") || strings.Count(msg, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line %q…%q", code, msg, prefix, d.value.want())
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the data dir was created (%v)", err)
			}
		})
	}
}

// Bad input from flags and the environment: each error once, on one line,
// naming the flag or variable and the accepted form; exit code 2.
func TestServeBadInputMessages(t *testing.T) {
	noCerts := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(noCerts, []byte("no certificates here\n"), 0o600)
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--file-ttl", "banana"}, nil, `portal: --file-ttl "banana": want a positive duration like 48h`},
		{nil, map[string]string{"PORTAL_FILE_TTL": "banana"}, `portal: PORTAL_FILE_TTL="banana": want a positive duration like 48h`},
		{[]string{"--file-ttl", "0s"}, nil, `portal: --file-ttl "0s": want a positive duration like 48h`},
		{[]string{"--listen", "nonsense"}, nil, `portal: --listen "nonsense": want host:port like 127.0.0.1:8080 (0.0.0.0:8080 for every interface)`},
		{[]string{"--listen", "127.0.0.1:99999"}, nil, `portal: --listen "127.0.0.1:99999": want host:port like 127.0.0.1:8080 (0.0.0.0:8080 for every interface)`},
		{[]string{"--public-url", "uploads.example.org"}, nil, `portal: --public-url "uploads.example.org": want an absolute http(s) URL like https://uploads.example.org`},
		{[]string{"--cors-origins", "app.example.org"}, nil, `portal: --cors-origins "app.example.org": want comma-separated origins like https://app.example.org,http://localhost:3000, or *`},
		{[]string{"--max-upload-size", "lots"}, nil, `portal: --max-upload-size "lots": want a size like 5GiB, 500MB or 1048576 (0: no limit)`},
		{[]string{"--expiry-schedule", "sometimes"}, nil, `portal: --expiry-schedule "sometimes": expected exactly 5 fields, found 1: [sometimes]; want a cron spec like "0 3 * * *", "@every 5m" or "CRON_TZ=Europe/Berlin 0 3 * * *"`},
		{[]string{"--cleanup-schedule", "CRON_TZ=Mars/Olympus 0 3 * * *"}, nil, `portal: --cleanup-schedule "CRON_TZ=Mars/Olympus 0 3 * * *": provided bad location Mars/Olympus: unknown time zone Mars/Olympus; want a cron spec`},
		{[]string{"--log-level", "loud"}, nil, `portal: --log-level "loud": want debug, info, warn or error`},
		{[]string{"--delivery-workers", "0"}, nil, `portal: --delivery-workers "0": want a whole number of at least 1 like 16`},
		{[]string{"--auth-rate-limit", "0"}, nil, `portal: --auth-rate-limit "0": want requests per minute like 10, or -1 for no limit`},
		{[]string{"--endpoint-allow-cidrs", "10.0.0.0/33"}, nil, `portal: --endpoint-allow-cidrs "10.0.0.0/33": want comma-separated networks`},
		{[]string{"--delivery-retry-schedule", "5s,never"}, nil, `portal: --delivery-retry-schedule "5s,never": want 1 to 30 comma-separated waits`},
		{[]string{"--secret-rotation-grace", "200h"}, nil, `portal: --secret-rotation-grace "200h": want a duration from 1s to 168h like 24h`},
		{[]string{"--trust-proxy=maybe"}, nil, `portal: --trust-proxy "maybe": want true or false`},
		{nil, map[string]string{"PORTAL_ANONYMOUS_UPLOADS": "yes"}, `portal: PORTAL_ANONYMOUS_UPLOADS="yes": want true or false`},
		{[]string{"--bogus"}, nil, `portal: unknown flag --bogus (portal serve --help lists the flags)`},
		{[]string{"--listen"}, nil, `portal: --listen needs a value: want host:port like 127.0.0.1:8080`},
		{[]string{"now"}, nil, `portal: unexpected argument "now": portal serve takes only flags (see portal serve --help)`},
		{[]string{"--file-ttl", "800h"}, nil, `portal: --file-ttl 800h is longer than --file-ttl-max 720h: want a default lifetime no longer than the maximum`},
		{nil, map[string]string{"PORTAL_FILE_TTL_MAX": "1h"}, `portal: --file-ttl 168h is longer than PORTAL_FILE_TTL_MAX 1h`},
		{nil, map[string]string{"PORTAL_ADMIN_PASSWORD_FILE": "/nonexistent/pw"}, `portal: PORTAL_ADMIN_PASSWORD_FILE: open /nonexistent/pw: no such file or directory`},
		{nil, map[string]string{"SSL_CERT_FILE": noCerts}, `portal: SSL_CERT_FILE="` + noCerts + `": want a file of PEM certificates; it holds none`},
	} {
		t.Run(strings.Join(c.args, " ")+fmt.Sprint(c.env), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir}, c.args...)
			var out, errOut bytes.Buffer
			code := run(args, &out, &errOut)
			if code != 2 || !strings.HasPrefix(errOut.String(), c.want) || strings.Count(errOut.String(), "\n") != 1 || out.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line starting %q", code, out.String(), errOut.String(), c.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the data dir was created (%v)", err)
			}
		})
	}
}

// A busy listen address is reported before the data directory or the
// first admin (and its one-time password) is created.
func TestServeBindsBeforeCreatingAnything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := filepath.Join(t.TempDir(), "data")
	var out, errOut bytes.Buffer
	code := run([]string{"serve", "--listen", busy.Addr().String(), "--data-dir", dir}, &out, &errOut)
	want := fmt.Sprintf("portal: --listen %q: cannot listen: bind: address already in use\n", busy.Addr())
	if code != 1 || errOut.String() != want || out.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out.String(), errOut.String(), want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data dir was created (%v)", err)
	}
}

// An unusable data directory is one clear line naming the setting, exit
// code 1, and no "portal stopped" for a portal that never started.
func TestServeUnusableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	t.Setenv("PORTAL_DATA_DIR", filepath.Join(file, "data"))
	var out, errOut bytes.Buffer
	code := run([]string{"serve", "--listen", "127.0.0.1:0"}, &out, &errOut)
	want := fmt.Sprintf("portal: PORTAL_DATA_DIR %q: cannot create the directory: not a directory (uid %d)\n", filepath.Join(file, "data"), os.Getuid())
	if code != 1 || errOut.String() != want {
		t.Errorf("data dir under a file: exit %d, stderr %q; want exit 1 and %q", code, errOut.String(), want)
	}

	// A directory this user may not write in: the real binary, as nobody
	// when the tests run as root (root writes anywhere).
	if testing.Short() {
		return
	}
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755) // the test's temporary directories are 0700
	os.Chmod(base, 0o755)
	ro := filepath.Join(base, "readonly")
	os.Mkdir(ro, 0o555)
	cmd := exec.Command(portalBinary(t), "serve", "--listen", "127.0.0.1:0", "--data-dir", ro)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	want = fmt.Sprintf("portal: --data-dir %q: cannot write in the directory: permission denied (uid %d)\n", ro, uid)
	if code := cmd.ProcessState.ExitCode(); code != 1 || stderr.String() != want {
		t.Errorf("read-only data dir: %v, exit %d, stderr %q; want exit 1 and %q", err, code, stderr.String(), want)
	}
}

// With --trust-proxy and no --public-url the portal warns that event links
// will carry its internal address; with both it does not.
func TestTrustProxyWithoutPublicURLWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	bin := portalBinary(t)
	p := startPortal(t, bin, nil, "--trust-proxy")
	if code := p.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	if !strings.Contains(p.log(), `"level":"WARN","msg":"--trust-proxy without --public-url`) ||
		!strings.Contains(p.log(), `"url":"`+p.base+`"`) {
		t.Errorf("no warning about internal event links:\n%s", p.log())
	}
	p = startPortal(t, bin, nil, "--trust-proxy", "--public-url", "https://uploads.example.org")
	if code := p.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	if strings.Contains(p.log(), "WARN") {
		t.Errorf("a warning with --public-url set:\n%s", p.log())
	}
}

// The helper commands also report a usage error in one line (exit 2), and a
// missing data directory in one line that says what to do (exit 1).
func TestHelperCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backup", "--bogus"}, 2, "portal backup: unknown flag --bogus; usage: portal backup [--data-dir D] FILE\n"},
		{[]string{"backup"}, 2, "portal backup: want 1 argument(s), got 0; usage: portal backup [--data-dir D] FILE\n"},
		{[]string{"token", "create", "--username"}, 2, "portal token create: --username needs a value; usage: portal token create [--data-dir D] --username U [--name N] [--expires 720h] [--scopes files:read,events:read]\n"},
		{[]string{"token", "create", "--data-dir", missing}, 2, "portal token create: --username is required; usage: portal token create [--data-dir D] --username U [--name N] [--expires 720h] [--scopes files:read,events:read]\n"},
		{[]string{"token", "create", "--data-dir", missing, "--username", "admin"}, 1, fmt.Sprintf("portal: --data-dir %q: not a directory; name the data directory of the portal (PORTAL_DATA_DIR), or run portal serve once to create it\n", missing)},
		{[]string{"user"}, 2, "portal user: want the subcommand add; usage: portal user add [--data-dir D] --username U [--role uploader|admin]\n"},
		{[]string{"healthcheck", "--url"}, 2, "portal healthcheck: --url needs a value; usage: portal healthcheck [--url URL]\n"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != c.code || errOut.String() != c.want {
			t.Errorf("portal %v: exit %d, stderr %q; want exit %d, %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"backup", "--help"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "Usage: portal backup") {
		t.Errorf("backup --help: exit %d, %q", code, out.String())
	}
}
