package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
)

const (
	bs8k      = 8192
	threshold = pg.LSN(0x1_00000000)
	maxLSN    = pg.LSN(0x2_00000000)
)

func TestSelectPagesRules(t *testing.T) {
	t.Parallel()
	type pageCase struct {
		name        string
		page        func(blk uint32) []byte
		selected    bool
		suspicious  bool
		checkFailed bool
	}
	badHeader := func(blk uint32) []byte {
		p := makePage(bs8k, threshold-100, blk, 1)
		binary.LittleEndian.PutUint16(p[10:], 0x0100) // unknown flag
		binary.LittleEndian.PutUint16(p[8:], pg.PageChecksum(p, blk))
		return p
	}
	badChecksum := func(lsn pg.LSN) func(uint32) []byte {
		return func(blk uint32) []byte {
			p := makePage(bs8k, lsn, blk, 2)
			p[5000] ^= 0xFF
			return p
		}
	}
	cases := []pageCase{
		{"below threshold", func(b uint32) []byte { return makePage(bs8k, threshold-1, b, 3) }, false, false, false},
		{"at threshold", func(b uint32) []byte { return makePage(bs8k, threshold, b, 4) }, true, false, false},
		{"above threshold", func(b uint32) []byte { return makePage(bs8k, threshold+1, b, 5) }, true, false, false},
		{"far below threshold", func(b uint32) []byte { return makePage(bs8k, 0x28, b, 6) }, false, false, false},
		{"LSN 0", func(b uint32) []byte { return makePage(bs8k, 0, b, 7) }, true, false, false},
		{"zero page", func(uint32) []byte { return make([]byte, bs8k) }, true, false, false},
		{"new page with junk", func(uint32) []byte { p := make([]byte, bs8k); p[4000] = 1; return p }, true, false, true},
		{"invalid header", badHeader, true, false, true},
		{"at MaxLSN", func(b uint32) []byte { return makePage(bs8k, maxLSN, b, 8) }, true, false, false},
		{"past MaxLSN", func(b uint32) []byte { return makePage(bs8k, maxLSN+1, b, 9) }, true, true, false},
		{"bad checksum, old", badChecksum(threshold - 1), true, false, true},
		{"bad checksum, new", badChecksum(threshold + 1), true, false, false},
	}
	var data []byte
	for i, c := range cases {
		data = append(data, c.page(uint32(i))...)
	}
	for _, verify := range []bool{true, false} {
		opts := SelectOptions{BlockSize: bs8k, Threshold: threshold, MaxLSN: maxLSN, VerifyChecksums: verify,
			RelFile: pg.RelFile{Path: "base/5/16384"}}
		sel, err := SelectPages(t.Context(), bytes.NewReader(data), int64(len(data)), opts)
		if err != nil {
			t.Fatal(err)
		}
		if sel.FileSize != int64(len(data)) || sel.Name != "base/5/16384" {
			t.Errorf("FileSize %d Name %q", sel.FileSize, sel.Name)
		}
		for i, c := range cases {
			b := uint32(i)
			selected := c.selected
			if !verify && strings.HasPrefix(c.name, "bad checksum") {
				// Without checksums, a sound header with an old LSN is trusted.
				selected = c.name == "bad checksum, new"
			}
			if got := slices.Contains(sel.Blocks, b); got != selected {
				t.Errorf("verify=%v %s: selected %v, want %v", verify, c.name, got, selected)
			}
			if got := slices.Contains(sel.Suspicious, b); got != c.suspicious {
				t.Errorf("verify=%v %s: suspicious %v, want %v", verify, c.name, got, c.suspicious)
			}
			if got := slices.Contains(sel.ChecksumFailures, b); got != (c.checkFailed && verify) {
				t.Errorf("verify=%v %s: checksum failure %v, want %v", verify, c.name, got, c.checkFailed && verify)
			}
		}
		if !slices.IsSorted(sel.Blocks) {
			t.Errorf("blocks not sorted: %v", sel.Blocks)
		}
	}
}

func TestSelectPagesThresholdZeroSelectsAll(t *testing.T) {
	t.Parallel()
	var data []byte
	for i := range 5 {
		data = append(data, makePage(bs8k, pg.LSN(100+i), uint32(i), uint64(i))...)
	}
	sel, err := SelectPages(t.Context(), bytes.NewReader(data), int64(len(data)), SelectOptions{BlockSize: bs8k})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Blocks, []uint32{0, 1, 2, 3, 4}) {
		t.Fatalf("blocks %v", sel.Blocks)
	}
}

func TestSelectPagesStartLSN(t *testing.T) {
	t.Parallel()
	// A page with a bad checksum whose LSN is past the base backup's start
	// but before this backup's start was not written during this backup:
	// it is reported. One past this backup's start is not.
	start := threshold + 0x1000
	var data []byte
	for i, lsn := range []pg.LSN{threshold + 1, start, start - 1} {
		p := makePage(bs8k, lsn, uint32(i), 1)
		p[100] ^= 1
		data = append(data, p...)
	}
	sel, err := SelectPages(t.Context(), bytes.NewReader(data), int64(len(data)), SelectOptions{
		BlockSize: bs8k, Threshold: threshold, StartLSN: start, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.ChecksumFailures, []uint32{0, 2}) || !slices.Equal(sel.Blocks, []uint32{0, 1, 2}) {
		t.Fatalf("failures %v blocks %v", sel.ChecksumFailures, sel.Blocks)
	}
}

func TestSelectPagesTornPageIsReadAgain(t *testing.T) {
	t.Parallel()
	good := [][]byte{
		makePage(bs8k, threshold-10, 0, 1),
		makePage(bs8k, threshold-10, 1, 2), // old and sound on the second read
		makePage(bs8k, threshold+10, 2, 3), // new on the second read
	}
	data := slices.Concat(good...)
	torn1 := slices.Concat(good[1][:4096], make([]byte, 4096)) // second half not yet written
	torn2 := slices.Concat(good[1][:4096], good[2][4096:])     // old header, new body
	r := &countingReaderAt{data: data, first: map[int64][]byte{bs8k: torn1, 2 * bs8k: torn2}}
	sel, err := SelectPages(t.Context(), r, int64(len(data)), SelectOptions{
		BlockSize: bs8k, Threshold: threshold, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.ChecksumFailures) != 0 {
		t.Errorf("failures %v, want none: the second reads are sound", sel.ChecksumFailures)
	}
	if !slices.Equal(sel.Blocks, []uint32{2}) {
		t.Errorf("blocks %v, want [2]: decided on the second read", sel.Blocks)
	}
	if r.reads[bs8k] != 1 || r.reads[2*bs8k] != 1 || r.reads[0] != 1 {
		t.Errorf("reads %v: want one re-read of blocks 1 and 2", r.reads)
	}
}

func TestSelectPagesPartialLastBlock(t *testing.T) {
	t.Parallel()
	old := makePage(bs8k, 0x10, 0, 1)
	data := slices.Concat(old, old[:3000])
	for _, size := range []int64{bs8k + 1, bs8k + 3000, 2*bs8k - 1} {
		sel, err := SelectPages(t.Context(), bytes.NewReader(data), size, SelectOptions{
			BlockSize: bs8k, Threshold: threshold, VerifyChecksums: true})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sel.Blocks, []uint32{1}) || len(sel.ChecksumFailures) != 0 {
			t.Fatalf("size %d: blocks %v failures %v", size, sel.Blocks, sel.ChecksumFailures)
		}
		inc := encode(t, bytes.NewReader(data), sel, bs8k)
		h, pages := decodeAll(t, inc)
		if h.FileSize != size {
			t.Fatalf("size %d recorded as %d", size, h.FileSize)
		}
		// Restored: the bytes read, then truncated to the size.
		dst := &memFile{data: bytes.Clone(old)}
		if _, err := dst.WriteAt(pages[1], bs8k); err != nil {
			t.Fatal(err)
		}
		dst.Truncate(size)
		want := make([]byte, size)
		copy(want, data)
		if !bytes.Equal(dst.bytes(), want) {
			t.Fatalf("size %d: restored bytes differ", size)
		}
		// The padding is zero, whatever lies past the size in the file.
		if !pg.PageIsZero(pages[1][size-bs8k:]) {
			t.Fatalf("size %d: padding not zero", size)
		}
	}
}

func TestSelectPagesFileShrankWhileRead(t *testing.T) {
	t.Parallel()
	// The caller saw 4 blocks; the file has 2 when read. The missing blocks
	// read as zero pages and are included.
	data := slices.Concat(makePage(bs8k, 1, 0, 1), makePage(bs8k, threshold, 1, 2))
	sel, err := SelectPages(t.Context(), bytes.NewReader(data), 4*bs8k, SelectOptions{
		BlockSize: bs8k, Threshold: threshold, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Blocks, []uint32{1, 2, 3}) || len(sel.ChecksumFailures) != 0 {
		t.Fatalf("blocks %v failures %v", sel.Blocks, sel.ChecksumFailures)
	}
	_, pages := decodeAll(t, encode(t, bytes.NewReader(data), sel, bs8k))
	if !pg.PageIsZero(pages[2]) || !pg.PageIsZero(pages[3]) || !bytes.Equal(pages[1], data[bs8k:]) {
		t.Fatal("pages of the shrunk file")
	}
}

func TestSelectPagesEmptyFile(t *testing.T) {
	t.Parallel()
	sel, err := SelectPages(t.Context(), bytes.NewReader(nil), 0, SelectOptions{VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Blocks) != 0 || sel.FileSize != 0 {
		t.Fatalf("%+v", sel)
	}
}

func TestSelectPagesRejects(t *testing.T) {
	t.Parallel()
	data := makePage(bs8k, 1, 0, 1)
	cases := []struct {
		name string
		size int64
		opts SelectOptions
		want string
	}{
		{"block size", bs8k, SelectOptions{BlockSize: 8000}, "block size"},
		{"fsm fork", bs8k, SelectOptions{RelFile: pg.RelFile{Fork: "fsm", Path: "base/5/1_fsm"}}, "base/5/1_fsm: the fsm fork must be copied whole"},
		{"vm fork", bs8k, SelectOptions{RelFile: pg.RelFile{Fork: "vm"}}, "copied whole"},
		{"init fork", bs8k, SelectOptions{RelFile: pg.RelFile{Fork: "init"}}, "copied whole"},
		{"negative", -1, SelectOptions{}, "negative"},
		{"segment too big", 5 * bs8k, SelectOptions{RelSegSize: 4, VerifyChecksums: true}, "more than a segment"},
		{"past max relation", bs8k, SelectOptions{RelSegSize: 1 << 30, VerifyChecksums: true, RelFile: pg.RelFile{Segment: 4}}, "largest relation size"},
	}
	for _, c := range cases {
		_, err := SelectPages(t.Context(), bytes.NewReader(data), c.size, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestSelectPagesCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	data := make([]byte, 4*bs8k)
	_, err := SelectPages(ctx, bytes.NewReader(data), int64(len(data)), SelectOptions{RelFile: pg.RelFile{Path: "base/1/2"}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "base/1/2") {
		t.Fatalf("error %v", err)
	}
}

type failingReaderAt struct{}

func (failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestSelectPagesReadError(t *testing.T) {
	t.Parallel()
	_, err := SelectPages(t.Context(), failingReaderAt{}, 3*bs8k, SelectOptions{RelFile: pg.RelFile{Path: "base/1/2"}})
	if err == nil || !strings.Contains(err.Error(), "base/1/2") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("error %v", err)
	}
	_, err = WriteIncrement(&bytes.Buffer{}, failingReaderAt{}, Selection{Name: "base/1/2", FileSize: 3 * bs8k, Blocks: []uint32{1}}, bs8k)
	if err == nil || !strings.Contains(err.Error(), "base/1/2") || !strings.Contains(err.Error(), "block 1") {
		t.Fatalf("error %v", err)
	}
}

// TestSelectPagesSegments builds a synthetic data directory whose relation
// has three segment files of 4 blocks (RelSegSize 4), finds them by path and
// checks that checksums use the block number in the fork, segment*4 + block
// (TRAPS.md 19); a page copied into the wrong segment is reported with its
// file and block.
func TestSelectPagesSegments(t *testing.T) {
	t.Parallel()
	const segBlocks = 4
	root := t.TempDir()
	dir := filepath.Join(root, "base", "5")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	segs := map[string][]byte{}
	for seg, name := range []string{"16384", "16384.1", "16384.2"} {
		var data []byte
		n := segBlocks
		if seg == 2 {
			n = 3
		}
		for i := range n {
			data = append(data, makePage(bs8k, threshold+pg.LSN(seg*10+i), uint32(seg*segBlocks+i), uint64(seg))...)
		}
		segs[name] = data
	}
	// Block 1 of segment 2 is a copy of block 1 of segment 1: its checksum
	// is right for fork block 5, not 9.
	copy(segs["16384.2"][bs8k:2*bs8k], segs["16384.1"][bs8k:2*bs8k])
	for name, data := range segs {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not relation files; must not be selected page by page.
	for _, name := range []string{"PG_VERSION", "pg_filenode.map", "t3_16390", "16384_fsm"} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, bs8k), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	failures := map[string][]uint32{}
	for _, e := range entries {
		rel := "base/5/" + e.Name()
		rf, ok := pg.ParseRelFilePath(rel)
		if !ok || !rf.IsDataFork() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		sel, err := SelectPages(t.Context(), f, st.Size(), SelectOptions{
			BlockSize: bs8k, Threshold: 1, StartLSN: maxLSN, VerifyChecksums: true, RelFile: rf, RelSegSize: segBlocks})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(sel.Blocks) != int(st.Size()/bs8k) {
			t.Errorf("%s: %d blocks selected", rel, len(sel.Blocks))
		}
		if len(sel.ChecksumFailures) > 0 {
			failures[sel.Name] = sel.ChecksumFailures
		}
	}
	if len(failures) != 1 || !slices.Equal(failures["base/5/16384.2"], []uint32{1}) {
		t.Fatalf("failures %v, want base/5/16384.2 block 1 only", failures)
	}
	// Read as segment 0, the pages of segment 1 all fail.
	sel, err := SelectPages(t.Context(), bytes.NewReader(segs["16384.1"]), 4*bs8k, SelectOptions{
		BlockSize: bs8k, Threshold: 1, StartLSN: maxLSN, VerifyChecksums: true, RelSegSize: segBlocks})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.ChecksumFailures) != 4 {
		t.Fatalf("segment numbering ignored: failures %v", sel.ChecksumFailures)
	}
}
