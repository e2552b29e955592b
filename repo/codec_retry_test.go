package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
)

// TestPutRetriesAFileWhole: an upload of a file that breaks midway is
// retried by the retry layer with the whole object, encoded again from the
// file's first byte, for every codec, encrypted or not.
func TestPutRetriesAFileWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	encs, dec := encoders(t)
	// Little compressible, so that every codec stores more than the
	// bytes let through before the break.
	payload := make([]byte, 600_000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300_000 {
		payload[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, e := range encs {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		inner := mem.New()
		fst := faulty.New(inner, faulty.Script{Rules: []faulty.Rule{{Ops: faulty.Put, Kind: faulty.BreakBody, N: 1000, Calls: []int{1}}}})
		st := retry.New(fst, retry.Options{BaseDelay: 1})
		w, err := e.Put(ctx, st, "wal/X", f, storage.PutOptions{IfNotExists: true})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", e.Suffix(), err)
		}
		if fst.Faults(faulty.Put) != 1 || st.Retries() == 0 {
			t.Fatalf("%s: the fault was not met (%d faults, %d retries)", e.Suffix(), fst.Faults(faulty.Put), st.Retries())
		}
		checkStored(t, inner, dec, w, payload)
	}
}

// TestPutLostAnswer: a create-only upload whose answer was lost, so that
// a retry meets the object it stored itself, succeeds: for a file (the
// retry layer compares a new encoding with the object, or, encrypted,
// reports ErrExists for the caller to compare checksums), and for a stream
// that cannot be read twice, when the backend's own retry met the object
// (as the S3 SDK's does after a lost answer).
func TestPutLostAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	encs, dec := encoders(t)
	payload := bytes.Repeat([]byte("a part whose answer is lost "), 40000)
	for _, e := range encs {
		t.Run(e.Suffix()+" stream", func(t *testing.T) {
			inner := mem.New()
			st := retry.New(&lostAnswer{Store: inner}, retry.Options{BaseDelay: 1})
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(copyAll(pw, payload)) }()
			w, err := e.Put(ctx, st, "backups/b/parts/part_00001.tar", pr, storage.PutOptions{IfNotExists: true})
			if err != nil {
				t.Fatal(err)
			}
			checkStored(t, inner, dec, w, payload)
		})
		t.Run(e.Suffix()+" file", func(t *testing.T) {
			inner := mem.New()
			fst := faulty.New(inner, faulty.Script{Rules: []faulty.Rule{{Ops: faulty.Put, Kind: faulty.FailAfter, Calls: []int{1}}}})
			st := retry.New(fst, retry.Options{BaseDelay: 1})
			_, err := e.Put(ctx, st, "wal/X", bytes.NewReader(payload), storage.PutOptions{IfNotExists: true})
			if e.Encrypted() {
				if !errors.Is(err, storage.ErrExists) {
					t.Fatalf("encrypted: err = %v, want ErrExists for the caller to compare", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("another object under the key", func(t *testing.T) {
		inner := mem.New()
		c, _ := compress.ByName("lz4")
		e := &Encoder{Codec: c}
		if err := inner.Put(ctx, "k.lz4", bytes.NewReader([]byte("someone else's")), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(copyAll(pw, payload)) }()
		_, err := e.Put(ctx, retry.New(inner, retry.Options{}), "k", pr, storage.PutOptions{IfNotExists: true})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
}

// lostAnswer stores a create-only Put, then answers ErrExists, as a
// backend does whose own retry of a lost answer met the object.
type lostAnswer struct {
	storage.Store
	n int
}

func (l *lostAnswer) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if err := l.Store.Put(ctx, key, r, opts); err != nil {
		return err
	}
	l.n++
	if l.n == 1 && opts.IfNotExists {
		return fmt.Errorf("put %s: %w", key, storage.ErrExists)
	}
	return nil
}

func copyAll(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

func checkStored(t *testing.T, st storage.Store, dec *Decoder, w Written, payload []byte) {
	t.Helper()
	rc, err := dec.Open(context.Background(), st, w.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(VerifyingReader(rc, w.Key, w.Digest, w.RawSize))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("%s: stored object differs from the payload (%d bytes, err %v)", w.Key, len(got), err)
	}
}
