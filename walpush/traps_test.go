package walpush

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
)

// trapsShortStore is a store that lies (TRAPS.md 3): its Put of a WAL
// object reads the whole body, as an upload would, but stores only
// keep(n) of its n bytes, with the metadata given, and reports success.
// It lies on the first `lies` such Puts, then behaves.
type trapsShortStore struct {
	storage.Store
	keep func(n int) int
	lies atomic.Int64
}

func (s *trapsShortStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if !strings.HasPrefix(key, "wal/") || s.lies.Add(-1) < 0 {
		return s.Store.Put(ctx, key, r, opts)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	short := b[:s.keep(len(b))]
	opts.Size = int64(len(short))
	if err := s.Store.Put(ctx, key, bytes.NewReader(short), opts); err != nil {
		return err
	}
	return nil
}

// trapsTruncations are the short objects a lying store keeps.
var trapsTruncations = []struct {
	name string
	keep func(n int) int
}{
	{"half", func(n int) int { return n / 2 }},
	{"empty", func(int) int { return 0 }},
	{"one byte short", func(n int) int { return n - 1 }},
}

// trapsPushModes are wal-push's two upload paths: one pass through a
// memory buffer (walpush.store), and checksum then stream when no buffer
// is available (repo.Encoder.Put).
var trapsPushModes = []struct {
	name     string
	buffered bool
}{
	{"buffered", true},
	{"streamed", false},
}

func trapsPusher(opts Options, buffered bool) *pusher {
	p := newPusher(opts)
	if !buffered {
		p.bufs = newChunkPool(0)
	}
	return p
}

// TestPushRefusesShortStoredObject: when the store reports success for
// an upload but holds a short or empty object, wal-push fails (so
// archive_command exits nonzero and PostgreSQL retries), says that the
// stored size is wrong, and returns no result that could pass for a
// durable segment. Both upload paths are covered.
func TestPushRefusesShortStoredObject(t *testing.T) {
	t.Parallel()
	seg := segmentBytes(t, segName(1), testSysID, 1)
	for _, mode := range trapsPushModes {
		for _, tr := range trapsTruncations {
			t.Run(mode.name+"/"+tr.name, func(t *testing.T) {
				t.Parallel()
				st := &trapsShortStore{Store: mem.New(), keep: tr.keep}
				st.lies.Store(1)
				p := trapsPusher(testOptions(st), mode.buffered)
				res, err := p.push(context.Background(), writeTemp(t, segName(1), seg), nil)
				if err == nil {
					t.Fatalf("push reported success over a short stored object: %+v", res)
				}
				if st.lies.Load() >= 1 {
					t.Fatal("test setup: the lying Put was never reached")
				}
				msg := err.Error()
				for _, want := range []string{segName(1), "stored size", "truncated"} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not say %q", msg, want)
					}
				}
				if res.Key != "" || res.AlreadyStored || res.StoredSize != 0 || res.Digest != "" {
					t.Errorf("a failed push returned a result that looks durable: %+v", res)
				}
			})
		}
	}
}

// TestArchiveShortObjectNoMarker: a segment pushed ahead by Archive whose
// object the store truncated is reported as a failed extra and gets no
// marker, so that when PostgreSQL asks for it the later call pushes it
// instead of confirming it; the requested segment, stored short too,
// fails the call, and no archive_status file is touched.
func TestArchiveShortObjectNoMarker(t *testing.T) {
	t.Parallel()
	st := &trapsShortStore{Store: mem.New(), keep: func(n int) int { return n / 2 }}
	st.lies.Store(2)
	opts := testOptions(st)
	opts.Concurrency = 2
	c := newCluster(t)
	for i := 1; i <= 2; i++ {
		c.ready(t, segName(i), segmentBytes(t, segName(i), testSysID, byte(i)))
	}
	res, err := Archive(context.Background(), filepath.Join(c.walDir, segName(1)), opts)
	if err == nil || !strings.Contains(err.Error(), "stored size") {
		t.Fatalf("requested push over a short object: err %v, want a stored size error", err)
	}
	if len(res.Extras) != 1 || res.Extras[0].Name != segName(2) {
		t.Fatalf("extras %+v, want one push ahead of %s", res.Extras, segName(2))
	}
	if x := res.Extras[0]; x.Err == nil || !strings.Contains(x.Err.Error(), "stored size") {
		t.Fatalf("extra push over a short object: err %v, want a stored size error", x.Err)
	}
	if exists(c.marker(segName(2))) {
		t.Fatal("a marker was written for a segment whose stored object is short")
	}
	for i := 1; i <= 2; i++ {
		status := filepath.Join(c.walDir, "archive_status", segName(i))
		if !exists(status+".ready") || exists(status+".done") {
			t.Fatalf("archive_status of %s was changed", segName(i))
		}
	}
}

// TestPushRetryAfterShortObject walks what happens after a truncated
// upload: wal-push failed and said PostgreSQL will retry; PostgreSQL runs
// it again on the same file, the store now behaving. The retry must not
// report success unless the repository then holds the whole segment: the
// short object left by the first attempt records the right digest in its
// metadata, so a comparison of digests alone takes it for the segment.
func TestPushRetryAfterShortObject(t *testing.T) {
	t.Parallel()
	seg := segmentBytes(t, segName(1), testSysID, 1)
	for _, mode := range trapsPushModes {
		for _, tr := range trapsTruncations {
			t.Run(mode.name+"/"+tr.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				st := &trapsShortStore{Store: mem.New(), keep: tr.keep}
				st.lies.Store(1)
				opts := testOptions(st)
				path := writeTemp(t, segName(1), seg)
				if _, err := trapsPusher(opts, mode.buffered).push(ctx, path, nil); err == nil || !strings.Contains(err.Error(), "the short object was removed") {
					t.Fatalf("first push over a short object: %v, want an error saying the short object was removed", err)
				}
				res, err := trapsPusher(opts, mode.buffered).push(ctx, path, nil)
				if err != nil {
					t.Fatalf("PostgreSQL's retry, the store honest again: %v", err)
				}
				got, ferr := trapsFetch(ctx, st, segName(1))
				if ferr != nil || !bytes.Equal(got, seg) {
					info, _ := st.Stat(ctx, "wal/"+segName(1)+".lz4")
					t.Fatalf("the retry reported the segment archived (%+v) but the repository holds a %d-byte object that reads back as %d of %d bytes (err %v)",
						res, info.Size, len(got), len(seg), ferr)
				}
			})
		}
	}
}

// trapsFetch reads back the plaintext stored for name, with its error.
func trapsFetch(ctx context.Context, st storage.Store, name string) ([]byte, error) {
	info, err := repo.FindObject(ctx, st, repo.WALBase(name), ".lz4")
	if err != nil {
		return nil, err
	}
	rc, err := (&repo.Decoder{}).Open(ctx, st, info.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestPushOverRetryResendsWholeBody: through the retry layer, an upload
// that breaks midway is retried with the whole object, on both upload
// paths: the stored segment reads back whole.
func TestPushOverRetryResendsWholeBody(t *testing.T) {
	t.Parallel()
	seg := segmentBytes(t, segName(1), testSysID, 1)
	for _, mode := range trapsPushModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			inner := mem.New()
			fst := faulty.New(inner, faulty.Script{Rules: []faulty.Rule{
				{Ops: faulty.Put, Prefix: "wal/", Kind: faulty.BreakBody, N: 1000, Calls: []int{1}},
			}})
			st := retry.New(fst, retry.Options{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
			res, err := trapsPusher(testOptions(st), mode.buffered).push(ctx, writeTemp(t, segName(1), seg), nil)
			if err != nil {
				t.Fatal(err)
			}
			if fst.FaultsOf(faulty.BreakBody) != 1 {
				t.Fatalf("test setup: %d broken uploads, want 1", fst.FaultsOf(faulty.BreakBody))
			}
			got, err := trapsFetch(ctx, inner, segName(1))
			if err != nil || !bytes.Equal(got, seg) {
				t.Fatalf("stored object reads back as %d of %d bytes (err %v)", len(got), len(seg), err)
			}
			info, err := inner.Stat(ctx, res.Key)
			if err != nil || info.Size != res.StoredSize {
				t.Fatalf("stored %d bytes, result says %d (err %v)", info.Size, res.StoredSize, err)
			}
		})
	}
}

// trapsControl returns a valid global/pg_control of system sysid.
func trapsControl(sysid uint64) []byte {
	b := make([]byte, pg.ControlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], sysid)
	le.PutUint32(b[8:], pg.PGControlVersion)
	le.PutUint32(b[12:], 202209061)
	le.PutUint32(b[16:], uint32(pg.DBInProduction))
	le.PutUint32(b[48:], 1)
	le.PutUint64(b[208:], math.Float64bits(1234567.0))
	le.PutUint32(b[216:], 8192)
	le.PutUint32(b[220:], 131072)
	le.PutUint32(b[224:], 8192)
	le.PutUint32(b[228:], 16<<20)
	le.PutUint32(b[288:], crc32.Checksum(b[:288], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// trapsPGData is a data directory with global/pg_control of testSysID
// and an empty pg_wal/archive_status.
func trapsPGData(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"global", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "global", "pg_control"), trapsControl(testSysID), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// trapsWriteHistory writes content as pg_wal/name of pgdata, replacing
// any file there by a new one (another inode), as PostgreSQL would after
// a crash and a retry.
func trapsWriteHistory(t *testing.T, pgdata, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(pgdata, "pg_wal", name)
	if err := os.WriteFile(p+".tmp", content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	return p
}

const trapsHistoryName = "00000002.history"

var trapsHistory = []byte("1\t0/3000000\tno recovery target specified\n")

// TestPushHistoryTwiceIsIdempotent (TRAPS.md 2): archive_command on a
// timeline history file that is already archived with the same content
// succeeds without uploading it again, whether or not the first call's
// process is still around, and wal-push finds the cluster of a history
// file from pg_control (the data directory given, or the one above
// pg_wal).
func TestPushHistoryTwiceIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, withPGData := range []bool{true, false} {
		t.Run(fmt.Sprintf("pgdata=%v", withPGData), func(t *testing.T) {
			t.Parallel()
			st := &countingStore{Store: mem.New()}
			opts := testOptions(st)
			pgdata := trapsPGData(t)
			if withPGData {
				opts.PGData = pgdata
			}
			path := trapsWriteHistory(t, pgdata, trapsHistoryName, trapsHistory)
			res, err := Archive(ctx, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.AlreadyStored || res.SystemIdentifier != testSysID || res.Key != "wal/"+trapsHistoryName+".lz4" {
				t.Fatalf("first push: %+v", res.Result)
			}
			if st.puts.Load() != 1 {
				t.Fatalf("first push: %d uploads, want 1", st.puts.Load())
			}
			path = trapsWriteHistory(t, pgdata, trapsHistoryName, bytes.Clone(trapsHistory))
			res, err = Archive(ctx, path, opts)
			if err != nil {
				t.Fatalf("second push of the same history file: %v", err)
			}
			if !res.AlreadyStored {
				t.Fatalf("second push did not report the file already stored: %+v", res.Result)
			}
			if st.puts.Load() != 1 {
				t.Fatalf("second push uploaded again: %d uploads, want 1", st.puts.Load())
			}
			got, err := trapsFetch(ctx, st, trapsHistoryName)
			if err != nil || !bytes.Equal(got, trapsHistory) {
				t.Fatalf("stored history %q (err %v), want %q", got, err, trapsHistory)
			}
		})
	}
}

// TestPushHistoryConflictLeavesStored (TRAPS.md 2): a history file whose
// content differs from the one archived under its name, whether by a byte
// at the same length or by its length, is refused with ErrConflict, with
// an error that says the stored object was left alone, and the archived
// history is not overwritten.
func TestPushHistoryConflictLeavesStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sameLen := bytes.Clone(trapsHistory)
	sameLen[len("1\t0/")] = '4' // 1	0/4000000	...
	for _, other := range [][]byte{
		sameLen,
		append(bytes.Clone(trapsHistory), "2\t0/5000000\tbefore 2024-01-01\n"...),
	} {
		t.Run(fmt.Sprintf("%d bytes", len(other)), func(t *testing.T) {
			t.Parallel()
			st := &countingStore{Store: mem.New()}
			opts := testOptions(st)
			pgdata := trapsPGData(t)
			opts.PGData = pgdata
			if _, err := Archive(ctx, trapsWriteHistory(t, pgdata, trapsHistoryName, trapsHistory), opts); err != nil {
				t.Fatal(err)
			}
			key := "wal/" + trapsHistoryName + ".lz4"
			before, err := st.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Archive(ctx, trapsWriteHistory(t, pgdata, trapsHistoryName, other), opts)
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("push of a different history under the same name: err %v, want ErrConflict (result %+v)", err, res.Result)
			}
			if !strings.Contains(err.Error(), "left untouched") || !strings.Contains(err.Error(), trapsHistoryName) {
				t.Errorf("error %q does not say which file and that the stored one was kept", err)
			}
			if res.AlreadyStored || res.Key != "" {
				t.Errorf("a refused push returned %+v", res.Result)
			}
			if st.puts.Load() != 1 {
				t.Fatalf("%d uploads, want 1: the conflicting file was uploaded", st.puts.Load())
			}
			after, err := st.Stat(ctx, key)
			if err != nil || after.Size != before.Size || after.Metadata[repo.MetaDigest] != before.Metadata[repo.MetaDigest] {
				t.Fatalf("stored object changed: before %+v, after %+v (err %v)", before, after, err)
			}
			got, err := trapsFetch(ctx, st, trapsHistoryName)
			if err != nil || !bytes.Equal(got, trapsHistory) {
				t.Fatalf("stored history now %q (err %v), want the first one %q", got, err, trapsHistory)
			}
		})
	}
}

// TestPushReplacesTruncatedCopy: an object that records this very file's
// digest but is shorter than the stored size it records (left by an
// upload that died before it could check and remove it) does not count as
// archived: wal-push replaces it, and the segment reads back whole. The
// same short object recording another file's digest is a conflict, left
// untouched.
func TestPushReplacesTruncatedCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seg := segmentBytes(t, segName(1), testSysID, 1)
	h := repo.NewDigester()
	h.Write(seg)
	key := "wal/" + segName(1) + ".lz4"
	plant := func(st storage.Store, digest string) {
		t.Helper()
		err := st.Put(ctx, key, bytes.NewReader([]byte("cut short")), storage.PutOptions{Metadata: map[string]string{
			repo.MetaDigest: digest, repo.MetaSize: strconv.Itoa(len(seg)), repo.MetaStoredSize: "6181"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range trapsPushModes {
		st := mem.New()
		plant(st, h.Digest())
		path := writeTemp(t, segName(1), seg)
		res, err := trapsPusher(testOptions(st), mode.buffered).push(ctx, path, nil)
		if err != nil || res.AlreadyStored {
			t.Fatalf("%s: push over a truncated copy: %+v %v", mode.name, res, err)
		}
		if got, err := trapsFetch(ctx, st, segName(1)); err != nil || !bytes.Equal(got, seg) {
			t.Fatalf("%s: the segment reads back %d of %d bytes: %v", mode.name, len(got), len(seg), err)
		}

		st = mem.New()
		plant(st, "xxh64-0123456789abcdef")
		if _, err := trapsPusher(testOptions(st), mode.buffered).push(ctx, path, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("%s: another file's truncated copy: %v, want ErrConflict", mode.name, err)
		}
		if info, err := st.Stat(ctx, key); err != nil || info.Size != int64(len("cut short")) {
			t.Fatalf("%s: the conflicting object was touched: %+v %v", mode.name, info, err)
		}
	}
}
