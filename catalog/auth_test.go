package catalog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
)

// authFixture is an encrypted repository holding one full backup with its
// authenticator, and the identity that decrypts it.
func authFixture(t *testing.T) (*mem.Store, *repo.Encoder, *repo.Decoder, *Manifest) {
	t.Helper()
	identity, recipient, err := crypto.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	encr, err := crypto.NewEncryptor([]string{recipient})
	if err != nil {
		t.Fatal(err)
	}
	decr, err := crypto.ParseIdentities(strings.NewReader(identity + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := compress.ByName("lz4")
	enc := &repo.Encoder{Codec: codec, Encryptor: encr}
	st := mem.New()
	ctx := context.Background()
	if _, err := repo.EnsureIdentity(ctx, st, 7300000000000000001, true); err != nil {
		t.Fatal(err)
	}
	m := validManifest("f1", sysID, 1, segLSN(2))
	m.Encrypted = true
	if _, err := WriteAuthenticator(ctx, st, enc, m); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(ctx, st, m); err != nil {
		t.Fatal(err)
	}
	return st, enc, &repo.Decoder{Decryptor: decr}, m
}

func rawManifest(t *testing.T, st storage.Store, name string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), repo.ManifestKey(name))
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

func putRaw(t *testing.T, st storage.Store, key string, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestManifestAuthenticator (TRAPS.md 29): on an encrypted repository a
// manifest changed in the bucket, one claiming the backup is not
// encrypted, an authenticator copied from another backup or replaced by a
// plaintext one, and a missing authenticator are all refused; backup-mark's
// rewrite still authenticates.
func TestManifestAuthenticator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, enc, dec, m := authFixture(t)
	if err := CheckAuthenticator(ctx, st, dec, "f1"); err != nil {
		t.Fatalf("an untouched backup: %v", err)
	}
	chain := func(name string) []*Manifest {
		mm, err := ReadManifest(ctx, st, name)
		if err != nil {
			t.Fatal(err)
		}
		return []*Manifest{mm}
	}
	if checked, err := AuthenticateChain(ctx, st, dec, chain("f1"), false); err != nil || !checked {
		t.Fatalf("chain: checked %t, %v", checked, err)
	}

	// backup-mark changes only "permanent": still authentic.
	if _, _, err := SetPermanent(ctx, st, "f1", true, repo.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := CheckAuthenticator(ctx, st, dec, "f1"); err != nil {
		t.Fatalf("after backup-mark: %v", err)
	}

	orig := rawManifest(t, st, "f1")
	for _, tc := range []struct{ what, from, to string }{
		{"a part's checksum", `"stored_sha256":"ab`, `"stored_sha256":"cd`},
		{"the encryption flag", `"encrypted": true`, `"encrypted": false`},
		{"a file's checksum", `"crc32c":"12345678"`, `"crc32c":"87654321"`},
	} {
		if !bytes.Contains(orig, []byte(tc.from)) {
			t.Fatalf("%s: %q not in the manifest", tc.what, tc.from)
		}
		putRaw(t, st, repo.ManifestKey("f1"), bytes.Replace(orig, []byte(tc.from), []byte(tc.to), 1))
		err := CheckAuthenticator(ctx, st, dec, "f1")
		if !errors.Is(err, ErrManifestTampered) {
			t.Fatalf("%s changed: %v", tc.what, err)
		}
		// Even when the manifest says it is not encrypted, walrus.json does.
		if _, err := AuthenticateChain(ctx, st, dec, chain("f1"), true); !errors.Is(err, ErrManifestTampered) {
			t.Fatalf("%s changed, chain: %v", tc.what, err)
		}
	}
	putRaw(t, st, repo.ManifestKey("f1"), orig)

	// Another backup's authenticator in its place.
	m2 := validManifest("f2", sysID, 1, segLSN(4))
	m2.Encrypted = true
	key2, err := WriteAuthenticator(ctx, st, enc, m2)
	if err != nil {
		t.Fatal(err)
	}
	key1, err := repo.FindObject(ctx, st, authBase("f1"), "")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := st.Get(ctx, key2)
	other, _ := io.ReadAll(rc)
	rc.Close()
	putRaw(t, st, key1.Key, other)
	if err := CheckAuthenticator(ctx, st, dec, "f1"); !errors.Is(err, ErrManifestTampered) || !strings.Contains(err.Error(), `"f2"`) {
		t.Fatalf("another backup's authenticator: %v", err)
	}

	// A plaintext authenticator anyone could write.
	if err := st.Delete(ctx, key1.Key); err != nil {
		t.Fatal(err)
	}
	plain := &repo.Encoder{Codec: enc.Codec}
	if _, err := WriteAuthenticator(ctx, st, plain, m); err != nil {
		t.Fatal(err)
	}
	if err := CheckAuthenticator(ctx, st, dec, "f1"); !errors.Is(err, ErrManifestTampered) || !strings.Contains(err.Error(), "not encrypted") {
		t.Fatalf("plaintext authenticator: %v", err)
	}

	// None at all: refused unless allowed.
	if err := st.Delete(ctx, authBase("f1")+plain.Suffix()); err != nil {
		t.Fatal(err)
	}
	if _, err := AuthenticateChain(ctx, st, dec, chain("f1"), false); !errors.Is(err, ErrNoAuthenticator) {
		t.Fatalf("missing authenticator: %v", err)
	}
	if _, err := AuthenticateChain(ctx, st, dec, chain("f1"), true); err != nil {
		t.Fatalf("missing authenticator, allowed: %v", err)
	}
}

// TestNoAuthenticatorUnencrypted: a repository without encryption has no
// secret to authenticate with; nothing is checked or required.
func TestNoAuthenticatorUnencrypted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRetRepo(t).full("f1", 2, false)
	if _, err := repo.EnsureIdentity(ctx, r.st, 7300000000000000001, false); err != nil {
		t.Fatal(err)
	}
	if checked, err := AuthenticateChain(ctx, r.st, &repo.Decoder{}, []*Manifest{r.ms["f1"]}, false); err != nil || checked {
		t.Fatalf("checked %t, %v", checked, err)
	}
}

// TestAuthenticatorLostAnswer: an authenticator upload that was stored
// but whose answer was lost is retried and succeeds (each encryption
// differs, so a create-only retry could not recognise its own object).
func TestAuthenticatorLostAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, enc, dec, _ := authFixture(t)
	inner := mem.New()
	st := retry.New(faulty.New(inner, faulty.Script{Rules: []faulty.Rule{{Ops: faulty.Put, Kind: faulty.FailAfter, Calls: []int{1}, Err: faulty.ErrTransient}}}),
		retry.Options{MaxAttempts: 3, BaseDelay: time.Millisecond})
	m := validManifest("f9", sysID, 1, segLSN(2))
	m.Encrypted = true
	if _, err := WriteAuthenticator(ctx, st, enc, m); err != nil {
		t.Fatalf("authenticator after a lost answer: %v", err)
	}
	if err := WriteManifest(ctx, st, m); err != nil {
		t.Fatal(err)
	}
	if err := CheckAuthenticator(ctx, inner, dec, "f9"); err != nil {
		t.Fatal(err)
	}
}
