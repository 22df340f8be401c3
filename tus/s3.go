package tus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// S3Config selects the S3 backend: uploads go to a bucket through tusd's
// s3store. Credentials are not part of it: they come only from the AWS
// SDK's default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_PROFILE and the shared config and credential
// files, web identity, instance and container roles). The region and the
// endpoint may come from it too (AWS_REGION, AWS_ENDPOINT_URL_S3).
type S3Config struct {
	// Bucket holds the uploads; it must exist.
	Bucket string
	// Prefix is put before every key ("uploads/"); empty: the bucket's
	// root. One portal per prefix: see InstanceID.
	Prefix string
	// Endpoint is the service's URL ("https://minio.example:9000"); empty:
	// AWS, or AWS_ENDPOINT_URL_S3.
	Endpoint string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key)
	// instead of the host name (bucket.endpoint/key); most self-hosted
	// services need it.
	PathStyle bool
	// Region is the bucket's region; empty: from the SDK's chain, else
	// us-east-1.
	Region string
	// SSE asks for server-side encryption of every object the portal
	// writes: "" (the bucket's default), "AES256" (SSE-S3) or "aws:kms"
	// (SSE-KMS; "sse-s3" and "sse-kms" are accepted too).
	SSE string
	// SSEKMSKeyID is the KMS key for SSE-KMS; empty: the account's default
	// key for S3.
	SSEKMSKeyID string
	// InstanceID names this portal in the claim object it keeps under the
	// prefix (<prefix>portal-claim.json): a portal with another instance id
	// refuses to use the prefix. Required; it must stay the same across
	// restarts (the portal keeps it in its database).
	InstanceID string
	// PartSize is the size of the parts sent to the bucket (at least
	// 5 MiB; default 16 MiB). Larger declared uploads get larger parts (at
	// most 10,000 parts per object); a deferred-length upload can grow to
	// 10,000 parts of this size.
	PartSize int64
	// MaxBufferedParts bounds the parts of one request read ahead into
	// temporary files while a part is being sent (default 2).
	MaxBufferedParts int64
	// ConcurrentPartUploads bounds the parts being sent (or waiting for
	// their turn) at once, over all uploads (default 16).
	ConcurrentPartUploads int
	// TempDir holds the parts on their way to the bucket; default
	// <Dir>/s3-parts. Its files are removed at start.
	TempDir string
}

const (
	minPartSize          = 5 << 20
	defaultPartSize      = 16 << 20
	defaultBufferedParts = 2
	defaultConcurrency   = 16
	claimName            = "portal-claim.json"
	// backendS3 and backendLocal are the backends' names in Completed and Location.
	backendS3    = "s3"
	backendLocal = "local"
)

// s3Store is the S3 backend: tusd's s3store over an s3API, with the digest
// states in a local directory.
type s3Store struct {
	inner    s3store.S3Store
	api      *s3API
	cfg      S3Config
	dir      string // digest states
	endpoint string // for messages: the service's URL, never a credential
	awsCfg   aws.Config
	log      *slog.Logger

	bytesRehashed atomic.Int64

	// The claim is made by the first check that reaches the bucket; until
	// then uploads are answered 503 and a request tries again (at most
	// every claimRetry).
	claimed  atomic.Bool
	claimMu  sync.Mutex
	lastTry  time.Time
	lastErr  error
	lastWarn atomic.Int64 // unix nanoseconds of the last "unreachable" log line
}

const claimRetry = 2 * time.Second

// multipartIDPattern is what the portal accepts as a service's multipart
// upload id: it becomes part of the upload's URL. (AWS, MinIO, Ceph RGW and
// versitygw return base64url, hex, "2~..." or UUIDs.)
var multipartIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~=-]{1,400}$`)

// s3UploadIDPattern is the form of the upload ids of the S3 backend: the
// object id the portal picks, "+", the service's multipart upload id.
var s3UploadIDPattern = regexp.MustCompile(`^[0-9a-f]{32}\+[A-Za-z0-9._~=-]{1,400}$`)

// instanceIDPattern bounds what a claim may name.
var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// normalize checks the configuration and fills in the defaults.
func (c S3Config) normalize(dir string) (S3Config, error) {
	if c.Bucket == "" {
		return c, errors.New("s3: a bucket is required")
	}
	if !instanceIDPattern.MatchString(c.InstanceID) {
		return c, errors.New("s3: an instance id (letters, digits, . _ : -) is required")
	}
	c.Prefix = strings.TrimLeft(c.Prefix, "/")
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil {
			return c, errors.New("s3: the endpoint is not a URL") // not echoed: it may hold a secret
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return c, fmt.Errorf("s3: endpoint %q must be an http:// or https:// URL without credentials", u.Redacted())
		}
	}
	switch strings.ToLower(c.SSE) {
	case "":
		c.SSE = ""
	case "aes256", "sse-s3":
		c.SSE = string(types.ServerSideEncryptionAes256)
	case "aws:kms", "sse-kms", "kms":
		c.SSE = string(types.ServerSideEncryptionAwsKms)
	default:
		return c, fmt.Errorf("s3: server-side encryption %q is not one of AES256 (SSE-S3), aws:kms (SSE-KMS)", c.SSE)
	}
	if c.SSEKMSKeyID != "" && c.SSE != string(types.ServerSideEncryptionAwsKms) {
		return c, errors.New("s3: a KMS key id needs SSE-KMS (aws:kms)")
	}
	if c.PartSize == 0 {
		c.PartSize = defaultPartSize
	}
	if c.PartSize < minPartSize {
		return c, fmt.Errorf("s3: part size %d is below the 5 MiB S3 needs", c.PartSize)
	}
	if c.MaxBufferedParts <= 0 {
		c.MaxBufferedParts = defaultBufferedParts
	}
	if c.ConcurrentPartUploads <= 0 {
		c.ConcurrentPartUploads = defaultConcurrency
	}
	if c.TempDir == "" {
		c.TempDir = filepath.Join(dir, "s3-parts")
	}
	return c, nil
}

// newS3Store builds the S3 backend. It makes no request: Check does.
func newS3Store(cfg S3Config, dir string, log *slog.Logger) (*s3Store, error) {
	cfg, err := cfg.normalize(dir)
	if err != nil {
		return nil, err
	}
	if err := resetTempDir(cfg.TempDir); err != nil {
		return nil, err
	}
	opts := []func(*config.LoadOptions) error{config.WithLogger(sdkLogger{log})}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load the AWS SDK configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// The SDK's own transport (system roots, so SSL_CERT_FILE works),
		// with a bound on a service that accepts a request and never answers.
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = 2 * time.Minute
		})
	})
	endpoint := aws.ToString(client.Options().BaseEndpoint)
	if endpoint == "" {
		endpoint = "AWS S3 (" + awsCfg.Region + ")"
	}
	api := &s3API{c: client, sse: types.ServerSideEncryption(cfg.SSE), kmsKey: cfg.SSEKMSKeyID}
	inner := s3store.New(cfg.Bucket, api)
	inner.ObjectPrefix = cfg.Prefix
	inner.MinPartSize = minPartSize
	inner.PreferredPartSize = cfg.PartSize
	inner.MaxBufferedParts = cfg.MaxBufferedParts
	inner.TemporaryDirectory = cfg.TempDir
	inner.SetConcurrentPartUploads(cfg.ConcurrentPartUploads)
	return &s3Store{inner: inner, api: api, cfg: cfg, dir: dir, endpoint: endpoint, awsCfg: awsCfg, log: log}, nil
}

// resetTempDir creates the directory of parts in transit and removes what a
// previous run left in it.
func resetTempDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("s3: create the temporary directory: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, "tusd-s3-*"))
	if err != nil {
		return err
	}
	for _, f := range left {
		os.Remove(f)
	}
	return nil
}

// sdkLogger sends the AWS SDK's log lines (warnings such as a response
// without a checksum) to the portal's log at debug level.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "aws-sdk", "class", string(c))
}

// UseIn registers the store and its extensions with composer.
func (s *s3Store) UseIn(composer *handler.StoreComposer) {
	composer.UseCore(s)
	composer.UseTerminater(s)
	composer.UseConcater(s)
	composer.UseLengthDeferrer(s)
	composer.UseContentServer(s)
}

func (s *s3Store) key(objectID string) string { return s.cfg.Prefix + objectID }

func (s *s3Store) statePath(objectID string) string {
	return filepath.Join(s.dir, objectID+".sha256")
}

// splitID splits an S3 upload id into the object id and the multipart
// upload id (the last "+" separates them, as in s3store).
func splitID(id string) (objectID, multipartID string) {
	i := strings.LastIndex(id, "+")
	if i < 0 {
		return id, ""
	}
	return id[:i], id[i+1:]
}

// s3Upload is an upload of the S3 backend; every call it makes to the
// bucket carries its tracker.
type s3Upload struct {
	handler.Upload // s3store's
	store          *s3Store
	id, objectID   string
	multipartID    string
	t              *tracker
}

func (u *s3Upload) with(ctx context.Context) context.Context { return withTracker(ctx, u.t) }

// NewUpload creates the multipart upload, its .info object and an empty
// digest state.
func (s *s3Store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	if err := s.gate(ctx); err != nil {
		return nil, err
	}
	up, err := s.inner.NewUpload(ctx, info)
	if err != nil {
		return nil, s.mapErr(err)
	}
	created, err := up.GetInfo(ctx) // held by s3store: no request
	if err != nil {
		return nil, s.mapErr(err)
	}
	objectID, multipartID := splitID(created.ID)
	u := &s3Upload{Upload: up, store: s, id: created.ID, objectID: objectID, multipartID: multipartID, t: newTracker(s.statePath(objectID))}
	if !multipartIDPattern.MatchString(multipartID) {
		s.terminate(ctx, objectID, multipartID)
		return nil, fmt.Errorf("s3: the service returned a multipart upload id the portal cannot put in a URL (%d characters)", len(multipartID))
	}
	u.t.fresh(info.IsPartial)
	if !info.IsPartial {
		if err := u.t.state.save(hashState{State: marshalDigest(sha256.New())}); err != nil {
			return nil, storageError(err)
		}
	}
	return u, nil
}

// GetUpload opens an upload; it asks the bucket nothing until used.
func (s *s3Store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	if err := s.gate(ctx); err != nil {
		return nil, err
	}
	up, err := s.inner.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	objectID, multipartID := splitID(id)
	return &s3Upload{Upload: up, store: s, id: id, objectID: objectID, multipartID: multipartID, t: newTracker(s.statePath(objectID))}, nil
}

func (s *s3Store) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return up.(*s3Upload)
}

func (s *s3Store) AsLengthDeclarableUpload(up handler.Upload) handler.LengthDeclarableUpload {
	return up.(*s3Upload)
}

func (s *s3Store) AsConcatableUpload(up handler.Upload) handler.ConcatableUpload {
	return up.(*s3Upload)
}

func (s *s3Store) AsServableUpload(up handler.Upload) handler.ServableUpload {
	return up.(*s3Upload)
}

// GetInfo reads the upload's .info, parts and .part (once per handle).
func (u *s3Upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.Upload.GetInfo(u.with(ctx))
	if err != nil {
		return info, u.store.mapErr(err)
	}
	u.t.setPartial(info.IsPartial)
	return info, nil
}

// WriteChunk hands the client's bytes to s3store; the parts it makes are
// sequenced and hashed as the bucket accepts them (s3api.go).
func (u *s3Upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	if _, err := u.GetInfo(ctx); err != nil {
		return 0, err
	}
	cr := &countingReader{r: src}
	u.t.beginWrite(&cr.n)
	defer u.t.endWrite()
	n, err := u.Upload.WriteChunk(u.with(ctx), offset, cr)
	return n, u.store.mapErr(err)
}

func (u *s3Upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	r, err := u.Upload.GetReader(u.with(ctx))
	return r, u.store.mapErr(err)
}

// FinishUpload completes the multipart upload, then the digest (from the
// saved state, or repaired by reading the object back); a partial upload
// has none.
func (u *s3Upload) FinishUpload(ctx context.Context) error {
	if err := u.Upload.FinishUpload(u.with(ctx)); err != nil {
		return u.store.mapErr(err)
	}
	u.t.setGone()
	if info, err := u.GetInfo(ctx); err != nil || info.IsPartial {
		return err // a partial is hashed as part of its concatenation
	}
	_, err := u.finish(ctx)
	return err
}

func (u *s3Upload) DeclareLength(ctx context.Context, length int64) error {
	return u.store.mapErr(u.store.inner.AsLengthDeclarableUpload(u.Upload).DeclareLength(u.with(ctx), length))
}

func (u *s3Upload) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	return u.store.mapErr(u.store.inner.AsServableUpload(u.Upload).ServeContent(u.with(ctx), w, r))
}

func (u *s3Upload) Terminate(ctx context.Context) error {
	return u.store.terminate(ctx, u.objectID, u.multipartID)
}

// ConcatUploads lets s3store build the final object from the partial
// uploads (copying their parts in the bucket, or, for partials under
// 5 MiB, downloading and uploading them), then hashes the final object by
// reading it back: the one read-back of the normal path, counted in
// BytesRehashed. (A digest cannot be continued from the partials' own.)
func (u *s3Upload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		inner[i] = p.(*s3Upload).Upload
	}
	if err := u.store.inner.AsConcatableUpload(u.Upload).ConcatUploads(u.with(ctx), inner); err != nil {
		return u.store.mapErr(err)
	}
	// Below 5 MiB s3store writes the object whole and aborts the multipart
	// upload in the background; abort it now, so the upload reads as complete.
	if err := u.store.abort(ctx, u.objectID, u.multipartID); err != nil {
		return err
	}
	u.t.setGone()
	info, err := u.GetInfo(ctx)
	if err != nil {
		return err
	}
	h := sha256.New()
	if err := u.store.hashObject(ctx, u.store.key(u.objectID), 0, info.Size, h); err != nil {
		return err
	}
	st := hashState{Offset: info.Size, State: marshalDigest(h), Sum: hex.EncodeToString(h.Sum(nil))}
	return storageError(u.t.state.save(st))
}

// finish returns the upload's hex SHA-256, completing the multipart upload
// first if it is still open (a PATCH whose completion failed). The sum
// comes from the saved state when it covers the whole object; otherwise
// (the state lagged the bucket after a crash or a failed save, or is
// missing) the object is read back from where the state ends: counted in
// BytesRehashed. It is safe to call more than once.
func (u *s3Upload) finish(ctx context.Context) (string, error) {
	info, err := u.GetInfo(ctx)
	if err != nil {
		return "", err
	}
	if info.SizeIsDeferred || info.Offset != info.Size {
		return "", fmt.Errorf("upload %s is not complete (%d of %d bytes)", u.id, info.Offset, info.Size)
	}
	if !u.t.gone() {
		if err := u.Upload.FinishUpload(u.with(ctx)); err != nil {
			return "", u.store.mapErr(err)
		}
		u.t.setGone()
	}
	st, ok := u.t.state.load(info.Size)
	if ok && st.Offset == info.Size && st.Sum != "" {
		return st.Sum, nil
	}
	h, from := hash.Hash(nil), int64(0)
	if ok {
		if d, good := st.digest(); good {
			h, from = d, st.Offset
		}
	}
	if h == nil {
		h = sha256.New()
	}
	u.store.log.Info("s3: the digest state lags the bucket; reading the object back to hash it",
		"upload_id", u.id, "from", from, "bytes", info.Size-from)
	if err := u.store.hashObject(ctx, u.store.key(u.objectID), from, info.Size, h); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := u.t.state.save(hashState{Offset: info.Size, State: marshalDigest(h), Sum: sum}); err != nil {
		return "", storageError(err)
	}
	return sum, nil
}

// hashObject feeds bytes [from, size) of a complete object to h, checking
// that the object has exactly size bytes. The bytes count as rehashed.
func (s *s3Store) hashObject(ctx context.Context, key string, from, size int64, h hash.Hash) error {
	if from == size {
		return nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)}
	if from > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", from))
	}
	out, err := s.api.GetObject(ctx, in)
	if err != nil {
		return fmt.Errorf("read back %s to hash it: %w", key, s.mapErr(err))
	}
	defer out.Body.Close()
	total := aws.ToInt64(out.ContentLength)
	if from > 0 {
		total = -1
		if cr := aws.ToString(out.ContentRange); strings.Contains(cr, "/") {
			fmt.Sscan(cr[strings.LastIndex(cr, "/")+1:], &total)
		}
	}
	if total != size {
		return fmt.Errorf("read back %s to hash it: the object has %d bytes, the upload %d", key, total, size)
	}
	n, err := io.Copy(h, out.Body)
	s.bytesRehashed.Add(n)
	if err != nil {
		return fmt.Errorf("read back %s to hash it: %w", key, s.mapErr(err))
	}
	if n != size-from {
		return fmt.Errorf("read back %s to hash it: got %d of %d bytes", key, n, size-from)
	}
	return nil
}

// abort aborts a multipart upload; one that is gone is no error.
func (s *s3Store) abort(ctx context.Context, objectID, multipartID string) error {
	_, err := s.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(objectID)), UploadId: aws.String(multipartID),
	})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("abort the multipart upload of %s: %w", objectID, s.mapErr(err))
	}
	return nil
}

// terminate removes an upload: it aborts the multipart upload (without its
// id: every one of the object's key), deletes the object and its .part,
// then the .info (last, so a removal cut short can be found and finished
// from it), and the local digest state. What is gone already is no error.
func (s *s3Store) terminate(ctx context.Context, objectID, multipartID string) error {
	if multipartID != "" {
		if err := s.abort(ctx, objectID, multipartID); err != nil {
			return err
		}
	} else if err := s.abortAll(ctx, objectID); err != nil {
		return err
	}
	key := s.key(objectID)
	if err := s.deleteObjects(ctx, s.cfg.Bucket, key, key+".part"); err != nil {
		return err
	}
	if err := s.deleteObjects(ctx, s.cfg.Bucket, key+".info"); err != nil {
		return err
	}
	if err := os.Remove(s.statePath(objectID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// abortAll aborts the multipart uploads of an object whose .info (and so
// its multipart upload id) is gone: a removal another tool cut short. It
// lists the uploads of that one key, never the bucket. Without the
// permission to list them it leaves them to the bucket's lifecycle rule.
func (s *s3Store) abortAll(ctx context.Context, objectID string) error {
	key := s.key(objectID)
	out, err := s.api.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(key)})
	if err != nil {
		if code := apiCode(err); code == "AccessDenied" || code == "NotImplemented" {
			s.log.Warn("s3: cannot list the multipart uploads of an upload whose .info is gone; the bucket's lifecycle rule must abort them", "key", key, "code", code)
			return nil
		}
		return fmt.Errorf("list the multipart uploads of %s: %w", objectID, s.mapErr(err))
	}
	for _, up := range out.Uploads {
		if aws.ToString(up.Key) == key {
			if err := s.abort(ctx, objectID, aws.ToString(up.UploadId)); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteObjects deletes keys from a bucket; keys that do not exist are no
// error.
func (s *s3Store) deleteObjects(ctx context.Context, bucket string, keys ...string) error {
	ids := make([]types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
	}
	out, err := s.api.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: aws.String(bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", strings.Join(keys, ", "), s.mapErr(err))
	}
	var errs []error
	for _, e := range out.Errors {
		if aws.ToString(e.Code) != "NoSuchKey" {
			errs = append(errs, fmt.Errorf("delete %s: %s: %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
	}
	return errors.Join(errs...)
}

// resolve returns the upload id of an upload named by its id or its base
// id (the object id the portal picked at creation): the .info object has
// the whole id. A missing .info is handler.ErrNotFound.
func (s *s3Store) resolve(ctx context.Context, id string) (string, error) {
	if strings.Contains(id, "+") {
		return id, nil
	}
	if err := s.gate(ctx); err != nil {
		return "", err
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(id) + ".info")})
	if err != nil {
		if isNotFound(err) {
			return "", handler.ErrNotFound
		}
		return "", s.mapErr(err)
	}
	defer out.Body.Close()
	var info handler.FileInfo
	if err := json.NewDecoder(io.LimitReader(out.Body, 1<<20)).Decode(&info); err != nil {
		return "", fmt.Errorf("read the .info of %s: %w", id, s.mapErr(err))
	}
	if objectID, _ := splitID(info.ID); objectID != id || !s3UploadIDPattern.MatchString(info.ID) {
		return "", fmt.Errorf("the .info of %s names upload %q", id, info.ID)
	}
	return info.ID, nil
}

// errStray marks an upload whose .info is left without its object or
// multipart upload: a removal cut short, or a multipart upload the
// bucket's lifecycle rule aborted.
var errStray = errors.New("upload is a stray .info")

// describe reads what the bucket knows of an upload. ModifiedAt is the
// latest modification of its .info, parts, .part and object.
func (s *s3Store) describe(ctx context.Context, id string) (Upload, error) {
	up, err := s.GetUpload(ctx, id)
	if err != nil {
		return Upload{}, err
	}
	u := up.(*s3Upload)
	info, err := u.GetInfo(ctx)
	if err != nil {
		return Upload{}, err
	}
	if u.t.gone() {
		_, err := s.api.HeadObject(u.with(ctx), &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(u.objectID))})
		if isNotFound(err) {
			return Upload{}, errStray
		}
		if err != nil {
			return Upload{}, s.mapErr(err)
		}
	}
	return Upload{
		ID: info.ID, Size: info.Size, Offset: info.Offset, IsPartial: info.IsPartial,
		IsFinal: info.IsFinal, Deferred: info.SizeIsDeferred, MetaData: info.MetaData, ModifiedAt: u.t.modifiedAt(),
	}, nil
}

// location is where a complete upload's object is: the bucket and key its
// .info recorded when it was created.
func (s *s3Store) location(info handler.FileInfo) Location {
	loc := Location{Backend: backendS3, Bucket: info.Storage["Bucket"], Key: info.Storage["Key"]}
	if loc.Bucket == "" || loc.Key == "" {
		objectID, _ := splitID(info.ID)
		loc.Bucket, loc.Key = s.cfg.Bucket, s.key(objectID)
	}
	return loc
}
