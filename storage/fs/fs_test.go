package fs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/storagetest"
)

func newStore(t *testing.T) *fs.Store {
	t.Helper()
	st, err := fs.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		st := newStore(t)
		// Every subtest must leave no temp file behind, whatever failed.
		t.Cleanup(func() { assertNoTemp(t, st.Root()) })
		return st
	})
}

// assertNoTemp fails when any '.'-prefixed file is left under root.
func assertNoTemp(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("leftover file %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewRelative(t *testing.T) {
	t.Parallel()
	for _, root := range []string{"", "repo", "./repo", "../repo"} {
		if _, err := fs.New(root); err == nil {
			t.Errorf("New(%q) succeeded, want an error", root)
		}
	}
}

func TestNewNotDirectory(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.New(file); err == nil {
		t.Fatalf("New(%q) on a file succeeded", file)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "a", "repo")
	st, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := st.Put(ctx, "x/y/z", strings.NewReader("data"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "x/create-only", strings.NewReader("data"), storage.PutOptions{Size: -1, IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, filepath.Join(root, "x"), filepath.Join(root, "x", "y")} {
		wantMode(t, p, os.ModeDir|0o700)
	}
	wantMode(t, filepath.Join(root, "x", "y", "z"), 0o600)
	wantMode(t, filepath.Join(root, "x", "create-only"), 0o600)
	// The root's parent is not the store's business, but New creates it
	// owner-only too.
	wantMode(t, filepath.Dir(root), os.ModeDir|0o700)
}

func wantMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// The umask can only take permissions away.
	if got := fi.Mode(); got&^want != 0 || got.Type() != want.Type() {
		t.Errorf("%s has mode %v, want at most %v", p, got, want)
	}
}

func TestFailedPutLeavesNoTemp(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	errBody := errors.New("boom")
	for _, opts := range []storage.PutOptions{{Size: -1}, {Size: -1, IfNotExists: true}, {Size: 1 << 20}} {
		r := io.MultiReader(bytes.NewReader(make([]byte, 300<<10)), &errReader{errBody})
		if err := st.Put(t.Context(), "dir/obj", r, opts); !errors.Is(err, errBody) {
			t.Fatalf("Put = %v, want %v", err, errBody)
		}
	}
	// A size mismatch, a create-only conflict and a cancelled context.
	if err := st.Put(t.Context(), "dir/obj", strings.NewReader("abc"), storage.PutOptions{Size: 4}); err == nil {
		t.Fatal("size mismatch accepted")
	}
	if err := st.Put(t.Context(), "dir/kept", strings.NewReader("abc"), storage.PutOptions{Size: 3}); err != nil {
		t.Fatal(err)
	}
	// Bypass the early existence check by racing it: a link onto an
	// existing name must fail and still clean up.
	if err := st.Put(t.Context(), "dir/kept", strings.NewReader("def"), storage.PutOptions{Size: 3, IfNotExists: true}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Put IfNotExists = %v, want ErrExists", err)
	}
	assertNoTemp(t, st.Root())
	entries, err := os.ReadDir(filepath.Join(st.Root(), "dir"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "kept" {
		t.Fatalf("dir holds %v, want only kept", entries)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func TestMetadataHeader(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	// Without metadata the file is exactly the object.
	if err := st.Put(ctx, "plain.json", strings.NewReader(`{"v":1}`), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(st.Root(), "plain.json")); err != nil || string(b) != `{"v":1}` {
		t.Fatalf("plain file = %q, %v", b, err)
	}
	// Objects whose bytes look like a header, or a prefix of one, come
	// back unchanged.
	const magic = "\x00walrus-object-v1\n"
	for i, data := range []string{
		magic,
		magic + "\x00\x00\x00\x05a=b\nrest",
		magic[:10],
		magic + "\xff\xff\xff\xff",
		"\x00",
	} {
		for _, md := range []map[string]string{nil, {"k": "v"}} {
			key := "lookalike/" + string(rune('a'+i))
			if err := st.Put(ctx, key, strings.NewReader(data), storage.PutOptions{Size: -1, Metadata: md}); err != nil {
				t.Fatal(err)
			}
			rc, err := st.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != data {
				t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, data)
			}
			info, err := st.Stat(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(len(data)) || len(info.Metadata) != len(md) {
				t.Fatalf("Stat(%q) = %+v, want size %d and metadata %v", key, info, len(data), md)
			}
		}
	}
	// A corrupt header is an error, not a silently different object.
	bad := filepath.Join(st.Root(), "corrupt")
	if err := os.WriteFile(bad, []byte(magic+"\x00\x01\x00\x00short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "corrupt"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat of a corrupt header = %v, want an error", err)
	}
}

func TestListSkipsForeignFiles(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	if err := st.Put(ctx, "wal/a", strings.NewReader("a"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	root := st.Root()
	for _, name := range []string{".DS_Store", "wal/.partial", "wal/back\\slash", ".walrus-tmp-123"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, ".hidden-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ".hidden-dir", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := st.List(ctx, "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "wal/a" {
		t.Fatalf("List = %q, want [wal/a]", keys)
	}
}

func TestListMissingRoot(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	if err := os.Remove(st.Root()); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", "wal/", "wal/x"} {
		if err := st.List(t.Context(), prefix, func(storage.ObjectInfo) error { return errors.New("called") }); err != nil {
			t.Fatalf("List(%q) with no root: %v", prefix, err)
		}
	}
}

func TestDeletePrunesEmptyDirs(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"backups/b1/parts/1", "backups/b1/manifest.json", "backups/b2/manifest.json"} {
		if err := st.Put(ctx, k, strings.NewReader(k), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(ctx, "backups/b1/manifest.json", "backups/b1/parts/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Root(), "backups", "b1")); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("backups/b1 still exists: %v", err)
	}
	if _, err := os.Stat(filepath.Join(st.Root(), "backups", "b2", "manifest.json")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "backups/b2/manifest.json"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(st.Root())
	if err != nil {
		t.Fatalf("root was removed: %v", err)
	}
	if len(entries) != 0 {
		t.Fatalf("root holds %v after deleting everything", entries)
	}
}

func TestHostileKeysStayInside(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	st, err := fs.New(filepath.Join(parent, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range storagetest.HostileKeys {
		_ = st.Put(t.Context(), key, strings.NewReader("evil"), storage.PutOptions{Size: -1})
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "repo" {
		t.Fatalf("%s holds %v, want only repo", parent, entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(parent, "repo")); len(entries) != 0 {
		t.Fatalf("repo holds %v, want nothing", entries)
	}
}

func TestListRemovesStaleTemp(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	dir := filepath.Join(st.Root(), "wal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, fs.TempPrefix+"stale")
	fresh := filepath.Join(dir, fs.TempPrefix+"fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * fs.TempMaxAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := st.List(t.Context(), "", func(storage.ObjectInfo) error { return errors.New("called") }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("stale temp file survived List: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file was removed: %v", err)
	}
}

// TestRootInheritsOwner: when root writes into a repository that lives in
// a directory owned by another user, new directories and files get that
// user as owner, so PostgreSQL's archive_command (running as the server's
// user) can go on writing.
func TestRootInheritsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (as CI does) to exercise ownership")
	}
	t.Parallel()
	parent := t.TempDir()
	const uid, gid = 4242, 4343
	if err := os.Chown(parent, uid, gid); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(parent, "repo")
	s, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "wal/sub/x", strings.NewReader("data"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, filepath.Join(root, "wal"), filepath.Join(root, "wal", "sub"), filepath.Join(root, "wal", "sub", "x")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
}
