package tus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
)

// Location names where a stored file's bytes are: what the portal records
// per file and events carry as storage{backend, bucket, key}.
type Location struct {
	// Backend is "local" or "s3".
	Backend string
	// Bucket is the S3 bucket; empty for local storage (where the portal
	// shows a label of its own).
	Bucket string
	// Key is the S3 object key, or the path under the local upload
	// directory.
	Key string
}

// File is a stored file open for reading, by ranges: it suits
// http.ServeContent. On S3 each run of reads is one ranged GetObject,
// pinned to the object's ETag, so a replaced object is never mixed in.
type File struct {
	size    int64
	modTime time.Time
	f       *os.File // local

	ctx     context.Context // S3
	api     *s3API
	bucket  string
	key     string
	etag    *string
	pos     int64
	body    io.ReadCloser
	bodyPos int64
}

// Size is the file's length in bytes.
func (f *File) Size() int64 { return f.size }

// ModTime is when the file was last written.
func (f *File) ModTime() time.Time { return f.modTime }

// errNoS3 answers a file on S3 when no bucket is configured.
var errNoS3 = errors.New("tus: the file is in S3 storage, which is not configured")

// OpenFile opens a stored file by its location, wherever the portal
// stored it: a file stored before a change of bucket or prefix is read
// from where it was recorded (while the credentials reach it). A file
// that does not exist is an error that errors.Is os.ErrNotExist; a bucket
// that does not answer, one that errors.Is ErrStorageUnreachable.
func (s *Server) OpenFile(ctx context.Context, loc Location) (*File, error) {
	switch loc.Backend {
	case backendLocal:
		p, err := s.localPath(loc.Key)
		if err != nil {
			return nil, err
		}
		fh, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			return nil, err
		}
		return &File{f: fh, size: st.Size(), modTime: st.ModTime()}, nil
	case backendS3:
		if s.s3 == nil {
			return nil, errNoS3
		}
		out, err := s.s3.api.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(loc.Key)})
		if isNotFound(err) {
			return nil, fmt.Errorf("open s3://%s/%s: %w", loc.Bucket, loc.Key, os.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("open s3://%s/%s: %w", loc.Bucket, loc.Key, s.s3.mapErr(err))
		}
		return &File{
			ctx: ctx, api: s.s3.api, bucket: loc.Bucket, key: loc.Key, etag: out.ETag,
			size: aws.ToInt64(out.ContentLength), modTime: aws.ToTime(out.LastModified),
		}, nil
	}
	return nil, fmt.Errorf("tus: unknown storage backend %q", loc.Backend)
}

// localPath is the path of a local file's key, which must stay inside the
// upload directory.
func (s *Server) localPath(key string) (string, error) {
	k := filepath.FromSlash(key)
	if !filepath.IsLocal(k) {
		return "", fmt.Errorf("tus: %q is not a path under the upload directory", key)
	}
	return filepath.Join(s.cfg.Dir, k), nil
}

// Read reads from the current offset.
func (f *File) Read(p []byte) (int, error) {
	if f.f != nil {
		return f.f.Read(p)
	}
	if f.pos >= f.size {
		return 0, io.EOF
	}
	if f.body == nil || f.bodyPos != f.pos {
		if err := f.open(); err != nil {
			return 0, err
		}
	}
	n, err := f.body.Read(p)
	f.pos += int64(n)
	f.bodyPos += int64(n)
	if err == io.EOF {
		f.body.Close()
		f.body = nil
		if f.pos < f.size {
			if n == 0 {
				return 0, io.ErrUnexpectedEOF
			}
			err = nil
		}
	}
	return n, err
}

// open starts a GetObject of the bytes from the current offset.
func (f *File) open() error {
	if f.body != nil {
		f.body.Close()
		f.body = nil
	}
	out, err := f.api.c.GetObject(f.ctx, &s3.GetObjectInput{
		Bucket: aws.String(f.bucket), Key: aws.String(f.key), IfMatch: f.etag,
		Range: aws.String(fmt.Sprintf("bytes=%d-", f.pos)),
	})
	if err != nil {
		if apiCode(err) == "PreconditionFailed" {
			return fmt.Errorf("read s3://%s/%s: the object changed while it was read", f.bucket, f.key)
		}
		if unreachable(err) {
			return &StorageError{Message: "read s3://" + f.bucket + "/" + f.key + ": " + short(err), Unreachable: true, Err: err}
		}
		return fmt.Errorf("read s3://%s/%s: %w", f.bucket, f.key, err)
	}
	f.body, f.bodyPos = out.Body, f.pos
	return nil
}

// Seek sets the offset of the next Read.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	if f.f != nil {
		return f.f.Seek(offset, whence)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += f.size
	default:
		return 0, errors.New("tus: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("tus: negative offset")
	}
	f.pos = offset
	return offset, nil
}

// Close closes the file (and any GetObject in progress).
func (f *File) Close() error {
	if f.f != nil {
		return f.f.Close()
	}
	if f.body != nil {
		err := f.body.Close()
		f.body = nil
		return err
	}
	return nil
}

// RemoveFile removes a stored file by its location, with the upload's
// sidecars (.info, and the .sha256 digest state; on S3 the .part): wherever
// it was stored, like OpenFile. A file already gone is no error, so a nil
// error means the bytes are gone or provably absent.
func (s *Server) RemoveFile(ctx context.Context, loc Location) error {
	switch loc.Backend {
	case backendLocal:
		p, err := s.localPath(loc.Key)
		if err != nil {
			return err
		}
		var errs []error
		for _, name := range []string{p, p + ".info", p + ".sha256"} {
			if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case backendS3:
		if s.s3 == nil {
			return errNoS3
		}
		if err := s.s3.deleteObjects(ctx, loc.Bucket, loc.Key, loc.Key+".part", loc.Key+".info"); err != nil {
			return err
		}
		if id := path.Base(loc.Key); uploadIDPattern.MatchString(id) {
			if err := os.Remove(s.s3.statePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("tus: unknown storage backend %q", loc.Backend)
}

// ReadStats counts the bytes read from the bucket, by kind of object.
type ReadStats struct {
	// Data counts bytes of data objects: hash repairs and concatenations
	// (see BytesRehashed), s3store's own concatenation of small partials,
	// and tus downloads (GET /files/{id}); OpenFile's reads are not counted.
	Data int64
	// Info counts bytes of .info objects (read for every upload a request
	// opens) and of the claim object; Part those of .part objects (a PATCH that ended short of a
	// part is continued by reading its tail back: s3store's design).
	Info, Part int64
}

// S3Reads returns the bytes read from the bucket so far (zero on local
// storage).
func (s *Server) S3Reads() ReadStats {
	if s.s3 == nil {
		return ReadStats{}
	}
	a := s.s3.api
	return ReadStats{Data: a.readData.Load(), Info: a.readInfo.Load(), Part: a.readPart.Load()}
}

// Collectors returns the storage's Prometheus collectors: the bytes read
// back to (re)compute digests, the bytes read from the bucket by kind,
// and on S3 tusd's s3store metrics (tusd_s3_*). Register them once per
// registry.
func (s *Server) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portal_upload_bytes_rehashed_total",
			Help: "Stored bytes read back to repair or compute an upload's SHA-256 (0 on the normal path; on S3, concatenations are read back).",
		}, func() float64 { return float64(s.BytesRehashed()) }),
	}
	if s.s3 == nil {
		return cs
	}
	desc := prometheus.NewDesc("portal_s3_read_bytes_total", "Bytes read from the S3 bucket, by kind of object (data, info, part).", []string{"kind"}, nil)
	cs = append(cs, readCollector{s: s, desc: desc})
	var reg collectorList
	s.s3.inner.RegisterMetrics(&reg)
	return append(cs, reg...)
}

// readCollector exposes S3Reads.
type readCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c readCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c readCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.s.S3Reads()
	for kind, v := range map[string]int64{"data": r.Data, "info": r.Info, "part": r.Part} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), kind)
	}
}

// collectorList gathers what s3store registers, for Collectors.
type collectorList []prometheus.Collector

func (l *collectorList) Register(c prometheus.Collector) error   { *l = append(*l, c); return nil }
func (l *collectorList) MustRegister(cs ...prometheus.Collector) { *l = append(*l, cs...) }
func (l *collectorList) Unregister(prometheus.Collector) bool    { return false }
