package pg

import (
	"encoding/binary"
	"strings"
	"testing"
)

// initPage returns a page laid out as PostgreSQL's PageInit does, with the
// given LSN and special space, and its checksum set for blockNo.
func initPage(blockSize int, lsn LSN, special int, blockNo uint32) []byte {
	p := make([]byte, blockSize)
	le := binary.LittleEndian
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
	le.PutUint16(p[12:], SizeOfPageHeader)
	le.PutUint16(p[14:], uint16(blockSize-special))
	le.PutUint16(p[16:], uint16(blockSize-special))
	le.PutUint16(p[18:], uint16(blockSize|PageLayoutVersion))
	le.PutUint16(p[8:], PageChecksum(p, blockNo))
	return p
}

func TestParsePageHeader(t *testing.T) {
	t.Parallel()
	p := make([]byte, 8192)
	copy(p, []byte{
		0x01, 0x00, 0x00, 0x00, // xlogid 1
		0x28, 0x3C, 0x00, 0x02, // xrecoff 0x02003C28
		0x34, 0x12, // checksum
		0x05, 0x00, // flags
		0x40, 0x00, // lower 64
		0x00, 0x1F, // upper 7936
		0xF0, 0x1F, // special 8176
		0x04, 0x20, // 8192|4
		0x07, 0x00, 0x00, 0x00, // prune xid 7
	})
	got := ParsePageHeader(p)
	want := PageHeader{
		LSN: 0x1_02003C28, Checksum: 0x1234, Flags: 5, Lower: 64, Upper: 7936,
		Special: 8176, PageSizeVersion: 8196, PruneXID: 7,
	}
	if got != want {
		t.Fatalf("ParsePageHeader = %+v, want %+v", got, want)
	}
	if got.LSN.String() != "1/2003C28" {
		t.Errorf("LSN = %s", got.LSN)
	}
	if got.PageSize() != 8192 || got.LayoutVersion() != 4 {
		t.Errorf("size %d version %d", got.PageSize(), got.LayoutVersion())
	}
	if err := ValidatePageHeader(p, 8192); err != nil {
		t.Errorf("ValidatePageHeader: %v", err)
	}
	if (ParsePageHeader(p[:23]) != PageHeader{}) {
		t.Errorf("short page: want zero header")
	}
}

func TestPageIsNewAndZero(t *testing.T) {
	t.Parallel()
	zero := make([]byte, 8192)
	if !PageIsNew(zero) || !PageIsZero(zero) {
		t.Fatal("zero page: want new and zero")
	}
	p := initPage(8192, 0x100, 16, 0)
	if PageIsNew(p) || PageIsZero(p) {
		t.Fatal("initialized page: want neither new nor zero")
	}
	// A page with pd_upper 0 but stray bytes is new, not zero.
	junk := make([]byte, 8192)
	junk[8191] = 1
	if !PageIsNew(junk) || PageIsZero(junk) {
		t.Fatal("junk page: want new, not zero")
	}
	// Odd lengths are scanned to the last byte.
	odd := make([]byte, 13)
	odd[12] = 1
	if PageIsZero(odd) || !PageIsZero(odd[:12]) {
		t.Fatal("odd length")
	}
	if !PageIsNew(nil) || !PageIsZero(nil) {
		t.Fatal("empty page: want new and zero")
	}
}

func TestValidatePageHeader(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	set := func(off int, v uint16) func([]byte) {
		return func(p []byte) { le.PutUint16(p[off:], v) }
	}
	for _, bs := range []int{1024, 4096, 8192, 16384, 32768} {
		cases := []struct {
			name   string
			mutate func([]byte)
			want   string // "" for valid
		}{
			{"valid", func([]byte) {}, ""},
			{"all flags", set(10, PageValidFlags), ""},
			{"no special", set(16, uint16(bs)), ""}, // heap page: upper=special=bs
			{"full page", func(p []byte) { set(12, uint16(bs/2))(p); set(14, uint16(bs/2))(p) }, ""},
			{"new", set(14, 0), "new"},
			{"unknown flag", set(10, 0x0008), "flag"},
			{"lower in header", set(12, 23), "pd_lower"},
			{"lower > upper", set(12, uint16(bs-8)), "pd_lower"},
			{"upper > special", set(14, uint16(bs-8)), "pd_upper"},
			{"special > block", func(p []byte) {
				if bs == 32768 {
					// pd_special cannot exceed 32768 in 16 bits without
					// also being past the block; use 32776.
					set(16, 32776)(p)
					return
				}
				set(16, uint16(bs+8))(p)
			}, "pd_special"},
			{"special unaligned", func(p []byte) { set(14, uint16(bs-20))(p); set(16, uint16(bs-20))(p) }, "aligned"},
			{"wrong size", set(18, uint16(bs/2|PageLayoutVersion)), "page size"},
			{"wrong version", set(18, uint16(bs|3)), "page size"},
		}
		for _, c := range cases {
			p := initPage(bs, 0x42, 16, 0)
			c.mutate(p)
			err := ValidatePageHeader(p, bs)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("bs %d %s: %v", bs, c.name, err)
			case c.want != "" && err == nil:
				t.Errorf("bs %d %s: want error", bs, c.name)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("bs %d %s: error %q, want it to mention %q", bs, c.name, err, c.want)
			}
		}
	}
	p := initPage(8192, 1, 0, 0)
	if err := ValidatePageHeader(p[:4096], 8192); err == nil {
		t.Error("short page: want error")
	}
	if err := ValidatePageHeader(p, 8000); err == nil {
		t.Error("bad block size: want error")
	}
	if err := ValidatePageHeader(make([]byte, 8192), 8192); err == nil {
		t.Error("zero page: want error")
	}
}

func TestValidBlockSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]bool{
		0: false, 512: false, 1024: true, 2048: true, 4096: true, 8192: true,
		16384: true, 32768: true, 65536: false, 8000: false, -8192: false,
	} {
		if ValidBlockSize(n) != want {
			t.Errorf("ValidBlockSize(%d) = %v", n, !want)
		}
	}
}
