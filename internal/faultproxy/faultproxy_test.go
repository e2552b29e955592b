package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// backend serves a 100 KB body on GET and counts the requests that reach
// it, with their bodies' sizes.
func backend(t *testing.T) (*httptest.Server, *atomic.Int64, []byte) {
	body := bytes.Repeat([]byte("0123456789"), 10_000)
	var reached atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		reached.Add(1)
		if r.Method == http.MethodPut {
			w.Header().Set("X-Received", strings.Repeat("x", int(min(n, 10))))
			return
		}
		if r.Host != "" && r.Header.Get("X-Want-Host") != "" && r.Host != r.Header.Get("X-Want-Host") {
			http.Error(w, "host changed to "+r.Host, http.StatusBadRequest)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &reached, body
}

func TestEachKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind       Kind
		method     string
		wantReach  bool
		wantStatus int // 0: the request fails or the body breaks
	}{
		{ErrorResponse, http.MethodGet, false, http.StatusServiceUnavailable},
		{ResetRequest, http.MethodPut, false, 0},
		{ResetResponse, http.MethodGet, true, 0},
		{Truncate, http.MethodGet, true, 0},
		{LoseResponse, http.MethodPut, true, 0},
		{Delay, http.MethodGet, true, http.StatusOK},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			srv, reached, body := backend(t)
			p := Start(t, srv.URL, Options{Rate: 1, Kinds: []Kind{tc.kind}})
			var reqBody io.Reader
			if tc.method == http.MethodPut {
				reqBody = bytes.NewReader(make([]byte, 1<<20))
			}
			req, err := http.NewRequestWithContext(t.Context(), tc.method, p.URL()+"/bucket/key", reqBody)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Do(req)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			switch {
			case tc.wantStatus == 0 && err == nil:
				t.Fatalf("request succeeded with status %d and %d bytes, want a broken exchange", resp.StatusCode, len(got))
			case tc.wantStatus != 0 && err != nil:
				t.Fatalf("request failed: %v", err)
			case tc.wantStatus != 0 && resp.StatusCode != tc.wantStatus:
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.kind == ErrorResponse && !strings.Contains(string(got), "<Code>SlowDown</Code>") {
				t.Errorf("error body %q has no S3 error code", got)
			}
			if tc.kind == Delay && !bytes.Equal(got, body) {
				t.Errorf("delayed response has %d bytes, want %d", len(got), len(body))
			}
			if tc.kind == Truncate && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("truncated body: %v, want io.ErrUnexpectedEOF", err)
			}
			if (reached.Load() == 1) != tc.wantReach {
				t.Errorf("requests reaching the server: %d, want reached=%v", reached.Load(), tc.wantReach)
			}
			if p.Requests() != 1 || p.Faults() != 1 || p.FaultsOf(tc.kind) != 1 {
				t.Errorf("counters: %d requests, %d faults, %d of %s; want 1 each", p.Requests(), p.Faults(), p.FaultsOf(tc.kind), tc.kind)
			}
		})
	}
}

func TestRateAndMaxInARow(t *testing.T) {
	t.Parallel()
	srv, _, body := backend(t)
	p := Start(t, srv.URL, Options{Seed: 7, Rate: 0.5, Kinds: []Kind{ErrorResponse}, MaxInARow: 2})
	ok := 0
	inARow := 0
	for range 200 {
		resp, err := http.Get(p.URL() + "/bucket/key")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			if !bytes.Equal(got, body) {
				t.Fatal("a relayed response differs from the server's")
			}
			ok++
			inARow = 0
			continue
		}
		if inARow++; inARow > 2 {
			t.Fatalf("%d faults in a row on one resource, want at most 2", inARow)
		}
	}
	if f := p.Faults(); f < 40 || f > 120 || f+int64(ok) != 200 {
		t.Errorf("%d faults and %d successes in 200 requests at rate 0.5", f, ok)
	}
}

// The Host header reaches the target unchanged, so signatures made for
// the proxy's address verify there.
func TestHostIsKept(t *testing.T) {
	t.Parallel()
	srv, _, _ := backend(t)
	p := Start(t, srv.URL, Options{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL()+"/b/k", nil)
	req.Header.Set("X-Want-Host", strings.TrimPrefix(p.URL(), "http://"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: the target saw another Host", resp.StatusCode)
	}
}
