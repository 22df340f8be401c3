package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Group commit. Every commit of the writer connection waits for one sync of
// the write-ahead log (synchronous=FULL: a commit is on disk before it
// returns, which the durability promise needs). Concurrent requests, such
// as many small uploads each recording its creation and then its file and
// event, would queue behind each other's syncs one at a time. Instead their
// transactions go to one committer, which runs what is queued when it is
// free as one SQLite transaction, each job inside a savepoint of its own,
// and commits them with one sync: the classic group commit of databases.
// A job's caller hears its result only after that commit, so nothing is
// acknowledged before it is durable; a job that fails rolls back to its
// savepoint and fails alone. Nobody waits for company: a job that finds the
// committer idle runs at once, and the batches form while a commit syncs.

// maxCommitBatch bounds the jobs of one transaction, so its commit (and the
// first job's wait) stays short however long the queue.
const maxCommitBatch = 64

var metricCommitBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "portal_db_commit_batch_size",
	Help:    "Write transactions committed together by one commit of the group committer.",
	Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
})

// errCommitterClosed answers jobs sent after the database was closed.
var errCommitterClosed = errors.New("database closed")

// commitJob is one caller's transaction.
type commitJob struct {
	ctx  context.Context // values only: it is never cancelled mid-batch
	fn   func(ctx context.Context, tx *sql.Tx) error
	err  error
	done chan error
}

// committer runs write transactions in groups on the writer connection.
type committer struct {
	db    *sql.DB
	jobs  chan *commitJob
	quit  chan struct{}
	wg    sync.WaitGroup
	close sync.Once
}

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db, jobs: make(chan *commitJob, 4*maxCommitBatch), quit: make(chan struct{})}
	c.wg.Add(1)
	go c.run()
	return c
}

// do runs fn in a write transaction, possibly together with other callers'
// transactions, and returns once its changes are committed (nil) or
// undone (fn's error, or the commit's). fn must use only tx and the ctx it
// is given (ctx keeps the caller's values but is never cancelled: a
// statement interrupted inside a shared transaction would undo all of it).
// A caller whose ctx ends before its job starts gets ctx's error; once
// started, a job runs to its end and its caller waits for it.
func (c *committer) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j := &commitJob{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case c.jobs <- j:
	case <-c.quit:
		return errCommitterClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-j.done
}

// stop finishes the queued jobs and ends the committer; later jobs get
// errCommitterClosed.
func (c *committer) stop() {
	c.close.Do(func() { close(c.quit) })
	c.wg.Wait()
}

func (c *committer) run() {
	defer c.wg.Done()
	for {
		var first *commitJob
		select {
		case first = <-c.jobs:
		case <-c.quit:
			// Answer what was queued before the close.
			for {
				select {
				case j := <-c.jobs:
					c.commit([]*commitJob{j})
				default:
					return
				}
			}
		}
		batch := []*commitJob{first}
	more:
		for len(batch) < maxCommitBatch {
			select {
			case j := <-c.jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		c.commit(batch)
	}
}

// commit runs a batch and answers its callers.
func (c *committer) commit(batch []*commitJob) {
	var live []*commitJob
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err // gave up before it started: nothing done
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	metricCommitBatch.Observe(float64(len(live)))
	if len(live) == 1 {
		live[0].done <- c.alone(live[0])
		return
	}
	if err := c.together(live); err != nil {
		// The shared transaction failed as a whole (its commit, or an
		// error that made SQLite undo it): nothing of it stands, so each
		// job runs again alone and meets its own fate.
		for _, j := range live {
			j.err = c.alone(j)
		}
	}
	for _, j := range live {
		j.done <- j.err
	}
}

// alone runs one job in its own transaction.
func (c *committer) alone(j *commitJob) error {
	ctx := context.WithoutCancel(j.ctx)
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := j.fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

// together runs the jobs in one transaction, each in a savepoint: a job
// whose fn fails is rolled back to its savepoint and keeps its error in
// j.err; the others commit together. It returns an error when the
// transaction itself fails, which undoes every job.
func (c *committer) together(jobs []*commitJob) error {
	bg := context.Background()
	tx, err := c.db.BeginTx(bg, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, j := range jobs {
		if _, err := tx.ExecContext(bg, "SAVEPOINT job"); err != nil {
			return err
		}
		j.err = j.fn(context.WithoutCancel(j.ctx), tx)
		if j.err != nil {
			// After some errors (a full disk, I/O) SQLite has undone the
			// whole transaction: then the savepoint is gone too and the
			// batch fails as a whole.
			if _, err := tx.ExecContext(bg, "ROLLBACK TO job"); err != nil {
				return fmt.Errorf("%w (after %w)", err, j.err)
			}
		}
		if _, err := tx.ExecContext(bg, "RELEASE job"); err != nil {
			return err
		}
	}
	return tx.Commit()
}
