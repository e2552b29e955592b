package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// InstallHint says how to install the server binary.
const InstallHint = "install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 " +
	"(it lands in $(go env GOPATH)/bin), or set VERSITYGW to the binary's path"

// RepoPrefix is the prefix inside the bucket that Env's WALRUS_REPO names.
const RepoPrefix = "repo"

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 60 * time.Second

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:PORT.
	Endpoint string
	// Region is the region the server reports and signs with.
	Region string
	// AccessKey is the root user's access key id.
	AccessKey string
	// SecretKey is the root user's secret access key.
	SecretKey string
	// Dir is the directory the posix backend serves: one subdirectory per
	// bucket.
	Dir string

	client  *s3.Client
	buckets atomic.Int64
}

// Option changes how Start runs the server.
type Option func(*options)

type options struct {
	keepAlive bool
}

// KeepAlive starts the server with --keep-alive, so that it reuses client
// connections (for benchmarks; tests do not need it).
func KeepAlive() Option {
	return func(o *options) { o.keepAlive = true }
}

// Start starts a versitygw server and stops it when t's test ends. It fails
// t, never skips it, when the server cannot be started.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("s3test: %v; %s", err, InstallHint)
	}
	s := &Server{
		Region:    "us-east-1",
		AccessKey: "walrus" + randomHex(8),
		SecretKey: randomHex(20),
		Dir:       t.TempDir(),
	}
	logDir := t.TempDir()
	var lastErr error
	for attempt := range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("s3test: %v", err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		args := []string{
			"--access", s.AccessKey,
			"--secret", s.SecretKey,
			"--region", s.Region,
			"--port", addr,
			"--quiet",
		}
		if o.keepAlive {
			args = append(args, "--keep-alive")
		}
		args = append(args, "posix", s.Dir)
		logPath := filepath.Join(logDir, fmt.Sprintf("versitygw-%d.log", attempt))
		s.Endpoint = "http://" + addr
		s.client = s.newClient()
		stop, err := run(bin, args, logPath, s.answers)
		if err == nil {
			t.Cleanup(func() {
				// A gateway slow to exit under load says nothing about
				// the code under test: it is killed and the fact logged.
				if err := stop(); err != nil {
					t.Logf("s3test: stop versitygw: %v", err)
				}
			})
			return s
		}
		lastErr = err
		log, _ := os.ReadFile(logPath)
		if !bytes.Contains(log, []byte("address already in use")) {
			t.Fatalf("s3test: start %s %s: %v\n%s\n%s", bin, strings.Join(redact(args, s.SecretKey), " "), err, tail(log), InstallHint)
		}
	}
	t.Fatalf("s3test: start %s: no free port after 5 attempts: %v", bin, lastErr)
	return nil
}

// answers reports whether the server at s.Endpoint accepts s's
// credentials: it is this server, not another one (of a test running
// beside this one) that took the port between freePort and the start.
func (s *Server) answers(ctx context.Context) error {
	_, err := s.client.ListBuckets(ctx, &s3.ListBucketsInput{})
	return err
}

// run starts the server and waits until ready succeeds, which must prove
// that the process started answers, not just anything on its port. It
// returns the function that stops it.
func run(bin string, args []string, logPath string, ready func(context.Context) error) (stop func() error, err error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = childEnv()
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
			return nil
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("did not stop on SIGINT; killed")
		}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("exited before answering: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("did not answer within %v: %v", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childEnv is the test's environment without the variables that would
// configure versitygw behind the flags' back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func findBinary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VERSITYGW=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var tried []string
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gopath, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("versitygw not found in PATH or at %s", strings.Join(tried, ", "))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(args []string, secret string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, secret, "***")
	}
	return out
}

func tail(b []byte) string {
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

func (s *Server) newClient() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Client returns an S3 client for the server with the root credentials,
// for tests that inspect a bucket behind a Store's back.
func (s *Server) Client() *s3.Client { return s.client }

// NewBucket creates an empty bucket with a fresh name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("walrus-test-%d-%s", s.buckets.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
	return name
}

// Env returns the environment lines that point a walrus child process at
// bucket on this server: AWS credentials, region and endpoint, path-style
// addressing, and WALRUS_REPO=s3://bucket/RepoPrefix.
func (s *Server) Env(bucket string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
		"WALRUS_REPO=s3://" + bucket + "/" + RepoPrefix,
		"WALRUS_S3_FORCE_PATH_STYLE=true",
	}
}
