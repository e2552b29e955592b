package walpush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

// raceStore is a create-only store in which another wal-push wins the race
// (TRAPS.md 2): the pusher under test looked for an object under the
// key, found none, and by the time its create-only Put arrives another
// process has stored one. On the first create-only Put of key it runs
// plant (which stores an object under key in the inner store, as the
// other process does), then passes the Put on to the inner store, which,
// being create-only, reads the body and refuses it with ErrExists.
type raceStore struct {
	storage.Store // the inner store: storage/mem, create-only Puts honoured

	key   string
	plant func(ctx context.Context) error

	mu       sync.Mutex
	puts     int    // Puts of key, create-only or not
	raced    bool   // plant ran
	innerErr error  // what the inner store answered the raced Put
	planted  []byte // the stored bytes of the planted object
	plantMD  map[string]string
}

func (s *raceStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if key != s.key {
		return s.Store.Put(ctx, key, r, opts)
	}
	s.mu.Lock()
	s.puts++
	race := opts.IfNotExists && !s.raced
	s.raced = s.raced || race
	s.mu.Unlock()
	if !race {
		return s.Store.Put(ctx, key, r, opts)
	}
	if err := s.plant(ctx); err != nil {
		return fmt.Errorf("test setup: the other pusher failed: %w", err)
	}
	raw, md := rawObject(ctx, s.Store, key)
	err := s.Store.Put(ctx, key, r, opts)
	s.mu.Lock()
	s.planted, s.plantMD, s.innerErr = raw, md, err
	s.mu.Unlock()
	return err
}

// rawObject returns the stored bytes and metadata of key, or nil.
func rawObject(ctx context.Context, st storage.Store, key string) ([]byte, map[string]string) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return nil, nil
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, nil
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil
	}
	return b, maps.Clone(info.Metadata)
}

// raceFile is a WAL file the race tests push: a segment, or a timeline
// history file (which needs a data directory for its system identifier).
type raceFile struct {
	name string
	// content is the file the pusher under test pushes; other the
	// different file of the same name another cluster pushes.
	content, other []byte
	history        bool
}

func raceFiles(t *testing.T) []raceFile {
	otherHistory := append(bytes.Clone(trapsHistory), "2\t0/5000000\tbefore 2024-01-01\n"...)
	return []raceFile{
		{name: segName(3), content: segmentBytes(t, segName(3), testSysID, 3), other: segmentBytes(t, segName(3), testSysID, 99)},
		{name: trapsHistoryName, content: trapsHistory, other: otherHistory, history: true},
	}
}

// write puts content at a fresh path named f.name, and returns it with
// the options a push of it needs (PGData for a history file).
func (f raceFile) write(t *testing.T, st storage.Store, content []byte) (string, Options) {
	t.Helper()
	opts := testOptions(st)
	if !f.history {
		return writeTemp(t, f.name, content), opts
	}
	pgdata := trapsPGData(t)
	opts.PGData = pgdata
	return trapsWriteHistory(t, pgdata, f.name, content), opts
}

// raceSetup builds a raceStore whose other pusher pushes otherContent,
// through the real encoder (a whole Push of its own file into the inner
// store), when the pusher under test makes its create-only Put.
func raceSetup(t *testing.T, f raceFile, otherContent []byte) *raceStore {
	t.Helper()
	inner := mem.New()
	otherPath, otherOpts := f.write(t, inner, otherContent)
	return &raceStore{
		Store: inner,
		key:   repo.WALBase(f.name) + ".lz4",
		plant: func(ctx context.Context) error {
			res, err := Push(ctx, otherPath, otherOpts)
			if err == nil && (res.AlreadyStored || res.Key == "") {
				err = fmt.Errorf("the other pusher stored nothing: %+v", res)
			}
			return err
		},
	}
}

// raceCheckReached fails unless the race was staged: the pusher under
// test made its create-only Put after the other pusher stored the object,
// and the create-only store refused it.
func raceCheckReached(t *testing.T, st *raceStore) {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.raced {
		t.Fatal("test setup: the push never made a create-only Put of " + st.key + ": the race was not staged")
	}
	if !errors.Is(st.innerErr, storage.ErrExists) {
		t.Fatalf("test setup: the create-only store answered the raced Put with %v, want ErrExists", st.innerErr)
	}
	if len(st.planted) == 0 {
		t.Fatal("test setup: the other pusher's object was not found under " + st.key)
	}
	if st.puts != 1 {
		t.Errorf("%d Puts of %s, want 1: the pusher wrote again after losing the race", st.puts, st.key)
	}
}

// raceCheckOneObject fails unless exactly one object is stored under the
// file's name (any codec), under key, with the planted bytes and
// metadata.
func raceCheckOneObject(t *testing.T, st *raceStore, name string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := st.Store.List(ctx, repo.WALBase(name), func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != st.key {
		t.Fatalf("objects stored for %s: %v, want exactly %s", name, keys, st.key)
	}
	raw, md := rawObject(ctx, st.Store, st.key)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !bytes.Equal(raw, st.planted) {
		t.Fatalf("the object the other pusher stored was changed: %d bytes, were %d", len(raw), len(st.planted))
	}
	if !maps.Equal(md, st.plantMD) {
		t.Fatalf("the metadata of the object the other pusher stored was changed: %v, was %v", md, st.plantMD)
	}
}

// TestPushRaceSameContent (TRAPS.md 2): another process pushes the same
// WAL file between this push's lookup (nothing stored) and its
// create-only Put, which the store refuses with ErrExists. The push
// compares the object now stored (store or putStreamed, then
// compareAfterRace and compareStored) and, the content being the same,
// succeeds: AlreadyStored, the key and the file's digest in the result,
// exactly one object under the name, left as the other process stored
// it, reading back as the file's bytes. Segments and .history files, on
// both upload paths (buffered and streamed).
func TestPushRaceSameContent(t *testing.T) {
	t.Parallel()
	for _, f := range raceFiles(t) {
		for _, mode := range trapsPushModes {
			t.Run(f.name+"/"+mode.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				st := raceSetup(t, f, f.content)
				path, opts := f.write(t, st, f.content)
				res, err := trapsPusher(opts, mode.buffered).push(ctx, path, nil)
				raceCheckReached(t, st)
				if err != nil {
					t.Fatalf("push of the same file another process stored meanwhile: %v", err)
				}
				h := repo.NewDigester()
				h.Write(f.content)
				if !res.AlreadyStored || res.Key != st.key || res.Name != f.name || !repo.SameDigest(res.Digest, h.Digest()) ||
					res.RawSize != int64(len(f.content)) || res.SystemIdentifier != testSysID {
					t.Errorf("result %+v, want AlreadyStored of %s with the file's digest, size and system", res, st.key)
				}
				if info, err := st.Stat(ctx, st.key); err != nil || res.StoredSize != info.Size {
					t.Errorf("result's stored size %d, the object's %d (%v)", res.StoredSize, info.Size, err)
				}
				raceCheckOneObject(t, st, f.name)
				got, err := trapsFetch(ctx, st.Store, f.name)
				if err != nil || !bytes.Equal(got, f.content) {
					t.Fatalf("stored object reads back as %d bytes (err %v), want the file's %d", len(got), err, len(f.content))
				}
			})
		}
	}
}

// TestPushRaceConflict (TRAPS.md 2): another process pushes a different
// file under the same name between this push's lookup (nothing stored)
// and its create-only Put, which the store refuses with ErrExists. The
// push fails with ErrConflict, its error naming the file and saying the
// stored object was left untouched, returns no result that looks
// archived, and the object stays as the other process stored it (same
// bytes, same metadata, reading back as the other file), the only one
// under the name. Segments and .history files, on both upload paths.
func TestPushRaceConflict(t *testing.T) {
	t.Parallel()
	for _, f := range raceFiles(t) {
		for _, mode := range trapsPushModes {
			t.Run(f.name+"/"+mode.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				st := raceSetup(t, f, f.other)
				path, opts := f.write(t, st, f.content)
				res, err := trapsPusher(opts, mode.buffered).push(ctx, path, nil)
				raceCheckReached(t, st)
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("push of a file whose name another file took meanwhile: err %v (result %+v), want ErrConflict", err, res)
				}
				for _, want := range []string{f.name, "different file", "left untouched"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				if res.AlreadyStored || res.Key != "" || res.Digest != "" || res.StoredSize != 0 {
					t.Errorf("a refused push returned a result that looks archived: %+v", res)
				}
				raceCheckOneObject(t, st, f.name)
				got, err := trapsFetch(ctx, st.Store, f.name)
				if err != nil || !bytes.Equal(got, f.other) {
					t.Fatalf("stored object reads back as %d bytes (err %v), want the other process's %d", len(got), err, len(f.other))
				}
			})
		}
	}
}
