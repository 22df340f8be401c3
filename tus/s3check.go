package tus

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/tus/tusd/v2/pkg/handler"
)

// ErrStorageUnreachable matches (errors.Is) a StorageError that retrying
// may cure: the service did not answer, timed out, or answered 5xx.
var ErrStorageUnreachable = errors.New("storage unreachable")

// ErrStorageMisconfigured matches (errors.Is) a StorageError that only a
// change of configuration cures: no such bucket, a wrong endpoint, bad or
// missing credentials, no permission, a prefix claimed by another portal.
var ErrStorageMisconfigured = errors.New("storage misconfigured")

// errUnavailable is what clients get while the storage cannot be used:
// 503, which tus clients retry.
var errUnavailable = handler.NewError("ERR_STORAGE_UNAVAILABLE",
	"the portal's storage is unavailable; try again later", http.StatusServiceUnavailable)

// StorageError says why the storage cannot be used, in one line for the
// operator (it names the bucket, prefix and endpoint, never a credential).
// Through errors.As it is also a tusd handler.Error, so tusd answers 503.
type StorageError struct {
	Message     string
	Unreachable bool // retrying may help; otherwise the configuration is wrong
	Err         error
}

func (e *StorageError) Error() string { return e.Message }
func (e *StorageError) Unwrap() error { return e.Err }

// Is matches ErrStorageUnreachable or ErrStorageMisconfigured.
func (e *StorageError) Is(target error) bool {
	return (target == ErrStorageUnreachable && e.Unreachable) || (target == ErrStorageMisconfigured && !e.Unreachable)
}

// As makes the error a 503 for tusd.
func (e *StorageError) As(target any) bool {
	if t, ok := target.(*handler.Error); ok {
		*t = errUnavailable
		return true
	}
	return false
}

// check is the start-up and readiness check: the credentials resolve, the
// bucket answers HeadBucket, and (once) the prefix's claim is this
// portal's.
func (s *s3Store) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if s.awsCfg.Credentials == nil {
		return s.misconfigured(nil, "s3: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the host a role")
	}
	if _, err := s.awsCfg.Credentials.Retrieve(ctx); err != nil {
		// Also when the instance metadata service did not answer: far more
		// often no credentials were set than a role's service is down.
		detail := strings.TrimPrefix(err.Error(), "failed to refresh cached credentials, ")
		if i := strings.Index(detail, ", operation error"); i > 0 {
			detail = detail[:i]
		}
		return s.misconfigured(err, "s3: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the host a role (%s)", detail)
	}
	_, err := s.api.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)}, oneAttempt)
	if err != nil {
		return s.diagnose(ctx, "HeadBucket", err)
	}
	if !s.claimed.Load() {
		if err := s.claim(ctx); err != nil {
			return err
		}
		s.claimed.Store(true)
	}
	return nil
}

// oneAttempt makes a check's request fail fast: the caller retries.
func oneAttempt(o *s3.Options) { o.RetryMaxAttempts = 1 }

// gate lets uploads through once the prefix is claimed; before, it tries
// the check (at most every claimRetry) and answers 503 meanwhile.
func (s *s3Store) gate(ctx context.Context) error {
	if s.claimed.Load() {
		return nil
	}
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if s.claimed.Load() {
		return nil
	}
	if time.Since(s.lastTry) < claimRetry && s.lastErr != nil {
		return s.lastErr
	}
	s.lastTry = time.Now()
	s.lastErr = s.check(context.WithoutCancel(ctx))
	return s.lastErr
}

// claimRecord is the content of the claim object.
type claimRecord struct {
	InstanceID string    `json:"instance_id"`
	ClaimedAt  time.Time `json:"claimed_at"`
}

func (s *s3Store) claimKey() string { return s.cfg.Prefix + claimName }

// claim makes sure the claim object under the prefix names this portal:
// it reads it, and if there is none writes it with If-None-Match: * (so of
// two portals starting at once only one succeeds), then reads it again.
// A service that ignores If-None-Match leaves a race between two portals
// that start at the same moment; the read-back catches all but that.
func (s *s3Store) claim(ctx context.Context) error {
	owner, err := s.readClaim(ctx)
	if err != nil {
		return err
	}
	if owner == "" {
		body, _ := json.Marshal(claimRecord{InstanceID: s.cfg.InstanceID, ClaimedAt: time.Now().UTC().Truncate(time.Second)})
		_, err := s.api.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.claimKey()), Body: bytes.NewReader(body),
			IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
		}, oneAttempt)
		if err != nil && apiCode(err) != "PreconditionFailed" && apiCode(err) != "ConditionalRequestConflict" {
			return s.diagnose(ctx, "PutObject "+s.claimKey(), err)
		}
		if owner, err = s.readClaim(ctx); err != nil {
			return err
		}
	}
	if owner != s.cfg.InstanceID {
		return s.misconfigured(nil, "s3: prefix %q of bucket %q belongs to portal instance %q (claim object %s): one portal per prefix; choose another prefix, or delete the claim object if that portal is gone for good",
			s.cfg.Prefix, s.cfg.Bucket, owner, s.claimKey())
	}
	return nil
}

// readClaim returns the instance id in the claim object ("" when there is
// none).
func (s *s3Store) readClaim(ctx context.Context) (string, error) {
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.claimKey())}, oneAttempt)
	if err != nil {
		if apiCode(err) == "NoSuchKey" {
			return "", nil
		}
		return "", s.diagnose(ctx, "GetObject "+s.claimKey(), err)
	}
	defer out.Body.Close()
	var rec claimRecord
	b, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
	if err != nil {
		return "", &StorageError{Message: "s3: reading the claim object failed: " + short(err), Unreachable: true, Err: err}
	}
	if json.Unmarshal(b, &rec) != nil || rec.InstanceID == "" {
		return "", s.misconfigured(nil, "s3: %s does not answer like an S3 service, or s3://%s/%s is not a portal's claim object",
			s.endpoint, s.cfg.Bucket, s.claimKey())
	}
	return rec.InstanceID, nil
}

func (s *s3Store) misconfigured(err error, format string, args ...any) *StorageError {
	return &StorageError{Message: fmt.Sprintf(format, args...), Err: err}
}

// diagnose turns a failed request into one line that says what is wrong.
// HeadBucket answers carry no error code (HEAD has no body), so a failed
// HeadBucket is asked again as a GetObject of the claim object, whose
// answer says whether the bucket, the key id or the secret is wrong.
func (s *s3Store) diagnose(ctx context.Context, op string, err error) error {
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	var rerr tls.RecordHeaderError
	switch {
	case errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr):
		return s.misconfigured(err, "s3: the TLS certificate of %s is not trusted (%s); a private CA's certificate goes in SSL_CERT_FILE", s.endpoint, short(err))
	case errors.As(err, &rerr):
		return s.misconfigured(err, "s3: %s does not speak TLS; use an http:// endpoint", s.endpoint)
	case isDNSNotFound(err):
		return s.misconfigured(err, "s3: the host of %s does not resolve; check the endpoint (and the bucket name, with virtual-host addressing)", s.endpoint)
	case unreachable(err):
		return &StorageError{Message: fmt.Sprintf("s3: %s is unreachable (%s): %s", s.endpoint, op, short(err)), Unreachable: true, Err: err}
	}
	code, status, requestID := responseOf(err)
	if op == "HeadBucket" && ctx.Err() == nil {
		_, gerr := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.claimKey())}, oneAttempt)
		if gerr != nil && apiCode(gerr) != "NoSuchKey" {
			code, status, requestID = responseOf(gerr)
		}
	}
	where := fmt.Sprintf("bucket %q at %s", s.cfg.Bucket, s.endpoint)
	switch code {
	case "NoSuchBucket":
		return s.misconfigured(err, "s3: %s does not exist", where)
	case "InvalidAccessKeyId", "XAdminUserNotFound":
		return s.misconfigured(err, "s3: the access key id is not known to %s; credentials come from the AWS SDK's chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role)", s.endpoint)
	case "SignatureDoesNotMatch":
		return s.misconfigured(err, "s3: the secret access key does not match the access key id at %s (AWS_SECRET_ACCESS_KEY)", s.endpoint)
	case "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
		return s.misconfigured(err, "s3: the session token is invalid or expired at %s (AWS_SESSION_TOKEN)", s.endpoint)
	case "AccessDenied", "AllAccessDisabled":
		return s.misconfigured(err, "s3: access denied to %s (%s); see docs/storage.md for the permissions the portal needs", where, op)
	case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
		return s.misconfigured(err, "s3: %s is in another region than %q; set the region", where, s.awsCfg.Region)
	case "InvalidBucketName":
		return s.misconfigured(err, "s3: %q is not a valid bucket name", s.cfg.Bucket)
	}
	if requestID == "" && status != 0 {
		return s.misconfigured(err, "s3: %s does not answer like an S3 service (%s: HTTP %d without an S3 request id); check the endpoint", s.endpoint, op, status)
	}
	if status == http.StatusForbidden {
		return s.misconfigured(err, "s3: access denied to %s (%s: 403); check the credentials and the bucket's policy", where, op)
	}
	if status == http.StatusNotFound {
		return s.misconfigured(err, "s3: %s does not exist (%s: 404)", where, op)
	}
	return s.misconfigured(err, "s3: %s on %s failed: %s", op, where, short(err))
}

// responseOf returns the error code, HTTP status and request id of an
// error answer.
func responseOf(err error) (code string, status int, requestID string) {
	code = apiCode(err)
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		if re.Response != nil {
			requestID = re.Response.Header.Get("X-Amz-Request-Id")
		}
	}
	return code, status, requestID
}

// apiCode is the S3 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isNotFound reports whether err says an object does not exist.
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return err != nil && (errors.As(err, &nsk) || errors.As(err, &nf) || apiCode(err) == "NoSuchKey" || apiCode(err) == "NotFound")
}

// unreachable reports whether err means the service did not answer (or
// answered that it cannot serve now): retrying later may succeed.
func unreachable(err error) bool {
	var rse *smithyhttp.RequestSendError
	var re *smithyhttp.ResponseError
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &rse):
		return true
	case errors.As(err, &re):
		st := re.HTTPStatusCode()
		return st >= 500 && st != http.StatusNotImplemented
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	// s3store wraps some errors with %s (NewUpload: "s3store: unable to
	// create multipart upload:\n%s"), which ends the chain errors.As walks:
	// then the SDK's own words tell.
	msg := err.Error()
	for _, s := range []string{"retry quota exceeded", "request send failed", "connection refused",
		"connection reset by peer", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func isDNSNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// short is the last, most specific part of an SDK error's text (which
// starts with "operation error S3: ..., https response error ...").
func short(err error) string {
	msg := err.Error()
	for _, sep := range []string{"request send failed, ", "api error "} {
		if i := strings.LastIndex(msg, sep); i >= 0 {
			return msg[i+len(sep):]
		}
	}
	if i := strings.LastIndex(msg, ", "); i >= 0 && len(msg)-i > 20 {
		return msg[i+2:]
	}
	return msg
}

// mapErr turns an error from the bucket that retrying may cure into a
// StorageError (503 for tus clients), logging it (at most every 10 s).
func (s *s3Store) mapErr(err error) error {
	var se *StorageError
	var he handler.Error
	if err == nil || errors.As(err, &se) || errors.As(err, &he) || !unreachable(err) {
		return err
	}
	now := time.Now().UnixNano()
	if last := s.lastWarn.Load(); now-last > int64(10*time.Second) && s.lastWarn.CompareAndSwap(last, now) {
		s.log.Warn("s3: storage unreachable; uploads are answered 503 until it is back", "endpoint", s.endpoint, "bucket", s.cfg.Bucket, "err", short(err))
	}
	return &StorageError{Message: fmt.Sprintf("s3: %s is unreachable: %s", s.endpoint, short(err)), Unreachable: true, Err: err}
}
