package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// scenario is what one run does: the workload and the kills.
type scenario struct {
	Name    string // "crash" or "storm"
	Seed    uint64
	Uploads int
	Clients int
	Kills   int
	// Sizes are drawn log-uniformly from MinSize..MaxSize (the first two
	// uploads are exactly MaxSize and MinSize); each upload goes in 2 to
	// MaxPatches PATCHes. Storm uploads are MinSize bytes, each sent in
	// its creation request (POST with body).
	MinSize, MaxSize int64
	MaxPatches       int
	Storm            bool
	// Timeout bounds the whole run; Settle bounds the wait for the last
	// deliveries after the uploads are done.
	Timeout, Settle time.Duration
	Dir             string // where the run's directory goes ("" = temp)
	Keep            bool   // keep the run's directory
	Log             func(format string, args ...any)
}

// Kill kinds: what the killer waits for before it strikes.
const (
	killFinalize = "finalize" // a final request's body is sent, its answer not yet read
	killDelivery = "delivery" // the receiver holds a webhook request
	killRandom   = "random"   // a random moment
)

// killPlan is one planned kill: after this many body bytes were sent, wait
// for the kind's moment and kill.
type killPlan struct {
	After int64
	Kind  string
	Delay time.Duration // extra wait once the moment has come
}

// kill is what was going on when a kill struck.
type kill struct {
	Plan       killPlan
	Finalizing int  // final requests with their body sent and no answer
	Delivering int  // webhook requests the receiver was holding
	TimedOut   bool // the planned moment did not come; killed anyway
}

// plan draws the run's uploads and kills from the seed.
func (s scenario) plan() ([]*upload, []killPlan) {
	rng := rand.New(rand.NewPCG(s.Seed, 0x706c616e))
	ups := make([]*upload, s.Uploads)
	var total int64
	for i := range ups {
		size := s.MinSize
		switch {
		case s.Storm:
		case i == 0:
			size = s.MaxSize
		case i == 1:
			size = s.MinSize
		default:
			lo, hi := math.Log(float64(s.MinSize)), math.Log(float64(s.MaxSize))
			size = int64(math.Exp(lo + rng.Float64()*(hi-lo)))
		}
		parts := int64(2 + rng.IntN(max(s.MaxPatches-1, 1)))
		u := &upload{content: content{seed: s.Seed, n: i, size: size}, storm: s.Storm, chunk: (size + parts - 1) / parts}
		ups[i] = u
		total += size
	}
	rng.Shuffle(len(ups), func(i, j int) { ups[i], ups[j] = ups[j], ups[i] })

	kinds := []string{killFinalize, killDelivery, killRandom}
	kills := make([]killPlan, s.Kills)
	for i := range kills {
		k := killPlan{
			After: int64((0.03 + 0.87*rng.Float64()) * float64(total)),
			Kind:  kinds[i%len(kinds)],
		}
		switch k.Kind {
		case killFinalize:
			k.Delay = time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
		case killRandom:
			k.Delay = time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
		}
		kills[i] = k
	}
	slices.SortFunc(kills, func(a, b killPlan) int { return int(a.After - b.After) })
	// The kinds were dealt in turn, then sorted by position: shuffle them
	// over the positions so the order of kinds is random too.
	rng.Shuffle(len(kills), func(i, j int) { kills[i].Kind, kills[j].Kind = kills[j].Kind, kills[i].Kind })
	return ups, kills
}

// run is one scenario in progress.
type run struct {
	s      scenario
	bin    string
	dir    string
	portal *portal
	recv   *receiver
	act    *activity
	token  string
	paths  []string // the receiver's endpoint paths
	ups    []*upload
	kills  []kill
}

// endpoints are the receiver paths registered as webhook endpoints: two, so
// per-endpoint tracking is exercised.
var endpoints = []string{"/hooks/a", "/hooks/b"}

// runScenario runs s against the portal binary bin and returns its figures
// (with the problems found); err is for a run that could not be carried
// out at all.
func runScenario(ctx context.Context, s scenario, bin string) (*Figures, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if s.Dir != "" {
		if err := os.MkdirAll(s.Dir, 0o750); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(s.Dir, "portalcrash-"+s.Name+"-")
	if err != nil {
		return nil, err
	}
	if s.Keep {
		s.Log("run directory kept: %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	r := &run{s: s, bin: bin, dir: dir, act: newActivity()}
	var plan []killPlan
	r.ups, plan = s.plan()

	// A retry schedule of seconds, not minutes, so the 500s the receiver
	// sometimes answers are retried within the run.
	r.portal, err = newPortal(bin, filepath.Join(dir, "data"), filepath.Join(dir, "portal.log"),
		"--delivery-retry-schedule", "500ms,1s,2s,4s,8s,15s,30s")
	if err != nil {
		return nil, err
	}
	if r.recv, err = startReceiver(s.Seed, 40*time.Millisecond, 0.03); err != nil {
		return nil, err
	}
	defer r.recv.close()
	if err := r.portal.start(ctx); err != nil {
		return nil, err
	}
	defer r.portal.stop()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	s.Log("%s: seed %d, %d uploads (%s), %d clients, %d kills; portal on %s, data in %s",
		s.Name, s.Seed, len(r.ups), human(r.totalBytes()), s.Clients, len(plan), r.portal.addr, dir)

	clientsDone := make(chan struct{})
	go func() {
		r.sendAll(ctx)
		close(clientsDone)
	}()
	killErr := r.killAll(ctx, plan, clientsDone)
	<-clientsDone
	uploaded := time.Since(start)
	if killErr != nil {
		return nil, killErr
	}
	if r.portal.cmd == nil {
		if err := r.portal.start(context.WithoutCancel(ctx)); err != nil {
			return nil, err
		}
	}
	s.Log("%s: uploads done in %s after %d kills; waiting for the deliveries", s.Name, uploaded.Round(time.Millisecond), len(r.kills))
	// The checks get their own time, even when the uploads used it all.
	vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), s.Settle+time.Minute)
	defer vcancel()
	f := r.verify(vctx)
	f.Duration = time.Since(start).Round(time.Millisecond).String()
	f.UploadPhase = uploaded.Round(time.Millisecond).String()
	f.AckedPerSec = float64(f.Acked204+f.Acked201+f.AckedHead) / uploaded.Seconds()
	return f, nil
}

func (r *run) totalBytes() int64 {
	var n int64
	for _, u := range r.ups {
		n += u.size
	}
	return n
}

// setup issues the admin token and registers the receiver's endpoints.
func (r *run) setup(ctx context.Context) error {
	var err error
	if r.token, err = adminToken(ctx, r.portal.url()); err != nil {
		return err
	}
	for _, p := range endpoints {
		secret, err := createEndpoint(ctx, r.portal.url(), r.token, r.recv.url(p))
		if err != nil {
			return err
		}
		if err := r.recv.addEndpoint(p, secret); err != nil {
			return err
		}
	}
	r.paths = endpoints
	return nil
}

// sendAll runs the uploads on s.Clients concurrent clients.
func (r *run) sendAll(ctx context.Context) {
	queue := make(chan *upload)
	var wg sync.WaitGroup
	for range r.s.Clients {
		c := &tusClient{hc: newHTTPClient(), base: r.portal.url(), token: r.token, act: r.act}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range queue {
				u.sha = u.sum()
				c.send(ctx, u)
			}
		}()
	}
	for _, u := range r.ups {
		select {
		case queue <- u:
		case <-ctx.Done():
			u.err = errors.New("never started: deadline")
		}
	}
	close(queue)
	wg.Wait()
}

// killAll carries out the kill plan: for each kill, wait until the clients
// have sent its share of bytes and its moment comes, SIGKILL the portal,
// and start it again on the same data directory and port. Once the clients
// are done, the remaining kills strike at once (into the deliveries).
func (r *run) killAll(ctx context.Context, plan []killPlan, clientsDone <-chan struct{}) error {
	for i, p := range plan {
		// Let each life live a little, so clients get somewhere.
		if err := sleepCtx(ctx, 150*time.Millisecond); err != nil {
			return nil
		}
		for r.act.sent.Load() < p.After {
			select {
			case <-ctx.Done():
				return nil
			case <-clientsDone:
			case <-time.After(2 * time.Millisecond):
				continue
			}
			break
		}
		k := kill{Plan: p}
		k.TimedOut = !r.awaitMoment(ctx, p, clientsDone)
		if p.Delay > 0 {
			time.Sleep(p.Delay)
		}
		k.Finalizing, k.Delivering = r.act.finalizing(), int(r.recv.inflight.Load())
		r.portal.kill()
		r.kills = append(r.kills, k)
		missed := ""
		if k.TimedOut {
			missed = ", its moment did not come"
		}
		r.s.Log("  kill %d/%d (%s%s): %s sent, %d final requests awaiting an answer, %d deliveries in flight",
			i+1, len(plan), p.Kind, missed, human(r.act.sent.Load()), k.Finalizing, k.Delivering)
		if err := r.portal.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// awaitMoment waits (at most 10 s) for the moment a kill of kind p.Kind
// aims at, and reports whether it came.
func (r *run) awaitMoment(ctx context.Context, p killPlan, clientsDone <-chan struct{}) bool {
	deadline := time.After(10 * time.Second)
	switch p.Kind {
	case killFinalize:
		// Forget a signal from before the threshold.
		select {
		case <-r.act.finalled:
		default:
		}
		for {
			select {
			case <-r.act.finalled:
				return true
			case <-clientsDone:
				return false
			case <-deadline:
				return false
			case <-ctx.Done():
				return false
			}
		}
	case killDelivery:
		for r.recv.inflight.Load() == 0 {
			select {
			case <-deadline:
				return false
			case <-ctx.Done():
				return false
			case <-time.After(500 * time.Microsecond):
			}
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// human prints a byte count with a binary unit.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
