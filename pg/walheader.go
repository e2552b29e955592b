package pg

import (
	"encoding/binary"
	"fmt"
)

// WALPageMagic is the magic number of WAL pages written by PostgreSQL 15
// (XLOG_PAGE_MAGIC); it changes with every major version.
const WALPageMagic = 0xD110

// WALLongHeaderFlag is the xlp_info bit that marks a long page header, the
// one at the start of every segment (XLP_LONG_HEADER).
const WALLongHeaderFlag = 0x0002

// SegmentHeaderSize is the size of the long page header at the start of a
// WAL segment (SizeOfXLogLongPHD).
const SegmentHeaderSize = 40

// SegmentHeader is the long page header at the start of a WAL segment.
type SegmentHeader struct {
	// Magic is the WAL format of the PostgreSQL version that wrote the page.
	Magic uint16
	// Info holds the page flags (WALLongHeaderFlag and others).
	Info uint16
	// Timeline is the timeline of the first record on the page.
	Timeline TimelineID
	// PageAddr is the LSN of the page, which for the first page is the
	// segment's start LSN.
	PageAddr LSN
	// RemLen is the length of a record continued from the previous segment.
	RemLen uint32
	// SystemIdentifier is the cluster that wrote the segment.
	SystemIdentifier uint64
	// SegSize is the WAL segment size in bytes.
	SegSize uint32
	// BlockSize is the WAL page size in bytes.
	BlockSize uint32
}

// SegNo returns the number of the segment that the header says it starts.
func (h SegmentHeader) SegNo() uint64 { return SegmentForLSN(h.PageAddr, uint64(h.SegSize)) }

// ParseSegmentHeader decodes the long page header from the first bytes of
// a WAL segment (at least SegmentHeaderSize). It fails if the magic number
// is not PostgreSQL 15's, if the page does not have a long header, if the
// segment size is not valid, or if the page address is not at the start of
// a segment. A recycled segment that PostgreSQL has not rewritten yet still
// parses; compare SegNo with the file name to tell.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < SegmentHeaderSize {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: %d bytes, want at least %d", len(b), SegmentHeaderSize)
	}
	le := binary.LittleEndian
	h := SegmentHeader{
		Magic:            le.Uint16(b[0:]),
		Info:             le.Uint16(b[2:]),
		Timeline:         TimelineID(le.Uint32(b[4:])),
		PageAddr:         LSN(le.Uint64(b[8:])),
		RemLen:           le.Uint32(b[16:]),
		SystemIdentifier: le.Uint64(b[24:]),
		SegSize:          le.Uint32(b[32:]),
		BlockSize:        le.Uint32(b[36:]),
	}
	if h.Magic != WALPageMagic {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: magic %04X, want %04X (PostgreSQL 15)", h.Magic, WALPageMagic)
	}
	if h.Info&WALLongHeaderFlag == 0 {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: info %04X has no long-header flag: not the first page of a segment", h.Info)
	}
	if !ValidWALSegSize(uint64(h.SegSize)) {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: invalid segment size %d", h.SegSize)
	}
	if !validPageSize(h.BlockSize) {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: invalid WAL block size %d", h.BlockSize)
	}
	if uint64(h.PageAddr)%uint64(h.SegSize) != 0 {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: page address %s is not at the start of a %d-byte segment", h.PageAddr, h.SegSize)
	}
	if h.Timeline == 0 {
		return SegmentHeader{}, fmt.Errorf("parse WAL segment header: timeline 0")
	}
	return h, nil
}
