package faultproxy

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Kind is a fault the proxy injects into one request.
type Kind int

const (
	// ErrorResponse answers with Options.Status and an S3 XML error
	// carrying Options.Code (503 SlowDown by default); the request is not
	// forwarded.
	ErrorResponse Kind = iota
	// ResetRequest reads part of the request body, then resets the
	// connection; nothing is forwarded.
	ResetRequest
	// ResetResponse forwards the request, then resets the connection
	// partway through the response body (before the response, when it
	// has no body). The request took effect.
	ResetResponse
	// Truncate forwards the request, then closes the connection cleanly
	// partway through the response body (before the response, when it
	// has no body). The request took effect.
	Truncate
	// LoseResponse forwards the request, then resets the connection
	// without answering: the request took effect but the client cannot
	// know.
	LoseResponse
	// Delay waits Options.Delay, then forwards the request normally.
	Delay
	numKinds
)

var kindNames = [numKinds]string{"error-response", "reset-request", "reset-response", "truncate", "lose-response", "delay"}

// String names the kind.
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Transient are the kinds that model passing trouble, which a client
// that retries correctly survives: every kind.
var Transient = []Kind{ErrorResponse, ResetRequest, ResetResponse, Truncate, LoseResponse, Delay}

// Options say which faults to inject and how often.
type Options struct {
	// Seed seeds the generator that picks faulty requests, their kind and
	// where a body is cut.
	Seed uint64
	// Rate is the probability that a request gets a fault; 1 faults every
	// request.
	Rate float64
	// Kinds are the faults to choose from, uniformly; nil means Transient.
	Kinds []Kind
	// Status and Code are ErrorResponse's HTTP status and S3 error code;
	// 0 and "" mean 503 and "SlowDown".
	Status int
	Code   string
	// Delay is Delay's wait; 0 means 50 ms.
	Delay time.Duration
	// MaxInARow, when positive, bounds the faults injected in a row into
	// requests for one resource (method and URL): a client that retries a
	// few times then always gets through, so a test's outcome does not
	// depend on luck.
	MaxInARow int
	// Match, when set, limits faults to the requests it accepts. It is
	// called from the server's goroutines, concurrently.
	Match func(*http.Request) bool
}

// Proxy is a running fault-injecting reverse proxy.
type Proxy struct {
	srv       *httptest.Server
	target    *url.URL
	transport *http.Transport
	opts      Options

	mu     sync.Mutex
	rng    *rand.Rand
	streak map[string]int

	requests atomic.Int64
	faults   [numKinds]atomic.Int64
}

// Start starts a proxy on 127.0.0.1 in front of the HTTP server at target
// (e.g. an s3test.Server's Endpoint) and stops it when t's test ends.
// Requests keep their Host header, so that signed requests (AWS SigV4)
// addressed to the proxy verify at the target.
func Start(t testing.TB, target string, opts Options) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("faultproxy: target %q is not a URL", target)
	}
	if opts.Kinds == nil {
		opts.Kinds = Transient
	}
	if opts.Status == 0 {
		opts.Status = http.StatusServiceUnavailable
	}
	if opts.Code == "" {
		opts.Code = "SlowDown"
	}
	if opts.Delay == 0 {
		opts.Delay = 50 * time.Millisecond
	}
	p := &Proxy{
		target: u,
		transport: &http.Transport{
			Proxy:               nil,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
		},
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5851f42d4c957f2d)),
		streak: map[string]int{},
	}
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	t.Cleanup(func() {
		p.srv.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// URL returns the proxy's base URL, http://127.0.0.1:PORT.
func (p *Proxy) URL() string { return p.srv.URL }

// Requests returns how many requests the proxy received.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Faults returns how many faults the proxy injected.
func (p *Proxy) Faults() int64 {
	var n int64
	for i := range p.faults {
		n += p.faults[i].Load()
	}
	return n
}

// FaultsOf returns how many faults of kind k the proxy injected.
func (p *Proxy) FaultsOf(k Kind) int64 {
	if k < 0 || k >= numKinds {
		return 0
	}
	return p.faults[k].Load()
}

// choose decides whether r gets a fault, which, and a random fraction
// for where to cut a body.
func (p *Proxy) choose(r *http.Request) (kind Kind, fault bool, cut float64) {
	if p.opts.Match != nil && !p.opts.Match(r) {
		return 0, false, 0
	}
	resource := r.Method + " " + r.URL.RequestURI()
	p.mu.Lock()
	defer p.mu.Unlock()
	fault = p.rng.Float64() < p.opts.Rate
	if fault && p.opts.MaxInARow > 0 && p.streak[resource] >= p.opts.MaxInARow {
		fault = false
	}
	if !fault {
		delete(p.streak, resource)
		return 0, false, 0
	}
	p.streak[resource]++
	kind = p.opts.Kinds[p.rng.IntN(len(p.opts.Kinds))]
	p.faults[kind].Add(1)
	return kind, true, p.rng.Float64()
}

// ServeHTTP forwards r, injecting the fault chosen for it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	kind, fault, cut := p.choose(r)
	if !fault {
		p.forward(w, r, -1, false)
		return
	}
	switch kind {
	case ErrorResponse:
		_, _ = io.Copy(io.Discard, r.Body)
		p.errorResponse(w, r)
	case ResetRequest:
		if r.ContentLength > 0 {
			_, _ = io.CopyN(io.Discard, r.Body, int64(cut*float64(r.ContentLength)))
		}
		hangUp(w, true)
	case ResetResponse, Truncate:
		p.forward(w, r, cut, kind == ResetResponse)
	case LoseResponse:
		p.forward(w, r, 0, true)
	case Delay:
		t := time.NewTimer(p.opts.Delay)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		p.forward(w, r, -1, false)
	}
}

func (p *Proxy) errorResponse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("X-Amz-Request-Id", "faultproxy")
	w.WriteHeader(p.opts.Status)
	if r.Method == http.MethodHead {
		return
	}
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by faultproxy</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		p.opts.Code, xmlEscape(r.URL.Path))
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// hopHeaders are connection-level headers that a proxy does not pass on.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward sends r to the target and relays the answer. cut < 0 relays it
// whole; otherwise the proxy relays that fraction of the response body
// (none of the response when it has no body, or when cut is 0 and reset
// is set), then hangs up: with a reset when reset is set, else cleanly.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, cut float64, reset bool) {
	u := *p.target
	u.Path = ""
	u.RawPath = ""
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String()+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	hasBody := r.Method != http.MethodHead && resp.StatusCode != http.StatusNoContent &&
		resp.StatusCode != http.StatusNotModified && resp.ContentLength != 0
	if cut >= 0 && (!hasBody || (cut == 0 && reset)) {
		_, _ = io.Copy(io.Discard, resp.Body)
		hangUp(w, true)
		return
	}
	for k, vs := range resp.Header {
		if slices.Contains(hopHeaders, k) {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if cut < 0 {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	n := int64(512)
	if resp.ContentLength > 0 {
		n = int64(cut * float64(resp.ContentLength))
	}
	_, _ = io.CopyN(w, resp.Body, n)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	hangUp(w, reset)
}

// hangUp takes the connection from the server and closes it: with a TCP
// reset (RST) when reset is set, else with an orderly close (FIN).
func hangUp(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return // HTTP/2: not served by this proxy
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	if buf != nil {
		_ = buf.Flush()
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

var _ http.Handler = (*Proxy)(nil)
