package walpush

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

const (
	testSegSize = 1 << 20
	testSysID   = 7300000000000000001
)

// countingStore counts Puts of WAL objects.
type countingStore struct {
	storage.Store
	puts atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if strings.HasPrefix(key, "wal/") {
		c.puts.Add(1)
	}
	return c.Store.Put(ctx, key, r, opts)
}

// segmentBytes is a 1 MiB segment with a valid header for name.
func segmentBytes(t *testing.T, name string, sysid uint64, seed byte) []byte {
	t.Helper()
	wf, err := pg.ParseWALFileName(name[:24], testSegSize)
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
	le.PutUint64(b[24:], sysid)
	le.PutUint32(b[32:], testSegSize)
	le.PutUint32(b[36:], 8192)
	return b
}

// cluster is a fake pg_wal with archive_status.
type cluster struct {
	walDir string
}

func newCluster(t *testing.T) cluster {
	t.Helper()
	wal := filepath.Join(t.TempDir(), "pg_wal")
	if err := os.MkdirAll(filepath.Join(wal, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	return cluster{walDir: wal}
}

// ready writes a segment and its .ready file.
func (c cluster) ready(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(c.walDir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.walDir, "archive_status", name+".ready"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// done does what PostgreSQL does after archive_command exits 0.
func (c cluster) done(t *testing.T, name string) {
	t.Helper()
	st := filepath.Join(c.walDir, "archive_status", name)
	if err := os.Rename(st+".ready", st+".done"); err != nil {
		t.Fatal(err)
	}
}

func (c cluster) marker(name string) string {
	return filepath.Join(c.walDir, "archive_status", MarkerDirName, name+".7300000000000000001")
}

func segName(n int) string { return pg.SegmentName(1, uint64(n), testSegSize) }

func testOptions(st storage.Store) Options {
	codec, _ := compress.ByName("lz4")
	return Options{Store: st, Encoder: &repo.Encoder{Codec: codec}, Concurrency: 4, Repository: "mem://test"}
}

// fetchPlain reads back the plaintext stored for name.
func fetchPlain(t *testing.T, st storage.Store, name string) []byte {
	t.Helper()
	ctx := context.Background()
	info, err := repo.FindObject(ctx, st, repo.WALBase(name), ".lz4")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rc, err := (&repo.Decoder{}).Open(ctx, st, info.Key)
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

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestArchiveParallelAndMarkers walks PostgreSQL's sequence of calls: the
// first pushes ahead, the following ones confirm without uploading, and
// only whole segments are pushed ahead.
func TestArchiveParallelAndMarkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &countingStore{Store: mem.New()}
	opts := testOptions(st)
	c := newCluster(t)
	segs := map[string][]byte{}
	for i := 1; i <= 6; i++ {
		segs[segName(i)] = segmentBytes(t, segName(i), testSysID, byte(i))
		c.ready(t, segName(i), segs[segName(i)])
	}
	partial := segName(7) + ".partial"
	c.ready(t, partial, segmentBytes(t, partial, testSysID, 7))
	os.WriteFile(filepath.Join(c.walDir, "00000002.history"), []byte("1\t0/7000000\tno recovery target specified\n"), 0o600)
	os.WriteFile(filepath.Join(c.walDir, "archive_status", "00000002.history.ready"), nil, 0o600)

	res, err := Archive(ctx, filepath.Join(c.walDir, segName(1)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Confirmed || res.AlreadyStored || len(res.Extras) != 3 {
		t.Fatalf("first call: %+v", res)
	}
	for i, x := range res.Extras {
		if x.Err != nil || x.Name != segName(i+2) {
			t.Fatalf("extra %d: %+v", i, x)
		}
		if !exists(c.marker(x.Name)) {
			t.Fatalf("no marker for %s", x.Name)
		}
	}
	if exists(c.marker(segName(1))) {
		t.Fatal("marker written for the requested segment")
	}
	for i := 1; i <= 4; i++ {
		if !bytes.Equal(fetchPlain(t, st, segName(i)), segs[segName(i)]) {
			t.Fatalf("%s stored wrong", segName(i))
		}
		if !exists(filepath.Join(c.walDir, "archive_status", segName(i)+".ready")) {
			t.Fatalf("%s.ready was touched: only PostgreSQL marks files done", segName(i))
		}
	}
	for _, k := range []string{"wal/" + partial + ".lz4", "wal/00000002.history.lz4"} {
		if _, err := st.Stat(ctx, k); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s pushed without PostgreSQL asking: %v", k, err)
		}
	}
	c.done(t, segName(1))

	// The next call confirms segment 2 without uploading it, and pushes
	// the remaining unmarked segments 5 and 6 ahead. Segment 2's file is
	// a copy now (another inode): it is confirmed by its checksum.
	copyOver(t, filepath.Join(c.walDir, segName(2)))
	before := st.puts.Load()
	res, err = Archive(ctx, filepath.Join(c.walDir, segName(2)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Confirmed || !res.AlreadyStored {
		t.Fatalf("segment 2 not confirmed from its marker: %+v", res)
	}
	if exists(c.marker(segName(2))) {
		t.Fatal("marker not removed after use")
	}
	if len(res.Extras) != 2 || res.Extras[0].Name != segName(5) || res.Extras[1].Name != segName(6) {
		t.Fatalf("extras %+v", res.Extras)
	}
	if got := st.puts.Load() - before; got != 2 {
		t.Fatalf("%d uploads, want 2 (the extras only)", got)
	}
	c.done(t, segName(2))

	t.Run("object deleted behind a marker is uploaded again", func(t *testing.T) {
		if err := st.Delete(ctx, "wal/"+segName(3)+".lz4"); err != nil {
			t.Fatal(err)
		}
		res, err := Archive(ctx, filepath.Join(c.walDir, segName(3)), opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Confirmed || res.AlreadyStored {
			t.Fatalf("skipped a segment whose object is gone: %+v", res)
		}
		if !bytes.Equal(fetchPlain(t, st, segName(3)), segs[segName(3)]) {
			t.Fatal("re-uploaded object differs")
		}
		c.done(t, segName(3))
	})

	t.Run("object replaced behind a marker is refused", func(t *testing.T) {
		key := "wal/" + segName(4) + ".lz4"
		other := segmentBytes(t, segName(4), testSysID, 99)
		st.Delete(ctx, key)
		if _, err := Push(ctx, writeTemp(t, segName(4), other), opts); err != nil {
			t.Fatal(err)
		}
		_, err := Archive(ctx, filepath.Join(c.walDir, segName(4)), opts)
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("err %v, want ErrConflict", err)
		}
		if !bytes.Equal(fetchPlain(t, st, segName(4)), other) {
			t.Fatal("stored object was overwritten")
		}
	})

	t.Run("marker of another repository is not used", func(t *testing.T) {
		o := opts
		o.Repository = "mem://other"
		res, err := Archive(ctx, filepath.Join(c.walDir, segName(5)), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Confirmed {
			t.Fatal("confirmed with a marker written for another repository")
		}
		if !res.AlreadyStored {
			t.Fatalf("%+v", res)
		}
	})

	t.Run("stale markers are removed", func(t *testing.T) {
		c.done(t, segName(6)) // as if done by an older walrus run
		if !exists(c.marker(segName(6))) {
			t.Fatal("test setup: marker of 6 missing")
		}
		if _, err := Archive(ctx, filepath.Join(c.walDir, segName(5)), opts); err != nil {
			t.Fatal(err)
		}
		if exists(c.marker(segName(6))) {
			t.Fatal("marker of a segment no longer ready was kept")
		}
	})
}

// copyOver replaces the file at p by a copy of itself.
func copyOver(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
}

// TestPushStreamedWhenNoBuffer: without room for a single-pass buffer the
// file is checksummed, then streamed; the stored object is the same.
func TestPushStreamedWhenNoBuffer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	b := segmentBytes(t, segName(1), testSysID, 1)
	p := newPusher(testOptions(st))
	p.bufs = newChunkPool(0)
	res, err := p.push(ctx, writeTemp(t, segName(1), b), nil)
	if err != nil || res.AlreadyStored || res.RawSize != int64(len(b)) {
		t.Fatalf("%+v %v", res, err)
	}
	if !bytes.Equal(fetchPlain(t, st, segName(1)), b) {
		t.Fatal("stored content differs")
	}
	info, _ := st.Stat(ctx, res.Key)
	if info.Metadata[repo.MetaDigest] != res.Digest || !strings.HasPrefix(res.Digest, "xxh64-") {
		t.Fatalf("metadata %v, result %s", info.Metadata, res.Digest)
	}
	// And the buffered path records the same checksum.
	st2 := mem.New()
	res2, err := Push(ctx, writeTemp(t, segName(1), b), testOptions(st2))
	if err != nil || res2.Digest != res.Digest {
		t.Fatalf("%+v %v", res2, err)
	}
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMarkerKeyedByNameAndCluster: a marker never confirms another file
// name (X.partial is not X) or another cluster's file of the same name.
func TestMarkerKeyedByNameAndCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	opts := testOptions(st)
	c := newCluster(t)
	seg := segName(1)
	c.ready(t, segName(0x10), segmentBytes(t, segName(0x10), testSysID, 1))
	c.ready(t, seg, segmentBytes(t, seg, testSysID, 1))
	if res, err := Archive(ctx, filepath.Join(c.walDir, segName(0x10)), opts); err != nil || len(res.Extras) != 1 || res.Extras[0].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	if !exists(c.marker(seg)) {
		t.Fatal("no marker")
	}

	// X.partial with a marker for X: pushed for real.
	partial := c.ready(t, seg+".partial", segmentBytes(t, seg, testSysID, 5))
	res, err := Archive(ctx, partial, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Confirmed || res.AlreadyStored || res.Key != "wal/"+seg+".partial.lz4" {
		t.Fatalf(".partial confirmed through the segment's marker: %+v", res)
	}

	// Another cluster's file under the same name: the marker is not
	// found (keyed by system identifier) and the repository refuses it.
	os.WriteFile(filepath.Join(c.walDir, seg), segmentBytes(t, seg, testSysID+1, 1), 0o600)
	_, err = Archive(ctx, filepath.Join(c.walDir, seg), opts)
	if !errors.Is(err, repo.ErrForeignCluster) {
		t.Fatalf("foreign cluster's segment: %v", err)
	}
	if !exists(c.marker(seg)) {
		t.Fatal("the marker of this cluster's segment was consumed by another cluster's file")
	}

	// The same cluster's file with other content: the marker does not
	// match, is dropped, and the push is refused.
	os.WriteFile(filepath.Join(c.walDir, seg), segmentBytes(t, seg, testSysID, 2), 0o600)
	_, err = Archive(ctx, filepath.Join(c.walDir, seg), opts)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("changed content: %v", err)
	}
	if exists(c.marker(seg)) {
		t.Fatal("unconfirmed marker kept")
	}
}

// TestArchiveExtraFailureNeverFailsRequested: a broken ready segment is
// reported and left for PostgreSQL's own request.
func TestArchiveExtraFailureNeverFailsRequested(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	opts := testOptions(st)
	c := newCluster(t)
	c.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	c.ready(t, segName(2), segmentBytes(t, segName(2), testSysID, 2)[:4096]) // truncated
	c.ready(t, segName(3), segmentBytes(t, segName(3), testSysID, 3))
	res, err := Archive(ctx, filepath.Join(c.walDir, segName(1)), opts)
	if err != nil {
		t.Fatalf("requested push failed because of an extra: %v", err)
	}
	if len(res.Extras) != 2 || res.Extras[0].Err == nil || res.Extras[1].Err != nil {
		t.Fatalf("extras %+v", res.Extras)
	}
	if exists(c.marker(segName(2))) {
		t.Fatal("marker written for a failed push")
	}
	if _, err := Archive(ctx, filepath.Join(c.walDir, segName(2)), opts); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated segment on request: %v", err)
	}
}

// TestArchiveWithoutArchiveStatus: a file outside pg_wal is pushed alone.
func TestArchiveWithoutArchiveStatus(t *testing.T) {
	t.Parallel()
	st := mem.New()
	p := writeTemp(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	res, err := Archive(context.Background(), p, testOptions(st))
	if err != nil || len(res.Extras) != 0 || res.Key != "wal/"+segName(1)+".lz4" {
		t.Fatalf("%+v %v", res, err)
	}
}

// requestLog records the storage calls made on wal/ keys, in order.
type requestLog struct {
	storage.Store
	mu    sync.Mutex
	calls []string
}

func (r *requestLog) log(op, key string) {
	if strings.HasPrefix(key, "wal/") {
		r.mu.Lock()
		r.calls = append(r.calls, op)
		r.mu.Unlock()
	}
}

func (r *requestLog) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	r.log("stat", key)
	return r.Store.Stat(ctx, key)
}

func (r *requestLog) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	r.log("list", prefix)
	return r.Store.List(ctx, prefix, fn)
}

func (r *requestLog) Put(ctx context.Context, key string, rd io.Reader, opts storage.PutOptions) error {
	r.log("put", key)
	return r.Store.Put(ctx, key, rd, opts)
}

// TestPushNewSegmentRequests: on a remote store, pushing a new segment
// costs one listing, the upload and the Stat that confirms it (each
// request is a round trip to a distant S3); an existing object is still
// found and compared, and nothing is uploaded then.
func TestPushNewSegmentRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &requestLog{Store: mem.New()}
	opts := testOptions(st)
	data := segmentBytes(t, segName(1), testSysID, 1)
	p := writeTemp(t, segName(1), data)
	if _, err := Push(ctx, p, opts); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.calls, " "); got != "list put stat" {
		t.Fatalf("requests for a new segment: %q, want \"list put stat\"", got)
	}
	st.calls = nil
	res, err := Push(ctx, p, opts)
	if err != nil || !res.AlreadyStored {
		t.Fatalf("second push: %+v %v", res, err)
	}
	if slices.Contains(st.calls, "put") {
		t.Fatalf("an archived segment was uploaded again: %v", st.calls)
	}
	if !bytes.Equal(fetchPlain(t, st, segName(1)), data) {
		t.Fatal("stored wrong")
	}
}

// sizedPuts records whether each Put of a WAL object came with its size
// known: a single-pass push stores a buffer, a streamed one does not.
type sizedPuts struct {
	storage.Store
	mu            sync.Mutex
	sized, stream int
}

func (s *sizedPuts) Put(ctx context.Context, key string, rd io.Reader, opts storage.PutOptions) error {
	s.mu.Lock()
	switch {
	case !strings.HasPrefix(key, "wal/"):
	case opts.Size > 0:
		s.sized++
	default:
		s.stream++
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, key, rd, opts)
}

// TestPushBuffersWithinBudget: single-pass buffers take memory as they
// fill, not for the worst case, so four compressible segments pushed at
// once all go the single-pass way in a budget that could not hold one
// worst case each; a segment that does not compress and outgrows the
// budget midway is streamed instead, stored whole, and its chunks are
// given back.
func TestPushBuffersWithinBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &sizedPuts{Store: mem.New()}
	p := newPusher(testOptions(st))
	p.bufs = newChunkPool(4 * bufChunk)
	var g sync.WaitGroup
	segs := map[string][]byte{}
	paths := map[string]string{}
	for i := 1; i <= 4; i++ {
		segs[segName(i)] = segmentBytes(t, segName(i), testSysID, byte(i))
		paths[segName(i)] = writeTemp(t, segName(i), segs[segName(i)])
	}
	errs := make(chan error, 4)
	for _, path := range paths {
		g.Go(func() {
			_, err := p.push(ctx, path, nil)
			errs <- err
		})
	}
	g.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st.sized != 4 || st.stream != 0 {
		t.Fatalf("%d single-pass and %d streamed pushes, want 4 and 0", st.sized, st.stream)
	}
	for name, b := range segs {
		if !bytes.Equal(fetchPlain(t, st, name), b) {
			t.Fatalf("%s stored wrong", name)
		}
	}

	// Incompressible content outgrows a budget of one chunk while it is
	// encoded.
	noise := segmentBytes(t, segName(9), testSysID, 9)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(noise[64:])
	p.bufs = newChunkPool(bufChunk)
	res, err := p.push(ctx, writeTemp(t, segName(9), noise), nil)
	if err != nil || res.RawSize != int64(len(noise)) {
		t.Fatalf("%+v %v", res, err)
	}
	if st.stream != 1 {
		t.Fatalf("the segment that outgrew the budget was not streamed (%d streamed)", st.stream)
	}
	if !bytes.Equal(fetchPlain(t, st, segName(9)), noise) {
		t.Fatal("streamed segment stored wrong")
	}
	info, _ := st.Stat(ctx, res.Key)
	if info.Metadata[repo.MetaDigest] != res.Digest || !strings.HasPrefix(res.Digest, "xxh64-") {
		t.Fatalf("metadata %v, result %s", info.Metadata, res.Digest)
	}
	if len(p.bufs.idle) != p.bufs.held {
		t.Fatalf("%d chunks held, %d given back", p.bufs.held, len(p.bufs.idle))
	}
}

// TestChunkBuffer: what is written reads back at any offset, chunks are
// reused and never exceed the pool's limit, and a buffer that finds no
// chunk says so.
func TestChunkBuffer(t *testing.T) {
	t.Parallel()
	pool := newChunkPool(3 * bufChunk)
	data := make([]byte, 2*bufChunk+12345)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	w := &chunkBuffer{pool: pool}
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 300001)
		if n, err := w.Write(rest[:k]); n != k || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
		rest = rest[k:]
	}
	if w.Len() != int64(len(data)) || pool.held != 3 {
		t.Fatalf("len %d, %d chunks", w.Len(), pool.held)
	}
	got, err := io.ReadAll(io.NewSectionReader(w, 0, w.Len()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	part := make([]byte, 100)
	if n, err := w.ReadAt(part, bufChunk-50); n != 100 || err != nil || !bytes.Equal(part, data[bufChunk-50:bufChunk+50]) {
		t.Fatalf("across a chunk boundary: %d %v", n, err)
	}
	if n, err := w.ReadAt(part, w.Len()-10); n != 10 || err != io.EOF {
		t.Fatalf("at the end: %d %v", n, err)
	}
	// The pool is spent: a second buffer cannot start.
	w2 := &chunkBuffer{pool: pool}
	if n, err := w2.Write([]byte("x")); n != 0 || !errors.Is(err, errNoBuffer) {
		t.Fatalf("write past the limit: %d %v", n, err)
	}
	w.release()
	if n, err := w2.Write(data); n != len(data) || err != nil || pool.held != 3 {
		t.Fatalf("chunks not reused: %d %v, %d chunks", n, err, pool.held)
	}
}
