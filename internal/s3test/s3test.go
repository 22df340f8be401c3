// Package s3test runs a real S3 server for tests: the Versity S3 Gateway
// (versitygw) serving a temporary directory on 127.0.0.1, started and
// stopped by the test itself. `make versitygw` installs the binary (make
// test depends on it); see Binary for where it is looked for.
package s3test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The root account of every test server, and the region it claims.
const (
	AccessKey = "portal-test-access-key"
	SecretKey = "portal-test-secret-key"
	Region    = "us-east-1"
)

// Binary returns the versitygw to run: $PORTAL_VERSITYGW, else
// $HOME/.cache/doorito/bin/versitygw (where `make versitygw` installs it),
// else one on $PATH.
func Binary() (string, error) {
	if p := os.Getenv("PORTAL_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PORTAL_VERSITYGW: %w", err)
		}
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "doorito", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("versitygw")
	if err != nil {
		return "", errors.New("versitygw not found (run make versitygw)")
	}
	return p, nil
}

// Command is versitygw serving the buckets in dir on addr with the root
// account AccessKey/SecretKey in Region (with TLS when cert and key are
// given), for tests and for the benchmark.
func Command(bin, addr, dir, cert, key string) *exec.Cmd {
	args := []string{"--quiet", "--port", addr}
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
	}
	cmd := exec.Command(bin, append(args, "posix", dir)...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region)
	return cmd
}

// Server is a versitygw process serving Dir on 127.0.0.1.
type Server struct {
	// URL is the endpoint, http://127.0.0.1:PORT.
	URL string
	// Dir holds the buckets (one directory each).
	Dir string

	tb   testing.TB
	bin  string
	addr string
	log  string
	// cert and key serve TLS (StartTLS); client trusts the server's CA.
	cert, key string
	client    *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a server for the test and stops it when the test ends. Without
// the binary the test is skipped, unless PORTAL_REQUIRE_TOOLS is set (make
// test sets it): then it fails.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := newServer(tb)
	s.URL = "http://" + s.addr
	s.client = http.DefaultClient
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

// StartTLS runs a server like Start, but on https with a certificate for
// 127.0.0.1 from a private CA made for the test, whose certificate (PEM)
// is at CAFile.
func StartTLS(tb testing.TB) (s *Server, caFile string) {
	tb.Helper()
	s = newServer(tb)
	dir := filepath.Dir(s.log)
	caPEM, certPEM, keyPEM := makeCert(tb)
	caFile, s.cert, s.key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{caFile: caPEM, s.cert: certPEM, s.key: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	s.URL = "https://" + s.addr
	s.Restart()
	tb.Cleanup(s.Stop)
	return s, caFile
}

// makeCert makes a CA and a certificate it signed for 127.0.0.1, in PEM.
func makeCert(tb testing.TB) (caPEM, certPEM, keyPEM []byte) {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portal test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// newServer prepares a server: its binary, directory and address.
func newServer(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("PORTAL_REQUIRE_TOOLS") != "" {
			tb.Fatalf("s3test: %v", err)
		}
		tb.Skipf("s3test: %v (make test installs it)", err)
	}
	dir := tb.TempDir()
	s := &Server{Dir: filepath.Join(dir, "root"), tb: tb, bin: bin, log: filepath.Join(dir, "versitygw.log")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	s.addr = freeAddr(tb)
	return s
}

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Restart starts the server (again) on the same address and directory, and
// waits until it answers.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.tb.Fatal("s3test: server is running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer logf.Close()
	cmd := Command(s.bin, s.addr, s.Dir, s.cert, s.key)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("s3test: start versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := s.client.Get(s.URL + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.tb.Fatalf("s3test: versitygw exited: %s", s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("s3test: versitygw does not answer on %s: %s", s.addr, s.logTail())
		}
	}
}

// Stop kills the server at once (an outage, as far as clients can tell)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// SetEnv points the AWS SDK's default credential chain at the server's
// root account for the rest of the test, and keeps the SDK away from the
// machine's own AWS files and the instance metadata service.
func (s *Server) SetEnv(tb testing.TB) {
	tb.Helper()
	SetEnv(tb, AccessKey, SecretKey)
}

// SetEnv sets the AWS SDK's environment for the rest of the test: these
// keys, the test region, no shared files, no instance metadata, no
// endpoint from the environment.
func SetEnv(tb testing.TB, accessKey, secretKey string) {
	tb.Helper()
	for k, v := range Env(accessKey, secretKey, filepath.Join(tb.TempDir(), "none")) {
		tb.Setenv(k, v)
	}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		os.Unsetenv(k) // Setenv restores them after the test
	}
}

// Env is the AWS SDK environment SetEnv sets: these keys, the test region,
// none (a path that does not exist) as the shared files, no instance
// metadata, no session token, profile or endpoint from the environment
// (empty values, which the caller unsets).
func Env(accessKey, secretKey, none string) map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID":           accessKey,
		"AWS_SECRET_ACCESS_KEY":       secretKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	}
}

// Client returns an S3 client with the root account's keys, for checking
// what is in the bucket.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		HTTPClient:   s.client,
	})
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(tb testing.TB, name string) {
	tb.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		tb.Fatalf("s3test: create bucket %s: %v", name, err)
	}
}

// Object returns an object's bytes, or nil and false when it does not
// exist.
func (s *Server) Object(tb testing.TB, bucket, key string) ([]byte, bool) {
	tb.Helper()
	out, err := s.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if strings.Contains(err.Error(), "NoSuchKey") {
			return nil, false
		}
		tb.Fatalf("s3test: get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		tb.Fatalf("s3test: read %s/%s: %v", bucket, key, err)
	}
	return b, true
}

// Keys lists the keys in a bucket under prefix.
func (s *Server) Keys(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("s3test: list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys
}

// MultipartUploads lists the multipart uploads in progress in a bucket
// under prefix, as "key upload-id" lines.
func (s *Server) MultipartUploads(tb testing.TB, bucket, prefix string) []string {
	tb.Helper()
	out, err := s.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		tb.Fatalf("s3test: list multipart uploads in %s: %v", bucket, err)
	}
	var ups []string
	for _, u := range out.Uploads {
		ups = append(ups, *u.Key+" "+*u.UploadId)
	}
	return ups
}

// PutObject writes an object.
func (s *Server) PutObject(tb testing.TB, bucket, key string, body []byte) {
	tb.Helper()
	_, err := s.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	if err != nil {
		tb.Fatalf("s3test: put %s/%s: %v", bucket, key, err)
	}
}
