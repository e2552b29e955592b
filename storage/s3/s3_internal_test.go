package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
)

func testConfig(srv *s3test.Server, bucket string) Config {
	return Config{
		Bucket:          bucket,
		Prefix:          "repo",
		Endpoint:        srv.Endpoint,
		Region:          srv.Region,
		ForcePathStyle:  true,
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
		PartSize:        MinPartSize,
		Concurrency:     2,
	}
}

// interceptor lets a test answer or break requests before the server sees
// them.
type interceptor struct {
	mu sync.Mutex
	fn func(*http.Request) *http.Response // nil response: pass through
}

func (i *interceptor) Do(req *http.Request) (*http.Response, error) {
	i.mu.Lock()
	resp := i.fn(req)
	i.mu.Unlock()
	if resp != nil {
		resp.Request = req
		return resp, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

func xmlError(status int, code string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"application/xml"}},
		Body:       io.NopCloser(strings.NewReader(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>injected by the test</Message></Error>`)),
	}
}

func randomData(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func readAll(t *testing.T, st *Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRetryResendsWholeBody breaks the first attempt of every PUT (single
// object or part) after the server would have read part of the body, and
// checks that the SDK's retry stored the whole object (TRAPS 3).
func TestRetryResendsWholeBody(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	broken := map[string]bool{}
	var failures int
	ic := &interceptor{fn: func(req *http.Request) *http.Response {
		if req.Method != http.MethodPut || req.Body == nil {
			return nil
		}
		id := req.URL.Path + "?" + req.URL.Query().Get("partNumber")
		if broken[id] {
			return nil
		}
		broken[id] = true
		failures++
		_, _ = io.CopyN(io.Discard, req.Body, 1000)
		req.Body.Close()
		return xmlError(http.StatusInternalServerError, "InternalError")
	}}
	st, err := newStore(t.Context(), testConfig(srv, srv.NewBucket(t)), func(o *awss3.Options) { o.HTTPClient = ic })
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{100 << 10, 12 << 20} {
		data := randomData(byte(n), n)
		key := "retry/" + string(rune('a'+n%26))
		if err := st.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
			t.Fatalf("Put of %d bytes: %v", n, err)
		}
		if got := readAll(t, st, key); !bytes.Equal(got, data) {
			t.Fatalf("stored %d bytes (sha256 %x), want %d (sha256 %x)", len(got), sha256.Sum256(got), n, sha256.Sum256(data))
		}
	}
	// One single PUT, three parts.
	if failures != 4 {
		t.Fatalf("injected %d failures, want 4", failures)
	}
}

// TestIfNoneMatchIsSent hides existing objects from HeadObject, so that
// only the If-None-Match header can stop the overwrite.
func TestIfNoneMatchIsSent(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ic := &interceptor{fn: func(req *http.Request) *http.Response {
		if req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/repo/") {
			return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: http.NoBody}
		}
		return nil
	}}
	st, err := newStore(t.Context(), testConfig(srv, srv.NewBucket(t)), func(o *awss3.Options) { o.HTTPClient = ic })
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := st.Put(ctx, "wal/seg", strings.NewReader("original"), storage.PutOptions{Size: -1, IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 12 << 20} { // single PUT, then multipart
		err := st.Put(ctx, "wal/seg", bytes.NewReader(randomData(1, n)), storage.PutOptions{Size: -1, IfNotExists: true})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("create-only Put of %d bytes over a hidden object = %v, want ErrExists", n, err)
		}
	}
	if got := readAll(t, st, "wal/seg"); string(got) != "original" {
		t.Fatalf("object = %q, want \"original\"", got)
	}
	assertNoUploads(t, srv, st.bucket)
}

// TestServerHonoursIfNoneMatch records what the test server does with
// conditional writes, so that a change of versitygw shows up here first.
func TestServerHonoursIfNoneMatch(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	c := srv.Client()
	ctx := t.Context()
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("one")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("two"), IfNoneMatch: aws.String("*")})
	if statusCode(err) != http.StatusPreconditionFailed || !isConditionFailed(err) {
		t.Fatalf("PutObject If-None-Match over an existing key = %v, want 412 PreconditionFailed", err)
	}
}

func assertNoUploads(t *testing.T, srv *s3test.Server, bucket string) {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload of %s left behind", aws.ToString(u.Key))
	}
}

// TestFailedMultipartIsAborted checks that a multipart upload that fails,
// through its body or its context, leaves no parts behind.
func TestFailedMultipartIsAborted(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	st, err := New(t.Context(), testConfig(srv, bucket))
	if err != nil {
		t.Fatal(err)
	}
	errBody := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(randomData(2, 12<<20)), iotestErr{errBody})
	if err := st.Put(t.Context(), "big", r, storage.PutOptions{Size: -1}); !errors.Is(err, errBody) {
		t.Fatalf("Put = %v, want %v", err, errBody)
	}
	// A size mismatch is only found at the end of the body, after parts
	// were uploaded.
	err = st.Put(t.Context(), "big", bytes.NewReader(randomData(3, 11<<20)), storage.PutOptions{Size: 12 << 20})
	if err == nil {
		t.Fatal("Put with a wrong declared size succeeded")
	}
	// A cancelled context: the SDK's own abort, sent with that context,
	// cannot get through.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r = io.MultiReader(bytes.NewReader(randomData(4, 11<<20)), cancelReader{cancel}, bytes.NewReader(randomData(5, 1<<20)))
	if err := st.Put(ctx, "big", r, storage.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	assertNoUploads(t, srv, bucket)
	if _, err := st.Stat(t.Context(), "big"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat = %v, want ErrNotFound", err)
	}
}

type cancelReader struct{ cancel context.CancelFunc }

func (r cancelReader) Read([]byte) (int, error) {
	r.cancel()
	return 0, io.EOF
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

// TestMissingBucketIsNotNotFound: a missing bucket must never read as an
// absent object, or restore_command would end recovery (TRAPS 1).
func TestMissingBucketIsNotNotFound(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	st, err := New(t.Context(), testConfig(srv, "no-such-bucket"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err = st.Stat(ctx, "wal/x")
	checkNotNotFound(t, "Stat", err)
	_, err = st.Get(ctx, "wal/x")
	checkNotNotFound(t, "Get", err)
	_, err = st.GetRange(ctx, "wal/x", 1, 2)
	checkNotNotFound(t, "GetRange", err)
	checkNotNotFound(t, "List", st.List(ctx, "", func(storage.ObjectInfo) error { return nil }))
	checkNotNotFound(t, "Put", st.Put(ctx, "wal/x", strings.NewReader("x"), storage.PutOptions{Size: -1, IfNotExists: true}))
	checkNotNotFound(t, "Delete", st.Delete(ctx, "wal/x"))
}

// TestBadCredentialsAreNotNotFound: an authentication failure is an error,
// never an absent object.
func TestBadCredentialsAreNotNotFound(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	cfg := testConfig(srv, srv.NewBucket(t))
	cfg.SecretAccessKey = "wrong"
	st, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Stat(t.Context(), "wal/x")
	checkNotNotFound(t, "Stat", err)
	_, err = st.Get(t.Context(), "wal/x")
	checkNotNotFound(t, "Get", err)
}

func checkNotNotFound(t *testing.T, op string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s = %v, want an error other than ErrNotFound", op, err)
	}
}

// TestPrefix checks where keys land in the bucket and that List ignores
// objects outside the prefix and names that are not keys.
func TestPrefix(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	cfg := testConfig(srv, bucket)
	cfg.Prefix = "/deep/repo/"
	st, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := st.Put(ctx, "wal/a", strings.NewReader("a"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	for _, k := range []string{"deep/repo-other/x", "deep/other", "deep/repo/wal/dir/", "deep/repo/.hidden", "outside"} {
		if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: aws.String(k), Body: strings.NewReader("")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &bucket, Key: aws.String("deep/repo/wal/a")}); err != nil {
		t.Fatalf("object not stored under the prefix: %v", err)
	}
	var keys []string
	if err := st.List(ctx, "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "wal/a" {
		t.Fatalf("List = %q, want [wal/a]", keys)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no bucket", Config{}, "bucket"},
		{"half credentials", Config{Bucket: "b", AccessKeyID: "id"}, "secret"},
		{"small part", Config{Bucket: "b", PartSize: 1 << 20}, "part size"},
		{"negative concurrency", Config{Bucket: "b", Concurrency: -1}, "concurrency"},
		{"endpoint without scheme", Config{Bucket: "b", Endpoint: "minio:9000"}, "endpoint"},
		{"bad prefix", Config{Bucket: "b", Prefix: "a/../b"}, "prefix"},
	} {
		_, err := New(t.Context(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

// TestSDKEnvironment cannot run in parallel: it sets the AWS environment
// variables to check that the SDK's sources are used, and that Config wins
// over them.
func TestSDKEnvironment(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
		"AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
	} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := t.Context()

	st, err := New(ctx, Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	o := st.client.Options()
	if o.Region != DefaultRegion {
		t.Errorf("region = %q, want %q", o.Region, DefaultRegion)
	}
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired ||
		o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Errorf("checksums = %v/%v, want when required", o.RequestChecksumCalculation, o.ResponseChecksumValidation)
	}

	// Everything from the environment, as a child process gets it from
	// s3test's Env.
	for _, kv := range srv.Env(bucket) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_REGION", "eu-west-3")
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
	st, err = New(ctx, Config{Bucket: bucket, ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	o = st.client.Options()
	if o.Region != "eu-west-3" {
		t.Errorf("region = %q, want AWS_REGION's eu-west-3", o.Region)
	}
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenSupported {
		t.Errorf("request checksums = %v, want AWS_REQUEST_CHECKSUM_CALCULATION's when_supported", o.RequestChecksumCalculation)
	}
	// versitygw checks the region: talk to it in its own.
	t.Setenv("AWS_REGION", srv.Region)
	if st, err = New(ctx, Config{Bucket: bucket, ForcePathStyle: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "env", strings.NewReader("via environment"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put with credentials and endpoint from the environment: %v", err)
	}
	if got := readAll(t, st, "env"); string(got) != "via environment" {
		t.Fatalf("Get = %q", got)
	}

	// Config wins over the environment.
	st, err = New(ctx, Config{Bucket: bucket, Region: "ap-south-1", AccessKeyID: "id", SecretAccessKey: "wrong", ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.client.Options().Region; got != "ap-south-1" {
		t.Errorf("region = %q, want Config.Region's ap-south-1", got)
	}
	if _, err := st.Stat(ctx, "env"); err == nil {
		t.Errorf("Stat with Config's wrong secret succeeded: the environment's credentials were used")
	}
}
