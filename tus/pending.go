package tus

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/tus/tusd/v2/pkg/handler"
)

// A complete upload whose finalize failed (the database could not commit,
// the disk was full, flushing its bytes failed, or the start-up sweep
// after a crash failed) must not look finished to its client: tusd
// answers a HEAD with every byte there, and a PATCH at that offset with
// 204, without calling the finalizer again, and tus-js-client takes
// either as success. So the server remembers these uploads and finalizes
// them again when tusd opens one for the next request; until that
// succeeds the request fails with a retryable error (507 when the storage
// is full). The periodic sweep finalizes them too.

// ErrNotRecorded answers a request for a complete upload that could not be
// recorded yet: 503, which tus clients retry.
var ErrNotRecorded = handler.NewError("ERR_UPLOAD_NOT_RECORDED",
	"the upload is complete but could not be recorded yet; try again later", http.StatusServiceUnavailable)

// pendingSet holds the ids of complete uploads whose finalize failed.
type pendingSet struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (p *pendingSet) add(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]struct{}{}
	}
	p.ids[id] = struct{}{}
}

func (p *pendingSet) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ids, id)
}

func (p *pendingSet) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ids[id]
	return ok
}

// finalizingCore is the core store tusd's handler uses: the HashStore,
// except that opening an upload whose finalize failed finalizes it first.
// tusd opens an upload under its lock for HEAD, PATCH, GET and DELETE.
type finalizingCore struct {
	store
	s *Server
}

func (c finalizingCore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := c.store.GetUpload(ctx, id)
	if err != nil {
		if errors.Is(err, handler.ErrNotFound) {
			c.s.pending.remove(id)
		}
		return nil, err
	}
	if c.s.pending.has(id) {
		if err := c.s.finalizeLocked(ctx, id, nil, nil); err != nil {
			return nil, c.s.retryable(id, err)
		}
	}
	return up, nil
}

// finalizeLocked finalizes a complete upload whose lock the caller holds
// (info is what tusd knows of it and req the request that completed it,
// if any). It returns the finalizer's error, keeping the upload pending
// until a later call succeeds.
func (s *Server) finalizeLocked(ctx context.Context, id string, info *handler.FileInfo, req *handler.HTTPRequest) error {
	// FinishUpload (or, for a concatenation, ConcatUploads) has saved the
	// sum; without it the upload is finished here.
	var c Completed
	var err error
	ok := false
	if info != nil {
		c, ok = s.savedCompletion(ctx, *info)
	}
	if !ok {
		c, err = s.complete(ctx, id)
	}
	if err == nil {
		c.Request = req
		err = s.cfg.Finalize(c)
	}
	if err != nil {
		s.pending.add(id)
		return err
	}
	s.pending.remove(id)
	return nil
}

// retryable logs a failed finalize and returns what tusd answers the
// request with: the finalizer's own status when it has one (507 for a
// full disk), otherwise 503. Never a 4xx: the client must come back.
func (s *Server) retryable(id string, err error) error {
	s.cfg.Logger.Error("finalize failed; the upload stays complete and is finalized again on its next request or sweep",
		"id", id, "err", err)
	var herr handler.Error
	if errors.As(err, &herr) && herr.HTTPResponse.StatusCode >= 500 {
		return herr
	}
	return ErrNotRecorded
}
