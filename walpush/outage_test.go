package walpush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
)

// Repository outages (TRAPS.md 4-6): while the repository cannot be
// reached, or refuses writes, or loses its answers, the resident path
// (wal-push-daemon) and the parallel one (Archive) must answer failure for
// the requested segment, acknowledge nothing they did not durably store
// (no marker, .ready untouched, the segment file kept), and once the
// repository is back store every segment PostgreSQL asks for, byte for
// byte.

// errOutage is what the repository answers while it is down: a cause an
// operator must find in the error wal-push reports.
var errOutage = errors.New("dial tcp 192.0.2.7:443: connect: connection refused")

// outageCause is the part of errOutage that must reach the operator.
const outageCause = "connection refused"

// outageStore is a repository (a mem.Store) behind a link that a test can
// take down and bring back. While down, calls go through a faulty.Store
// with the outage's rules, and every call on a wal/ key is recorded by
// segment name, so that a test can see which segments were attempted.
type outageStore struct {
	healthy *mem.Store

	down atomic.Pointer[faulty.Store]

	mu       sync.Mutex
	attempts map[string]int // calls on wal/NAME... while down, by NAME
}

func newOutageStore() *outageStore {
	return &outageStore{healthy: mem.New(), attempts: map[string]int{}}
}

// begin takes the repository down with rules.
func (o *outageStore) begin(rules []faulty.Rule) {
	o.mu.Lock()
	clear(o.attempts)
	o.mu.Unlock()
	o.down.Store(faulty.New(o.healthy, faulty.Script{Rules: rules}))
}

// end brings the repository back and returns how many faults the outage
// injected.
func (o *outageStore) end() int64 {
	f := o.down.Swap(nil)
	if f == nil {
		return 0
	}
	return f.Faults(faulty.All)
}

// tried returns how many calls on wal/name... the store received since the
// outage began.
func (o *outageStore) tried(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attempts[name]
}

// route picks the store a call goes to, recording it while down.
func (o *outageStore) route(key string) storage.Store {
	f := o.down.Load()
	if f == nil {
		return o.healthy
	}
	if rest, ok := strings.CutPrefix(key, "wal/"); ok {
		name, _, _ := strings.Cut(rest, ".")
		o.mu.Lock()
		o.attempts[name]++
		o.mu.Unlock()
	}
	return f
}

func (o *outageStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	return o.route(key).Put(ctx, key, r, opts)
}

func (o *outageStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return o.route(key).Get(ctx, key)
}

func (o *outageStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	return o.route(key).Stat(ctx, key)
}

func (o *outageStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return o.route(prefix).List(ctx, prefix, fn)
}

func (o *outageStore) Delete(ctx context.Context, keys ...string) error {
	first := ""
	if len(keys) > 0 {
		first = keys[0]
	}
	return o.route(first).Delete(ctx, keys...)
}

func (o *outageStore) Close() error { return nil }

// outageKinds are the outages a repository has.
var outageKinds = []struct {
	name  string
	rules []faulty.Rule
	// lands: uploads reach the repository during the outage.
	lands bool
}{
	// Nothing answers: network down, DNS gone, endpoint unreachable.
	{"unreachable", []faulty.Rule{{Ops: faulty.All, Kind: faulty.Fail, Err: errOutage}}, false},
	// Reads work, every write fails: a full or read-only bucket, a
	// revoked write permission. The push gets as far as its upload.
	{"writes refused", []faulty.Rule{{Ops: faulty.Put | faulty.Delete, Kind: faulty.Fail, Err: errOutage}}, false},
	// Uploads land but their answers are lost and no object can be
	// looked at (Stat fails): the repository holds the segment, yet
	// nothing can confirm it.
	{"uploads unconfirmed", []faulty.Rule{
		{Ops: faulty.Put, Kind: faulty.FailAfter, Err: errOutage},
		{Ops: faulty.Stat | faulty.Delete, Kind: faulty.Fail, Err: errOutage},
	}, true},
}

// outageRoute is one way PostgreSQL's archive_command reaches walrus.
type outageRoute struct {
	name string
	// open prepares a cluster served this way; request archives one
	// file of its pg_wal as archive_command does, and returns the
	// requested file's result, the segments pushed ahead with it
	// (Archive only) and the error archive_command would exit with.
	open func(t *testing.T, opts Options) (c cluster, request func(name string) (Result, []Extra, error))
}

var outageRoutes = []outageRoute{
	{"daemon", func(t *testing.T, opts Options) (cluster, func(string) (Result, []Extra, error)) {
		c := startDaemon(t, opts)
		return c, func(name string) (Result, []Extra, error) {
			res, used, err := ViaDaemon(context.Background(), filepath.Join(c.walDir, name), opts.Repository, false)
			if !used && err == nil {
				err = errors.New("test: no wal-push-daemon answered")
			}
			return res, nil, err
		}
	}},
	{"archive", func(t *testing.T, opts Options) (cluster, func(string) (Result, []Extra, error)) {
		c := newCluster(t)
		return c, func(name string) (Result, []Extra, error) {
			res, err := Archive(context.Background(), filepath.Join(c.walDir, name), opts)
			return res.Result, res.Extras, err
		}
	}},
}

// outageLog counts the lines a push logs; it keeps the first few for a
// failure's message.
type outageLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (l *outageLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.first) < 20 {
		l.first = append(l.first, fmt.Sprintf(format, args...))
	}
}

// pgwalSnapshot is what PostgreSQL's pg_wal held for some segments: the
// segment bytes and the .ready files' state.
type pgwalSnapshot struct {
	data  map[string][]byte
	ready map[string]os.FileInfo
}

func snapshotPGWAL(t *testing.T, c cluster, data map[string][]byte, names []string) pgwalSnapshot {
	t.Helper()
	s := pgwalSnapshot{data: map[string][]byte{}, ready: map[string]os.FileInfo{}}
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(c.walDir, "archive_status", n+".ready"))
		if err != nil {
			t.Fatalf("test setup: %v", err)
		}
		s.ready[n], s.data[n] = fi, data[n]
	}
	return s
}

// check fails the test unless every segment of the snapshot is still in
// pg_wal with its bytes, still ready (the same .ready file, unchanged) and
// not done: walrus neither drops WAL nor marks it archived.
func (s pgwalSnapshot) check(t *testing.T, c cluster, when string) {
	t.Helper()
	for n, before := range s.ready {
		status := filepath.Join(c.walDir, "archive_status", n)
		after, err := os.Stat(status + ".ready")
		switch {
		case err != nil:
			t.Errorf("%s: %s.ready is gone (%v): walrus acknowledged a segment to PostgreSQL, or dropped it", when, n, err)
		case !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() || after.Mode() != before.Mode():
			t.Errorf("%s: %s.ready was rewritten (only PostgreSQL touches archive_status files)", when, n)
		}
		if exists(status + ".done") {
			t.Errorf("%s: %s.done exists: a segment the repository does not hold was marked archived", when, n)
		}
		b, err := os.ReadFile(filepath.Join(c.walDir, n))
		if err != nil || !bytes.Equal(b, s.data[n]) {
			t.Errorf("%s: segment %s was dropped or changed in pg_wal (%d of %d bytes, %v)", when, n, len(b), len(s.data[n]), err)
		}
	}
}

// markerFiles lists the marker directory, without the daemon's own files
// (its lock, socket and log).
func markerFiles(t *testing.T, c cluster) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.walDir, "archive_status", MarkerDirName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		switch e.Name() {
		case daemonLockName, SocketName, DaemonLogName:
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// checkNoMarkers fails the test if the marker directory holds anything
// but markers of the segments in durable (pushed while the repository
// answered): a marker, or a marker's temporary file, of any other
// segment acknowledges a push that the repository never confirmed.
func checkNoMarkers(t *testing.T, c cluster, when string, durable ...string) {
	t.Helper()
	for _, f := range markerFiles(t, c) {
		seg, _, _ := strings.Cut(f, ".")
		if !slices.Contains(durable, seg) || strings.HasPrefix(f, ".") {
			t.Errorf("%s: marker directory holds %s: a segment was marked pushed though the repository never confirmed it", when, f)
		}
	}
}

// checkOutageError fails the test unless err is a failure of name that
// tells the operator the cause, and is not a conflict (which would be
// final and point the operator at the wrong problem).
func checkOutageError(t *testing.T, what, name string, res Result, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s of %s during the repository outage succeeded (%+v): walrus acknowledged a segment it did not store", what, name, res)
		return
	}
	if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, outageCause) {
		t.Errorf("%s of %s: error %q does not name the segment and the cause (%q)", what, name, msg, outageCause)
	}
	if errors.Is(err, ErrConflict) {
		t.Errorf("%s of %s: an outage reported as a conflict: %v", what, name, err)
	}
	if res.Key != "" || res.AlreadyStored || res.Confirmed {
		t.Errorf("%s of %s failed but returned a result that looks durable: %+v", what, name, res)
	}
}

// checkStored fails the test unless the repository (read directly, past
// the outage link) holds name and it decodes to want.
func checkStored(t *testing.T, st storage.Store, name string, want []byte, when string) {
	t.Helper()
	got, err := trapsFetch(context.Background(), st, name)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: %s reads back as %d of %d bytes (%v): acknowledged but not in the repository", when, name, len(got), len(want), err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (no timing is asserted: the bound only ends a hung test).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutageNeverAcknowledges protects TRAPS.md 5-6 across a repository
// outage, on the resident path (wal-push-daemon, with its pushes ahead)
// and on Archive (with its parallel pushes of the next ready segments),
// for three kinds of outage: unreachable, writes refused, uploads that
// land but cannot be confirmed. While the repository is down, every
// request for the oldest ready segment (PostgreSQL retries it) fails with
// an error naming the segment and the cause; the segments pushed ahead
// fail too (Archive reports each with the cause); no marker appears for
// any of them; every .ready file and segment stays as it was; and the
// repeated requests keep reaching the repository instead of answering
// from what an earlier attempt left. Once the repository is back,
// PostgreSQL's calls, oldest first, each succeed only with the segment in
// the repository, and every segment made ready during the outage reads
// back byte-identical through the decoder: nothing was dropped or
// skipped.
func TestOutageNeverAcknowledges(t *testing.T) {
	t.Parallel()
	const first, last = 2, 9 // the segments made ready during the outage
	for _, route := range outageRoutes {
		for _, kind := range outageKinds {
			t.Run(route.name+"/"+kind.name, func(t *testing.T) {
				st := newOutageStore()
				log := &outageLog{}
				opts := testOptions(st)
				opts.Logf = log.logf
				c, request := route.open(t, opts)
				defer func() {
					if t.Failed() {
						log.mu.Lock()
						t.Logf("%d log lines, first: %s", log.n, strings.Join(log.first, "\n"))
						log.mu.Unlock()
					}
				}()
				data := map[string][]byte{}
				for i := 1; i <= last; i++ {
					data[segName(i)] = segmentBytes(t, segName(i), testSysID, byte(i))
				}

				// Before the outage: one segment archived, the repository's
				// identity known (a daemon then goes straight to the
				// segment's lookup and upload).
				c.ready(t, segName(1), data[segName(1)])
				if _, _, err := request(segName(1)); err != nil {
					t.Fatalf("before the outage: %v", err)
				}
				c.done(t, segName(1))

				st.begin(kind.rules)
				var names []string
				for i := first; i <= last; i++ {
					c.ready(t, segName(i), data[segName(i)])
					names = append(names, segName(i))
				}
				snap := snapshotPGWAL(t, c, data, names)
				req := segName(first)
				ahead := []string{segName(first + 1), segName(first + 2)} // pushed ahead, never requested
				for try := 1; try <= 4; try++ {
					before := st.tried(req)
					res, extras, err := request(req)
					checkOutageError(t, fmt.Sprintf("request %d", try), req, res, err)
					if st.tried(req) == before {
						t.Errorf("request %d of %s did not reach the repository: answered from an earlier attempt", try, req)
					}
					if route.name == "archive" {
						if len(extras) != 3 {
							t.Errorf("request %d: %d segments pushed ahead, want 3: %+v", try, len(extras), extras)
						}
						for i, x := range extras {
							if x.Name != segName(first+1+i) {
								t.Errorf("request %d: pushed ahead %s, want %s (segments that failed before are pushed again)", try, x.Name, segName(first+1+i))
							}
							checkOutageError(t, fmt.Sprintf("request %d: push ahead", try), x.Name, x.Result, x.Err)
						}
					}
					checkNoMarkers(t, c, fmt.Sprintf("after request %d", try), segName(1))
					snap.check(t, c, fmt.Sprintf("after request %d", try))
				}
				if t.Failed() {
					t.FailNow()
				}
				if route.name == "daemon" {
					// A long outage: the daemon's pushes ahead meet it
					// again and again, and still acknowledge nothing (a
					// marker ends the wait: it is reported below).
					waitFor(t, "the daemon pushing segments ahead into the outage", func() bool {
						acked := slices.ContainsFunc(markerFiles(t, c), func(f string) bool { return !strings.HasPrefix(f, segName(1)+".") })
						return acked || st.tried(ahead[0]) >= 3 && st.tried(ahead[1]) >= 3
					})
					checkNoMarkers(t, c, "after the daemon's pushes ahead", segName(1))
					snap.check(t, c, "after the daemon's pushes ahead")
				}
				// The outage did what its kind says: uploads landed in
				// the repository, or nothing did.
				if _, err := st.healthy.Stat(context.Background(), "wal/"+req+".lz4"); (err == nil) != kind.lands {
					t.Fatalf("test setup: during the outage, the repository's object of %s: %v", req, err)
				}
				if faults := st.end(); faults == 0 {
					t.Fatal("test setup: the outage injected no fault")
				}
				if t.Failed() {
					t.FailNow()
				}

				// The repository is back: PostgreSQL retries the oldest
				// ready segment, and then asks for each in turn.
				for i := first; i <= last; i++ {
					name := segName(i)
					res, _, err := request(name)
					if err != nil {
						t.Fatalf("%s after the outage: %v", name, err)
					}
					if res.Name != name || res.Key != "wal/"+name+".lz4" {
						t.Fatalf("%s after the outage: %+v", name, res)
					}
					checkStored(t, st.healthy, name, data[name], "after the outage, answered")
					c.done(t, name)
				}
				n := 0
				if err := st.healthy.List(context.Background(), "wal/", func(storage.ObjectInfo) error { n++; return nil }); err != nil {
					t.Fatal(err)
				}
				if n != last {
					t.Errorf("repository holds %d WAL objects, want %d", n, last)
				}
			})
		}
	}
}

// TestOutageMarkerNotTrusted protects TRAPS.md 4: a marker (a segment
// pushed ahead while the repository answered) is a hint, and during an
// outage it must not be taken for the repository's word. With markers of
// segments pushed ahead before the outage, a request for one of them
// while the repository is unreachable fails with the cause, on the daemon
// and on Archive; the segment stays ready; and once the repository is
// back every segment is archived and reads back byte-identical.
func TestOutageMarkerNotTrusted(t *testing.T) {
	t.Parallel()
	const last = 6
	unreachable := outageKinds[0]
	for _, route := range outageRoutes {
		t.Run(route.name, func(t *testing.T) {
			st := newOutageStore()
			opts := testOptions(st)
			opts.Logf = (&outageLog{}).logf
			c, request := route.open(t, opts)
			data := map[string][]byte{}
			var names []string
			for i := 1; i <= last; i++ {
				data[segName(i)] = segmentBytes(t, segName(i), testSysID, byte(i))
				c.ready(t, segName(i), data[segName(i)])
				names = append(names, segName(i))
			}
			// Segment 1 archived, segments 2-4 pushed ahead with markers.
			if _, _, err := request(segName(1)); err != nil {
				t.Fatalf("before the outage: %v", err)
			}
			c.done(t, segName(1))
			// Wait for the pushes ahead to be over: 2-4 for Archive, every
			// ready segment for the daemon, so that no push is in flight
			// when the outage begins.
			ahead := names[1:4]
			if route.name == "daemon" {
				ahead = names[1:]
			}
			waitFor(t, "markers of the segments pushed ahead", func() bool {
				for _, n := range ahead {
					if !exists(c.marker(n)) {
						return false
					}
				}
				return true
			})
			var marked []string // durable: pushed while the repository answered
			for _, f := range markerFiles(t, c) {
				seg, _, _ := strings.Cut(f, ".")
				marked = append(marked, seg)
			}
			st.begin(unreachable.rules)
			snap := snapshotPGWAL(t, c, data, names[1:])
			for try := 1; try <= 3; try++ {
				res, _, err := request(segName(2))
				checkOutageError(t, fmt.Sprintf("request %d (marked segment)", try), segName(2), res, err)
				snap.check(t, c, fmt.Sprintf("after request %d", try))
				checkNoMarkers(t, c, fmt.Sprintf("after request %d", try), marked...)
			}
			if faults := st.end(); faults == 0 {
				t.Fatal("test setup: the outage injected no fault")
			}
			if t.Failed() {
				t.FailNow()
			}
			for _, name := range names[1:] {
				res, _, err := request(name)
				if err != nil || res.Key != "wal/"+name+".lz4" {
					t.Fatalf("%s after the outage: %+v %v", name, res, err)
				}
				checkStored(t, st.healthy, name, data[name], "after the outage, answered")
				c.done(t, name)
			}
		})
	}
}

// TestDaemonOutageBacksOff (TRAPS.md 6): during a repository outage the
// daemon's pushes ahead wait longer and longer before they try a segment
// again, instead of reading, compressing and sending the same segments in
// a loop and writing a log line a try (its log is in pg_wal with
// wal_push_async, which the outage is already filling). The bound is
// generous: a back-off starting at 1 s allows about 3 tries in 3 s; the
// loop it replaces made 800-1000.
func TestDaemonOutageBacksOff(t *testing.T) {
	st := newOutageStore()
	log := &outageLog{}
	opts := testOptions(st)
	opts.Logf = log.logf
	c := startDaemon(t, opts)
	c.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	if _, _, err := ViaDaemon(context.Background(), filepath.Join(c.walDir, segName(1)), opts.Repository, false); err != nil {
		t.Fatal(err)
	}
	c.done(t, segName(1))
	st.begin(outageKinds[0].rules)
	defer st.end()
	for i := 2; i <= 9; i++ {
		c.ready(t, segName(i), segmentBytes(t, segName(i), testSysID, byte(i)))
	}
	waitFor(t, "the daemon pushing a segment ahead into the outage", func() bool { return st.tried(segName(2)) > 0 })
	time.Sleep(3 * time.Second)
	for i := 2; i <= 4; i++ {
		if n := st.tried(segName(i)); n > 20 {
			t.Errorf("%s met the outage %d times in about 3 s of pushes ahead: no back-off", segName(i), n)
		}
	}
	checkNoMarkers(t, c, "after the outage's pushes ahead", segName(1))
}
