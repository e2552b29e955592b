package pg

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/walrusdb/walrus/internal/pgtest"
)

func TestPageChecksumProperties(t *testing.T) {
	t.Parallel()
	p := initPage(8192, 0x1_00000028, 16, 7)
	for i := 100; i < 8000; i += 37 {
		p[i] = byte(i)
	}
	sum := PageChecksum(p, 7)
	if sum == 0 {
		t.Fatal("checksum 0")
	}
	// The stored checksum field does not take part.
	binary.LittleEndian.PutUint16(p[8:], 0xBEEF)
	if got := PageChecksum(p, 7); got != sum {
		t.Fatalf("checksum depends on pd_checksum: %d vs %d", got, sum)
	}
	// But its neighbours in the same word do.
	p[10] ^= 1
	if PageChecksum(p, 7) == sum {
		t.Fatal("pd_flags change not detected")
	}
	p[10] ^= 1
	if PageChecksum(p, 8) == sum {
		t.Fatal("block number not mixed in")
	}
	before := bytes.Clone(p)
	for _, off := range []int{0, 200, 4095, 4096, 8191} {
		p[off] ^= 0x10
		if PageChecksum(p, 7) == sum {
			t.Errorf("flip at %d not detected", off)
		}
		p[off] ^= 0x10
	}
	if !bytes.Equal(p, before) {
		t.Fatal("PageChecksum modified the page")
	}
	for _, n := range []int{0, 100, 8191, 8200} {
		if got := PageChecksum(make([]byte, n), 0); got != 0 {
			t.Errorf("len %d: checksum %d, want 0", n, got)
		}
	}
	// Other block sizes are hashed whole.
	for _, bs := range []int{1024, 32768} {
		q := initPage(bs, 5, 0, 3)
		if ParsePageHeader(q).Checksum != PageChecksum(q, 3) {
			t.Errorf("bs %d: round trip", bs)
		}
	}
}

// TestPageChecksumRealCluster checks PageChecksum against every page of
// every relation file of a real PostgreSQL 15 cluster created with data
// checksums: a table and its index (main, fsm and vm forks), one in a
// tablespace, and all the catalogs, including the shared ones in global/.
func TestPageChecksumRealCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs a PostgreSQL 15 cluster")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	tsdir := pgtest.SharedDir(t)
	for _, sql := range []string{
		"CREATE TABLESPACE ts LOCATION '" + tsdir + "'",
		"CREATE TABLE t (id int PRIMARY KEY, pad text)",
		"INSERT INTO t SELECT g, repeat(md5(g::text), 1 + g % 5) FROM generate_series(1, 20000) g",
		"DELETE FROM t WHERE id % 7 = 0",
		"VACUUM t",
		"CREATE TABLE t2 (v int) TABLESPACE ts",
		"INSERT INTO t2 SELECT generate_series(1, 3000)",
		"VACUUM t2",
		"CHECKPOINT",
	} {
		c.Exec(t, sql)
	}
	paths := map[string]string{}
	for _, rel := range []string{"t", "t_pkey", "t2", "pg_database"} {
		paths[rel] = c.QueryRow(t, "SELECT pg_relation_filepath('"+rel+"')")
	}
	c.Stop(t)
	data := c.DataDir()

	for rel, p := range paths {
		rf, ok := ParseRelFilePath(p)
		if !ok || !rf.IsDataFork() || rf.Segment != 0 {
			t.Fatalf("%s: ParseRelFilePath(%q) = %+v, %v", rel, p, rf, ok)
		}
	}
	if rf, _ := ParseRelFilePath(paths["pg_database"]); rf.TablespaceOID != GlobalTablespaceOID || rf.DBOID != 0 {
		t.Errorf("pg_database: %+v", rf)
	}
	if rf, _ := ParseRelFilePath(paths["t2"]); rf.TablespaceOID == DefaultTablespaceOID || rf.DBOID == 0 {
		t.Errorf("t2: %+v", rf)
	}

	const blockSize = DefaultBlockSize
	var files, pages, forks int
	seen := map[string]bool{}
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// pg_tblspc/<oid>: follow the link by hand.
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				return err
			}
			return filepath.WalkDir(target, func(p2 string, d2 fs.DirEntry, err error) error {
				if err != nil || d2.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(target, p2)
				return checkFile(t, p2, filepath.ToSlash(filepath.Join(mustRel(t, data, path), rel)), blockSize, &files, &pages, &forks, seen)
			})
		}
		if d.IsDir() {
			return nil
		}
		return checkFile(t, path, filepath.ToSlash(mustRel(t, data, path)), blockSize, &files, &pages, &forks, seen)
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, p := range paths {
		if !seen[p] {
			t.Errorf("%s (%s) not found in the data directory walk", rel, p)
		}
		for _, f := range []string{"_fsm", "_vm"} {
			if rel != "pg_database" && rel != "t_pkey" && !seen[p+f] {
				t.Errorf("%s: fork %s not found", rel, p+f)
			}
		}
	}
	if files < 100 || pages < 500 || forks < 10 {
		t.Errorf("checked only %d files, %d pages, %d fsm/vm files", files, pages, forks)
	}
	t.Logf("verified %d pages in %d relation files (%d fsm/vm)", pages, files, forks)
}

func mustRel(t *testing.T, base, path string) string {
	t.Helper()
	r, err := filepath.Rel(base, path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkFile verifies every page of the relation file at path (PGDATA-relative
// name rel) if rel names one.
func checkFile(t *testing.T, path, rel string, blockSize int, files, pages, forks *int, seen map[string]bool) error {
	rf, ok := ParseRelFilePath(rel)
	if !ok {
		return nil
	}
	seen[rel] = true
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data)%blockSize != 0 {
		t.Errorf("%s: size %d not a multiple of %d", rel, len(data), blockSize)
		return nil
	}
	*files++
	if rf.Fork == ForkFSM || rf.Fork == ForkVM {
		*forks++
	}
	for i := 0; i*blockSize < len(data); i++ {
		page := data[i*blockSize : (i+1)*blockSize]
		if PageIsNew(page) {
			if !PageIsZero(page) {
				t.Errorf("%s block %d: new but not zero", rel, i)
			}
			continue
		}
		blk := uint32(rf.Segment*DefaultRelSegSize + i)
		h := ParsePageHeader(page)
		if got := PageChecksum(page, blk); got != h.Checksum {
			t.Errorf("%s block %d: PageChecksum %d, stored %d", rel, i, got, h.Checksum)
		}
		if PageChecksum(page, blk+1) == h.Checksum {
			t.Errorf("%s block %d: checksum ignores the block number", rel, i)
		}
		if err := ValidatePageHeader(page, blockSize); err != nil {
			t.Errorf("%s block %d: %v", rel, i, err)
		}
		*pages++
	}
	return nil
}
