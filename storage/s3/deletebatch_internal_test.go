package s3

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walrusdb/walrus/storage"
)

// deleteObjectsFake answers every DeleteObjects request itself with
// 200 OK, listing an <Error> for each requested object named in fail
// (object name → S3 error code), and records the keys of each request. No
// request reaches a server; any other request is an error of the test.
type deleteObjectsFake struct {
	t    *testing.T
	fail map[string]string

	mu       sync.Mutex
	requests [][]string // object names of each DeleteObjects, in order
}

func (f *deleteObjectsFake) answer(req *http.Request) *http.Response {
	if _, ok := req.URL.Query()["delete"]; req.Method != http.MethodPost || !ok {
		f.t.Errorf("unexpected request %s %s", req.Method, req.URL)
		return xmlError(http.StatusBadRequest, "UnexpectedRequest")
	}
	var in struct {
		Objects []struct {
			Key string `xml:"Key"`
		} `xml:"Object"`
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err == nil {
		err = xml.Unmarshal(b, &in)
	}
	if err != nil {
		f.t.Errorf("DeleteObjects body %q: %v", b, err)
		return xmlError(http.StatusBadRequest, "MalformedXML")
	}
	var keys []string
	var out strings.Builder
	out.WriteString(`<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`)
	for _, o := range in.Objects {
		keys = append(keys, o.Key)
		if code, ok := f.fail[o.Key]; ok {
			fmt.Fprintf(&out, "<Error><Key>%s</Key><Code>%s</Code><Message>injected by the test</Message></Error>", o.Key, code)
		}
	}
	out.WriteString(`</DeleteResult>`)
	f.mu.Lock()
	f.requests = append(f.requests, keys)
	f.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/xml"}},
		Body:       io.NopCloser(strings.NewReader(out.String())),
	}
}

// TestDeletePerKeyErrors answers DeleteObjects with 200 OK and per-key
// <Error> entries, the way S3 reports keys it could not delete inside a
// successful request. It proves that Delete returns an error naming the
// key (relative to the repository) and the S3 code for any code but
// NoSuchKey, including past a NoSuchKey entry and in a batch after the
// first, and that NoSuchKey alone is success, as storage.Store's Delete
// promises ("Missing keys are not an error"). Were the per-key errors
// ignored, retention would report success while objects remain (TRAPS 23).
func TestDeletePerKeyErrors(t *testing.T) {
	t.Parallel()
	many := make([]string, deleteBatch+1) // two batches; the second holds only the last key
	for i := range many {
		many[i] = fmt.Sprintf("data/k%04d", i)
	}
	tests := []struct {
		name    string
		keys    []string
		fail    map[string]string // object name (with prefix) → code
		wantKey string            // "" for success
		wantErr string            // the S3 code the error must name
		batches int
	}{
		{
			name:    "access denied",
			keys:    []string{"data/a", "data/b", "data/c"},
			fail:    map[string]string{"repo/data/b": "AccessDenied"},
			wantKey: "data/b", wantErr: "AccessDenied", batches: 1,
		},
		{
			name:    "no such key is deleted",
			keys:    []string{"data/a", "data/b", "data/c"},
			fail:    map[string]string{"repo/data/a": "NoSuchKey", "repo/data/c": "NoSuchKey"},
			batches: 1,
		},
		{
			name:    "access denied after no such key",
			keys:    []string{"data/a", "data/b", "data/c"},
			fail:    map[string]string{"repo/data/a": "NoSuchKey", "repo/data/c": "AccessDenied"},
			wantKey: "data/c", wantErr: "AccessDenied", batches: 1,
		},
		{
			name:    "internal error in second batch",
			keys:    many,
			fail:    map[string]string{"repo/" + many[deleteBatch]: "InternalError"},
			wantKey: many[deleteBatch], wantErr: "InternalError", batches: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &deleteObjectsFake{t: t, fail: tt.fail}
			ic := &interceptor{fn: fake.answer}
			cfg := Config{
				Bucket:          "bucket",
				Prefix:          "repo",
				Endpoint:        "http://127.0.0.1:1", // never dialled: the fake answers
				Region:          DefaultRegion,
				ForcePathStyle:  true,
				AccessKeyID:     "key",
				SecretAccessKey: "secret",
			}
			st, err := newStore(t.Context(), cfg, func(o *awss3.Options) { o.HTTPClient = ic })
			if err != nil {
				t.Fatal(err)
			}
			err = st.Delete(t.Context(), tt.keys...)

			fake.mu.Lock()
			var sent []string
			for _, r := range fake.requests {
				sent = append(sent, r...)
			}
			n := len(fake.requests)
			fake.mu.Unlock()
			if n != tt.batches {
				t.Errorf("%d DeleteObjects requests, want %d", n, tt.batches)
			}
			want := make([]string, len(tt.keys))
			for i, k := range tt.keys {
				want[i] = "repo/" + k
			}
			if slices.Sort(sent); !slices.Equal(sent, want) {
				t.Errorf("DeleteObjects asked for %d objects, want all %d keys with the prefix", len(sent), len(want))
			}

			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Delete = %v, want nil: a NoSuchKey entry means the key is already gone", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Delete = nil, want an error naming %s and %s: the object is still there", tt.wantKey, tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantKey) || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("Delete = %q, want it to name the key %q and the code %q", msg, tt.wantKey, tt.wantErr)
			}
			if strings.Contains(msg, "repo/"+tt.wantKey) {
				t.Errorf("Delete = %q names the object with the prefix, want the key %q", msg, tt.wantKey)
			}
			if errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Delete = %v, is ErrNotFound", err)
			}
		})
	}
}
