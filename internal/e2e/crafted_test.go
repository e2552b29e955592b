package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
)

// TestCraftedRepository: objects of a real filesystem repository are
// damaged, swapped or replaced by what another cluster's repository would
// hold, the way a careless copy, a broken disk or an attacker with write
// access to the bucket would; every command refuses with an error naming
// the cause, and backup-fetch writes nothing (or, when the damage shows
// only in the data, leaves nothing that PostgreSQL would start); wal-fetch
// exits 128, never 1 ("not found") nor 0 with the wrong file.
func TestCraftedRepository(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN(), "WALRUS_PART_SIZE=1MiB")
	c.Exec(t, "CREATE TABLE t (id int, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 30000) g")
	a := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)
	c.Exec(t, "UPDATE t SET v = 'changed ' || v")
	c.Exec(t, "CREATE TABLE u AS SELECT g AS id FROM generate_series(1, 30000) g")
	b := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)
	lsn := c.QueryRow(t, "SELECT pg_current_wal_lsn()")
	c.Exec(t, "INSERT INTO t VALUES (0, 'after the backups')")
	last := archiveOneSegment(t, c)
	// The repository as walrus wrote it is owner-only.
	ownerOnly(t, repoDir)
	sysid := c.QueryRow(t, "SELECT system_identifier FROM pg_control_system()")
	foreignID := foreignSysID(sysid)
	shared := pgtest.SharedDir(t)

	// refused runs backup-fetch and expects a failure naming every one of
	// want; DEST must not exist when early, else hold nothing startable.
	refused := func(t *testing.T, early bool, args []string, want ...string) {
		t.Helper()
		dest := filepath.Join(shared, fmt.Sprintf("dest-%d", time.Now().UnixNano()))
		r := run(t, env, append([]string{"backup-fetch", dest}, args...)...)
		t.Logf("backup-fetch %v: %s", args, strings.TrimSpace(r.stderr))
		if r.code == 0 {
			t.Fatalf("backup-fetch %v succeeded:\n%s", args, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("backup-fetch %v: the error does not name %q:\n%s", args, w, r.stderr)
			}
		}
		if early {
			if _, err := os.Lstat(dest); !os.IsNotExist(err) {
				t.Errorf("backup-fetch %v created %s before refusing", args, dest)
			}
			return
		}
		for _, f := range []string{"global/pg_control", "PG_VERSION", "recovery.signal", "backup_label"} {
			if _, err := os.Lstat(filepath.Join(dest, f)); err == nil {
				t.Errorf("backup-fetch %v failed but left %s in %s", args, f, dest)
			}
		}
	}
	parts := func(name string) []string {
		ps, _ := filepath.Glob(filepath.Join(repoDir, "backups", name, "parts", "part_*"))
		if len(ps) < 3 {
			t.Fatalf("backup %s has parts %v, want several", name, ps)
		}
		return ps
	}

	t.Run("manifest naming a missing part", func(t *testing.T) {
		name := craftBackup(t, repoDir, b, "base_missing_part", func(m *catalog.Manifest) {
			p := m.Parts[len(m.Parts)-1]
			p.Name = "part_09999.tar"
			p.Key = repo.PartsPrefix(m.Name) + "part_09999.tar.lz4"
			m.Parts = append(m.Parts, p)
		})
		refused(t, true, []string{name}, "part_09999.tar", "missing")
	})

	t.Run("a part of another backup renamed into this one", func(t *testing.T) {
		// Same name in both backups, different content.
		var victim string
		for _, p := range parts(b) {
			other := filepath.Join(repoDir, "backups", a, "parts", filepath.Base(p))
			x, _ := os.ReadFile(p)
			y, err := os.ReadFile(other)
			if err == nil && !bytes.Equal(x, y) {
				victim = filepath.Base(p)
				break
			}
		}
		if victim == "" {
			t.Fatal("no part differs between the two backups")
		}
		partName := strings.TrimSuffix(victim, ".lz4")
		// As stored: refused by its size before anything is written.
		name := craftBackup(t, repoDir, b, "base_swapped", nil)
		copyFile(t, filepath.Join(repoDir, "backups", a, "parts", victim), filepath.Join(repoDir, "backups", name, "parts", victim))
		refused(t, true, []string{name}, partName)
		// With the manifest's size edited to match: refused while
		// restoring, by the part's content (its tar entries, their
		// checksums, its own checksum).
		info, err := os.Stat(filepath.Join(repoDir, "backups", a, "parts", victim))
		if err != nil {
			t.Fatal(err)
		}
		name = craftBackup(t, repoDir, b, "base_swapped_sized", func(m *catalog.Manifest) {
			for i := range m.Parts {
				if m.Parts[i].Name == partName {
					m.StoredSize += info.Size() - m.Parts[i].StoredSize
					m.Parts[i].StoredSize = info.Size()
				}
			}
		})
		copyFile(t, filepath.Join(repoDir, "backups", a, "parts", victim), filepath.Join(repoDir, "backups", name, "parts", victim))
		refused(t, false, []string{name}, partName, "refusing tar entry")
	})

	t.Run("truncated part", func(t *testing.T) {
		name := craftBackup(t, repoDir, b, "base_truncated", nil)
		p := parts(name)[1]
		fi, _ := os.Stat(p)
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		refused(t, true, []string{name}, strings.TrimSuffix(filepath.Base(p), ".lz4"), "bytes, the manifest says")
	})

	t.Run("absurd file size", func(t *testing.T) {
		name := craftBackup(t, repoDir, b, "base_absurd", func(m *catalog.Manifest) {
			for i, f := range m.Files {
				if f.Kind == catalog.FileWhole && f.Path != "global/pg_control" && f.Path != "PG_VERSION" {
					m.DataSize += 1<<62 - f.Size
					m.Files[i].Size = 1 << 62
					break
				}
			}
		})
		refused(t, true, []string{name}, "invalid manifest", strconv.FormatInt(1<<62, 10))
	})

	t.Run("backup of another cluster", func(t *testing.T) {
		name := craftBackup(t, repoDir, b, "base_foreign", func(m *catalog.Manifest) { m.SystemIdentifier = foreignID })
		refused(t, true, []string{name}, name, foreignID)
		// LATEST still means this cluster's newest backup.
		dest := filepath.Join(shared, "latest")
		r := mustRun(t, env, "backup-fetch", dest, "LATEST", "--target-immediate")
		if strings.TrimSpace(r.stdout) != b {
			t.Errorf("backup-fetch LATEST chose %q with a foreign backup in the repository, want %s", r.stdout, b)
		}
	})

	t.Run("restore point of another cluster", func(t *testing.T) {
		rec := map[string]any{"name": "foreign", "lsn": lsn, "timeline": 1, "time": time.Now().UTC(), "system_identifier": foreignID, "wal_file": last}
		body, _ := json.Marshal(rec)
		p := filepath.Join(repoDir, "restore-points", "foreign.json")
		writeRepoFile(t, p, body)
		defer os.Remove(p)
		refused(t, true, []string{"--restore-point", "foreign"}, `"foreign"`, foreignID)
	})

	t.Run("truncated restore point record", func(t *testing.T) {
		p := filepath.Join(repoDir, "restore-points", "cut.json")
		writeRepoFile(t, p, []byte(`{"name": "cut", "lsn": "0/30`))
		defer os.Remove(p)
		refused(t, true, []string{"--restore-point", "cut"}, "restore-points/cut.json")
	})

	// WAL: a segment swapped for another, one from another cluster, one
	// truncated. wal-fetch must exit 128 and write nothing.
	walObject := func(seg string) string {
		p := filepath.Join(repoDir, "wal", seg+".lz4")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("segment %s in the repository: %v", seg, err)
		}
		return p
	}
	wantAbort := func(t *testing.T, seg string, want ...string) {
		t.Helper()
		dest := filepath.Join(shared, "RECOVERYXLOG")
		r := run(t, repoEnv, "wal-fetch", seg, dest)
		t.Logf("wal-fetch %s: exit %d: %s", seg, r.code, strings.TrimSpace(r.stderr))
		if r.code != 128 {
			t.Errorf("wal-fetch %s: exit %d, want 128\n%s", seg, r.code, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("wal-fetch %s: the error does not name %q:\n%s", seg, w, r.stderr)
			}
		}
		if _, err := os.Lstat(dest); err == nil {
			t.Errorf("wal-fetch %s wrote %s", seg, dest)
			os.Remove(dest)
		}
	}
	var segs []string
	for _, n := range storedWAL(t, repoDir) {
		if base, ok := strings.CutSuffix(n, ".lz4"); ok && segmentName.MatchString(base) {
			segs = append(segs, base)
		}
	}
	if len(segs) < 4 {
		t.Fatalf("archived segments %v, want at least 4", segs)
	}
	next := func(n int) string { return segs[n] }

	t.Run("segment swapped for another", func(t *testing.T) {
		victim := next(1)
		copyFile(t, walObject(next(2)), walObject(victim))
		wantAbort(t, victim, victim)
	})
	t.Run("segment of another cluster", func(t *testing.T) {
		victim := next(2)
		// The segment as another cluster would have archived it: the same
		// bytes but for the system identifier, with its own checksum.
		dest := filepath.Join(shared, "own")
		mustRun(t, repoEnv, "wal-fetch", victim, dest)
		seg, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseUint(foreignID, 10, 64)
		binary.LittleEndian.PutUint64(seg[24:], id)
		storeWAL(t, repoDir, victim, seg)
		wantAbort(t, victim, victim, foreignID)
	})
	t.Run("truncated segment", func(t *testing.T) {
		victim := next(3)
		p := walObject(victim)
		fi, _ := os.Stat(p)
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		wantAbort(t, victim, victim)
	})
	t.Run("truncated manifest", func(t *testing.T) {
		p := filepath.Join(repoDir, "backups", a, "manifest.json")
		fi, _ := os.Stat(p)
		if err := os.Truncate(p, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		r := run(t, env, "backup-list")
		if r.code == 0 || !strings.Contains(r.stderr, a) {
			t.Errorf("backup-list with a truncated manifest: exit %d\n%s", r.code, r.stderr)
		}
	})
}

// foreignSysID returns a system identifier that is not sysid.
func foreignSysID(sysid string) string {
	n, _ := strconv.ParseUint(sysid, 10, 64)
	return strconv.FormatUint(n^0x5a5a5a5a, 10)
}

// craftBackup copies backup from to a new backup named to in a filesystem
// repository, parts and manifest, with the manifest changed by edit and
// stored without validation. It returns to.
func craftBackup(t *testing.T, repoDir, from, to string, edit func(*catalog.Manifest)) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoDir, "backups", from, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m catalog.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m.Name = to
	t.Cleanup(func() { os.RemoveAll(filepath.Join(repoDir, "backups", to)) })
	for i := range m.Parts {
		old := m.Parts[i].Key
		m.Parts[i].Key = repo.PartsPrefix(to) + strings.TrimPrefix(old, repo.PartsPrefix(from))
		copyFile(t, filepath.Join(repoDir, filepath.FromSlash(old)), filepath.Join(repoDir, filepath.FromSlash(m.Parts[i].Key)))
	}
	if edit != nil {
		edit(&m)
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	writeRepoFile(t, filepath.Join(repoDir, "backups", to, "manifest.json"), buf.Bytes())
	return to
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeRepoFile(t, to, b)
}

func writeRepoFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// storeWAL replaces the archived segment name with seg, encoded as
// wal-push stores it (lz4, with its checksum and size recorded).
func storeWAL(t *testing.T, repoDir, name string, seg []byte) {
	t.Helper()
	ctx := context.Background()
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	codec, _ := compress.ByName("lz4")
	enc := &repo.Encoder{Codec: codec}
	if err := st.Delete(ctx, repo.WALBase(name)+enc.Suffix()); err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(seg))
	if _, err := enc.Put(ctx, st, repo.WALBase(name), bytes.NewReader(seg), storage.PutOptions{
		IfNotExists: true,
		Metadata:    map[string]string{repo.MetaSHA256: sum, repo.MetaSize: strconv.Itoa(len(seg))},
	}); err != nil {
		t.Fatal(err)
	}
}
