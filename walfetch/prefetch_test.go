package walfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

const testSegSize = 1 << 20

// segmentBytes is a 1 MiB segment with a valid header for name.
func segmentBytes(t *testing.T, name string, seed byte) []byte {
	t.Helper()
	wf, err := pg.ParseWALFileName(name, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, testSegSize)
	for i := 64; i < len(b); i++ {
		b[i] = byte(i/512) ^ seed
	}
	le := binary.LittleEndian
	le.PutUint16(b[0:], pg.WALPageMagic)
	le.PutUint16(b[2:], pg.WALLongHeaderFlag)
	le.PutUint32(b[4:], uint32(wf.Timeline))
	le.PutUint64(b[8:], wf.SegNo*testSegSize)
	le.PutUint64(b[24:], testSystem)
	le.PutUint32(b[32:], testSegSize)
	le.PutUint32(b[36:], 8192)
	return b
}

// archive is a repository in memory.
type archive struct {
	st   storage.Store
	enc  *repo.Encoder
	segs map[string][]byte
}

// testSystem is the system identifier in segmentBytes' headers.
const testSystem = 7300000000000000001

// newArchive is a repository of cluster testSystem.
func newArchive() *archive {
	c, _ := compress.ByName("lz4")
	st := mem.New()
	if _, err := repo.EnsureIdentity(context.Background(), st, testSystem, false); err != nil {
		panic(err)
	}
	return &archive{st: st, enc: &repo.Encoder{Codec: c}, segs: map[string][]byte{}}
}

func (a *archive) put(t *testing.T, name string, b []byte) {
	t.Helper()
	sum := sha256.Sum256(b)
	_, err := a.enc.Put(context.Background(), a.st, repo.WALBase(name), bytes.NewReader(b), storage.PutOptions{
		Metadata: map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(b))},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.segs[name] = b
}

func (a *archive) segments(t *testing.T, tli pg.TimelineID, from, to uint64) {
	for n := from; n <= to; n++ {
		name := pg.SegmentName(tli, n, testSegSize)
		a.put(t, name, segmentBytes(t, name, byte(n)+byte(tli)*16))
	}
}

func (a *archive) fetchOpts(dir string, count int) Options {
	return Options{Store: a.st, Decoder: &repo.Decoder{}, PreferredSuffix: ".lz4", Prefetch: Prefetch{Dir: dir, Count: count}}
}

func (a *archive) run(t *testing.T, dir string, count int) {
	t.Helper()
	err := RunPrefetcher(context.Background(), RunOptions{Dir: dir, Count: count, Concurrency: 3, Fetch: a.fetchOpts(dir, count)})
	if err != nil {
		t.Fatal(err)
	}
}

// publishedNames lists the published segments in dir.
func publishedNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if seg, _, ok := published(e.Name()); ok {
			out = append(out, seg)
		}
		if strings.HasPrefix(e.Name(), downloadPrefix) {
			t.Errorf("download left behind: %s", e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func seg1(n uint64) string { return pg.SegmentName(1, n, testSegSize) }

// TestPrefetchServesVerifiedFiles: a fetch schedules the window, the
// prefetcher publishes exactly that window, and the next fetches are
// served from it byte-identical and leave the directory bounded.
func TestPrefetchServesVerifiedFiles(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 8)
	dir := filepath.Join(t.TempDir(), "prefetch")
	out := t.TempDir()
	opts := a.fetchOpts(dir, 4)

	res, err := Fetch(context.Background(), seg1(2), filepath.Join(out, "x"), opts)
	if err != nil || res.Prefetched {
		t.Fatalf("first fetch: %+v %v", res, err)
	}
	a.run(t, dir, 4)
	if got, want := publishedNames(t, dir), []string{seg1(3), seg1(4), seg1(5), seg1(6)}; !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	for n := uint64(3); n <= 5; n++ {
		dest := filepath.Join(out, "RECOVERYXLOG")
		res, err := Fetch(context.Background(), seg1(n), dest, opts)
		if err != nil || !res.Prefetched {
			t.Fatalf("%s: %+v %v", seg1(n), res, err)
		}
		if b, _ := os.ReadFile(dest); !bytes.Equal(b, a.segs[seg1(n)]) {
			t.Fatalf("%s: served content differs", seg1(n))
		}
	}
	// The next run moves the window: 6 is kept, 7 and 8 come, 9-... are
	// not archived (not an error), nothing older stays.
	a.run(t, dir, 4)
	if got, want := publishedNames(t, dir), []string{seg1(6), seg1(7), seg1(8)}; !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	// A request past the window removes everything older.
	if _, err := Fetch(context.Background(), seg1(8), filepath.Join(out, "y"), opts); err != nil {
		t.Fatal(err)
	}
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Fatalf("older files kept: %v", got)
	}
	// The end of the archive is still a verified absence.
	if _, err := Fetch(context.Background(), seg1(9), filepath.Join(out, "z"), opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing segment: %v", err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestPrefetchAcrossFilesystems: when the prefetch directory is on
// another filesystem than the destination, the file is copied (and
// verified) instead of renamed, and removed from the prefetch directory.
func TestPrefetchAcrossFilesystems(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 3)
	dir := filepath.Join(t.TempDir(), "prefetch")
	opts := a.fetchOpts(dir, 2)
	if _, err := Fetch(context.Background(), seg1(1), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	a.run(t, dir, 2)
	opts.Prefetch.moveOut = func(from, to string) error {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EXDEV}
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	res, err := Fetch(context.Background(), seg1(2), dest, opts)
	if err != nil || !res.Prefetched {
		t.Fatalf("%+v %v", res, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, a.segs[seg1(2)]) {
		t.Fatal("copied content differs")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, seg1(2)+".*")); len(left) != 0 {
		t.Fatalf("prefetched file kept after the copy: %v", left)
	}
	// A damaged file is not copied.
	files, _ := filepath.Glob(filepath.Join(dir, seg1(3)+".*"))
	if len(files) != 1 {
		t.Fatalf("published %v", files)
	}
	b, _ := os.ReadFile(files[0])
	b[100] ^= 1
	os.WriteFile(files[0], b, 0o600)
	res, err = Fetch(context.Background(), seg1(3), dest, opts)
	if err != nil || res.Prefetched {
		t.Fatalf("%+v %v", res, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, a.segs[seg1(3)]) {
		t.Fatal("restored content differs")
	}
}

// TestPrefetchedFileFailingVerification is deleted and the segment is
// fetched from the repository.
func TestPrefetchedFileFailingVerification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-8192] }},
		{"other segment", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[8:], 9*testSegSize); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newArchive()
			a.segments(t, 1, 1, 3)
			dir := filepath.Join(t.TempDir(), "prefetch")
			opts := a.fetchOpts(dir, 2)
			if _, err := Fetch(context.Background(), seg1(1), filepath.Join(t.TempDir(), "x"), opts); err != nil {
				t.Fatal(err)
			}
			a.run(t, dir, 2)
			entries, _ := filepath.Glob(filepath.Join(dir, seg1(2)+".*"))
			if len(entries) != 1 {
				t.Fatalf("published: %v", entries)
			}
			b, _ := os.ReadFile(entries[0])
			os.WriteFile(entries[0], tc.damage(b), 0o600)

			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			var logged []string
			opts.Logf = func(f string, args ...any) { logged = append(logged, f) }
			res, err := Fetch(context.Background(), seg1(2), dest, opts)
			if err != nil || res.Prefetched {
				t.Fatalf("%+v %v", res, err)
			}
			if got, _ := os.ReadFile(dest); !bytes.Equal(got, a.segs[seg1(2)]) {
				t.Fatal("restored content differs")
			}
			if _, err := os.Stat(entries[0]); !os.IsNotExist(err) {
				t.Fatal("damaged prefetched file kept")
			}
			if len(logged) == 0 {
				t.Fatal("nothing logged about the damaged file")
			}
			left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*"))
			if len(left) != 0 {
				t.Fatalf("temporary files left beside the destination: %v", left)
			}
		})
	}
}

// TestPrefetchStaleFiles: files older than StaleAfter are deleted, a
// leftover download is removed, and junk beyond the window goes.
func TestPrefetchStaleFiles(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 6)
	dir := filepath.Join(t.TempDir(), "prefetch")
	os.MkdirAll(dir, 0o700)
	opts := a.fetchOpts(dir, 2)
	// form is how the digest appears in the name: "sha256-" + hex, or
	// bare hex as walrus published files before digests had a prefix.
	write := func(name, form string, age time.Duration) string {
		sum := sha256.Sum256(a.segs[name])
		p := filepath.Join(dir, name+"."+form+hex.EncodeToString(sum[:]))
		os.WriteFile(p, a.segs[name], 0o600)
		old := time.Now().Add(-age)
		os.Chtimes(p, old, old)
		return p
	}
	stale := write(seg1(3), "sha256-", StaleAfter+time.Minute)
	fresh := write(seg1(4), "sha256-", 0)
	beyond := write(seg1(6), "", 0) // an older walrus's name: cleaned up too
	os.WriteFile(filepath.Join(dir, downloadPrefix+seg1(5)+"-123"), []byte("partial"), 0o600)

	// wal-fetch of 3 does not use the stale file.
	res, err := Fetch(context.Background(), seg1(3), filepath.Join(t.TempDir(), "x"), opts)
	if err != nil || res.Prefetched {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale file kept")
	}
	a.run(t, dir, 2)
	if got, want := publishedNames(t, dir), []string{seg1(4), seg1(5)}; !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("a valid file in the window was downloaded again or removed")
	}
	if _, err := os.Stat(beyond); !os.IsNotExist(err) {
		t.Fatal("file beyond the window kept")
	}
}

// TestPrefetchFollowsTimelineSwitch: with 00000002.history switching in
// segment 5, the window after segment 3 of timeline 1 is 1/4, then 2/5,
// 2/6, and nothing of timeline 1 after the switch.
func TestPrefetchFollowsTimelineSwitch(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 7) // the old timeline went on after the switch
	a.segments(t, 2, 5, 7)
	a.put(t, "00000002.history", []byte("1\t0/500100\tno recovery target specified\n"))
	dir := filepath.Join(t.TempDir(), "prefetch")
	opts := a.fetchOpts(dir, 3)
	if _, err := Fetch(context.Background(), seg1(3), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	a.run(t, dir, 3)
	want := []string{seg1(4), pg.SegmentName(2, 5, testSegSize), pg.SegmentName(2, 6, testSegSize)}
	sort.Strings(want)
	if got := publishedNames(t, dir); !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	// A history that does not pass through timeline 1 after segment 3 is
	// not followed.
	b := newArchive()
	b.segments(t, 1, 1, 7)
	b.segments(t, 2, 2, 7)
	b.put(t, "00000002.history", []byte("1\t0/200000\tno recovery target specified\n"))
	dir2 := filepath.Join(t.TempDir(), "prefetch")
	opts2 := b.fetchOpts(dir2, 2)
	if _, err := Fetch(context.Background(), seg1(3), filepath.Join(t.TempDir(), "x"), opts2); err != nil {
		t.Fatal(err)
	}
	b.run(t, dir2, 2)
	if got, want := publishedNames(t, dir2), []string{seg1(4), seg1(5)}; !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

func TestTimelineFor(t *testing.T) {
	t.Parallel()
	const seg = testSegSize
	h := pg.History{TLI: 3, Entries: []pg.TimelineHistoryEntry{
		{Parent: 1, SwitchLSN: pg.LSN(5*seg + 100)},
		{Parent: 2, SwitchLSN: pg.LSN(9 * seg)},
	}}
	for _, tc := range []struct {
		cur   pg.TimelineID
		segNo uint64
		want  pg.TimelineID
	}{
		{1, 4, 1}, {1, 5, 2}, {1, 8, 2}, {1, 9, 3}, {1, 20, 3},
		{2, 4, 2}, // never older than the current timeline
		{3, 6, 3},
	} {
		if got := TimelineFor(h, tc.cur, tc.segNo, seg); got != tc.want {
			t.Errorf("TimelineFor(cur %d, seg %d) = %d, want %d", tc.cur, tc.segNo, got, tc.want)
		}
	}
	if got := TimelineFor(pg.History{TLI: 4}, 4, 100, seg); got != 4 {
		t.Errorf("no history: %d", got)
	}
}

func TestPrefetchDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	pgdata := filepath.Join(root, "main")
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o700)
	os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
	dest := filepath.Join(pgdata, "pg_wal", "RECOVERYXLOG")

	d1, err := PrefetchDir("", "", dest, "s3://a")
	if err != nil || filepath.Dir(d1) != filepath.Join(root, ".walrus-prefetch") {
		t.Fatalf("derived from dest: %q %v", d1, err)
	}
	d2, _ := PrefetchDir("", pgdata, "/elsewhere/x", "s3://a")
	if d2 != d1 {
		t.Fatalf("pgdata given: %q, from dest: %q", d2, d1)
	}
	if d3, _ := PrefetchDir("", "", dest, "s3://b"); d3 == d1 {
		t.Fatal("two repositories share a prefetch directory")
	}
	if d, _ := PrefetchDir("", "", filepath.Join(root, "x", "RECOVERYXLOG"), "s3://a"); d != "" {
		t.Fatalf("no data directory known, got %q", d)
	}
	if d, err := PrefetchDir("/var/cache/walrus", "", "/x/y", "s3://a"); err != nil || filepath.Dir(d) != "/var/cache/walrus" {
		t.Fatalf("configured: %q %v", d, err)
	}
	if _, err := PrefetchDir(filepath.Join(pgdata, "pg_wal"), pgdata, dest, "s3://a"); err == nil {
		t.Fatal("a prefetch directory inside the data directory was accepted")
	}
}

// TestPrefetcherOneAtATime: while another process holds the lock, a
// prefetcher does nothing and the fetch starts nothing.
func TestPrefetcherOneAtATime(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 4)
	dir := filepath.Join(t.TempDir(), "prefetch")
	started := 0
	opts := a.fetchOpts(dir, 2)
	opts.Prefetch.Start = func() error { started++; return nil }
	if _, err := Fetch(context.Background(), seg1(1), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	if started != 1 {
		t.Fatalf("started %d prefetchers, want 1", started)
	}
	l, ok, err := tryLock(filepath.Join(dir, LockFile))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	defer l.unlock()
	if _, err := Fetch(context.Background(), seg1(2), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	if started != 1 {
		t.Fatal("a second prefetcher was started while one holds the lock")
	}
	a.run(t, dir, 2)
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Fatalf("a prefetcher ran beside the lock holder: %v", got)
	}
}

// TestPrefetchStopsAfterRecovery: once the data directory has no
// recovery.signal or standby.signal, the prefetcher downloads nothing and
// deletes what it prefetched.
func TestPrefetchStopsAfterRecovery(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 6)
	pgdata := t.TempDir()
	os.WriteFile(filepath.Join(pgdata, "recovery.signal"), nil, 0o600)
	dir := filepath.Join(t.TempDir(), "prefetch")
	opts := a.fetchOpts(dir, 2)
	run := func() {
		t.Helper()
		err := RunPrefetcher(context.Background(), RunOptions{Dir: dir, Count: 2, Concurrency: 2, Fetch: opts, PGData: pgdata})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Fetch(context.Background(), seg1(1), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	run()
	if got := publishedNames(t, dir); len(got) != 2 {
		t.Fatalf("in recovery: published %v", got)
	}
	os.Remove(filepath.Join(pgdata, "recovery.signal"))
	if _, err := Fetch(context.Background(), seg1(2), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	run()
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Fatalf("after recovery: published %v", got)
	}
}

// TestPrefetchRefusesForeignSegment: an object that holds another
// cluster's segment (with a matching recorded checksum) is never published
// in the prefetch directory; wal-fetch then refuses it as it does without
// prefetch.
func TestPrefetchRefusesForeignSegment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newArchive()
	a.segments(t, 1, 1, 2)
	foreign := segmentBytes(t, seg1(3), 3)
	binary.LittleEndian.PutUint64(foreign[24:], 7399999999999999999)
	a.put(t, seg1(3), foreign)
	dir := filepath.Join(t.TempDir(), "prefetch")
	opts := a.fetchOpts(dir, 2)
	if _, err := Fetch(ctx, seg1(2), filepath.Join(t.TempDir(), "x"), opts); err != nil {
		t.Fatal(err)
	}
	err := RunPrefetcher(ctx, RunOptions{Dir: dir, Count: 2, Concurrency: 1, Fetch: opts})
	if !errors.Is(err, ErrWrongSegment) {
		t.Fatalf("prefetcher: %v", err)
	}
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Fatalf("foreign segment published: %v", got)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if _, err := Fetch(ctx, seg1(3), dest, opts); !errors.Is(err, ErrWrongSegment) {
		t.Fatalf("fetch: %v", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("destination written")
	}
}

// TestPrefetcherLingers: after its window the prefetcher keeps the lock
// and serves the next want itself (no new prefetcher is started), exits
// once no want has come for Linger, and exits at once, deleting what it
// prefetched, when the data directory leaves recovery.
func TestPrefetcherLingers(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 12)
	pgdata := t.TempDir()
	signal := filepath.Join(pgdata, "recovery.signal")
	os.WriteFile(signal, nil, 0o600)
	dir := filepath.Join(t.TempDir(), "prefetch")
	out := t.TempDir()
	opts := a.fetchOpts(dir, 2)
	started := 0
	opts.Prefetch.Start = func() error { started++; return nil }
	run := func(linger time.Duration) chan error {
		done := make(chan error, 1)
		go func() {
			done <- RunPrefetcher(context.Background(), RunOptions{Dir: dir, Count: 2, Concurrency: 2, Fetch: opts, PGData: pgdata, Linger: linger})
		}()
		return done
	}
	ready := func() []string { // published files, downloads in flight aside
		var out []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if seg, _, ok := published(e.Name()); ok {
				out = append(out, seg)
			}
		}
		return out
	}
	waitFor := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !equal(ready(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("published %v, want %v", ready(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if _, err := Fetch(context.Background(), seg1(1), filepath.Join(out, "x"), opts); err != nil {
		t.Fatal(err)
	}
	started = 0
	done := run(time.Minute)
	waitFor([]string{seg1(2), seg1(3)})
	for n := uint64(2); n <= 5; n++ {
		res, err := Fetch(context.Background(), seg1(n), filepath.Join(out, "x"), opts)
		if err != nil || !res.Prefetched {
			t.Fatalf("%s: %+v %v", seg1(n), res, err)
		}
		waitFor([]string{seg1(n + 1), seg1(n + 2)})
	}
	if started != 0 {
		t.Fatalf("%d prefetchers started while one lingered", started)
	}
	select {
	case err := <-done:
		t.Fatalf("prefetcher exited while recovery asks: %v", err)
	default:
	}
	os.Remove(signal)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("prefetcher still running after recovery ended")
	}
	if got := publishedNames(t, dir); len(got) != 0 {
		t.Fatalf("prefetched files left after recovery ended: %v", got)
	}

	// Without new wants it exits after Linger.
	os.WriteFile(signal, nil, 0o600)
	if _, err := Fetch(context.Background(), seg1(8), filepath.Join(out, "x"), opts); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := <-run(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 200*time.Millisecond {
		t.Fatalf("exited after %v, before its linger", d)
	}
	if got, want := publishedNames(t, dir), []string{seg1(9), seg1(10)}; !equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

// failingIdentity is a store whose identity file cannot be looked at.
type failingIdentity struct{ storage.Store }

func (s failingIdentity) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if key == repo.IdentityKey {
		return storage.ObjectInfo{}, errors.New("connection reset")
	}
	return s.Store.Stat(ctx, key)
}

// TestFetchAbsence: a WAL file the repository does not hold is
// ErrNotFound (PostgreSQL's exit 1) only in a repository with its
// identity file; without it (an unmounted file system, a wrong prefix)
// or when the identity file cannot be looked at, it is another error and
// nothing is written.
func TestFetchAbsence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newArchive()
	a.segments(t, 1, 1, 1)
	for _, name := range []string{seg1(2), "00000002.history"} {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if _, err := Fetch(ctx, name, dest, a.fetchOpts("", 0)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s in a repository: %v", name, err)
		}
		opts := a.fetchOpts("", 0)
		opts.Store = mem.New()
		_, err := Fetch(ctx, name, dest, opts)
		if errors.Is(err, ErrNotFound) || !errors.Is(err, ErrNotARepository) {
			t.Fatalf("%s in an empty store: %v", name, err)
		}
		opts.Store = failingIdentity{a.st}
		_, err = Fetch(ctx, name, dest, opts)
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("%s with the identity file unreadable: %v", name, err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("%s: destination written", name)
		}
	}
}
