package delta

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// TestSelectPagesRealCluster takes a table of a real PostgreSQL 15 cluster
// with data checksums, copies its file (the base), changes rows in a few
// known pages, and checks that the increment against the base's LSN holds
// those pages and few others, with no checksum failure, and that applying
// it to the base gives the new file exactly.
func TestSelectPagesRealCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs a PostgreSQL 15 cluster")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	for _, sql := range []string{
		"CREATE TABLE t (id int, pad text) WITH (fillfactor = 50)",
		"INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 4000) g",
		"VACUUM (FREEZE) t",
		"CHECKPOINT",
	} {
		c.Exec(t, sql)
	}
	rel := c.QueryRow(t, "SELECT pg_relation_filepath('t')")
	path := filepath.Join(c.DataDir(), filepath.FromSlash(rel))
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	startLSN, err := pg.ParseLSN(c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	changed := []uint32{3, 17, 40}
	for _, b := range changed {
		c.Exec(t, "UPDATE t SET pad = 'y' WHERE ctid = $1::tid", "("+strconv.Itoa(int(b))+",2)")
	}
	c.Exec(t, "INSERT INTO t SELECT g, repeat('z', 200) FROM generate_series(1, 100) g")
	c.Exec(t, "CHECKPOINT")
	maxLSN, err := pg.ParseLSN(c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t)

	rf, ok := pg.ParseRelFilePath(rel)
	if !ok {
		t.Fatalf("%s: not a relation file path", rel)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	sel, err := SelectPages(t.Context(), f, st.Size(), SelectOptions{
		BlockSize: pg.DefaultBlockSize, Threshold: startLSN, MaxLSN: maxLSN, StartLSN: maxLSN,
		VerifyChecksums: true, RelFile: rf})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.ChecksumFailures) != 0 || len(sel.Suspicious) != 0 {
		t.Fatalf("failures %v suspicious %v", sel.ChecksumFailures, sel.Suspicious)
	}
	nblocks := uint32(st.Size() / pg.DefaultBlockSize)
	for _, b := range changed {
		if !slices.Contains(sel.Blocks, b) {
			t.Errorf("changed block %d not selected (selected %v)", b, sel.Blocks)
		}
	}
	if slices.Contains(sel.Blocks, 0) || len(sel.Blocks) > int(nblocks)/4 {
		t.Errorf("selected %d of %d blocks: %v", len(sel.Blocks), nblocks, sel.Blocks)
	}
	// Exactly the pages at or past the threshold.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for b := range nblocks {
		page := data[int(b)*pg.DefaultBlockSize : int(b+1)*pg.DefaultBlockSize]
		lsn := pg.ParsePageHeader(page).LSN
		want := lsn >= startLSN || lsn == 0 || pg.PageIsNew(page)
		if slices.Contains(sel.Blocks, b) != want {
			t.Errorf("block %d (LSN %s): selected %v", b, pg.ParsePageHeader(page).LSN, !want)
		}
	}

	var inc bytes.Buffer
	if _, err := WriteIncrement(&inc, f, sel, pg.DefaultBlockSize); err != nil {
		t.Fatal(err)
	}
	dst := &memFile{}
	err = Restore(t.Context(), dst, st.Size(), pg.DefaultBlockSize, []Source{
		{Kind: KindIncrement, Name: rel + " increment", Open: openBytes(inc.Bytes())},
		{Kind: KindWhole, Name: rel + " base", Open: openBytes(base)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.bytes(), data) {
		t.Fatal("restored file differs from the cluster's")
	}
	t.Logf("%s: %d of %d blocks in an increment of %d bytes", rel, len(sel.Blocks), nblocks, inc.Len())
}
