package s3

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
)

// completeBreaker passes every request to the server and breaks the
// answer of the first CompleteMultipartUpload (or of the first request
// match accepts) after the server acted on it: how is up to the test.
type completeBreaker struct {
	match     func(*http.Request) bool // nil: isComplete
	mu        sync.Mutex
	completes int // CompleteMultipartUpload requests seen
	broken    int
	limit     int
	breakf    func(resp *http.Response) (*http.Response, error)
}

func isComplete(req *http.Request) bool {
	return req.Method == http.MethodPost && req.URL.Query().Has("uploadId")
}

func (b *completeBreaker) Do(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	match := b.match
	if match == nil {
		match = isComplete
	}
	if err != nil || !match(req) {
		return resp, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.completes++
	if b.broken >= b.limit {
		return resp, err
	}
	b.broken++
	return b.breakf(resp)
}

// TestCompleteAnswerLost: the server completes a multipart upload but its
// answer is cut short or lost. The Put still succeeds, create-only or not,
// and the object is whole; while a refusal (an object of another upload
// under a create-only key) is still an error.
func TestCompleteAnswerLost(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	for _, tc := range []struct {
		name        string
		breakf      func(*http.Response) (*http.Response, error)
		limit       int
		ifNotExists bool
	}{
		{"truncated 200", truncate, 1, false},
		{"truncated 200, create-only", truncate, 1, true},
		{"lost", lose, 1, false},
		{"lost, create-only", lose, 1, true},
		{"lost three times", lose, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			br := &completeBreaker{limit: tc.limit, breakf: tc.breakf}
			st, err := newStore(t.Context(), testConfig(srv, srv.NewBucket(t)), func(o *awss3.Options) { o.HTTPClient = br })
			if err != nil {
				t.Fatal(err)
			}
			st.partRetry = partRetryOption(DefaultPartAttempts, noWait)
			st.completeRetry = retryPolicy(DefaultPartAttempts, noWait, false)
			data := randomData(11, 12<<20)
			md := map[string]string{"walrus-digest": "xxh64:0123456789abcdef"}
			err = st.Put(t.Context(), "complete/obj", onlyReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1, IfNotExists: tc.ifNotExists, Metadata: md})
			if br.broken == 0 {
				t.Fatal("no CompleteMultipartUpload answer was broken: the test tests nothing")
			}
			if err != nil {
				t.Fatalf("Put whose CompleteMultipartUpload answer was broken: %v", err)
			}
			if got := readAll(t, st, "complete/obj"); !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes, want %d", len(got), len(data))
			}
			info, err := st.Stat(t.Context(), "complete/obj")
			if err != nil {
				t.Fatal(err)
			}
			if info.Metadata["walrus-digest"] != md["walrus-digest"] {
				t.Fatalf("metadata %v, want %v", info.Metadata, md)
			}
			if tc.breakf != nil && br.completes != 1 && strings.HasPrefix(tc.name, "truncated") {
				// The SDK does not retry an unreadable answer: the
				// object must have been recognised as this upload's.
				t.Errorf("%d CompleteMultipartUpload requests, want 1: the stored object was not recognised", br.completes)
			}
		})
	}

	t.Run("another object under a create-only key", func(t *testing.T) {
		t.Parallel()
		bucket := srv.NewBucket(t)
		// The breaker stores another object under the key before it
		// breaks the answer: the check must not take it for this
		// upload's.
		var st *Store
		br := &completeBreaker{limit: 1}
		br.breakf = func(resp *http.Response) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil, errors.New("read: connection reset by peer (injected)")
		}
		st, err := newStore(t.Context(), testConfig(srv, bucket), func(o *awss3.Options) { o.HTTPClient = br })
		if err != nil {
			t.Fatal(err)
		}
		st.partRetry = partRetryOption(DefaultPartAttempts, noWait)
		st.completeRetry = retryPolicy(DefaultPartAttempts, noWait, false)
		other := randomData(12, 12<<20)
		if err := st.Put(t.Context(), "complete/taken", bytes.NewReader(other), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
		// That Put's own answer was the one broken; now a create-only
		// Put of other data must be refused.
		if br.broken != 1 {
			t.Fatalf("%d answers broken, want 1", br.broken)
		}
		data := randomData(13, 12<<20)
		err = st.Put(t.Context(), "complete/taken", onlyReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1, IfNotExists: true})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("create-only Put over another object: %v, want ErrExists", err)
		}
		if got := readAll(t, st, "complete/taken"); !bytes.Equal(got, other) {
			t.Fatal("the object under the key changed")
		}
	})
}

// TestCompleteRefusedIsAnError: a CompleteMultipartUpload the server
// refuses (400 InvalidPart) fails the Put, which stores nothing and
// aborts the upload.
func TestCompleteRefusedIsAnError(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	ic := &interceptor{fn: func(req *http.Request) *http.Response {
		if !isComplete(req) {
			return nil
		}
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		return xmlError(http.StatusBadRequest, "InvalidPart")
	}}
	st, err := newStore(t.Context(), testConfig(srv, bucket), func(o *awss3.Options) { o.HTTPClient = ic })
	if err != nil {
		t.Fatal(err)
	}
	err = st.Put(t.Context(), "complete/refused", onlyReader{bytes.NewReader(randomData(14, 12<<20))}, storage.PutOptions{Size: -1})
	if err == nil || !strings.Contains(err.Error(), "InvalidPart") {
		t.Fatalf("Put with a refused CompleteMultipartUpload: %v, want an error naming InvalidPart", err)
	}
	if _, err := st.Stat(t.Context(), "complete/refused"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat after the refused Put: %v, want ErrNotFound", err)
	}
	assertNoUploads(t, srv, bucket)
}

// truncate cuts an answer's body in half.
func truncate(resp *http.Response) (*http.Response, error) {
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body[:len(body)/2]), errReader{io.ErrUnexpectedEOF}))
	resp.ContentLength = -1
	return resp, nil
}

// lose drops an answer the server sent.
func lose(resp *http.Response) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil, errors.New("read: connection reset by peer (injected)")
}

var noWait = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })

// TestUploadRequestAnswerBroken: the answer to the other requests of an
// upload whose body cannot be read again is cut short or lost after the
// server acted: CreateMultipartUpload (the SDK gave up on an answer it
// could not decode), and a create-only PutObject of a body that fits one
// part (the SDK's retry meets 412 on the object its first attempt
// stored). The Put succeeds and the object is whole.
func TestUploadRequestAnswerBroken(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	isCreate := func(req *http.Request) bool { return req.Method == http.MethodPost && req.URL.Query().Has("uploads") }
	isPut := func(req *http.Request) bool {
		return req.Method == http.MethodPut && !req.URL.Query().Has("partNumber")
	}
	for _, tc := range []struct {
		name   string
		match  func(*http.Request) bool
		breakf func(*http.Response) (*http.Response, error)
		size   int
	}{
		{"CreateMultipartUpload truncated", isCreate, truncate, 12 << 20},
		{"CreateMultipartUpload lost", isCreate, lose, 12 << 20},
		{"PutObject lost", isPut, lose, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			br := &completeBreaker{match: tc.match, limit: 1, breakf: tc.breakf}
			st, err := newStore(t.Context(), testConfig(srv, srv.NewBucket(t)), func(o *awss3.Options) { o.HTTPClient = br })
			if err != nil {
				t.Fatal(err)
			}
			st.partRetry = partRetryOption(DefaultPartAttempts, noWait)
			data := randomData(15, tc.size)
			md := map[string]string{"walrus-digest": "xxh64:fedcba9876543210"}
			err = st.Put(t.Context(), "broken/obj", onlyReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1, IfNotExists: true, Metadata: md})
			if br.broken == 0 {
				t.Fatal("no answer was broken: the test tests nothing")
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if got := readAll(t, st, "broken/obj"); !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes, want %d", len(got), len(data))
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
