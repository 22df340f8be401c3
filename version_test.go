package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `go install` in a clone gives the complete program: the upload page's
// bundle is embedded, and `portal --version` reports the module version
// and the VCS revision Go stamped into the build info.
func TestGoInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and runs go install")
	}
	// A repository holding this working tree (committed or not) as its
	// one commit, as someone would clone it.
	files, err := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	src := filepath.Join(t.TempDir(), "portal")
	for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		data, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.org"}, args...)...)
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "--quiet")
	git("add", ".")
	git("commit", "--quiet", "-m", "the working tree")
	rev := git("rev-parse", "HEAD")
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", ".")
	cmd.Dir = src
	// GOFLAGS here overrides a -buildvcs=false in the machine's go env.
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install: %v\n%s", err, out)
	}
	bin := filepath.Join(gobin, "portal")

	out, err := exec.Command(bin, "--version").Output()
	want := regexp.MustCompile(`^doorito-portal v0\.0\.0-\d{14}-` + rev[:12] + ` \(revision ` + rev + ` of \S+, go\S+, \w+/\w+\)\n$`)
	if err != nil || !want.Match(out) {
		t.Errorf("portal --version: %v %q; want %s", err, out, want)
	}

	p := startPortal(t, bin, nil)
	for _, name := range []string{"upload.js", "upload.css"} {
		resp, err := http.Get(p.base + "/static/any/dist/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		committed, _ := os.ReadFile(filepath.Join(src, "webui/static/dist", name))
		if resp.StatusCode != http.StatusOK || len(committed) == 0 || !bytes.Equal(body, committed) {
			t.Errorf("GET dist/%s: %s, %d bytes; want the %d committed bytes", name, resp.Status, len(body), len(committed))
		}
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
