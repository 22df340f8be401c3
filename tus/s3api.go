package tus

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// s3API is the S3 client tusd's s3store talks to. It passes every call on
// to the SDK's client, and for the upload whose tracker rides in the
// call's context (every call an s3Upload makes) it also:
//
//   - sequences the parts: part n is sent only after part n-1 was accepted,
//     and none after one failed, so the bucket never holds a gap (s3store
//     sends up to ConcurrentPartUploads parts at once; a later part
//     accepted after an earlier one failed would make the upload's offset,
//     the sum of its parts, count bytes that are not where it says);
//     likewise the short tail s3store parks in a ".part" object waits for
//     the parts before it;
//   - hashes each part's bytes (from the local temporary file s3store
//     sends it from, while it is being sent) and, once the bucket has
//     accepted the part, saves the digest state covering all parts so far:
//     the digest is always that of exactly the bytes the bucket holds, in
//     the order the object will have them;
//   - notes what the bucket said about the upload (its parts, whether the
//     multipart upload is gone, modification times).
//
// It also asks for server-side encryption on every object it creates and
// counts the bytes read from the bucket.
type s3API struct {
	c      *s3.Client
	sse    types.ServerSideEncryption
	kmsKey string

	// Bytes read from the bucket: data objects, .info (and claim) objects,
	// .part objects.
	readData, readInfo, readPart atomic.Int64
}

var _ s3store.S3API = (*s3API)(nil)

// trackerKey carries an upload's tracker in a context.
type trackerKey struct{}

func withTracker(ctx context.Context, t *tracker) context.Context {
	return context.WithValue(ctx, trackerKey{}, t)
}

func trackerFrom(ctx context.Context) *tracker {
	t, _ := ctx.Value(trackerKey{}).(*tracker)
	return t
}

// tracker is what one upload handle (one request) knows of its multipart
// upload and its digest.
type tracker struct {
	state stateFile // the digest state file

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change

	// What the bucket said. known: the parts are known (listed, or a new
	// upload); next is the number of the part to send next.
	known       bool
	next        int32
	listedBytes int64 // bytes in the listed parts
	listing     []types.Part
	mpuGone     bool // the multipart upload is completed (or aborted)
	modified    time.Time
	partial     bool
	failed      error // a part was refused: later parts are not sent

	// The digest: decided once per handle; hashing while the saved state
	// and the bucket agree; digest covers offset bytes of parts.
	decided bool
	hashing bool
	digest  hash.Hash
	offset  int64

	// The write in progress: the .part bytes s3store prepended (inc), the
	// bytes read from the client so far, the bytes of parts accepted.
	inc       int64
	read      *atomic.Int64
	partsDone int64
}

func newTracker(statePath string) *tracker {
	return &tracker{state: newStateFile(statePath), changed: make(chan struct{})}
}

// notify wakes the waiters; the caller holds mu.
func (t *tracker) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// wait waits for a change, releasing mu meanwhile; the caller holds mu.
func (t *tracker) wait(ctx context.Context) error {
	ch := t.changed
	t.mu.Unlock()
	defer t.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fresh sets up the tracker of an upload just created: no parts, an empty
// digest (hashing unless it is a partial upload).
func (t *tracker) fresh(partial bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.next, t.partial = true, 1, partial
	t.decided, t.hashing, t.digest = true, !partial, sha256.New()
}

func (t *tracker) setPartial(p bool) {
	t.mu.Lock()
	t.partial = p
	t.mu.Unlock()
}

func (t *tracker) touch(at *time.Time) {
	if at != nil && at.After(t.modified) {
		t.modified = *at
	}
}

// listed takes in a page of ListParts.
func (t *tracker) listed(in *s3.ListPartsInput, out *s3.ListPartsOutput, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if isNoSuchUpload(err) {
			t.known, t.mpuGone, t.listing = true, true, nil
			t.notify()
		}
		return
	}
	if in.PartNumberMarker == nil {
		t.listing = t.listing[:0]
	}
	t.listing = append(t.listing, out.Parts...)
	if out.IsTruncated != nil && *out.IsTruncated {
		return
	}
	t.listedBytes = 0
	for i, p := range t.listing {
		t.listedBytes += aws.ToInt64(p.Size)
		t.touch(p.LastModified)
		if aws.ToInt32(p.PartNumber) != int32(i+1) {
			// s3store would number the next part len+1 and overwrite one.
			t.failed = fmt.Errorf("s3: the multipart upload's parts are not numbered 1 to %d (part %d is number %d)",
				len(t.listing), i+1, aws.ToInt32(p.PartNumber))
		}
	}
	t.known, t.next, t.listing = true, int32(len(t.listing)+1), nil
	t.notify()
}

// decide decides, once, whether this handle hashes: only when the saved
// state covers exactly the parts in the bucket. Otherwise the digest is
// repaired when the upload is complete (s3Upload.finish). The caller holds mu.
func (t *tracker) decide() {
	if t.decided {
		return
	}
	t.decided = true
	if t.partial || !t.known || t.mpuGone {
		return
	}
	st, ok := t.state.load(t.listedBytes)
	if !ok || st.Offset != t.listedBytes {
		return
	}
	if h, ok := st.digest(); ok {
		t.hashing, t.digest, t.offset = true, h, st.Offset
	}
}

// turn waits until part n may be sent: the parts before it were accepted.
// It reports whether to hash the part, and from which digest.
func (t *tracker) turn(ctx context.Context, n int32) (hash.Hash, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if t.failed != nil {
			return nil, t.failed
		}
		if !t.known {
			// Parts never listed (not a path s3store takes): send it, hash nothing.
			t.decided, t.hashing = true, false
			return nil, nil
		}
		if n < t.next {
			return nil, fmt.Errorf("s3: part %d was sent before", n)
		}
		if n == t.next {
			t.decide()
			if !t.hashing {
				return nil, nil
			}
			h, _ := hashState{Offset: t.offset, State: marshalDigest(t.digest)}.digest()
			return h, nil
		}
		if err := t.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// accepted records the outcome of sending part n of size bytes; h is the
// digest continued over its bytes (nil: not hashed).
func (t *tracker) accepted(n int32, size int64, h hash.Hash, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.notify()
	if err != nil {
		if t.failed == nil {
			t.failed = err
		}
		return
	}
	t.next = n + 1
	t.partsDone += size
	if !t.hashing {
		return
	}
	if h == nil {
		t.hashing = false
		return
	}
	t.digest, t.offset = h, t.offset+size
	if err := t.state.save(hashState{Offset: t.offset, State: marshalDigest(h)}); err != nil {
		t.hashing = false // the saved state lags now: finish repairs it
	}
}

// beginWrite starts a WriteChunk that reads the client's bytes through read.
func (t *tracker) beginWrite(read *atomic.Int64) {
	t.mu.Lock()
	t.inc, t.read, t.partsDone = 0, read, 0
	t.mu.Unlock()
}

func (t *tracker) endWrite() {
	t.mu.Lock()
	t.read = nil
	t.mu.Unlock()
}

// tailTurn waits until the parts before a tail of size bytes (parked in a
// .part object at the end of a write) were accepted.
func (t *tracker) tailTurn(ctx context.Context, size int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if t.failed != nil {
			return t.failed
		}
		if t.read == nil || t.partsDone >= t.inc+t.read.Load()-size {
			return nil
		}
		if err := t.wait(ctx); err != nil {
			return err
		}
	}
}

// gone reports whether the multipart upload is known to be completed.
func (t *tracker) gone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mpuGone
}

func (t *tracker) setGone() {
	t.mu.Lock()
	t.mpuGone = true
	t.mu.Unlock()
}

func (t *tracker) modifiedAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.modified
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// bodySize returns the size of a request body s3store sends (a temporary
// file, or an in-memory reader), and whether its bytes can be read at
// offsets beside the SDK's own reading.
func bodySize(body io.Reader) (int64, io.ReaderAt, bool) {
	switch b := body.(type) {
	case *os.File:
		st, err := b.Stat()
		if err != nil {
			return 0, nil, false
		}
		return st.Size(), b, true
	case interface {
		io.ReaderAt
		Size() int64
	}:
		return b.Size(), b, true
	}
	return 0, nil, false
}

// hashPart feeds a part's bytes to h, reading them at offsets (the SDK
// reads the same file through its own offset meanwhile).
func hashPart(h hash.Hash, r io.ReaderAt, size int64) error {
	n, err := io.Copy(h, io.NewSectionReader(r, 0, size))
	if err == nil && n != size {
		err = fmt.Errorf("hash part: read %d of %d bytes", n, size)
	}
	return err
}

func (a *s3API) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	t := trackerFrom(ctx)
	if t == nil {
		return a.c.UploadPart(ctx, in, opts...)
	}
	n := aws.ToInt32(in.PartNumber)
	h, err := t.turn(ctx, n)
	if err != nil {
		return nil, err
	}
	size, ra, ok := bodySize(in.Body)
	hashed := make(chan error, 1)
	if h != nil && ok {
		go func() { hashed <- hashPart(h, ra, size) }()
	} else {
		h = nil
		hashed <- nil
	}
	out, err := a.c.UploadPart(ctx, in, opts...)
	if herr := <-hashed; herr != nil {
		h = nil
	}
	if !ok {
		size = 0 // not a body s3store sends; hashing stopped above
	}
	t.accepted(n, size, h, err)
	return out, err
}

func (a *s3API) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if t := trackerFrom(ctx); t != nil && strings.HasSuffix(aws.ToString(in.Key), ".part") {
		size, _, _ := bodySize(in.Body)
		if err := t.tailTurn(ctx, size); err != nil {
			return nil, err
		}
	}
	a.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	return a.c.PutObject(ctx, in, opts...)
}

func (a *s3API) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	a.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	return a.c.CreateMultipartUpload(ctx, in, opts...)
}

// encrypt asks for the configured server-side encryption.
func (a *s3API) encrypt(sse *types.ServerSideEncryption, kmsKey **string) {
	if a.sse == "" {
		return
	}
	*sse = a.sse
	if a.kmsKey != "" {
		*kmsKey = aws.String(a.kmsKey)
	}
}

func (a *s3API) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	out, err := a.c.ListParts(ctx, in, opts...)
	if t := trackerFrom(ctx); t != nil && in.MaxParts == nil {
		t.listed(in, out, err)
	}
	return out, err
}

func (a *s3API) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := a.c.GetObject(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	key := aws.ToString(in.Key)
	counter := &a.readData
	switch {
	case strings.HasSuffix(key, ".info"), strings.HasSuffix(key, claimName):
		counter = &a.readInfo
	case strings.HasSuffix(key, ".part"):
		counter = &a.readPart
	}
	if t := trackerFrom(ctx); t != nil && counter != &a.readData {
		t.mu.Lock()
		t.touch(out.LastModified)
		if counter == &a.readPart {
			t.inc = aws.ToInt64(out.ContentLength)
		}
		t.mu.Unlock()
	}
	out.Body = &countingBody{ReadCloser: out.Body, n: counter}
	return out, nil
}

// countingBody adds the bytes read from a response body to a counter.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (a *s3API) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := a.c.HeadObject(ctx, in, opts...)
	if t := trackerFrom(ctx); t != nil && err == nil {
		t.mu.Lock()
		t.touch(out.LastModified)
		t.mu.Unlock()
	}
	return out, err
}

func (a *s3API) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := a.c.CompleteMultipartUpload(ctx, in, opts...)
	if t := trackerFrom(ctx); t != nil && err == nil {
		t.setGone()
	}
	return out, err
}

func (a *s3API) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return a.c.AbortMultipartUpload(ctx, in, opts...)
}

func (a *s3API) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return a.c.DeleteObject(ctx, in, opts...)
}

func (a *s3API) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, opts ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error) {
	return a.c.DeleteObjects(ctx, in, opts...)
}

func (a *s3API) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	return a.c.UploadPartCopy(ctx, in, opts...)
}

// isNoSuchUpload reports whether err says the multipart upload does not
// exist (completed or aborted). Services differ in the code they send.
func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	var nsk *types.NoSuchKey
	return errors.As(err, &nsu) || errors.As(err, &nsk) || apiCode(err) == "NoSuchUpload" || apiCode(err) == "NoSuchKey"
}
