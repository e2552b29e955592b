package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/storage"
)

// LargeSize is the size of the object that the Large subtest stores: large
// enough to cross several multipart boundaries when an S3 store is
// configured with the minimum 5 MiB part size.
const LargeSize = 40 << 20

// HostileKeys are keys that every Store must refuse.
var HostileKeys = []string{
	"",
	"../x",
	"a/../b",
	"a/./b",
	"..",
	".",
	"/abs",
	"a//b",
	"a/",
	".hidden",
	"a/.hidden",
	"a\\b",
	"a\x00b",
	"a\nb",
	strings.Repeat("k", 1025),
}

// Run runs the conformance suite against the stores that newStore returns.
// newStore is called once per subtest, with the subtest's t, and must
// return an empty store.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"Basic", testBasic},
		{"Overwrite", testOverwrite},
		{"IfNotExists", testIfNotExists},
		{"IfNotExistsRace", testIfNotExistsRace},
		{"Metadata", testMetadata},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"DeclaredSize", testDeclaredSize},
		{"MemoryBody", testMemoryBody},
		{"List", testList},
		{"ListCallbackError", testListCallbackError},
		{"ManyKeys", testManyKeys},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"FailingBody", testFailingBody},
		{"Cancelled", testCancelled},
		{"CancelledMidway", testCancelledMidway},
		{"HostileKeys", testHostileKeys},
		{"Range", testRange},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			if st == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, st)
		})
	}
}

// Helpers.

func put(t *testing.T, st storage.Store, key string, data []byte, opts storage.PutOptions) {
	t.Helper()
	if err := st.Put(t.Context(), key, bytes.NewReader(data), opts); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Get(%q): close: %v", key, err)
	}
	return b
}

func stat(t *testing.T, st storage.Store, key string) storage.ObjectInfo {
	t.Helper()
	info, err := st.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Key != key {
		t.Errorf("Stat(%q).Key = %q", key, info.Key)
	}
	return info
}

func wantContent(t *testing.T, st storage.Store, key string, want []byte) {
	t.Helper()
	got := get(t, st, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %s, want %s", key, describe(got), describe(want))
	}
	if info := stat(t, st, key); info.Size != int64(len(want)) {
		t.Fatalf("Stat(%q).Size = %d, want %d", key, info.Size, len(want))
	}
}

func wantAbsent(t *testing.T, st storage.Store, key string) {
	t.Helper()
	if _, err := st.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
	rc, err := st.Get(t.Context(), key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %v, want ErrNotFound", key, err)
	}
	if keys := listKeys(t, st, key); slices.Contains(keys, key) {
		t.Fatalf("List(%q) shows %q, which should be absent", key, key)
	}
}

func wantMetadata(t *testing.T, st storage.Store, key string, want map[string]string) {
	t.Helper()
	got := stat(t, st, key).Metadata
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Stat(%q).Metadata = %v, want %v", key, got, want)
	}
}

func list(t *testing.T, st storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var infos []storage.ObjectInfo
	err := st.List(t.Context(), prefix, func(info storage.ObjectInfo) error {
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return infos
}

func listKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	for _, info := range list(t, st, prefix) {
		keys = append(keys, info.Key)
	}
	return keys
}

func describe(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes (sha256 %x)", len(b), sha256.Sum256(b))
}

// random returns a deterministic reader of n pseudo-random bytes.
func random(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func randomBytes(seed uint64, n int) []byte {
	b, err := io.ReadAll(random(seed, int64(n)))
	if err != nil {
		panic(err)
	}
	return b
}

// failingReader delivers n bytes of data, then fails with err.
type failingReader struct {
	r   io.Reader
	n   int64
	err error
}

// Read delivers data until n bytes are out, then fails.
func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

var errBody = errors.New("storagetest: body failed on purpose")

// Subtests.

func testBasic(t *testing.T, st storage.Store) {
	data := []byte("hello, walrus\n")
	put(t, st, "a/b/c.txt", data, storage.PutOptions{Size: int64(len(data))})
	wantContent(t, st, "a/b/c.txt", data)
	info := stat(t, st, "a/b/c.txt")
	if info.ModTime.IsZero() {
		t.Errorf("Stat.ModTime is zero")
	}
	infos := list(t, st, "")
	if len(infos) != 1 || infos[0].Key != "a/b/c.txt" || infos[0].Size != int64(len(data)) {
		t.Fatalf("List(\"\") = %+v, want one object a/b/c.txt of %d bytes", infos, len(data))
	}
	if err := st.Delete(t.Context(), "a/b/c.txt"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, st, "a/b/c.txt")
	if keys := listKeys(t, st, ""); len(keys) != 0 {
		t.Fatalf("List after Delete = %q, want nothing", keys)
	}
	// The key can be used again after a delete.
	put(t, st, "a/b/c.txt", []byte("again"), storage.PutOptions{Size: -1})
	wantContent(t, st, "a/b/c.txt", []byte("again"))
}

func testOverwrite(t *testing.T, st storage.Store) {
	put(t, st, "k", []byte("first version"), storage.PutOptions{Size: -1})
	put(t, st, "k", []byte("second, longer version"), storage.PutOptions{Size: -1})
	wantContent(t, st, "k", []byte("second, longer version"))
	put(t, st, "k", []byte("3"), storage.PutOptions{Size: 1})
	wantContent(t, st, "k", []byte("3"))
	if keys := listKeys(t, st, ""); !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("List = %q, want [k]", keys)
	}
}

func testIfNotExists(t *testing.T, st storage.Store) {
	md := map[string]string{"sha256": "old"}
	err := st.Put(t.Context(), "wal/seg", strings.NewReader("old content"), storage.PutOptions{IfNotExists: true, Metadata: md, Size: -1})
	if err != nil {
		t.Fatalf("Put IfNotExists on an absent key: %v", err)
	}
	for _, size := range []int64{-1, 11} {
		err = st.Put(t.Context(), "wal/seg", strings.NewReader("new content"), storage.PutOptions{
			IfNotExists: true, Metadata: map[string]string{"sha256": "new"}, Size: size,
		})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("Put IfNotExists on an existing key = %v, want ErrExists", err)
		}
		if !strings.Contains(err.Error(), "wal/seg") {
			t.Errorf("error %q does not name the key", err)
		}
	}
	wantContent(t, st, "wal/seg", []byte("old content"))
	wantMetadata(t, st, "wal/seg", md)

	// A large create-only put over an existing key (multipart on S3).
	err = st.Put(t.Context(), "wal/seg", random(1, 12<<20), storage.PutOptions{IfNotExists: true, Size: -1})
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("large Put IfNotExists on an existing key = %v, want ErrExists", err)
	}
	wantContent(t, st, "wal/seg", []byte("old content"))
	wantMetadata(t, st, "wal/seg", md)
}

func testIfNotExistsRace(t *testing.T, st storage.Store) {
	const n = 8
	var winners, winner atomic.Int32
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			data := fmt.Sprintf("content of writer %d", i)
			err := st.Put(t.Context(), "race", strings.NewReader(data), storage.PutOptions{
				IfNotExists: true, Metadata: map[string]string{"writer": fmt.Sprint(i)}, Size: int64(len(data)),
			})
			switch {
			case err == nil:
				winners.Add(1)
				winner.Store(int32(i))
			case errors.Is(err, storage.ErrExists):
			default:
				return fmt.Errorf("writer %d: %w", i, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if w := winners.Load(); w != 1 {
		t.Fatalf("%d of %d concurrent create-only puts succeeded, want exactly 1", w, n)
	}
	w := winner.Load()
	wantContent(t, st, "race", []byte(fmt.Sprintf("content of writer %d", w)))
	wantMetadata(t, st, "race", map[string]string{"writer": fmt.Sprint(w)})
}

func testMetadata(t *testing.T, st storage.Store) {
	md := map[string]string{
		"sha256":   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"raw-size": "16777216",
		"note":     "printable ASCII: !\"#$%&'()*+,-./:;<=>?@[]^_`{|}~ ok",
		"empty":    "",
	}
	data := []byte("payload with metadata")
	put(t, st, "m/obj", data, storage.PutOptions{Metadata: md, Size: -1})
	wantContent(t, st, "m/obj", data)
	wantMetadata(t, st, "m/obj", md)
	for _, info := range list(t, st, "m/") {
		if info.Size != int64(len(data)) {
			t.Fatalf("List size with metadata = %d, want %d", info.Size, len(data))
		}
		if info.Metadata != nil && !maps.Equal(info.Metadata, md) {
			t.Fatalf("List metadata = %v, want nil or %v", info.Metadata, md)
		}
	}

	// Overwriting replaces the metadata along with the data.
	md2 := map[string]string{"sha256": "other"}
	put(t, st, "m/obj", []byte("v2"), storage.PutOptions{Metadata: md2, Size: -1})
	wantContent(t, st, "m/obj", []byte("v2"))
	wantMetadata(t, st, "m/obj", md2)
	put(t, st, "m/obj", []byte("v3"), storage.PutOptions{Size: -1})
	wantContent(t, st, "m/obj", []byte("v3"))
	wantMetadata(t, st, "m/obj", nil)

	// Callers' maps are not retained.
	in := map[string]string{"k": "v"}
	put(t, st, "m/copy", []byte("x"), storage.PutOptions{Metadata: in, Size: -1})
	in["k"] = "changed"
	out := stat(t, st, "m/copy").Metadata
	wantMetadata(t, st, "m/copy", map[string]string{"k": "v"})
	if out != nil {
		out["k"] = "changed too"
	}
	wantMetadata(t, st, "m/copy", map[string]string{"k": "v"})

	// Invalid metadata is refused and stores nothing.
	for _, bad := range []map[string]string{
		{"Upper": "v"},
		{"under_score": "v"},
		{"": "v"},
		{"k": "new\nline"},
		{"k": "caf\u00e9"},
	} {
		if err := st.Put(t.Context(), "m/bad", strings.NewReader("x"), storage.PutOptions{Metadata: bad, Size: -1}); err == nil {
			t.Fatalf("Put with metadata %q succeeded, want an error", bad)
		}
	}
	wantAbsent(t, st, "m/bad")
}

func testEmpty(t *testing.T, st storage.Store) {
	for i, size := range []int64{0, -1} {
		key := fmt.Sprintf("empty/%d", i)
		put(t, st, key, nil, storage.PutOptions{Size: size})
		wantContent(t, st, key, nil)
	}
	put(t, st, "empty/md", nil, storage.PutOptions{Size: 0, Metadata: map[string]string{"k": "v"}})
	wantContent(t, st, "empty/md", nil)
	wantMetadata(t, st, "empty/md", map[string]string{"k": "v"})
	for _, info := range list(t, st, "empty/") {
		if info.Size != 0 {
			t.Fatalf("List: %s has size %d, want 0", info.Key, info.Size)
		}
	}
	// Size 0 means "unknown" unless the body is empty, so a non-empty body
	// with Size 0 is stored whole.
	put(t, st, "empty/not", []byte("not empty"), storage.PutOptions{Size: 0})
	wantContent(t, st, "empty/not", []byte("not empty"))
}

func testLarge(t *testing.T, st storage.Store) {
	want := sha256.New()
	md := map[string]string{"kind": "large"}
	err := st.Put(t.Context(), "big/object", io.TeeReader(random(7, LargeSize), want), storage.PutOptions{Size: -1, Metadata: md})
	if err != nil {
		t.Fatalf("Put %d bytes: %v", LargeSize, err)
	}
	info := stat(t, st, "big/object")
	if info.Size != LargeSize {
		t.Fatalf("Stat.Size = %d, want %d", info.Size, LargeSize)
	}
	wantMetadata(t, st, "big/object", md)
	rc, err := st.Get(t.Context(), "big/object")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got := sha256.New()
	n, err := io.Copy(got, rc)
	if err != nil {
		t.Fatalf("Get: read: %v", err)
	}
	if n != LargeSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("Get returned %d bytes with sha256 %x, want %d bytes with %x", n, got.Sum(nil), LargeSize, want.Sum(nil))
	}
}

func testDeclaredSize(t *testing.T, st storage.Store) {
	data := []byte("0123456789")
	put(t, st, "sized/exact", data, storage.PutOptions{Size: 10})
	wantContent(t, st, "sized/exact", data)
	for _, size := range []int64{9, 11, 1000} {
		key := fmt.Sprintf("sized/%d", size)
		err := st.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{Size: size})
		if err == nil {
			t.Fatalf("Put of 10 bytes declared as %d succeeded, want an error", size)
		}
		wantAbsent(t, st, key)
	}
	// A mismatch over an existing object leaves it alone.
	if err := st.Put(t.Context(), "sized/exact", strings.NewReader("short"), storage.PutOptions{Size: 10}); err == nil {
		t.Fatalf("Put of 5 bytes declared as 10 succeeded, want an error")
	}
	wantContent(t, st, "sized/exact", data)
}

// testMemoryBody: a body held in memory (storage.MemoryBody) is stored
// from its current position to its end, whatever path the backend takes
// for it, and a declared size is still enforced.
func testMemoryBody(t *testing.T, st storage.Store) {
	data := randomBytes(7, 100<<10)
	r := bytes.NewReader(data)
	if _, err := r.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "memory/rest", r, storage.PutOptions{Size: int64(len(data) - 1000)}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, "memory/rest", data[1000:])
	sec := io.NewSectionReader(bytes.NewReader(data), 5000, 20000)
	if err := st.Put(t.Context(), "memory/section", sec, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, "memory/section", data[5000:25000])
	err := st.Put(t.Context(), "memory/wrong", io.NewSectionReader(bytes.NewReader(data), 0, 10), storage.PutOptions{Size: 11})
	if err == nil {
		t.Fatal("Put of 10 bytes in memory declared as 11 succeeded, want an error")
	}
	wantAbsent(t, st, "memory/wrong")
}

func testList(t *testing.T, st storage.Store) {
	// Keys chosen so that a directory walk in name order is not key order:
	// '-' and '.' sort before '/'.
	keys := []string{
		"backups/b1/manifest.json",
		"backups/b1/parts/0001.tar",
		"backups/b1/parts/0002.tar",
		"backups/b1-x",
		"backups/b1.y",
		"backups/b10/manifest.json",
		"backups/b2/manifest.json",
		"wal/000000010000000000000001.lz4",
		"wal/000000010000000000000002.lz4",
		"wal/00000002.history.lz4",
		"walrus.json",
		"z",
	}
	sizes := map[string]int64{}
	for i, k := range slices.Backward(keys) {
		data := bytes.Repeat([]byte{'x'}, i+1)
		sizes[k] = int64(len(data))
		put(t, st, k, data, storage.PutOptions{Size: -1})
	}
	filter := func(prefix string) []string {
		var out []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, prefix := range []string{
		"", "backups/", "backups/b1", "backups/b1/", "backups/b1/parts/", "backups/b1/parts/0002",
		"backups/b1/parts/0002.tar", "wal/", "wal/0000000100", "wal/00000002.", "walrus", "w", "z",
		"nothing", "nothing/", "backups/none/", "wal/1", "backups/b1/manifest.json/",
	} {
		infos := list(t, st, prefix)
		var got []string
		for _, info := range infos {
			got = append(got, info.Key)
			if info.Size != sizes[info.Key] {
				t.Errorf("List(%q): %s has size %d, want %d", prefix, info.Key, info.Size, sizes[info.Key])
			}
		}
		if want := filter(prefix); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	for _, bad := range []string{"/", "/wal", "wal//", "../", ".x", "wal/.x"} {
		if err := st.List(t.Context(), bad, func(storage.ObjectInfo) error { return nil }); err == nil {
			t.Errorf("List(%q) succeeded, want an error", bad)
		}
	}
}

func testListCallbackError(t *testing.T, st storage.Store) {
	for _, k := range []string{"l/a", "l/b", "l/c"} {
		put(t, st, k, []byte(k), storage.PutOptions{Size: -1})
	}
	stop := errors.New("stop here")
	var seen []string
	err := st.List(t.Context(), "l/", func(info storage.ObjectInfo) error {
		seen = append(seen, info.Key)
		if info.Key == "l/b" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want the callback's error", err)
	}
	if !slices.Equal(seen, []string{"l/a", "l/b"}) {
		t.Fatalf("List called fn for %q, want [l/a l/b]", seen)
	}
	// The callback may use the store.
	err = st.List(t.Context(), "l/", func(info storage.ObjectInfo) error {
		if _, err := st.Stat(t.Context(), info.Key); err != nil {
			return err
		}
		return st.Delete(t.Context(), info.Key)
	})
	if err != nil {
		t.Fatalf("List with a callback that deletes: %v", err)
	}
	if keys := listKeys(t, st, "l/"); len(keys) != 0 {
		t.Fatalf("List after deleting from the callback = %q", keys)
	}
}

func testManyKeys(t *testing.T, st storage.Store) {
	// More than one S3 list page and one DeleteObjects batch (1000 each).
	const n = 1100
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("many/%02d/%05d", i%7, i))
	}
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(16)
	for _, k := range want {
		g.Go(func() error {
			return st.Put(ctx, k, strings.NewReader(k), storage.PutOptions{Size: int64(len(k))})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if got := listKeys(t, st, "many/"); !slices.Equal(got, want) {
		t.Fatalf("List returned %d keys, want %d in order", len(got), len(want))
	}
	if err := st.Delete(t.Context(), append(want, "many/missing")...); err != nil {
		t.Fatalf("Delete of %d keys: %v", len(want)+1, err)
	}
	if got := listKeys(t, st, ""); len(got) != 0 {
		t.Fatalf("List after Delete returned %d keys, e.g. %q", len(got), got[0])
	}
}

func testDelete(t *testing.T, st storage.Store) {
	if err := st.Delete(t.Context()); err != nil {
		t.Fatalf("Delete(): %v", err)
	}
	if err := st.Delete(t.Context(), "missing"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := st.Delete(t.Context(), "missing/deeper/key"); err != nil {
		t.Fatalf("Delete of a missing nested key: %v", err)
	}
	put(t, st, "d/1", []byte("1"), storage.PutOptions{Size: -1})
	put(t, st, "d/2", []byte("2"), storage.PutOptions{Size: -1})
	put(t, st, "d/sub/3", []byte("3"), storage.PutOptions{Size: -1})
	put(t, st, "keep", []byte("k"), storage.PutOptions{Size: -1})
	if err := st.Delete(t.Context(), "d/1", "missing", "d/sub/3", "d/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, st, "d/1")
	wantAbsent(t, st, "d/sub/3")
	if got := listKeys(t, st, ""); !slices.Equal(got, []string{"d/2", "keep"}) {
		t.Fatalf("List after Delete = %q, want [d/2 keep]", got)
	}
	// Deleting a "directory" (a prefix of other keys) deletes nothing.
	if err := st.Delete(t.Context(), "d"); err != nil {
		t.Fatalf("Delete of a prefix: %v", err)
	}
	wantContent(t, st, "d/2", []byte("2"))
	// A key can be reused in a directory emptied by a delete.
	if err := st.Delete(t.Context(), "d/2"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	put(t, st, "d/sub/4", []byte("4"), storage.PutOptions{Size: -1})
	wantContent(t, st, "d/sub/4", []byte("4"))
}

func testNotFound(t *testing.T, st storage.Store) {
	wantAbsent(t, st, "no/such/key")
	put(t, st, "dir/file", []byte("x"), storage.PutOptions{Size: -1})
	// A prefix of an existing key is not an object.
	wantAbsent(t, st, "dir")
	wantAbsent(t, st, "di")
	wantAbsent(t, st, "dir/file/below")
	if rg, ok := st.(storage.RangeGetter); ok {
		if _, err := rg.GetRange(t.Context(), "no/such/key", 0, 10); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetRange of a missing key = %v, want ErrNotFound", err)
		}
	}
}

func testFailingBody(t *testing.T, st storage.Store) {
	put(t, st, "fail/existing", []byte("intact"), storage.PutOptions{Size: -1, Metadata: map[string]string{"v": "1"}})
	for _, tc := range []struct {
		key   string
		after int64
		opts  storage.PutOptions
	}{
		{"fail/at-start", 0, storage.PutOptions{Size: -1}},
		{"fail/small", 100, storage.PutOptions{Size: -1}},
		{"fail/small-sized", 100, storage.PutOptions{Size: 1000}},
		{"fail/create-only", 100, storage.PutOptions{Size: -1, IfNotExists: true}},
		// Past several 5 MiB parts: a multipart upload has begun on S3.
		{"fail/large", 12 << 20, storage.PutOptions{Size: -1}},
		{"fail/existing", 100, storage.PutOptions{Size: -1, Metadata: map[string]string{"v": "2"}}},
		{"fail/existing", 12 << 20, storage.PutOptions{Size: -1}},
	} {
		r := &failingReader{r: random(3, 1<<40), n: tc.after, err: errBody}
		err := st.Put(t.Context(), tc.key, r, tc.opts)
		if !errors.Is(err, errBody) {
			t.Fatalf("Put(%q) with a body failing after %d bytes = %v, want the body's error", tc.key, tc.after, err)
		}
		if tc.key != "fail/existing" {
			wantAbsent(t, st, tc.key)
		}
	}
	wantContent(t, st, "fail/existing", []byte("intact"))
	wantMetadata(t, st, "fail/existing", map[string]string{"v": "1"})
	if got := listKeys(t, st, ""); !slices.Equal(got, []string{"fail/existing"}) {
		t.Fatalf("List after failed puts = %q, want [fail/existing]", got)
	}
}

func testCancelled(t *testing.T, st storage.Store) {
	put(t, st, "c/present", []byte("present"), storage.PutOptions{Size: -1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with a cancelled context succeeded", op)
			return
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", op, err)
		}
		if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s with a cancelled context = %v, which claims the object is absent", op, err)
		}
	}
	check("Put", st.Put(ctx, "c/new", strings.NewReader("x"), storage.PutOptions{Size: -1}))
	check("Put IfNotExists", st.Put(ctx, "c/new", strings.NewReader("x"), storage.PutOptions{Size: -1, IfNotExists: true}))
	check("Put over existing", st.Put(ctx, "c/present", strings.NewReader("x"), storage.PutOptions{Size: -1}))
	rc, err := st.Get(ctx, "c/present")
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	check("Get", err)
	_, err = st.Get(ctx, "c/missing")
	check("Get of a missing key", err)
	_, err = st.Stat(ctx, "c/present")
	check("Stat", err)
	_, err = st.Stat(ctx, "c/missing")
	check("Stat of a missing key", err)
	check("List", st.List(ctx, "", func(storage.ObjectInfo) error { return nil }))
	check("Delete", st.Delete(ctx, "c/present"))
	if rg, ok := st.(storage.RangeGetter); ok {
		rc, err := rg.GetRange(ctx, "c/present", 1, 2)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		check("GetRange", err)
	}
	wantAbsent(t, st, "c/new")
	wantContent(t, st, "c/present", []byte("present"))
}

// cancellingReader cancels a context after n bytes and keeps delivering
// data until the end of r.
type cancellingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

// Read reads from r and cancels once n bytes are out.
func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func testCancelledMidway(t *testing.T, st storage.Store) {
	put(t, st, "cm/existing", []byte("intact"), storage.PutOptions{Size: -1})
	for _, tc := range []struct {
		key         string
		after, size int64
	}{
		{"cm/small", 10, 100},
		{"cm/ends-at-cancel", 100, 100},
		{"cm/large", 7 << 20, 14 << 20},
		{"cm/existing", 10, 100},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		r := &cancellingReader{r: random(5, tc.size), n: tc.after, cancel: cancel}
		err := st.Put(ctx, tc.key, r, storage.PutOptions{Size: -1})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put(%q) cancelled after %d of %d bytes = %v, want context.Canceled", tc.key, tc.after, tc.size, err)
		}
		if tc.key != "cm/existing" {
			wantAbsent(t, st, tc.key)
		}
	}
	wantContent(t, st, "cm/existing", []byte("intact"))
}

func testHostileKeys(t *testing.T, st storage.Store) {
	put(t, st, "x", []byte("x"), storage.PutOptions{Size: -1})
	check := func(op, key string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s(%q) succeeded, want an error", op, key)
		} else if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s(%q) = %v: an invalid key must not read as an absent object", op, key, err)
		}
	}
	for _, key := range HostileKeys {
		check("Put", key, st.Put(t.Context(), key, strings.NewReader("evil"), storage.PutOptions{Size: -1}))
		check("Put IfNotExists", key, st.Put(t.Context(), key, strings.NewReader("evil"), storage.PutOptions{Size: -1, IfNotExists: true}))
		rc, err := st.Get(t.Context(), key)
		if err == nil {
			rc.Close()
		}
		check("Get", key, err)
		_, err = st.Stat(t.Context(), key)
		check("Stat", key, err)
		check("Delete", key, st.Delete(t.Context(), key))
		check("Delete with a valid key", key, st.Delete(t.Context(), "x", key))
		if rg, ok := st.(storage.RangeGetter); ok {
			rc, err := rg.GetRange(t.Context(), key, 0, 1)
			if err == nil {
				rc.Close()
			}
			check("GetRange", key, err)
		}
	}
	// Nothing was stored, and a Delete that included an invalid key
	// deleted nothing.
	if got := listKeys(t, st, ""); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("List after hostile keys = %q, want [x]", got)
	}
}

func testRange(t *testing.T, st storage.Store) {
	rg, ok := st.(storage.RangeGetter)
	if !ok {
		t.Logf("%T does not implement storage.RangeGetter; nothing to check", st)
		return
	}
	data := randomBytes(11, 1000)
	// Metadata is set so that a backend storing it inside the object is
	// checked for offset arithmetic too.
	put(t, st, "r/obj", data, storage.PutOptions{Size: -1, Metadata: map[string]string{"k": "v"}})
	put(t, st, "r/empty", nil, storage.PutOptions{Size: 0})
	for _, tc := range []struct {
		key            string
		offset, length int64
		want           []byte
	}{
		{"r/obj", 0, -1, data},
		{"r/obj", 0, 10, data[:10]},
		{"r/obj", 10, 20, data[10:30]},
		{"r/obj", 500, -1, data[500:]},
		{"r/obj", 999, 1, data[999:]},
		{"r/obj", 990, 100, data[990:]},
		{"r/obj", 0, 1000, data},
		{"r/obj", 0, 5000, data},
		{"r/obj", 5, 0, nil},
		{"r/obj", 1000, -1, nil},
		{"r/obj", 1000, 10, nil},
		{"r/obj", 5000, -1, nil},
		{"r/empty", 0, -1, nil},
		{"r/empty", 0, 10, nil},
		{"r/empty", 3, -1, nil},
	} {
		rc, err := rg.GetRange(t.Context(), tc.key, tc.offset, tc.length)
		if err != nil {
			t.Fatalf("GetRange(%q, %d, %d): %v", tc.key, tc.offset, tc.length, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("GetRange(%q, %d, %d): read: %v", tc.key, tc.offset, tc.length, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Fatalf("GetRange(%q, %d, %d) = %s, want %s", tc.key, tc.offset, tc.length, describe(got), describe(tc.want))
		}
	}
	if _, err := rg.GetRange(t.Context(), "r/obj", -1, 10); err == nil {
		t.Fatalf("GetRange with a negative offset succeeded")
	}
	for _, length := range []int64{-1, 0, 10} {
		if _, err := rg.GetRange(t.Context(), "r/missing", 0, length); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetRange of a missing key, length %d = %v, want ErrNotFound", length, err)
		}
	}
}

func testConcurrentPuts(t *testing.T, st storage.Store) {
	const n = 16
	g, ctx := errgroup.WithContext(t.Context())
	for i := range n {
		g.Go(func() error {
			key := fmt.Sprintf("conc/%02d", i)
			data := randomBytes(uint64(100+i), 1000+i*37000)
			if err := st.Put(ctx, key, bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
				return err
			}
			rc, err := st.Get(ctx, key)
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				return fmt.Errorf("get %s: %w", key, err)
			}
			if !bytes.Equal(got, data) {
				return fmt.Errorf("get %s: %s, want %s", key, describe(got), describe(data))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, st, "conc/"); len(got) != n {
		t.Fatalf("List returned %d keys, want %d", len(got), n)
	}
}
