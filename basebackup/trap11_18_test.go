package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// pushSyntheticWith is pushSynthetic with the parts encoded by enc; an
// encrypted backup is recorded as such in its manifest, with its
// authenticator, in a repository whose walrus.json says it is encrypted,
// as backup-push leaves it.
func pushSyntheticWith(t *testing.T, st storage.Store, enc *repo.Encoder, s *synthetic, name string, partSize int64) *catalog.Manifest {
	t.Helper()
	ctx := context.Background()
	if _, err := repo.EnsureIdentity(ctx, st, testSysID, enc.Encrypted()); err != nil {
		t.Fatal(err)
	}
	up := &uploader{st: st, enc: enc, backup: name, partSize: partSize, prog: progress.New(nil, "test", "files")}
	cp, err := copyDataDir(ctx, up, s.pgdata, 3)
	if err != nil {
		t.Fatalf("copy data directory: %v", err)
	}
	m := cp.manifest(name, up.parts, []pg.Tablespace{{OID: 16400, Name: "ts1", Location: s.spc}})
	fillHeader(m)
	m.TablespaceMap = "16400 " + s.spc + "\n"
	m.Encrypted = enc.Encrypted()
	rewriteManifest(t, st, enc, m)
	return m
}

// rewriteManifest stores m as backup name's manifest in place of the one
// stored, if any, with a new authenticator when the backup is encrypted:
// what it takes for m to be the backup's manifest, as far as any check of
// backup-fetch can tell.
func rewriteManifest(t *testing.T, st storage.Store, enc *repo.Encoder, m *catalog.Manifest) {
	t.Helper()
	ctx := context.Background()
	if err := st.Delete(ctx, repo.ManifestKey(m.Name)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if m.Encrypted {
		if _, err := catalog.WriteAuthenticator(ctx, st, enc, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := catalog.WriteManifest(ctx, st, m); err != nil {
		t.Fatalf("write manifest: %v", err)
	}
}

// partEntries returns the names of the tar entries of part, in order.
func partEntries(t *testing.T, st storage.Store, dec *repo.Decoder, part catalog.Part) []string {
	t.Helper()
	var names []string
	forEachEntry(t, st, dec, part, func(h *tar.Header, _ io.Reader) { names = append(names, h.Name) })
	return names
}

// forEachEntry decodes the stored object of part and calls fn on each of
// its tar entries.
func forEachEntry(t *testing.T, st storage.Store, dec *repo.Decoder, part catalog.Part, fn func(h *tar.Header, body io.Reader)) {
	t.Helper()
	obj, err := st.Get(context.Background(), part.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	rc, err := dec.Unwrap(part.Key, obj)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read part %s: %v", part.Name, err)
		}
		fn(h, tr)
	}
}

// replacePart stores, in place of part partName of m, a new part that
// holds every tar entry of the old one, byte for byte, except omit ("":
// none), zero-padded after its end to the old part's plaintext size,
// encoded by enc as backup-push encodes parts (compressed, and
// encrypted when enc encrypts), and records the new part's sizes and
// checksums in m. m still places omit in that part. The manifest is to be
// rewritten by the caller.
func replacePart(t *testing.T, st storage.Store, enc *repo.Encoder, dec *repo.Decoder, m *catalog.Manifest, partName, omit string) {
	t.Helper()
	i := -1
	for j, p := range m.Parts {
		if p.Name == partName {
			i = j
		}
	}
	if i < 0 {
		t.Fatalf("backup %s has no part %s", m.Name, partName)
	}
	old := m.Parts[i]
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	found := omit == ""
	forEachEntry(t, st, dec, old, func(h *tar.Header, body io.Reader) {
		if h.Name == omit {
			found = true
			return
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, body); err != nil {
			t.Fatal(err)
		}
	})
	if !found {
		t.Fatalf("test setup: part %s holds no %s", partName, omit)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	// Zeros after the end-of-archive blocks, as tar(1) pads an archive
	// to its record size, bring the plaintext back to its old size: the
	// manifest must still fit every file it lists in the part's plaintext
	// (catalog.Manifest.Validate), or it would be refused for that before
	// any part is read.
	if pad := old.RawSize - int64(buf.Len()); pad > 0 {
		buf.Write(make([]byte, pad))
	}
	base, ok := strings.CutSuffix(old.Key, enc.Suffix())
	if !ok {
		t.Fatalf("test setup: part key %s does not end in %s", old.Key, enc.Suffix())
	}
	w, err := enc.Put(context.Background(), st, base, bytes.NewReader(buf.Bytes()), storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Key != old.Key {
		t.Fatalf("test setup: the new part went to %s, not %s", w.Key, old.Key)
	}
	np := old
	np.RawSize = int64(buf.Len())
	np.StoredSize = w.StoredSize
	np.StoredSHA256 = w.StoredSHA256
	if old.SHA256 != "" {
		sum := sha256.Sum256(buf.Bytes())
		np.SHA256 = hex.EncodeToString(sum[:])
	}
	m.StoredSize += np.StoredSize - old.StoredSize
	m.Parts[i] = np
}

// encryptingCodec returns an lz4 encoder that encrypts to a new identity,
// and the decoder of that identity.
func encryptingCodec(t *testing.T) (*repo.Encoder, *repo.Decoder) {
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
	enc := testEncoder(t)
	enc.Encryptor = encr
	return enc, &repo.Decoder{Decryptor: decr}
}

// TestFetchPartLacksListedFile (TRAPS.md 11): a backup whose part is
// replaced by a valid part (compressed, and encrypted in an encrypted
// repository, with its size and SHA-256 recorded in the manifest, the
// manifest re-authenticated) that simply omits a file the manifest places
// in it. Every check on the part's object, its plaintext and each entry
// present passes; only the per-file presence check can tell. backup-fetch
// must fail, naming the missing file and the part, say the destination is
// incomplete, and leave no directory PostgreSQL would start: no
// global/pg_control, PG_VERSION, recovery.signal or backup_label. The
// file omitted is the first entry of the first part (PG_VERSION, which a
// restore holds to write last), a file between two others of a part, the
// last entry of a part of several files (the file larger than a part), or
// pg_control, alone in the last part (which is then an empty tar). The same replacement that omits nothing restores
// every file: the failure comes from the omission alone.
func TestFetchPartLacksListedFile(t *testing.T) {
	t.Parallel()
	type victim struct{ path, part string }
	cases := []struct {
		name string
		pick func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim
	}{
		{"first entry of the first part", func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim {
			p := m.Parts[0].Name
			return victim{entries[p][0], p}
		}},
		{"a file in the middle of a part", func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim {
			for _, p := range m.Parts {
				es := entries[p.Name]
				for _, e := range es[min(1, len(es)):max(len(es)-1, 0)] {
					if e != versionFilePath && e != controlFilePath {
						return victim{e, p.Name}
					}
				}
			}
			t.Fatal("test setup: no part holds a file between two others")
			return victim{}
		}},
		{"last entry of a part of several", func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim {
			for _, p := range m.Parts {
				if es := entries[p.Name]; len(es) > 1 {
					return victim{es[len(es)-1], p.Name}
				}
			}
			t.Fatal("test setup: no part holds more than one file")
			return victim{}
		}},
		{"pg_control", func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim {
			return victim{controlFilePath, m.File(controlFilePath).Part}
		}},
		{"nothing omitted", func(t *testing.T, m *catalog.Manifest, entries map[string][]string) victim {
			return victim{"", m.Parts[0].Name}
		}},
	}
	for _, encrypted := range []bool{false, true} {
		for _, tc := range cases {
			name := "lz4/" + tc.name
			if encrypted {
				name = "lz4+age/" + tc.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				enc, dec := testEncoder(t), &repo.Decoder{}
				if encrypted {
					enc, dec = encryptingCodec(t)
				}
				s := newSynthetic(t)
				st := newMem()
				m := pushSyntheticWith(t, st, enc, s, "base_lacks", 1<<20)
				if len(m.Parts) < 3 {
					t.Fatalf("test setup: %d parts, want at least 3", len(m.Parts))
				}
				entries := map[string][]string{}
				for _, p := range m.Parts {
					entries[p.Name] = partEntries(t, st, dec, p)
				}
				v := tc.pick(t, m, entries)
				if v.path != "" {
					f := m.File(v.path)
					if f == nil || f.Part != v.part || f.Kind != catalog.FileWhole {
						t.Fatalf("test setup: the manifest does not place %s whole in %s: %+v", v.path, v.part, f)
					}
				}
				replacePart(t, st, enc, dec, m, v.part, v.path)
				rewriteManifest(t, st, enc, m)
				if got := m.File(v.path); v.path != "" && (got == nil || got.Part != v.part) {
					t.Fatalf("test setup: the rewritten manifest no longer places %s in %s", v.path, v.part)
				}

				dest := filepath.Join(t.TempDir(), "restored")
				spc := filepath.Join(t.TempDir(), "ts")
				opts := fetchOptions(st, dest)
				opts.Decoder = dec
				opts.TablespaceMap = map[string]string{"16400": spc}
				opts.Concurrency = 2
				_, err := Fetch(context.Background(), opts)

				if v.path == "" {
					if err != nil {
						t.Fatalf("restore of the backup with a re-encoded part that omits nothing: %v", err)
					}
					got := treeOf(t, dest)
					for _, e := range entries[v.part] {
						want := s.want[e]
						if inner, ok := strings.CutPrefix(e, "pg_tblspc/16400/"); ok {
							b, _ := os.ReadFile(filepath.Join(spc, inner))
							got[e] = string(b)
						}
						if e == "postgresql.auto.conf" {
							continue // appended to by the restore
						}
						if got[e] != want {
							t.Errorf("%s of the re-encoded part restored as %d bytes, want %d", e, len(got[e]), len(want))
						}
					}
					return
				}

				t.Logf("omitted %s from %s: %v", v.path, v.part, err)
				if err == nil {
					t.Fatalf("backup-fetch restored a backup whose part %s lacks %s", v.part, v.path)
				}
				msg := err.Error()
				if !strings.Contains(msg, v.path) || !strings.Contains(msg, v.part) {
					t.Errorf("the error does not name the missing file %s and its part %s: %v", v.path, v.part, err)
				}
				if !strings.Contains(msg, "incomplete") {
					t.Errorf("the error does not say the destination is incomplete: %v", err)
				}
				for _, p := range []string{controlFilePath, versionFilePath, "recovery.signal", "backup_label"} {
					if _, err := os.Lstat(filepath.Join(dest, p)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s is in the destination after the failed restore (%v): PostgreSQL could start it", p, err)
					}
				}
			})
		}
	}
}

// TestDeltaCopiesInitAndVMForksWhole (TRAPS.md 18): the init, vm and fsm
// forks are not fully WAL-logged, so a page of theirs can change without
// its LSN moving past the base's start. A delta stores such forks whole
// (manifest kind "whole", never an increment or "unchanged"), and its
// restore gives back the bytes the delta read, not the base's:
//   - a non-empty init fork (of an unlogged relation, whose main fork is
//     not backed up) of 2 pages, both with an LSN below the base's start,
//     the first rewritten since the base with other content;
//   - a vm fork whose only page's LSN is old but whose content changed;
//   - an fsm fork whose page has LSN 0 and changed content.
//
// The base's restore still gives the base's bytes, and a main fork
// changed in the same way (old LSN) is, as designed, recorded unchanged:
// the forks are kept whole because of what they are, not by accident.
func TestDeltaCopiesInitAndVMForksWhole(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000) // before the base's start
	const (
		initFork = "base/5/16390_init"
		unlogged = "base/5/16390" // its main fork: never backed up
		vmFork   = "base/5/16384_vm"
		fsmFork  = "base/5/16384_fsm"
		mainFork = "base/5/16384"
		spcInit  = "pg_tblspc/16400/PG_15_202209061/5/16501_init"
	)
	d.rel(mainFork, old, old)
	d.rel(vmFork, old)
	d.rel(fsmFork, 0)
	d.rel(initFork, old, old)
	d.rel(unlogged, old, old, old)
	d.rel(spcInit, old)
	full := mustPush(t, st, d, "base_full", nil, fullStart)
	atFull := d.snapshot()
	if _, ok := kinds(full)[unlogged]; ok {
		t.Fatalf("test setup: the main fork of an unlogged relation is in the base")
	}
	for _, p := range []string{initFork, vmFork, fsmFork, spcInit} {
		if k := kinds(full)[p]; k != "whole" {
			t.Fatalf("test setup: the base stores %s as %q", p, k)
		}
	}

	// Since the base: pages rewritten with their old LSN (or 0) and new
	// content, as unlogged changes to these forks leave them.
	d.setPage(initFork, 0, old, 0x41)
	d.setPage(vmFork, 0, old, 0x42)
	d.setPage(fsmFork, 0, 0, 0x43)
	d.setPage(spcInit, 0, old, 0x44)
	d.setPage(mainFork, 1, old, 0x45) // logged fork: an old LSN means unchanged
	d.setPage(unlogged, 2, delta1Start+0x10, 0x46)
	atD1 := d.snapshot()
	for _, p := range []string{initFork, vmFork, fsmFork, spcInit} {
		if atD1[p] == atFull[p] || len(atD1[p]) != len(atFull[p]) {
			t.Fatalf("test setup: %s did not change in place since the base", p)
		}
	}
	d1 := mustPush(t, st, d, "base_d1", full, delta1Start)

	k := kinds(d1)
	for _, p := range []string{initFork, vmFork, fsmFork, spcInit} {
		if k[p] != "whole" {
			t.Errorf("the delta stores %s as %q, want whole: a page changed without a newer LSN would be lost", p, k[p])
		}
		if f := d1.File(p); f != nil && f.Size != int64(len(atD1[p])) {
			t.Errorf("the delta records %s with %d bytes, want %d", p, f.Size, len(atD1[p]))
		}
	}
	if k[mainFork] != "unchanged@base_full" {
		t.Errorf("the delta stores the main fork %s as %q, want unchanged@base_full", mainFork, k[mainFork])
	}
	if _, ok := k[unlogged]; ok {
		t.Errorf("the delta holds %s, the main fork of an unlogged relation", unlogged)
	}

	// The restored chain gives the delta's bytes exactly for the forks.
	got, err := restoreFiles(t, st, "base_d1")
	if err != nil {
		t.Fatalf("restore the delta: %v", err)
	}
	for _, p := range []string{initFork, vmFork, fsmFork, spcInit} {
		switch {
		case got[p] == atD1[p]:
		case got[p] == atFull[p]:
			t.Errorf("the delta's restore gives the base's %s, not the bytes the delta read", p)
		default:
			t.Errorf("the delta's restore gives %s as %d bytes, neither the delta's nor the base's", p, len(got[p]))
		}
	}
	// The main fork comes back as the base holds it, since its page LSNs
	// say it did not change; every other file as the delta read it.
	wantD1 := atD1
	wantD1[mainFork] = atFull[mainFork]
	delete(wantD1, unlogged)
	checkRestore(t, st, "base_d1", wantD1)
	wantFull := atFull
	delete(wantFull, unlogged)
	checkRestore(t, st, "base_full", wantFull)
}
