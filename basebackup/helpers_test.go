package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

const testSysID = 7300000000000000042

// controlImage returns a valid pg_control for system testSysID.
func controlImage() []byte {
	b := make([]byte, pg.ControlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], testSysID)
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

// synthetic is a fake data directory and a tablespace outside it.
type synthetic struct {
	pgdata, spc string
	want        map[string]string // restored path → content ("<dir>" for directories)
	absent      []string          // paths that must not be restored
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newSynthetic builds a data directory that exercises every exclusion
// rule, a tablespace, a symbolic link to a file, and a file larger than a
// part.
func newSynthetic(t *testing.T) *synthetic {
	t.Helper()
	root := t.TempDir()
	s := &synthetic{pgdata: filepath.Join(root, "pgdata"), spc: filepath.Join(root, "spc"), want: map[string]string{}}
	put := func(rel, content string) {
		writeFile(t, filepath.Join(s.pgdata, rel), content)
		s.want[rel] = content
	}
	skip := func(rel string) {
		writeFile(t, filepath.Join(s.pgdata, rel), "skip me")
		s.absent = append(s.absent, rel)
	}
	dir := func(rel string) {
		if err := os.MkdirAll(filepath.Join(s.pgdata, rel), 0o700); err != nil {
			t.Fatal(err)
		}
		s.want[rel] = "<dir>"
	}
	put("PG_VERSION", "15\n")
	put("postgresql.conf", "# conf\n")
	put("postgresql.auto.conf", "# auto\n")
	writeFile(t, filepath.Join(s.pgdata, "global/pg_control"), string(controlImage()))
	s.want["global/pg_control"] = string(controlImage())
	put("global/1262", strings.Repeat("g", 8192))
	skip("global/pg_internal.init")
	put("base/1/PG_VERSION", "15\n")
	put("base/1/1259", strings.Repeat("a", 3*8192))
	put("base/1/1259_fsm", strings.Repeat("f", 8192))
	put("base/1/16390_init", "")
	skip("base/1/16390")
	skip("base/1/16390_fsm")
	skip("base/1/t3_16400")
	skip("base/1/pg_internal.init")
	skip("base/pgsql_tmp/pgsql_tmp123.0")
	put("base/1/big", strings.Repeat("0123456789abcdef", 200_000)) // 3.2 MB, more than a part
	put("base/1/empty", "")
	skip("postmaster.pid")
	skip("postmaster.opts")
	skip("backup_label.old")
	skip("recovery.signal")
	skip("standby.signal")
	skip(pg.RestoreConfigFile)
	skip("pg_wal/000000010000000000000001")
	dir("pg_wal")
	dir("pg_wal/archive_status")
	skip("pg_wal/archive_status/000000010000000000000001.done")
	for _, d := range []string{"pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"} {
		dir(d)
		skip(d + "/junk")
	}
	dir("pg_xact")
	put("pg_xact/0000", strings.Repeat("x", 8192))
	dir("pg_commit_ts") // empty directories are kept
	put("log/postmaster.pid", "a file named like an excluded one, elsewhere")
	// A symbolic link to a file outside PGDATA is stored as the file.
	writeFile(t, filepath.Join(root, "outside.conf"), "linked content\n")
	if err := os.Symlink(filepath.Join(root, "outside.conf"), filepath.Join(s.pgdata, "linked.conf")); err != nil {
		t.Fatal(err)
	}
	s.want["linked.conf"] = "linked content\n"
	// A tablespace.
	writeFile(t, filepath.Join(s.spc, "PG_15_202209061/1/16500"), strings.Repeat("t", 8192))
	writeFile(t, filepath.Join(s.spc, "PG_15_202209061/1/16501_init"), "")
	writeFile(t, filepath.Join(s.spc, "PG_15_202209061/1/16501"), "unlogged")
	writeFile(t, filepath.Join(s.spc, "PG_15_202209061/pgsql_tmp/x"), "tmp")
	writeFile(t, filepath.Join(s.spc, "lost+found/x"), "not ours")
	if err := os.MkdirAll(filepath.Join(s.pgdata, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.spc, filepath.Join(s.pgdata, "pg_tblspc/16400")); err != nil {
		t.Fatal(err)
	}
	s.want["pg_tblspc/16400/PG_15_202209061/1/16500"] = strings.Repeat("t", 8192)
	s.want["pg_tblspc/16400/PG_15_202209061/1/16501_init"] = ""
	s.absent = append(s.absent, "pg_tblspc/16400/PG_15_202209061/1/16501", "pg_tblspc/16400/PG_15_202209061/pgsql_tmp", "pg_tblspc/16400/lost+found")
	return s
}

func testEncoder(t *testing.T) *repo.Encoder {
	t.Helper()
	codec, err := compress.ByName("lz4")
	if err != nil {
		t.Fatal(err)
	}
	return &repo.Encoder{Codec: codec}
}

// pushSynthetic backs up s.pgdata as Push would, without PostgreSQL, and
// writes the manifest.
func pushSynthetic(t *testing.T, st storage.Store, s *synthetic, name string, partSize int64) *catalog.Manifest {
	t.Helper()
	ctx := context.Background()
	up := &uploader{st: st, enc: testEncoder(t), backup: name, partSize: partSize, prog: progress.New(nil, "test", "files")}
	cp, err := copyDataDir(ctx, up, s.pgdata, 3)
	if err != nil {
		t.Fatalf("copy data directory: %v", err)
	}
	m := cp.manifest(name, up.parts, []pg.Tablespace{{OID: 16400, Name: "ts1", Location: s.spc}})
	fillHeader(m)
	m.TablespaceMap = "16400 " + s.spc + "\n"
	if err := catalog.WriteManifest(ctx, st, m); err != nil {
		t.Fatalf("write manifest: %v", err)
	}
	return m
}

func fillHeader(m *catalog.Manifest) {
	m.SystemIdentifier = "7300000000000000042"
	m.PGVersion = 150004
	m.Timeline = 1
	m.StartLSN, m.FinishLSN = 0x3000028, 0x3000138
	m.StartWALFile, m.FinishWALFile = "000000010000000000000003", "000000010000000000000003"
	m.StartTime = time.Date(2026, 11, 21, 19, 30, 12, 0, time.UTC)
	m.FinishTime = m.StartTime.Add(time.Minute)
	m.WALSegmentSize = 16 << 20
	m.Codec = "lz4"
	m.BackupLabel = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\nCHECKPOINT LOCATION: 0/3000060\nSTART TIMELINE: 1\n"
}

func fetchOptions(st storage.Store, dest string) FetchOptions {
	return FetchOptions{
		Store:   st,
		Decoder: &repo.Decoder{},
		Backup:  catalog.Latest,
		Dest:    dest,
		Recovery: Recovery{
			RestoreCommand: "/usr/bin/walrus --config /etc/walrus.yaml wal-fetch %f %p",
		},
	}
}

// treeOf lists a directory tree: path → content, "<dir>" or "-> target".
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case d.IsDir():
			out[rel] = "<dir>"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tarPart builds a plaintext tar part from entries and stores it
// lz4-compressed under the backup's parts prefix; it returns the manifest
// entry of the part.
func tarPart(t *testing.T, st storage.Store, backup, name string, entries []*tar.Header, bodies []string) catalog.Part {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if bodies[i] != "" {
			if _, err := tw.Write([]byte(bodies[i])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := testEncoder(t).Put(context.Background(), st, repo.PartsPrefix(backup)+name, bytes.NewReader(buf.Bytes()), storage.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return catalog.Part{Name: name, Key: w.Key, RawSize: int64(buf.Len()), StoredSize: w.StoredSize, StoredSHA256: w.StoredSHA256}
}

func crcOf(s string) string { return crcString(crc32.Checksum([]byte(s), castagnoli)) }

func newMem() *mem.Store { return mem.New() }
