package pg

import (
	"fmt"
	"strings"
)

// WALFileKind says what a file found in pg_wal or in the archive is.
type WALFileKind int

const (
	// SegmentFile is a whole WAL segment: TTTTTTTTXXXXXXXXYYYYYYYY.
	SegmentFile WALFileKind = iota + 1
	// HistoryFile is a timeline history file: TTTTTTTT.history.
	HistoryFile
	// BackupFile is a backup history ("label") file written by pg_backup_stop:
	// TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup, where O is the offset of
	// the backup's start LSN in the segment.
	BackupFile
	// PartialFile is the last, incomplete segment of a timeline that was
	// abandoned by a promotion: TTTTTTTTXXXXXXXXYYYYYYYY.partial.
	PartialFile
)

// String names the kind ("segment", "history", "backup", "partial").
func (k WALFileKind) String() string {
	switch k {
	case SegmentFile:
		return "segment"
	case HistoryFile:
		return "history"
	case BackupFile:
		return "backup"
	case PartialFile:
		return "partial"
	}
	return fmt.Sprintf("WALFileKind(%d)", int(k))
}

// WALFile is a parsed WAL, history, backup label or partial file name.
type WALFile struct {
	// Name is the file name as given.
	Name string
	// Kind says which of the four forms Name has.
	Kind WALFileKind
	// Timeline is the timeline in the name.
	Timeline TimelineID
	// SegNo is the segment number (0 for history files). It depends on the
	// segment size the name was parsed with.
	SegNo uint64
	// Offset is, for backup label files only, the byte offset within the segment
	// of the backup's start LSN; zero otherwise.
	Offset uint32
}

// StartLSN is the LSN at which the named segment starts (for a backup label file:
// the backup's start LSN). It is InvalidLSN for a history file.
func (f WALFile) StartLSN(segSize uint64) LSN {
	if f.Kind == HistoryFile {
		return InvalidLSN
	}
	return SegmentStartLSN(f.SegNo, segSize) + LSN(f.Offset)
}

// MinWALSegSize is the smallest WAL segment size PostgreSQL allows. Parsing
// a name with it accepts every name valid for some segment size, which is
// what a caller that does not know the cluster's size yet wants.
const MinWALSegSize = minWALSegSize

const (
	minWALSegSize = 1 << 20 // 1 MiB
	maxWALSegSize = 1 << 30 // 1 GiB
	// segNameLen is the length of TTTTTTTTXXXXXXXXYYYYYYYY.
	segNameLen = 24
)

// ValidWALSegSize reports whether n is a WAL segment size PostgreSQL
// accepts: a power of two from 1 MiB to 1 GiB.
func ValidWALSegSize(n uint64) bool {
	return n >= minWALSegSize && n <= maxWALSegSize && n&(n-1) == 0
}

// segsPerLog is the number of segments in one 4 GiB "log" (the XXXXXXXX
// part of a segment name).
func segsPerLog(segSize uint64) uint64 { return 0x100000000 / segSize }

// SegmentName returns the file name of segment segNo on timeline tli.
// segSize must satisfy ValidWALSegSize; callers validate it once where they
// read it from the cluster.
func SegmentName(tli TimelineID, segNo, segSize uint64) string {
	per := segsPerLog(segSize)
	return fmt.Sprintf("%08X%08X%08X", uint32(tli), uint32(segNo/per), uint32(segNo%per))
}

// SegmentForLSN returns the number of the segment that holds the byte at
// lsn. (PostgreSQL's pg_walfile_name differs at an exact segment boundary:
// it names the previous segment, the one that ends there.)
func SegmentForLSN(lsn LSN, segSize uint64) uint64 { return uint64(lsn) / segSize }

// SegmentStartLSN returns the LSN of the first byte of segment segNo.
func SegmentStartLSN(segNo, segSize uint64) LSN { return LSN(segNo * segSize) }

// HistoryFileName returns the name of the history file of timeline tli,
// e.g. "00000002.history".
func HistoryFileName(tli TimelineID) string { return fmt.Sprintf("%08X.history", uint32(tli)) }

// ParseWALFileName parses the name of a WAL segment, a timeline history
// file, a backup label file or a partial segment. It is strict: exact
// lengths, upper-case hexadecimal, a non-zero timeline, a segment number
// within its log for segSize; anything else, including a path, is an error
// naming the value. segSize must satisfy ValidWALSegSize.
func ParseWALFileName(name string, segSize uint64) (WALFile, error) {
	if !ValidWALSegSize(segSize) {
		return WALFile{}, fmt.Errorf("parse WAL file name %q: invalid WAL segment size %d", name, segSize)
	}
	f := WALFile{Name: name}
	bad := func(why string) (WALFile, error) {
		return WALFile{}, fmt.Errorf("parse WAL file name %q: %s", name, why)
	}
	switch {
	case len(name) == segNameLen:
		f.Kind = SegmentFile
	case len(name) == 8+len(".history") && strings.HasSuffix(name, ".history"):
		f.Kind = HistoryFile
	case len(name) == segNameLen+len(".partial") && strings.HasSuffix(name, ".partial"):
		f.Kind = PartialFile
	case len(name) == segNameLen+1+8+len(".backup") && strings.HasSuffix(name, ".backup") && name[segNameLen] == '.':
		f.Kind = BackupFile
	default:
		return bad("not a WAL segment, .history, .backup or .partial file name")
	}

	tli, ok := parseUpperHex32(name[:8])
	if !ok {
		return bad("timeline is not 8 upper-case hex digits")
	}
	if tli == 0 {
		return bad("timeline 0 does not exist")
	}
	f.Timeline = TimelineID(tli)
	if f.Kind == HistoryFile {
		return f, nil
	}

	log, ok1 := parseUpperHex32(name[8:16])
	seg, ok2 := parseUpperHex32(name[16:24])
	if !ok1 || !ok2 {
		return bad("segment number is not 16 upper-case hex digits")
	}
	per := segsPerLog(segSize)
	if uint64(seg) >= per {
		return bad(fmt.Sprintf("segment %08X is out of range for %d-byte segments (at most %08X per log)", seg, segSize, per-1))
	}
	f.SegNo = uint64(log)*per + uint64(seg)

	if f.Kind == BackupFile {
		off, ok := parseUpperHex32(name[segNameLen+1 : segNameLen+9])
		if !ok {
			return bad("backup start offset is not 8 upper-case hex digits")
		}
		if uint64(off) >= segSize {
			return bad(fmt.Sprintf("backup start offset %08X is past the end of a %d-byte segment", off, segSize))
		}
		f.Offset = off
	}
	return f, nil
}

// parseUpperHex32 parses exactly 8 upper-case hexadecimal digits.
func parseUpperHex32(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}
