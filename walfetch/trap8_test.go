package walfetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// TRAPS.md 8: prefetch lives outside PGDATA, publishes a file only complete
// and verified (atomic rename), follows .history across timeline
// switches, and bounds its disk use. The tests here interrupt downloads at
// every point and drive many overlapping windows, and look only at what a
// user sees: the bytes restored, what the prefetch directory holds.

// cutMode is how a Get body of the target segment is interrupted.
type cutMode int

const (
	// cutError: after n bytes the body fails (io.ErrUnexpectedEOF), as a
	// connection that breaks.
	cutError cutMode = iota
	// cutEOF: after n bytes the body ends cleanly (io.EOF), as a transfer
	// cut short that looks complete.
	cutEOF
	// cutCancel: after n bytes the body waits for its context to end;
	// the test then cancels the prefetcher's context.
	cutCancel
	// cutKill: after n bytes the body waits for release; the test copies
	// the prefetch directory meanwhile, which is what a SIGKILL of the
	// prefetcher at that instant would leave behind.
	cutKill
)

func (m cutMode) String() string {
	return [...]string{"body error", "body cut (clean EOF)", "context cancelled", "process killed"}[m]
}

// cutStore interrupts the Get bodies of one WAL file (every object whose
// key starts with repo.WALBase(target)); other objects pass through.
type cutStore struct {
	storage.Store
	target  string
	mode    cutMode
	n       int64
	reached chan struct{} // closed once a body has stopped at n (cutCancel, cutKill)
	release chan struct{} // cutKill: closing it makes the stopped body fail
	once    sync.Once
	gets    atomic.Int32
}

func newCutStore(st storage.Store, target string, mode cutMode, n int64) *cutStore {
	return &cutStore{Store: st, target: target, mode: mode, n: n, reached: make(chan struct{}), release: make(chan struct{})}
}

func (s *cutStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil || !strings.HasPrefix(key, repo.WALBase(s.target)) {
		return rc, err
	}
	s.gets.Add(1)
	return &cutBody{rc: rc, s: s, ctx: ctx}, nil
}

type cutBody struct {
	rc   io.ReadCloser
	s    *cutStore
	ctx  context.Context
	read int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if left := b.s.n - b.read; left > 0 {
		if int64(len(p)) > left {
			p = p[:left]
		}
		n, err := b.rc.Read(p)
		b.read += int64(n)
		return n, err
	}
	switch b.s.mode {
	case cutError:
		return 0, io.ErrUnexpectedEOF
	case cutEOF:
		return 0, io.EOF
	case cutCancel:
		b.s.once.Do(func() { close(b.s.reached) })
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	default:
		b.s.once.Do(func() { close(b.s.reached) })
		<-b.s.release
		return 0, io.ErrUnexpectedEOF
	}
}

func (b *cutBody) Close() error { return b.rc.Close() }

// noisySegment is a segment of name whose content after the header is
// random: it does not compress, so its object is about a segment long and
// a cut can fall anywhere in it.
func noisySegment(t *testing.T, name string, seed uint64) []byte {
	t.Helper()
	b := segmentBytes(t, name, 0)
	var key [32]byte
	key[0] = byte(seed)
	rand.NewChaCha8(key).Read(b[64:])
	return b
}

// copyDirFiles copies the regular files of dir into a new directory: the
// state a process killed at this instant leaves. A file that disappears
// while being copied is skipped (it was renamed or removed just before).
func copyDirFiles(t *testing.T, dir string) string {
	t.Helper()
	snap := filepath.Join(t.TempDir(), "snapshot")
	if err := os.MkdirAll(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(snap, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// checkPublishedExact fails unless every published file in dir holds
// exactly the archived bytes of its segment: nothing partial, nothing
// unverified, ever carries a published name.
func checkPublishedExact(t *testing.T, dir string, segs map[string][]byte, what string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		seg, _, ok := published(e.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Errorf("%s: read %s: %v", what, e.Name(), err)
			continue
		}
		if !bytes.Equal(b, segs[seg]) {
			t.Errorf("%s: %s is published but is not the archived segment (%d bytes, the segment has %d)", what, e.Name(), len(b), len(segs[seg]))
		}
	}
}

// fetchExact runs wal-fetch of name into dest and fails unless it
// succeeds and dest holds exactly the archived bytes.
func fetchExact(t *testing.T, opts Options, name, dest string, segs map[string][]byte) Result {
	t.Helper()
	res, err := Fetch(context.Background(), name, dest, opts)
	if err != nil {
		t.Fatalf("wal-fetch %s: %v", name, err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatalf("wal-fetch %s: %v", name, err)
	}
	if !bytes.Equal(got, segs[name]) {
		t.Fatalf("wal-fetch %s (prefetched %v) wrote %d bytes that are not the archived segment (%d bytes)", name, res.Prefetched, len(got), len(segs[name]))
	}
	return res
}

// codecArchive is a repository in memory whose objects use codec ("lz4"
// as newArchive, or "none": a cut body then reaches the checks on the
// plaintext directly, with no decompressor to notice it).
func codecArchive(t *testing.T, codec string) (*archive, func(dir string, count int) Options) {
	t.Helper()
	a := newArchive()
	c, err := compress.ByName(codec)
	if err != nil {
		t.Fatal(err)
	}
	a.enc = &repo.Encoder{Codec: c}
	return a, func(dir string, count int) Options {
		o := a.fetchOpts(dir, count)
		o.PreferredSuffix = a.enc.Suffix()
		return o
	}
}

// TestTrap8InterruptedDownloadNeverServed interrupts the prefetcher's
// download of a segment at several points of its object (before the
// first byte, a few bytes in, before the segment's header is complete,
// half way, one byte before the end), with objects compressed (lz4) and
// not (none), in each of four ways: the store's body fails, the body ends cleanly but
// early, the prefetcher's context is cancelled, and the process is killed
// (simulated by copying the prefetch directory while the download is
// stopped: what a SIGKILL at that instant leaves, .dl- file included).
// In every case:
//   - every file in the prefetch directory that carries a published name
//     holds the whole archived segment (nothing partial is published,
//     neither by the prefetcher that failed nor in the killed state);
//   - a prefetcher that failed leaves no temporary download behind;
//   - the next wal-fetch of the interrupted segment and its neighbours,
//     from the directory as it was left (and from the killed state),
//     succeeds and writes exactly the archived bytes, leaving no
//     temporary file beside the destination;
//   - the next prefetcher removes the download a killed one left.
func TestTrap8InterruptedDownloadNeverServed(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"lz4", "none"} {
		probe, _ := codecArchive(t, codec)
		target := seg1(3)
		probe.put(t, target, noisySegment(t, target, 3))
		info, err := repo.FindObject(context.Background(), probe.st, repo.WALBase(target), probe.enc.Suffix())
		if err != nil {
			t.Fatal(err)
		}
		size := info.Size
		if size < testSegSize/2 {
			t.Fatalf("the object of %s has %d bytes: the noisy segment compressed", target, size)
		}
		cuts := []int64{0, 7, 30, size / 2, size - 1}
		for _, mode := range []cutMode{cutError, cutEOF, cutCancel, cutKill} {
			for _, n := range cuts {
				t.Run(fmt.Sprintf("%s %v after %d of %d bytes", codec, mode, n, size), func(t *testing.T) {
					t.Parallel()
					interruptedDownload(t, codec, mode, n, size)
				})
			}
		}
	}
}

func interruptedDownload(t *testing.T, codec string, mode cutMode, n, size int64) {
	a, fetchOpts := codecArchive(t, codec)
	a.segments(t, 1, 1, 6)
	target := seg1(3)
	a.put(t, target, noisySegment(t, target, 3))
	dir := filepath.Join(t.TempDir(), "prefetch")
	out := t.TempDir()
	dest := filepath.Join(out, "RECOVERYXLOG")
	opts := fetchOpts(dir, 3)

	// PostgreSQL restored segment 1: the window is 2, 3, 4.
	fetchExact(t, opts, seg1(1), dest, a.segs)

	cs := newCutStore(a.st, target, mode, n)
	popts := fetchOpts(dir, 3)
	popts.Store = cs
	concurrency := 2
	if mode == cutCancel || mode == cutKill {
		concurrency = 1 // 2 is published, 3 stops, 4 is not begun
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunPrefetcher(ctx, RunOptions{Dir: dir, Count: 3, Concurrency: concurrency, Fetch: popts})
	}()
	var killed string
	if mode == cutCancel || mode == cutKill {
		select {
		case <-cs.reached:
		case err := <-done:
			t.Fatalf("the prefetcher returned (%v) before its download of %s stopped at byte %d", err, target, n)
		case <-time.After(2 * time.Minute):
			t.Fatalf("the download of %s never reached byte %d", target, n)
		}
		if mode == cutCancel {
			cancel()
		} else {
			killed = copyDirFiles(t, dir)
			close(cs.release)
		}
	}
	select {
	case err := <-done:
		t.Logf("prefetcher: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the prefetcher did not return after its download was interrupted")
	}
	if cs.gets.Load() == 0 {
		t.Fatalf("the prefetcher never downloaded %s: nothing was interrupted", target)
	}

	// The directory the failed prefetcher left.
	checkPublishedExact(t, dir, a.segs, "after the prefetcher failed")
	if left, _ := filepath.Glob(filepath.Join(dir, downloadPrefix+"*")); len(left) != 0 {
		t.Errorf("the failed prefetcher left downloads behind: %v", left)
	}
	dirs := []string{dir}
	if killed != "" {
		checkPublishedExact(t, killed, a.segs, "in the state a kill leaves")
		dirs = append(dirs, killed)
		var part int64 = -1 // what the kill left of the target, under any name
		entries, _ := os.ReadDir(killed)
		for _, e := range entries {
			if strings.Contains(e.Name(), target) {
				if fi, err := e.Info(); err == nil {
					part = max(part, fi.Size())
				}
			}
		}
		t.Logf("the kill left %d bytes of %s", part, target)
		// A download in flight was cut off; uncompressed, with part of
		// the segment in it (lz4 holds a 1 MiB segment in one block).
		if n >= size/2 && (part < 0 || codec == "none" && part == 0) {
			t.Fatalf("the kill at byte %d of %d left %d bytes of %s: no partial download was exercised", n, size, part, target)
		}
	}
	for _, d := range dirs {
		o := fetchOpts(d, 3)
		for i := uint64(2); i <= 4; i++ {
			res := fetchExact(t, o, seg1(i), dest, a.segs)
			t.Logf("%s from %s: prefetched %v", seg1(i), filepath.Base(d), res.Prefetched)
		}
		if left, _ := filepath.Glob(filepath.Join(out, ".*")); len(left) != 0 {
			t.Errorf("temporary files left beside the destination: %v", left)
		}
	}
	if killed != "" {
		// The next prefetcher (the killed one's successor) cleans up what
		// it left; publishedNames reports any .dl- file still there.
		if err := RunPrefetcher(context.Background(), RunOptions{Dir: killed, Count: 3, Concurrency: 3, Fetch: fetchOpts(killed, 3)}); err != nil {
			t.Fatal(err)
		}
		if got, want := publishedNames(t, killed), []string{seg1(5), seg1(6)}; !equal(got, want) {
			t.Errorf("after the next prefetcher: published %v, want %v", got, want)
		}
		checkPublishedExact(t, killed, a.segs, "after the next prefetcher")
	}
}

// dirMonitor watches a prefetch directory while prefetchers and wal-fetch
// run, and records every state that breaks the bound or shows a
// published file that is not the archived segment.
type dirMonitor struct {
	dir      string
	count    int
	conc     int
	expected map[string][]byte // read-only while the monitor runs

	mu        sync.Mutex
	problems  []string
	maxPub    int
	maxDL     int
	maxSegs   int
	checked   map[string]bool
	scans     int
	stop      chan struct{}
	stoppedCh chan struct{}
}

func (m *dirMonitor) start() {
	m.checked = map[string]bool{}
	m.stop = make(chan struct{})
	m.stoppedCh = make(chan struct{})
	go func() {
		defer close(m.stoppedCh)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			m.scan()
			time.Sleep(100 * time.Microsecond)
		}
	}()
}

func (m *dirMonitor) finish() {
	close(m.stop)
	<-m.stoppedCh
}

func (m *dirMonitor) problem(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.problems) < 20 {
		m.problems = append(m.problems, fmt.Sprintf(format, args...))
	}
}

func (m *dirMonitor) scan() {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return
	}
	pub, dl := 0, 0
	segs := map[string]bool{} // a rename seen under both names counts once
	var names []string
	for _, e := range entries {
		name := e.Name()
		names = append(names, name)
		if seg, _, ok := published(name); ok {
			pub++
			segs[seg] = true
			if !m.checked[name] {
				m.checked[name] = true
				// A published file is complete: reading it, even while it
				// is moved out or removed, gives the whole segment.
				if b, err := os.ReadFile(filepath.Join(m.dir, name)); err == nil && !bytes.Equal(b, m.expected[seg]) {
					m.problem("%s is published with %d bytes that are not the archived segment", name, len(b))
				}
			}
			continue
		}
		switch {
		case strings.HasPrefix(name, downloadPrefix):
			dl++
			seg, _, _ := strings.Cut(strings.TrimPrefix(name, downloadPrefix), "-")
			segs[seg] = true
		case name == LockFile, name == WantFile, name == LogFile, strings.HasPrefix(name, ".want-"):
		default:
			m.problem("unexpected file %s in the prefetch directory", name)
		}
	}
	m.mu.Lock()
	m.scans++
	m.maxPub = max(m.maxPub, pub)
	m.maxDL = max(m.maxDL, dl)
	m.maxSegs = max(m.maxSegs, len(segs))
	m.mu.Unlock()
	if pub > m.count || dl > m.conc || len(segs) > m.count+m.conc {
		sort.Strings(names)
		m.problem("over the bound: %d published files (at most wal_prefetch, %d), %d downloads (at most %d), %d segments (at most %d): %v",
			pub, m.count, dl, m.conc, len(segs), m.count+m.conc, names)
	}
}

// TestTrap8PrefetchDirectoryBounded drives wal-fetch as a recovery does,
// with prefetchers started as wal-fetch starts them (one at a time through
// the lock, each lingering briefly, so that they come and go while
// PostgreSQL asks), over overlapping windows, a segment asked again, a
// restart of recovery from an older segment, a timeline switch whose
// history is archived after the old timeline's segments were already
// prefetched, and an end of recovery that leaves a window never asked
// for. A monitor reads the prefetch directory throughout. It asserts:
//   - stale state is removed before use: a published file older than
//     StaleAfter, a file older than the requested segment, a file beyond
//     the window and a download a killed prefetcher left;
//   - every wal-fetch writes exactly the archived bytes of the segment
//     asked (timeline 2's after the switch, never timeline 1's prefetched
//     one of the same number);
//   - the directory never holds more than wal_prefetch published files,
//     more than Concurrency downloads, nor more than wal_prefetch plus
//     Concurrency segments counting both, and nothing but published
//     files, downloads, lock, want (and its temporary) and log;
//   - every published file seen holds the whole archived segment;
//   - once the prefetchers have exited, the directory holds exactly the
//     window of the last segment asked (on the new timeline);
//   - once recovery ends, the running prefetcher deletes the window never
//     asked for and exits.
func TestTrap8PrefetchDirectoryBounded(t *testing.T) {
	t.Parallel()
	const count, conc = 4, 3
	seg2 := func(n uint64) string { return pg.SegmentName(2, n, testSegSize) }
	a := newArchive()
	// Every segment's bytes are known up front: the monitor compares with
	// them while the archive grows.
	expected := map[string][]byte{}
	for n := uint64(1); n <= 40; n++ {
		expected[seg1(n)] = segmentBytes(t, seg1(n), byte(n)+16)
		if n >= 20 {
			expected[seg2(n)] = segmentBytes(t, seg2(n), byte(n)+32)
		}
	}
	for n := uint64(1); n <= 40; n++ { // the old timeline went on after the switch
		a.put(t, seg1(n), expected[seg1(n)])
	}
	pgdata := t.TempDir()
	signal := filepath.Join(pgdata, "recovery.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "prefetch")
	out := t.TempDir()
	dest := filepath.Join(out, "RECOVERYXLOG")

	var (
		wg      sync.WaitGroup
		linger  atomic.Int64
		started atomic.Int32
		errMu   sync.Mutex
		runErrs []error
	)
	runOpts := func(l time.Duration) RunOptions {
		return RunOptions{Dir: dir, Count: count, Concurrency: conc, Fetch: a.fetchOpts(dir, count), PGData: pgdata, Linger: l}
	}
	opts := a.fetchOpts(dir, count)
	opts.Prefetch.Start = func() error {
		started.Add(1)
		wg.Add(1)
		l := time.Duration(linger.Load())
		go func() {
			defer wg.Done()
			if err := RunPrefetcher(context.Background(), runOpts(l)); err != nil {
				errMu.Lock()
				runErrs = append(runErrs, err)
				errMu.Unlock()
			}
		}()
		return nil
	}
	waitPrefetchers := func(what string) {
		t.Helper()
		ch := make(chan struct{})
		go func() { wg.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s: prefetchers still running", what)
		}
	}

	// Leftovers of an earlier run: a stale published file inside the
	// first window, a file older than the first request, one beyond the
	// window, and a download a killed prefetcher left.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	plant := func(name string, b []byte, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		os.Chtimes(p, old, old)
		return p
	}
	digest := func(name string) string {
		info, err := repo.FindObject(context.Background(), a.st, repo.WALBase(name), ".lz4")
		if err != nil {
			t.Fatal(err)
		}
		sum, ok := repo.ObjectDigest(info.Metadata)
		if !ok {
			t.Fatalf("%s has no digest", name)
		}
		return sum
	}
	leftovers := []string{
		plant(seg1(4)+"."+digest(seg1(4)), expected[seg1(4)], StaleAfter+time.Minute),
		plant(seg1(1)+"."+digest(seg1(1)), expected[seg1(1)], 0),
		plant(seg1(30)+"."+digest(seg1(30)), expected[seg1(30)], 0),
		plant(downloadPrefix+seg1(5)+"-4242", expected[seg1(5)][:testSegSize/3], 0),
	}

	// The first request and its window, one prefetcher run to the end.
	fetchExact(t, a.fetchOpts(dir, count), seg1(2), dest, a.segs)
	if err := RunPrefetcher(context.Background(), runOpts(0)); err != nil {
		t.Fatal(err)
	}
	for i, p := range leftovers {
		fi, err := os.Stat(p)
		switch {
		case i == 0 && err == nil && time.Since(fi.ModTime()) > StaleAfter:
			t.Errorf("stale leftover %s kept", filepath.Base(p))
		case i == 0:
			// In the window: downloaded again under the same name.
		case !os.IsNotExist(err):
			t.Errorf("leftover %s kept", filepath.Base(p))
		}
	}
	if got, want := publishedNames(t, dir), []string{seg1(3), seg1(4), seg1(5), seg1(6)}; !equal(got, want) {
		t.Errorf("first window: published %v, want %v", got, want)
	}
	checkPublishedExact(t, dir, expected, "first window")

	mon := &dirMonitor{dir: dir, count: count, conc: conc, expected: expected}
	mon.start()
	defer func() {
		select {
		case <-mon.stop:
		default:
			mon.finish()
		}
	}()

	// Recovery asks, prefetchers come and go (a short linger).
	linger.Store(int64(20 * time.Millisecond))
	var asked []string
	ask := func(name string) {
		t.Helper()
		fetchExact(t, opts, name, dest, a.segs)
		asked = append(asked, name)
	}
	for n := uint64(3); n <= 12; n++ {
		ask(seg1(n))
		if n == 8 {
			ask(seg1(8)) // asked again: the same window
		}
	}
	for n := uint64(9); n <= 17; n++ { // recovery restarted from an older restartpoint
		ask(seg1(n))
	}
	// Let the window after 17 (18-21 of timeline 1) be prefetched before
	// the switch to timeline 2 at segment 20 is archived.
	deadline := time.Now().Add(time.Minute)
	for {
		got := map[string]bool{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if seg, _, ok := published(e.Name()); ok {
				got[seg] = true
			}
		}
		if got[seg1(20)] || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for n := uint64(20); n <= 40; n++ {
		a.put(t, seg2(n), expected[seg2(n)])
	}
	a.put(t, "00000002.history", []byte("1\t0/1400100\tno recovery target specified\n"))
	for n := uint64(18); n <= 19; n++ {
		ask(seg1(n))
	}
	for n := uint64(20); n <= 30; n++ {
		ask(seg2(n))
	}
	waitPrefetchers("after the last request")
	if got, want := publishedNames(t, dir), []string{seg2(31), seg2(32), seg2(33), seg2(34)}; !equal(got, want) {
		t.Errorf("after the prefetchers exited: published %v, want the window after %s %v", got, seg2(30), want)
	}

	// The last requests, with a prefetcher that lingers; then recovery
	// ends (PostgreSQL promoted): the window after the last request is
	// never asked for.
	linger.Store(int64(time.Minute))
	for n := uint64(31); n <= 33; n++ {
		ask(seg2(n))
	}
	deadline = time.Now().Add(time.Minute)
	for want := []string{seg2(34), seg2(35), seg2(36), seg2(37)}; ; {
		var got []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if seg, _, ok := published(e.Name()); ok {
				got = append(got, seg)
			}
		}
		sort.Strings(got)
		if equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window after %s was not prefetched: %v", seg2(33), got)
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Remove(signal); err != nil {
		t.Fatal(err)
	}
	waitPrefetchers("after recovery ended")
	mon.finish()
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Errorf("after recovery ended: %v never asked for and still there", got)
	}

	errMu.Lock()
	for _, err := range runErrs {
		t.Errorf("prefetcher: %v", err)
	}
	errMu.Unlock()
	mon.mu.Lock()
	defer mon.mu.Unlock()
	for _, p := range mon.problems {
		t.Error(p)
	}
	t.Logf("%d requests, %d prefetchers started; %d scans: at most %d published, %d downloads, %d segments; %d published files read",
		len(asked), started.Load(), mon.scans, mon.maxPub, mon.maxDL, mon.maxSegs, len(mon.checked))
	if mon.maxPub == 0 || started.Load() < 2 {
		t.Fatalf("the run did not exercise prefetching: %d prefetchers, at most %d published", started.Load(), mon.maxPub)
	}
}
