package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
)

func TestBlockSet(t *testing.T) {
	t.Parallel()
	var s BlockSet
	if s.Contains(0) || s.Len() != 0 {
		t.Fatal("zero value not empty")
	}
	for _, b := range []uint32{0, 63, 64, 1000, 131071} {
		if !s.Add(b) || s.Add(b) {
			t.Fatalf("Add(%d) twice", b)
		}
	}
	for _, b := range []uint32{0, 63, 64, 1000, 131071} {
		if !s.Contains(b) {
			t.Errorf("missing %d", b)
		}
	}
	for _, b := range []uint32{1, 62, 65, 999, 131070, 131072, 1 << 31} {
		if s.Contains(b) {
			t.Errorf("spurious %d", b)
		}
	}
	if s.Len() != 5 {
		t.Fatalf("Len %d", s.Len())
	}
}

// incFrom makes an increment of file data holding blocks.
func incFrom(t *testing.T, data []byte, size int64, blocks ...uint32) []byte {
	t.Helper()
	return encode(t, bytes.NewReader(data), Selection{FileSize: size, Blocks: blocks}, bs8k)
}

func openBytes(b []byte) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// TestApplyZeroPageInNewerIncrementWins is TRAPS.md 20: a zero page in a
// newer increment is a real page and must not be replaced by an older one.
func TestApplyZeroPageInNewerIncrementWins(t *testing.T) {
	t.Parallel()
	base := slices.Concat(makePage(bs8k, 10, 0, 1), makePage(bs8k, 10, 1, 1), makePage(bs8k, 10, 2, 1))
	v1 := bytes.Clone(base)
	copy(v1[bs8k:], makePage(bs8k, 20, 1, 2))
	v2 := bytes.Clone(v1)
	clear(v2[bs8k : 2*bs8k])
	inc1 := incFrom(t, v1, 3*bs8k, 1)
	inc2 := incFrom(t, v2, 3*bs8k, 1)

	dst := &memFile{}
	var done BlockSet
	for _, inc := range [][]byte{inc2, inc1} {
		rd, err := NewReader(bytes.NewReader(inc), "inc")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ApplyIncrement(dst, rd, &done, 3*bs8k); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := ApplyWhole(dst, bytes.NewReader(base), "base", bs8k, &done, 3*bs8k); err != nil || n != 2 {
		t.Fatalf("ApplyWhole: %d, %v", n, err)
	}
	dst.Truncate(3 * bs8k)
	if !bytes.Equal(dst.bytes(), v2) {
		t.Fatal("zero page of the newest increment was overwritten")
	}

	// The same through Restore.
	dst2 := &memFile{data: []byte("stale content of a previous attempt")}
	err := Restore(t.Context(), dst2, 3*bs8k, bs8k, []Source{
		{Kind: KindIncrement, Name: "inc2", Open: openBytes(inc2)},
		{Kind: KindIncrement, Name: "inc1", Open: openBytes(inc1)},
		{Kind: KindWhole, Name: "base", Open: openBytes(base)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst2.bytes(), v2) {
		t.Fatal("Restore: zero page of the newest increment was overwritten")
	}
}

func TestApplyIncrementLimit(t *testing.T) {
	t.Parallel()
	var data []byte
	for i := range 6 {
		data = append(data, makePage(bs8k, 99, uint32(i), uint64(i))...)
	}
	inc := incFrom(t, data, 6*bs8k, 0, 2, 3, 5)
	for _, c := range []struct {
		limit int64
		want  []uint32
	}{
		{6 * bs8k, []uint32{0, 2, 3, 5}},
		{4 * bs8k, []uint32{0, 2, 3}},
		{3*bs8k + 1, []uint32{0, 2, 3}}, // the partial block 3 is still part of the file
		{3 * bs8k, []uint32{0, 2}},
		{0, nil},
	} {
		rd, _ := NewReader(bytes.NewReader(inc), "inc")
		var done BlockSet
		dst := &memFile{}
		n, err := ApplyIncrement(dst, rd, &done, c.limit)
		if err != nil || n != len(c.want) || done.Len() != len(c.want) {
			t.Fatalf("limit %d: %d, %v", c.limit, n, err)
		}
		for _, b := range c.want {
			if !done.Contains(b) || !bytes.Equal(dst.bytes()[int(b)*bs8k:(int(b)+1)*bs8k], data[int(b)*bs8k:(int(b)+1)*bs8k]) {
				t.Fatalf("limit %d: block %d", c.limit, b)
			}
		}
		// The trailing checksum was read even though pages were skipped.
		if _, _, err := rd.Next(); err != io.EOF {
			t.Fatalf("limit %d: reader not at its end: %v", c.limit, err)
		}
	}
	rd, _ := NewReader(bytes.NewReader(inc), "inc")
	rd.Next()
	if _, err := ApplyIncrement(&memFile{}, rd, &BlockSet{}, 6*bs8k); err == nil {
		t.Fatal("a used reader was accepted")
	}
}

func TestApplyIncrementCorruptAtEnd(t *testing.T) {
	t.Parallel()
	data, sel := sampleFile(t, bs8k, 6)
	inc := encode(t, bytes.NewReader(data), sel, bs8k)
	inc[len(inc)-10] ^= 1
	rd, err := NewReader(bytes.NewReader(inc), "base/1/2 in backup B")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ApplyIncrement(&memFile{}, rd, &BlockSet{}, int64(len(data)))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "base/1/2 in backup B") {
		t.Fatalf("error %v", err)
	}
}

// fileModel is a relation file whose every page records its LSN; backups of
// it are taken, and a chain of them is restored.
type fileModel struct {
	rng     *rand.Rand
	lsn     pg.LSN
	tag     uint64
	pages   [][]byte
	partial int // bytes of the last page visible to a backup; 0 means all
}

func (m *fileModel) newPage(blk int) []byte {
	m.lsn += 0x100
	m.tag++
	return makePage(bs8k, m.lsn, uint32(blk), m.tag)
}

// change applies a few random operations the way PostgreSQL changes a
// file: every written page gets a fresh LSN; extension appends zero pages;
// truncation cuts the tail.
func (m *fileModel) change() {
	for range 1 + m.rng.IntN(6) {
		switch op := m.rng.IntN(10); {
		case op < 5 && len(m.pages) > 0:
			i := m.rng.IntN(len(m.pages))
			m.pages[i] = m.newPage(i)
		case op < 8:
			for range 1 + m.rng.IntN(3) {
				if m.rng.IntN(2) == 0 {
					m.pages = append(m.pages, make([]byte, bs8k))
				} else {
					m.pages = append(m.pages, m.newPage(len(m.pages)))
				}
			}
		default:
			if len(m.pages) > 0 {
				m.pages = m.pages[:m.rng.IntN(len(m.pages))]
			}
		}
	}
	m.partial = 0
	if n := len(m.pages); n > 0 && pg.PageIsZero(m.pages[n-1]) && m.rng.IntN(3) == 0 {
		// A backup sees the last block while it is being appended.
		m.partial = 1 + m.rng.IntN(bs8k-1)
	}
}

// image is the file as a backup reads it.
func (m *fileModel) image() []byte {
	b := slices.Concat(m.pages...)
	if m.partial > 0 {
		b = b[:len(b)-bs8k+m.partial]
	}
	return b
}

// TestApplyChainModel takes a full backup and three increments of a file
// that grows, shrinks, gains zero pages and partial blocks, and checks that
// restoring each backup's chain newest first gives exactly the file as that
// backup read it, byte for byte.
func TestApplyChainModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		m := &fileModel{rng: rand.New(rand.NewPCG(seed, 42)), lsn: 0x1000}
		for i := range 1 + m.rng.IntN(12) {
			m.pages = append(m.pages, m.newPage(i))
		}
		type backup struct {
			image []byte
			src   Source
		}
		m.lsn += 0x10
		start := m.lsn // backup start: LSN before any change it must see
		img := m.image()
		chain := []backup{{img, Source{Kind: KindWhole, Name: "full", Open: openBytes(img)}}}
		for k := 1; k <= 3; k++ {
			m.change()
			img := m.image()
			sel, err := SelectPages(t.Context(), bytes.NewReader(img), int64(len(img)), SelectOptions{
				BlockSize: bs8k, Threshold: start, MaxLSN: m.lsn + 1, VerifyChecksums: true,
				RelFile: pg.RelFile{Path: fmt.Sprintf("seed %d backup %d", seed, k)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(sel.ChecksumFailures) > 0 || len(sel.Suspicious) > 0 {
				t.Fatalf("seed %d backup %d: failures %v suspicious %v", seed, k, sel.ChecksumFailures, sel.Suspicious)
			}
			inc := encode(t, bytes.NewReader(img), sel, bs8k)
			chain = append([]backup{{img, Source{Kind: KindIncrement, Name: sel.Name, Open: openBytes(inc)}}}, chain...)
			m.lsn += 0x10
			start = m.lsn

			// Restore every backup taken so far, and an unchanged entry
			// in front of the newest one.
			for j := range chain {
				var srcs []Source
				for _, b := range chain[j:] {
					srcs = append(srcs, b.src)
				}
				if j == 0 {
					srcs = append([]Source{{Kind: KindUnchanged, Name: "unchanged"}}, srcs...)
				}
				dst := &memFile{}
				want := chain[j].image
				if err := Restore(t.Context(), dst, int64(len(want)), bs8k, srcs); err != nil {
					t.Fatalf("seed %d backup %d chain from %d: %v", seed, k, j, err)
				}
				if !bytes.Equal(dst.bytes(), want) {
					t.Fatalf("seed %d backup %d chain from %d: restored file differs (%d vs %d bytes)",
						seed, k, j, len(dst.bytes()), len(want))
				}
			}
		}
	}
}

func TestRestoreGrowShrinkTruncateToZero(t *testing.T) {
	t.Parallel()
	p := func(blk int, lsn pg.LSN) []byte { return makePage(bs8k, lsn, uint32(blk), uint64(lsn)) }
	base := slices.Concat(p(0, 10), p(1, 10), p(2, 10), p(3, 10))

	// Grew: blocks 4 and 5 are new, 1 changed.
	grown := slices.Concat(base[:bs8k], p(1, 500), base[2*bs8k:], p(4, 501), make([]byte, bs8k))
	// Shrank: only 2 blocks left, block 0 changed.
	shrunk := slices.Concat(p(0, 600), base[bs8k:2*bs8k])
	cases := []struct {
		name string
		file []byte
	}{{"grew", grown}, {"shrank", shrunk}, {"truncated to 0", nil}}
	for _, c := range cases {
		sel, err := SelectPages(t.Context(), bytes.NewReader(c.file), int64(len(c.file)), SelectOptions{
			BlockSize: bs8k, Threshold: 100, VerifyChecksums: true})
		if err != nil {
			t.Fatal(err)
		}
		inc := encode(t, bytes.NewReader(c.file), sel, bs8k)
		opened := 0
		openCounting := func(b []byte) func(context.Context) (io.ReadCloser, error) {
			return func(ctx context.Context) (io.ReadCloser, error) { opened++; return openBytes(b)(ctx) }
		}
		dst := &memFile{data: bytes.Repeat([]byte{0xAA}, 10*bs8k)}
		err = Restore(t.Context(), dst, int64(len(c.file)), bs8k, []Source{
			{Kind: KindIncrement, Name: "inc", Open: openCounting(inc)},
			{Kind: KindWhole, Name: "base", Open: openCounting(base)},
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(dst.bytes(), c.file) {
			t.Fatalf("%s: restored file differs", c.name)
		}
		if c.file == nil && opened != 0 {
			t.Errorf("%s: opened %d copies for an empty file", c.name, opened)
		}
	}
}

func TestRestoreWholeOnly(t *testing.T) {
	t.Parallel()
	// A file that is not a relation file: any size, stored whole, maybe
	// unchanged in newer backups.
	for _, n := range []int{0, 1, bs8k - 1, bs8k, bs8k + 1, 3*bs8k + 77} {
		content := bytes.Repeat([]byte("walrus!"), n/7+1)[:n]
		dst := &memFile{}
		err := Restore(t.Context(), dst, int64(n), bs8k, []Source{
			{Kind: KindUnchanged, Name: "u1"}, {Kind: KindUnchanged, Name: "u2"},
			{Kind: KindWhole, Name: "w", Open: openBytes(content)},
			{Kind: KindIncrement, Name: "never read"},
		})
		if err != nil || !bytes.Equal(dst.bytes(), content) {
			t.Fatalf("size %d: %v", n, err)
		}
	}
}

type closeErr struct{ io.Reader }

func (closeErr) Close() error { return errors.New("checksum mismatch") }

func TestRestoreErrors(t *testing.T) {
	t.Parallel()
	data, sel := sampleFile(t, bs8k, 4)
	inc := encode(t, bytes.NewReader(data), sel, bs8k)
	whole := Source{Kind: KindWhole, Name: "base/1/2 in F", Open: openBytes(data)}
	cases := []struct {
		name  string
		size  int64
		bs    int
		chain []Source
		want  string
	}{
		{"empty chain", 0, bs8k, nil, "no backup in its chain"},
		{"no whole", 4 * bs8k, bs8k, []Source{{Kind: KindIncrement, Name: "i", Open: openBytes(inc)}, {Kind: KindUnchanged, Name: "u"}}, "no backup in its chain"},
		{"unknown kind", 4 * bs8k, bs8k, []Source{{Kind: 9, Name: "k"}, whole}, "unknown kind Kind(9)"},
		{"no open", 4 * bs8k, bs8k, []Source{{Kind: KindIncrement, Name: "i"}, whole}, "no way to open"},
		{"size mismatch", 5 * bs8k, bs8k, []Source{{Kind: KindIncrement, Name: "i", Open: openBytes(inc)}, whole}, "records size 32768, want 40960"},
		{"block size mismatch", 4 * bs8k, 4096, []Source{{Kind: KindIncrement, Name: "i", Open: openBytes(inc)}, whole}, "increment of 8192-byte blocks, cluster has 4096"},
		{"bad block size", 4 * bs8k, 1000, []Source{whole}, "invalid block size"},
		{"negative size", -1, bs8k, []Source{whole}, "negative size"},
		{"open fails", 4 * bs8k, bs8k, []Source{{Kind: KindWhole, Name: "w", Open: func(context.Context) (io.ReadCloser, error) {
			return nil, errors.New("no such key")
		}}}, "restore w: open: no such key"},
		{"close fails", 4 * bs8k, bs8k, []Source{{Kind: KindWhole, Name: "w", Open: func(context.Context) (io.ReadCloser, error) {
			return closeErr{bytes.NewReader(data)}, nil
		}}}, "restore w: close: checksum mismatch"},
		{"corrupt increment", 4 * bs8k, bs8k, []Source{{Kind: KindIncrement, Name: "i", Open: openBytes(inc[:len(inc)-1])}, whole}, "read increment i: truncated"},
	}
	for _, c := range cases {
		err := Restore(t.Context(), &memFile{}, c.size, c.bs, c.chain)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Restore(ctx, &memFile{}, 4*bs8k, bs8k, []Source{whole}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	o := openBytes(nil)
	chain := []Source{{Kind: KindUnchanged, Name: "a"}, {Kind: KindIncrement, Name: "b", Open: o},
		{Kind: KindWhole, Name: "c", Open: o}, {Kind: KindIncrement, Name: "d", Open: o}}
	plan, err := Plan(chain)
	if err != nil || len(plan) != 3 || plan[2].Name != "c" {
		t.Fatalf("Plan: %v, %v", plan, err)
	}
	for k, s := range map[Kind]string{KindWhole: "whole", KindIncrement: "increment", KindUnchanged: "unchanged"} {
		if k.String() != s {
			t.Errorf("%d: %s", k, k)
		}
	}
}
