package pg

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"math/rand/v2"
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

// lcgPage returns a page of n bytes filled from a fixed linear congruential
// sequence, so known answers do not depend on any library's generator.
func lcgPage(n int) []byte {
	p := make([]byte, n)
	s := uint32(n)
	for i := range p {
		s = s*1664525 + 1013904223
		p[i] = byte(s >> 24)
	}
	return p
}

// TestPageChecksumKnownAnswers pins PageChecksum to values computed by the
// original pure-Go implementation (before the assembly one existed), for
// every build: amd64 with AVX2, without it, purego, other architectures.
func TestPageChecksumKnownAnswers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		size         int
		b0, b1, bMax uint16 // block numbers 0, 12345, 0xFFFFFFFF
	}{
		{128, 51445, 39180, 14092},
		{1024, 44296, 40175, 21241},
		{8192, 9116, 4997, 56421},
		{32768, 60996, 65131, 4541},
	} {
		p := lcgPage(c.size)
		for _, k := range []struct {
			blk  uint32
			want uint16
		}{{0, c.b0}, {12345, c.b1}, {0xFFFFFFFF, c.bMax}} {
			if got := PageChecksum(p, k.blk); got != k.want {
				t.Errorf("size %d block %d: PageChecksum %d, want %d", c.size, k.blk, got, k.want)
			}
			if got := uint16((checksumGeneric(p)^k.blk)%65535) + 1; got != k.want {
				t.Errorf("size %d block %d: generic %d, want %d", c.size, k.blk, got, k.want)
			}
		}
	}
}

// TestPageChecksumAVX2MatchesGeneric compares the assembly lane hash with the
// pure-Go one on many random pages of every valid size class, unaligned
// and with random pd_checksum bytes, and checks PageChecksum's dispatch.
func TestPageChecksumAVX2MatchesGeneric(t *testing.T) {
	t.Parallel()
	if !haveChecksumAVX2 {
		t.Skip("no AVX2 checksum in this build or on this CPU")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{128, 256, 384, 1024, 4096, 8192, 8320, 16384, 32768}
	for i := range 3000 {
		size := sizes[i%len(sizes)]
		// Unaligned start, and bytes after the page that must not count.
		off := rng.IntN(64)
		buf := make([]byte, off+size+checksumRow)
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		page := buf[off : off+size]
		switch i % 7 {
		case 0: // mostly zero, like a fresh heap page
			clear(page[24 : size-rng.IntN(size/2)])
		case 1: // all ones, stresses carries in the multiply
			for j := range page {
				page[j] = 0xFF
			}
		}
		before := bytes.Clone(buf)
		blk := rng.Uint32()

		want := checksumGeneric(page)
		if got := checksumAVX2(page); got != want {
			t.Fatalf("page %d (size %d, offset %d): avx2 %#08x, generic %#08x", i, size, off, got, want)
		}
		wantSum := uint16((want^blk)%65535) + 1
		if got := PageChecksum(page, blk); got != wantSum {
			t.Fatalf("page %d: PageChecksum %d, want %d", i, got, wantSum)
		}
		if !bytes.Equal(buf, before) {
			t.Fatalf("page %d: checksum modified its input", i)
		}
		// pd_checksum counts as zero in both, whatever it holds.
		binary.LittleEndian.PutUint16(page[checksumOffset:], uint16(rng.Uint32()))
		if got := checksumAVX2(page); got != want {
			t.Fatalf("page %d: avx2 depends on pd_checksum", i)
		}
		if got := checksumGeneric(page); got != want {
			t.Fatalf("page %d: generic depends on pd_checksum", i)
		}
		// Every other byte of the page's first and last row counts.
		for _, j := range []int{0, 7, 10, 11, 31, 32, 127, size - 1} {
			page[j] ^= 0x80
			if a, g := checksumAVX2(page), checksumGeneric(page); a != g || a == want {
				t.Fatalf("page %d: flip at %d: avx2 %#08x, generic %#08x, unflipped %#08x", i, j, a, g, want)
			}
			page[j] ^= 0x80
		}
	}
}

// BenchmarkPageChecksum measures the lane hash of an 8 KiB page, the bulk of
// PageChecksum's work, with the assembly and the pure-Go implementations.
func BenchmarkPageChecksum(b *testing.B) {
	page := lcgPage(DefaultBlockSize)
	var sink uint32
	b.Run("asm", func(b *testing.B) {
		if !haveChecksumAVX2 {
			b.Skip("no AVX2 checksum in this build or on this CPU")
		}
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			sink ^= checksumAVX2(page)
		}
	})
	b.Run("generic", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			sink ^= checksumGeneric(page)
		}
	})
	b.Run("PageChecksum", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			sink ^= uint32(PageChecksum(page, 1))
		}
	})
	_ = sink
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
