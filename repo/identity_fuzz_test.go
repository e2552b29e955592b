package repo

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

// FuzzReadIdentity stores arbitrary bytes as walrus.json and reads them
// back. ReadIdentity must never panic; what it accepts must be a format it
// supports with a usable system identifier.
func FuzzReadIdentity(f *testing.F) {
	for _, s := range []string{
		`{"format_version":1,"system_identifier":"7300000000000000001","encrypted":true,"created_at":"2026-11-21T18:50:00Z"}`,
		`{"format_version":1,"system_identifier":"18446744073709551615","encrypted":false}`,
		`{"format_version":2,"system_identifier":"1"}`,
		`{"format_version":0,"system_identifier":"1"}`,
		`{"format_version":1,"system_identifier":7300000000000000001}`,
		`{"format_version":1,"system_identifier":"-1"}`,
		`{"format_version":1,"system_identifier":"18446744073709551616"}`,
		`{"format_version":1e400}`,
		`null`, `[]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := mem.New()
		ctx := t.Context()
		if err := st.Put(ctx, IdentityKey, bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		id, err := ReadIdentity(ctx, st)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if id.FormatVersion < 1 || id.FormatVersion > FormatVersion {
			t.Fatalf("accepted format version %d", id.FormatVersion)
		}
		sysid, err := strconv.ParseUint(id.SystemIdentifier, 10, 64)
		if err != nil {
			t.Fatalf("accepted system identifier %q", id.SystemIdentifier)
		}
		if strconv.FormatUint(sysid, 10) != id.SystemIdentifier {
			t.Fatalf("accepted a non-canonical system identifier %q", id.SystemIdentifier)
		}
		if err := id.Check(sysid, id.Encrypted); err != nil {
			t.Fatalf("an identity refuses its own cluster: %v", err)
		}
		if id.Check(sysid+1, id.Encrypted) == nil {
			t.Fatal("an identity accepts another cluster")
		}
	})
}

// FuzzParseKey splits arbitrary object names: never a panic, and what it
// accepts names a codec it knows.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"wal/000000010000000000000001.lz4", "wal/000000010000000000000001.zst.age", "backups/b/parts/0001.tar.br", "walrus.json", "x.age", ".lz4", "", "a.b.c.age.age"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		base, codec, encrypted, err := ParseKey(key)
		if err != nil {
			return
		}
		if codec == nil {
			t.Fatalf("ParseKey(%q) accepted without a codec", key)
		}
		suffix := "." + codec.Ext()
		if encrypted {
			suffix += "." + EncryptedExt
		}
		if base+suffix != key {
			t.Fatalf("ParseKey(%q) = %q + %q", key, base, suffix)
		}
	})
}
