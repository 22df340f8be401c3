package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/doorito/portal/internal/s3test"
	"github.com/doorito/portal/tus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
	expslog "golang.org/x/exp/slog"
)

// s3PartSize is the part size of both stores in scenario 9 (the portal's
// default; stock s3store would use 50 MiB, which would make the two send
// different numbers of parts for the same bytes).
const s3PartSize = 16 * miB

// s3Bucket is the bucket scenario 9 creates on its server.
const s3Bucket = "portalbench"

// gateway is a versitygw process serving a scratch directory on loopback.
type gateway struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startGateway runs versitygw (see s3test.Binary for where it is looked
// for; `make versitygw` installs it) and creates s3Bucket.
func startGateway(ctx context.Context, dir string) (*gateway, error) {
	bin, err := s3test.Binary()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := s3test.Command(bin, addr, root, "", "")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	g := &gateway{url: "http://" + addr, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(g.done) }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(g.url + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-g.done:
			return nil, fmt.Errorf("versitygw exited at start (log in %s)", logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("versitygw does not answer on %s", addr)
		}
	}
	if _, err := g.client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)}); err != nil {
		g.stop()
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	return g, nil
}

func (g *gateway) client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s3test.Region,
		BaseEndpoint: aws.String(g.url),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
	})
}

func (g *gateway) stop() {
	g.cmd.Process.Kill()
	<-g.done
}

// s3Env is the AWS SDK environment of the portals scenario 9 starts (the
// portal takes credentials only from the SDK's chain): the gateway's root
// keys, no shared files, no instance metadata.
func s3Env(dir string) []string {
	var env []string
	for k, v := range s3test.Env(s3test.AccessKey, s3test.SecretKey, filepath.Join(dir, "none")) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// s3Args are `portal serve`'s flags for the gateway, under prefix.
func (g *gateway) s3Args(prefix string) []string {
	return []string{"--storage", "s3", "--s3-bucket", s3Bucket, "--s3-prefix", prefix,
		"--s3-endpoint", g.url, "--s3-path-style"}
}

// s3Baseline is stock tusd's s3store handler on the gateway: no hashing,
// no finalize, no database, no locker, the same part size as the portal.
type s3Baseline struct {
	ln  net.Listener
	srv *http.Server
}

func startS3Baseline(g *gateway, tmp string) (*s3Baseline, error) {
	store := s3store.New(s3Bucket, g.client())
	store.ObjectPrefix = "tusd/"
	store.PreferredPartSize = s3PartSize
	store.TemporaryDirectory = tmp
	composer := handler.NewStoreComposer()
	store.UseIn(composer)
	h, err := handler.NewHandler(handler.Config{BasePath: "/files/", StoreComposer: composer,
		Logger: expslog.New(expslog.NewTextHandler(discard{}, nil))})
	if err != nil {
		return nil, err
	}
	ln, srv, err := serveLoopback(h)
	if err != nil {
		return nil, err
	}
	b := &s3Baseline{ln: ln, srv: srv}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *s3Baseline) URL() string { return "http://" + b.ln.Addr().String() }
func (b *s3Baseline) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// s3Servers are scenario 9's: the gateway, the portal on it (in this
// process) and stock tusd's s3store on it.
type s3Servers struct {
	g       *gateway
	p       *portal
	bl      *s3Baseline
	token   string
	clients []*tusClient // portal, tusd s3store
}

func (s *s3Servers) close() {
	if s.bl != nil {
		s.bl.Close()
	}
	if s.p != nil {
		s.p.Close()
	}
	s.g.stop()
}

// startS3Servers starts the gateway and both servers on it, warmed up.
func (b *bench) startS3Servers(ctx context.Context, dir string) (_ *s3Servers, err error) {
	g, err := startGateway(ctx, filepath.Join(dir, "gw"))
	if err != nil {
		return nil, err
	}
	s := &s3Servers{g: g}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	for _, kv := range s3Env(dir) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v) // the in-process portal's SDK chain
	}
	cfg := portalConfig(filepath.Join(dir, "portal"))
	cfg.S3 = &tus.S3Config{Bucket: s3Bucket, Prefix: "portal/", Endpoint: g.url, PathStyle: true, PartSize: s3PartSize}
	if s.p, err = openPortal(ctx, cfg); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "tusd-parts")
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return nil, err
	}
	if s.bl, err = startS3Baseline(g, tmp); err != nil {
		return nil, err
	}
	if s.token, err = adminToken(ctx, s.p.URL()); err != nil {
		return nil, err
	}
	s.clients = []*tusClient{newTusClient(s.p.URL()), newTusClient(s.bl.URL())}
	for _, c := range s.clients {
		if _, err := c.uploadMany(ctx, 2, 6*miB, 0); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	return s, nil
}

// s3Throughput is scenario 9: uploads to a bucket on a real S3 server
// (versitygw on loopback), the portal against stock tusd's s3store on the
// same server in alternating order, the bytes the portal read back from the
// bucket (0 on the normal path: the digest is computed as the bytes pass),
// and the peak RSS of the real binary with 20 concurrent S3 uploads.
func (b *bench) s3Throughput(ctx context.Context) error {
	dir, err := b.scratch("s9")
	if err != nil {
		return err
	}
	s, err := b.startS3Servers(ctx, dir)
	if err != nil {
		return err
	}
	defer s.close()
	reads0 := s.p.app.Uploads().S3Reads()
	cases := []uploadCase{
		{name: "1×" + human(b.sz.S3Single) + " single PATCH", conc: 1, size: b.sz.S3Single},
		{name: fmt.Sprintf("%d×%s concurrent", b.sz.S3Conc, human(b.sz.S3ConcSize)), conc: b.sz.S3Conc, size: b.sz.S3ConcSize},
	}
	for _, uc := range cases {
		if err := b.s3Case(ctx, s, uc); err != nil {
			return err
		}
	}
	reads := s.p.app.Uploads().S3Reads()
	back := float64(reads.Data - reads0.Data + reads.Part - reads0.Part)
	b.add(Result{Scenario: 9, Case: "S3 bytes read back from the bucket (data and parts, all uploads)", Unit: "bytes",
		Portal: newSample([]float64{back}), Target: "0", Pass: atMost(back, 0),
		Notes: map[string]any{"info_bytes_read": reads.Info - reads0.Info}})
	return b.s3Memory(ctx, s.g)
}

// s3Case runs one upload case on both servers, -reps times.
func (b *bench) s3Case(ctx context.Context, s *s3Servers, uc uploadCase) error {
	speed := make([][]float64, 2)
	var ratio []float64
	for rep := range b.o.reps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, i := range []int{rep % 2, 1 - rep%2} {
			d, err := s.clients[i].uploadMany(ctx, uc.conc, uc.size, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", uc.name, err)
			}
			speed[i] = append(speed[i], mibps(uc.bytes(), d))
		}
		if rep == 0 {
			if err := verifyStored(ctx, s.p.URL(), s.token, uc); err != nil {
				return err
			}
		}
		ratio = append(ratio, speed[0][rep]/speed[1][rep])
		b.logf("  %s rep %d: portal %.0f MiB/s, tusd s3store %.0f MiB/s", uc.name, rep+1, speed[0][rep], speed[1][rep])
	}
	rs := newSample(ratio)
	b.add(Result{Scenario: 9, Case: "S3 upload " + uc.name + " vs tusd s3store", Unit: "MiB/s",
		Portal: newSample(speed[0]), Baseline: newSample(speed[1]), Ratio: rs,
		Notes: map[string]any{"part_size_mib": s3PartSize / miB}})
	return nil
}

// s3Memory measures the real binary's peak RSS with concurrent S3 uploads.
func (b *bench) s3Memory(ctx context.Context, g *gateway) error {
	var peaks []float64
	for rep := range b.o.memReps {
		peak, err := b.s3MemRun(ctx, g, rep)
		if err != nil {
			return err
		}
		peaks = append(peaks, float64(peak)/miB)
		b.logf("  rep %d: peak RSS %.1f MiB with %d×%s S3 uploads", rep+1, float64(peak)/miB, b.sz.S3MemConc, human(b.sz.S3MemSize))
	}
	ps := newSample(peaks)
	b.add(Result{Scenario: 9, Case: fmt.Sprintf("S3 peak RSS, %d×%s concurrent", b.sz.S3MemConc, human(b.sz.S3MemSize)),
		Unit: "MiB", Portal: ps, Target: "<= 100", Pass: atMost(ps.Median, 100)})
	return nil
}

// s3MemRun starts the real binary on the gateway (its own prefix), runs
// the concurrent uploads and returns its peak RSS (VmHWM).
func (b *bench) s3MemRun(ctx context.Context, g *gateway, rep int) (int64, error) {
	dir, err := b.scratch(fmt.Sprintf("s9-mem-%d", rep))
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	p, err := startProcWith(ctx, b.o.bin, dir, g.s3Args(fmt.Sprintf("mem-%d/", rep)), s3Env(dir))
	if err != nil {
		return 0, err
	}
	defer p.stop()
	if _, err := newTusClient(p.url).uploadMany(ctx, b.sz.S3MemConc, b.sz.S3MemSize, 0); err != nil {
		return 0, err
	}
	peak, _, err := p.memStatus()
	if err == nil && peak == 0 {
		err = errors.New("no VmHWM for the portal process")
	}
	return peak, err
}
