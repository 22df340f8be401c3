package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash suite: the real portal binary (PORTAL_BIN, which make test
// sets to build/portal; otherwise built here) killed with SIGKILL under
// load. PORTALCRASH_SEED replays a seed.

var portalBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	portalBin = os.Getenv("PORTAL_BIN")
	if portalBin == "" && os.Getenv(inNamespaceEnv) == "" {
		dir, err := os.MkdirTemp("", "portalcrash-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		portalBin = filepath.Join(dir, "portal")
		out, err := exec.Command("go", "build", "-o", portalBin, "github.com/doorito/portal").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build the portal: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// testSeed is PORTALCRASH_SEED, or a random seed (logged).
func testSeed(t *testing.T) uint64 {
	if s := os.Getenv("PORTALCRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PORTALCRASH_SEED=%q: %v", s, err)
		}
		return n
	}
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o.seed
}

func testScenario(t *testing.T, s scenario) *Figures {
	t.Helper()
	s.Seed = testSeed(t)
	s.Dir = t.TempDir()
	s.Log = t.Logf
	t.Logf("seed %d (replay: PORTALCRASH_SEED=%d go test -run '^%s$' ./cmd/portalcrash)", s.Seed, s.Seed, t.Name())
	f, err := runScenario(context.Background(), s, portalBin)
	if err != nil {
		t.Fatalf("seed %d: %v", s.Seed, err)
	}
	var b bytes.Buffer
	f.print(&b)
	t.Log("\n" + b.String())
	if !f.OK() {
		t.Errorf("seed %d: %d problems (listed above)", s.Seed, len(f.Problems))
	}
	return f
}

// TestCrash is the CI size of the crash scenario: 48 uploads from 1 KiB to
// 40 MiB in several PATCHes each, 6 clients, 12 kills, some during
// finalize and some during deliveries (the issue asks for at least 40
// uploads and 8 kills).
func TestCrash(t *testing.T) {
	crash, _ := defaults(false)
	f := testScenario(t, crash)
	if f.Uploads < 40 || f.Kills < 8 {
		t.Errorf("%d uploads, %d kills: want at least 40 and 8", f.Uploads, f.Kills)
	}
	if f.KillsFinalize == 0 || f.KillsDelivery == 0 {
		t.Errorf("%d kills during finalize, %d during deliveries: want some of each", f.KillsFinalize, f.KillsDelivery)
	}
	if f.Patches < 2*f.Uploads {
		t.Errorf("%d PATCHes for %d uploads: want several each", f.Patches, f.Uploads)
	}
}

// TestStorm is the small-file storm at CI size: 10 KiB creation-with-upload
// requests from 16 clients, killed four times.
func TestStorm(t *testing.T) {
	_, storm := defaults(false)
	f := testScenario(t, storm)
	if f.Acked201 == 0 || f.Kills < 4 || f.KillsFinalize == 0 {
		t.Errorf("%d uploads acknowledged by 201, %d kills (%d during finalize): the storm did not happen",
			f.Acked201, f.Kills, f.KillsFinalize)
	}
}

// inNamespaceEnv marks the test process re-run inside a user and mount
// namespace (where a non-root user may mount a tmpfs).
const inNamespaceEnv = "PORTALCRASH_IN_NAMESPACE"

// TestDiskFull fills a tmpfs under the portal's data directory during a
// PATCH, during finalize and during event commits. It needs root (as in
// CI) or, failing that, a user namespace; it skips only where neither
// exists and nothing requires it.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		reexecInNamespace(t)
		return
	}
	res, err := runDiskFull(context.Background(), diskFullConfig{Bin: portalBin, Dir: t.TempDir(), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.print(&b)
	t.Log("\n" + b.String())
	if len(res.Moments) != 3 {
		t.Fatalf("%d moments, want 3", len(res.Moments))
	}
	for _, m := range res.Moments {
		for _, p := range m.Problems {
			t.Errorf("full during %s: %s", m.Name, p)
		}
	}
}

// reexecInNamespace runs TestDiskFull again as root of a new user and
// mount namespace.
func reexecInNamespace(t *testing.T) {
	if os.Getenv(inNamespaceEnv) != "" {
		t.Fatal("still not root inside the user namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err == nil {
		err = exec.Command(unshare, "--user", "--map-root-user", "--mount", "true").Run()
	}
	if err != nil {
		msg := fmt.Sprintf("not root, and no user namespace (%v): cannot mount a tmpfs", err)
		if os.Getenv("CI") != "" || os.Getenv("PORTAL_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(unshare, "--user", "--map-root-user", "--mount", os.Args[0],
		"-test.run=^TestDiskFull$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1", "PORTAL_BIN="+portalBin)
	out, err := cmd.CombinedOutput()
	t.Log("\n" + string(out))
	if err != nil {
		t.Fatalf("TestDiskFull in a user namespace: %v", err)
	}
}

// The generated content is one stream however it is cut: a client that
// resumes at any offset sends the bytes it would have sent.
func TestContentJoins(t *testing.T) {
	c := content{seed: 42, n: 3, size: 3*blockSize + 17}
	whole, _ := io.ReadAll(c.reader(0, c.size))
	if int64(len(whole)) != c.size {
		t.Fatalf("%d bytes, want %d", len(whole), c.size)
	}
	for _, cut := range []int64{1, blockSize - 1, blockSize, blockSize + 1, 2*blockSize + 5, c.size - 1} {
		a, _ := io.ReadAll(c.reader(0, cut))
		b, _ := io.ReadAll(c.reader(cut, c.size))
		if !bytes.Equal(append(a, b...), whole) {
			t.Errorf("cut at %d: the two parts do not join to the whole", cut)
		}
	}
	sum := sha256.Sum256(whole)
	if got := c.sum(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("sum %s, want %x", got, sum)
	}
	other := content{seed: 42, n: 4, size: c.size}
	if other.sum() == c.sum() {
		t.Error("two uploads have the same content")
	}
}

func TestParseOptions(t *testing.T) {
	for _, args := range [][]string{{"-mode", "nope"}, {"-uploads", "0"}, {"-seed", "x"}, {"-max-size", "2GiB"},
		{"-max-patches", "1"}, {"-min-size", "1KB"}} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	o, err := parseOptions([]string{"-long", "-kills", "120", "-seed", "7", "-mode", "storm, crash"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.seed != 7 || o.crash.Kills != 120 || o.crash.Uploads != 300 || o.storm.Kills != 20 ||
		strings.Join(o.modes, ",") != "storm,crash" || o.crash.Timeout != 20*time.Minute {
		t.Errorf("options = %+v", o)
	}
}
