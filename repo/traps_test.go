package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
)

// trapsShortStore is a store that lies (TRAPS.md 3): its Put reads the
// whole body, as an upload would, but stores only keep(n) of its n bytes,
// with the metadata given, and reports success. It lies on the first
// `lies` Puts, then behaves.
type trapsShortStore struct {
	storage.Store
	keep func(n int) int
	lies int
}

func (s *trapsShortStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if s.lies <= 0 {
		return s.Store.Put(ctx, key, r, opts)
	}
	s.lies--
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	short := b[:s.keep(len(b))]
	opts.Size = int64(len(short))
	return s.Store.Put(ctx, key, bytes.NewReader(short), opts)
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

// trapsSources are Put's two kinds of source: one it can encode again
// (a seekable file or buffer) and a one-shot stream.
var trapsSources = []struct {
	name string
	open func(b []byte) io.Reader
}{
	{"seekable", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"stream", func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }},
}

var trapsPayload = bytes.Repeat([]byte("a WAL segment that the store will cut short "), 8000)

// TestEncoderPutRefusesShortStoredObject: when the store (directly or
// through the retry layer, which has no reason to retry a success)
// reports success but holds a short or empty object, Encoder.Put fails
// with an error that names the key and says the stored size is wrong and
// the upload truncated, and returns no Written that a manifest could
// record; for every codec, encrypted or not, and both kinds of source.
func TestEncoderPutRefusesShortStoredObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	encs, _ := encoders(t)
	for _, e := range encs {
		for _, src := range trapsSources {
			for _, tr := range trapsTruncations {
				for _, viaRetry := range []bool{false, true} {
					liar := &trapsShortStore{Store: mem.New(), keep: tr.keep, lies: 1}
					var st storage.Store = liar
					if viaRetry {
						st = retry.New(liar, retry.Options{BaseDelay: 1, MaxDelay: 1})
					}
					w, err := e.Put(ctx, st, "wal/X", src.open(trapsPayload), storage.PutOptions{IfNotExists: true})
					if liar.lies != 0 {
						t.Fatalf("%s %s %s: test setup: the lying Put was never reached", e.Suffix(), src.name, tr.name)
					}
					if err == nil {
						t.Fatalf("%s %s %s (retry layer %v): success over a short stored object: %+v", e.Suffix(), src.name, tr.name, viaRetry, w)
					}
					for _, want := range []string{"wal/X" + e.Suffix(), "stored size", "truncated"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s %s %s: error %q does not say %q", e.Suffix(), src.name, tr.name, err, want)
						}
					}
					if w != (Written{}) {
						t.Errorf("%s %s %s: a failed Put returned %+v", e.Suffix(), src.name, tr.name, w)
					}
				}
			}
		}
	}
}

// TestEncoderPutAfterShortObject: a Put that finds its object stored
// short removes it and says so, so that the same Put made again (through
// the retry layer, and without it) stores the whole object instead of
// meeting the short one, and the object reads back whole.
func TestEncoderPutAfterShortObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	encs, dec := encoders(t)
	for _, e := range encs {
		for _, src := range trapsSources {
			for _, viaRetry := range []bool{false, true} {
				liar := &trapsShortStore{Store: mem.New(), keep: func(n int) int { return n / 2 }, lies: 1}
				var st storage.Store = liar
				if viaRetry {
					st = retry.New(liar, retry.Options{BaseDelay: 1, MaxDelay: 1})
				}
				opts := storage.PutOptions{IfNotExists: true, Metadata: map[string]string{MetaSize: "352000"}}
				_, err := e.Put(ctx, st, "wal/X", src.open(trapsPayload), opts)
				if err == nil || !strings.Contains(err.Error(), "the short object was removed") {
					t.Fatalf("%s %s: first Put over a short object: %v", e.Suffix(), src.name, err)
				}
				if _, err := liar.Store.Stat(ctx, "wal/X"+e.Suffix()); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("%s %s: the short object was left: %v", e.Suffix(), src.name, err)
				}
				w, err := e.Put(ctx, st, "wal/X", src.open(trapsPayload), opts)
				if err != nil {
					t.Fatalf("%s %s (retry layer %v): second Put: %+v, err %v", e.Suffix(), src.name, viaRetry, w, err)
				}
				rc, err := dec.Open(ctx, liar.Store, w.Key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, trapsPayload) {
					t.Fatalf("%s %s: the object stored again reads back %d bytes, %v", e.Suffix(), src.name, len(got), err)
				}
			}
		}
	}
}
