package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/mem"
)

func encoders(t *testing.T) ([]*Encoder, *Decoder) {
	t.Helper()
	idPath := t.TempDir() + "/id"
	rcpt, err := crypto.WriteIdentityFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := crypto.LoadIdentityFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := crypto.NewEncryptor([]string{rcpt})
	if err != nil {
		t.Fatal(err)
	}
	var out []*Encoder
	for _, n := range compress.Names() {
		c, _ := compress.ByName(n)
		out = append(out, &Encoder{Codec: c}, &Encoder{Codec: c, Encryptor: enc})
	}
	return out, &Decoder{Decryptor: dec}
}

func TestPutOpenRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	encs, dec := encoders(t)
	payload := bytes.Repeat([]byte("walrus round trip "), 50000)
	for _, e := range encs {
		st := mem.New()
		w, err := e.Put(ctx, st, "wal/X", bytes.NewReader(payload), storage.PutOptions{})
		if err != nil {
			t.Fatalf("%s: %v", e.Suffix(), err)
		}
		if w.Key != "wal/X"+e.Suffix() || w.RawSize != int64(len(payload)) {
			t.Fatalf("written %+v", w)
		}
		rc, err := dec.Open(ctx, st, w.Key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(VerifyingReader(rc, w.Key, w.Digest, w.RawSize))
		rc.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("%s: round trip differs (err %v)", e.Suffix(), err)
		}
		raw, _ := st.Get(ctx, w.Key)
		b, _ := io.ReadAll(raw)
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != w.StoredSHA256 || int64(len(b)) != w.StoredSize {
			t.Fatalf("%s: StoredSHA256 %s does not describe the %d stored bytes", w.Key, w.StoredSHA256, len(b))
		}
		if e.Encrypted() {
			if bytes.Contains(b, []byte("walrus round trip")) {
				t.Fatalf("%s: stored object holds plaintext", w.Key)
			}
			if _, err := (&Decoder{}).Open(ctx, st, w.Key); !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("open without identity: %v", err)
			}
		}
	}
}

func TestPutFailingSourceStoresNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	c, _ := compress.ByName("lz4")
	e := &Encoder{Codec: c}
	src := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), iotestErr{})
	if _, err := e.Put(ctx, st, "wal/Y", src, storage.PutOptions{}); err == nil {
		t.Fatal("no error from a failing source")
	}
	if _, err := st.Stat(ctx, "wal/Y.lz4"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("object stored after a failed source: %v", err)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestVerifyingReaderDetectsMismatch(t *testing.T) {
	t.Parallel()
	r := VerifyingReader(strings.NewReader("abc"), "k", strings.Repeat("0", 64), -1)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrChecksum) {
		t.Fatalf("err %v", err)
	}
	r = VerifyingReader(strings.NewReader("abc"), "k", "", 4)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrChecksum) {
		t.Fatalf("size: err %v", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"wal/000000010000000000000001.lz4":                  "wal/000000010000000000000001",
		"wal/000000010000000000000001.zst.age":              "wal/000000010000000000000001",
		"wal/000000010000000000000001.00000028.backup.none": "wal/000000010000000000000001.00000028.backup",
		"wal/00000002.history.br.age":                       "wal/00000002.history",
	} {
		base, _, _, err := ParseKey(key)
		if err != nil || base != want {
			t.Errorf("ParseKey(%q) = %q, %v", key, base, err)
		}
	}
	for _, bad := range []string{"wal/000000010000000000000001", "wal/x.gz", "wal/x.age"} {
		if _, _, _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// TestFindObjectExactName: on a listing store (mem) and on a local one
// (fs, which FindObject probes by Stat without listing the directory),
// the same objects are found: any codec and encryption suffix, never a
// file that only shares the prefix, and a name stored twice is reported.
func TestFindObjectExactName(t *testing.T) {
	t.Parallel()
	fsStore, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*listCounter{"mem": {Store: mem.New()}, "fs": {Store: fsStore}} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			put := func(k string) {
				if err := st.Put(ctx, k, strings.NewReader("x"), storage.PutOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			// A .backup file shares the segment's prefix; it must not be
			// taken for the segment (TRAPS 4).
			put("wal/000000010000000000000001.00000028.backup.lz4")
			if _, err := FindObject(ctx, st, "wal/000000010000000000000001", ".lz4"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("found a segment that is not there: %v", err)
			}
			put("wal/000000010000000000000001.zst.age")
			info, err := FindObject(ctx, st, "wal/000000010000000000000001", ".lz4")
			if err != nil || info.Key != "wal/000000010000000000000001.zst.age" || info.Size != 1 {
				t.Fatalf("FindObject: %+v %v", info, err)
			}
			put("wal/000000010000000000000001.lz4")
			if _, err := FindObject(ctx, st, "wal/000000010000000000000001", ".br"); err == nil || !strings.Contains(err.Error(), "more than once") {
				t.Fatalf("duplicate not reported: %v", err)
			}
			if local := storage.IsLocal(st); local != (name == "fs") || (local && st.lists.Load() != 0) {
				t.Fatalf("local %t, %d listings", local, st.lists.Load())
			}
		})
	}
}

// listCounter counts List calls and passes on whether its store is local.
type listCounter struct {
	storage.Store
	lists atomic.Int64
}

func (l *listCounter) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	l.lists.Add(1)
	return l.Store.List(ctx, prefix, fn)
}

func (l *listCounter) Local() bool { return storage.IsLocal(l.Store) }

// TestSuffixesParse: every suffix FindObject probes is one ParseKey
// accepts, and every codec appears plain and encrypted.
func TestSuffixesParse(t *testing.T) {
	t.Parallel()
	got := Suffixes()
	if len(got) != 2*len(compress.Names()) {
		t.Fatalf("%d suffixes for %d codecs", len(got), len(compress.Names()))
	}
	for _, suf := range got {
		base, _, enc, err := ParseKey("wal/000000010000000000000001" + suf)
		if err != nil || base != "wal/000000010000000000000001" || enc != strings.HasSuffix(suf, "."+EncryptedExt) {
			t.Errorf("%s: base %q, encrypted %t, %v", suf, base, enc, err)
		}
	}
}

func TestEnsureIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	if _, err := EnsureIdentity(ctx, st, 7311111111111111111, true); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureIdentity(ctx, st, 7311111111111111111, true); err != nil {
		t.Fatalf("same cluster refused: %v", err)
	}
	if _, err := EnsureIdentity(ctx, st, 7322222222222222222, true); !errors.Is(err, ErrForeignCluster) {
		t.Fatalf("foreign cluster: %v", err)
	}
	_, err := EnsureIdentity(ctx, st, 7311111111111111111, false)
	if !errors.Is(err, ErrEncryptionMismatch) || !strings.Contains(err.Error(), "encryption.recipients") {
		t.Fatalf("plaintext push into encrypted repo: %v", err)
	}
	id, err := ReadIdentity(ctx, st)
	if err != nil || id.SystemIdentifier != "7311111111111111111" || !id.Encrypted {
		t.Fatalf("identity %+v %v", id, err)
	}
}
