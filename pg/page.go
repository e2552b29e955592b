package pg

import (
	"encoding/binary"
	"fmt"
)

// Data page layout, as in PostgreSQL 15's storage/bufpage.h. Every relation
// fork (main, fsm, vm, init) is made of pages of the cluster's block size
// (BLCKSZ), each starting with a PageHeader.
//
// PostgreSQL writes pages in the byte order of the server's CPU; walrus reads
// them as little-endian, the order of every platform it supports (amd64,
// arm64).
const (
	// DefaultBlockSize is PostgreSQL's default BLCKSZ. The real value is a
	// property of the cluster (pg_control): read it there and pass it on.
	DefaultBlockSize = 8192
	// MinBlockSize and MaxBlockSize bound the block sizes PostgreSQL can be
	// built with (1 KiB to 32 KiB, powers of two).
	MinBlockSize = 1024
	// MaxBlockSize is the largest BLCKSZ PostgreSQL supports; page offsets
	// are 15-bit.
	MaxBlockSize = 32768
	// DefaultRelSegSize is PostgreSQL's default RELSEG_SIZE: blocks per
	// relation segment file (1 GiB of 8 KiB pages). Also a cluster property.
	DefaultRelSegSize = 131072
	// SizeOfPageHeader is the size in bytes of the page header
	// (SizeOfPageHeaderData).
	SizeOfPageHeader = 24
	// PageLayoutVersion is the page layout version of PostgreSQL 8.3 and
	// later (PG_PAGE_LAYOUT_VERSION), kept in the low byte of
	// pd_pagesize_version.
	PageLayoutVersion = 4
	// PageValidFlags is the mask of the page header flag bits PostgreSQL
	// defines (PD_HAS_FREE_LINES, PD_PAGE_FULL, PD_ALL_VISIBLE); any other
	// bit marks a damaged header.
	PageValidFlags = 0x0007
	// maxAlign is MAXIMUM_ALIGNOF on the 64-bit platforms walrus supports.
	maxAlign = 8
)

// PageHeader is the decoded header of a data page (PageHeaderData).
type PageHeader struct {
	// LSN is pd_lsn: the end of the WAL record that last changed the page.
	LSN LSN
	// Checksum is pd_checksum: the page checksum when the cluster has data
	// checksums, else meaningless.
	Checksum uint16
	// Flags is pd_flags.
	Flags uint16
	// Lower is pd_lower: offset of the start of free space.
	Lower uint16
	// Upper is pd_upper: offset of the end of free space; 0 on a new page.
	Upper uint16
	// Special is pd_special: offset of the start of special space.
	Special uint16
	// PageSizeVersion is pd_pagesize_version: the page size ORed with the
	// layout version.
	PageSizeVersion uint16
	// PruneXID is pd_prune_xid: the oldest prunable XID, or 0.
	PruneXID uint32
}

// ParsePageHeader decodes the header at the start of page. A page shorter
// than SizeOfPageHeader gives the zero PageHeader (which PageIsNew reports
// as new).
func ParsePageHeader(page []byte) PageHeader {
	if len(page) < SizeOfPageHeader {
		return PageHeader{}
	}
	le := binary.LittleEndian
	// pd_lsn is a struct of two uint32s: the high half (xlogid) first.
	hi, lo := le.Uint32(page[0:4]), le.Uint32(page[4:8])
	return PageHeader{
		LSN:             LSN(uint64(hi)<<32 | uint64(lo)),
		Checksum:        le.Uint16(page[8:10]),
		Flags:           le.Uint16(page[10:12]),
		Lower:           le.Uint16(page[12:14]),
		Upper:           le.Uint16(page[14:16]),
		Special:         le.Uint16(page[16:18]),
		PageSizeVersion: le.Uint16(page[18:20]),
		PruneXID:        le.Uint32(page[20:24]),
	}
}

// PageSize is the page size recorded in the header.
func (h PageHeader) PageSize() int { return int(h.PageSizeVersion & 0xFF00) }

// LayoutVersion is the page layout version recorded in the header.
func (h PageHeader) LayoutVersion() int { return int(h.PageSizeVersion & 0x00FF) }

// PageIsNew reports whether the page has never been initialized: pd_upper
// is 0 (PostgreSQL's PageIsNew). Such a page has no valid checksum. A new
// page is normally all zeroes; one that is not is damaged.
func PageIsNew(page []byte) bool {
	return ParsePageHeader(page).Upper == 0
}

// PageIsZero reports whether every byte of page is zero. PostgreSQL accepts
// an all-zero page as valid (a relation extended just before a crash).
func PageIsZero(page []byte) bool {
	i := 0
	for ; i+8 <= len(page); i += 8 {
		if binary.LittleEndian.Uint64(page[i:]) != 0 {
			return false
		}
	}
	for ; i < len(page); i++ {
		if page[i] != 0 {
			return false
		}
	}
	return true
}

// ValidBlockSize reports whether n is a block size PostgreSQL can be built
// with: a power of two from MinBlockSize to MaxBlockSize.
func ValidBlockSize(n int) bool {
	return n >= MinBlockSize && n <= MaxBlockSize && n&(n-1) == 0
}

// ValidatePageHeader checks that page is one block of blockSize bytes whose
// header looks sane, as PostgreSQL checks a page it reads from disk
// (PageIsVerifiedExtended), plus the recorded page size and layout version
// and a pd_lower past the header. It does not check the checksum (see
// PageChecksum). A new page (pd_upper 0), including an all-zero page, is
// reported invalid: test PageIsNew and PageIsZero first where those are
// acceptable.
func ValidatePageHeader(page []byte, blockSize int) error {
	if !ValidBlockSize(blockSize) {
		return fmt.Errorf("validate page header: invalid block size %d", blockSize)
	}
	if len(page) != blockSize {
		return fmt.Errorf("validate page header: page is %d bytes, want %d", len(page), blockSize)
	}
	h := ParsePageHeader(page)
	switch {
	case h.Upper == 0:
		return fmt.Errorf("validate page header: page is new (pd_upper is 0)")
	case h.Flags&^PageValidFlags != 0:
		return fmt.Errorf("validate page header: unknown flag bits %#04x", h.Flags)
	case h.Lower < SizeOfPageHeader:
		return fmt.Errorf("validate page header: pd_lower %d inside the header", h.Lower)
	case h.Lower > h.Upper:
		return fmt.Errorf("validate page header: pd_lower %d > pd_upper %d", h.Lower, h.Upper)
	case h.Upper > h.Special:
		return fmt.Errorf("validate page header: pd_upper %d > pd_special %d", h.Upper, h.Special)
	case int(h.Special) > blockSize:
		return fmt.Errorf("validate page header: pd_special %d > block size %d", h.Special, blockSize)
	case h.Special%maxAlign != 0:
		return fmt.Errorf("validate page header: pd_special %d not aligned to %d", h.Special, maxAlign)
	case h.PageSize() != blockSize || h.LayoutVersion() != PageLayoutVersion:
		return fmt.Errorf("validate page header: page size %d version %d, want %d version %d",
			h.PageSize(), h.LayoutVersion(), blockSize, PageLayoutVersion)
	}
	return nil
}
