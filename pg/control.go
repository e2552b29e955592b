package pg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"time"
)

// PGControlVersion is the pg_control format version of PostgreSQL 13 to 16,
// the one ParseControlFile understands.
const PGControlVersion = 1300

// ControlFileSize is the size of global/pg_control on disk. Only the first
// part holds data; the rest is zeros, so that the data fits in one sector.
const ControlFileSize = 8192

// Byte offsets of the PostgreSQL 15 ControlFileData fields (x86-64 and
// arm64 alignment: 8-byte integers and doubles on 8-byte boundaries). The
// embedded CheckPoint starts at offset 40.
const (
	ctlSystemIdentifier  = 0
	ctlVersion           = 8
	ctlCatalogVersion    = 12
	ctlState             = 16
	ctlTime              = 24
	ctlCheckPoint        = 32
	ctlCkptRedo          = 40
	ctlCkptThisTLI       = 48
	ctlCkptPrevTLI       = 52
	ctlCkptFullPages     = 56
	ctlCkptNextXID       = 64
	ctlCkptNextOID       = 72
	ctlCkptTime          = 104
	ctlMinRecoveryPoint  = 136
	ctlMinRecoveryTLI    = 144
	ctlBackupStartPoint  = 152
	ctlBackupEndPoint    = 160
	ctlBackupEndRequired = 168
	ctlWALLevel          = 172
	ctlWALLogHints       = 176
	ctlMaxAlign          = 204
	ctlFloatFormat       = 208
	ctlBlockSize         = 216
	ctlRelSegSize        = 220
	ctlWALBlockSize      = 224
	ctlWALSegSize        = 228
	ctlChecksumVersion   = 252
	ctlCRC               = 288 // the CRC covers every byte before it
	ctlDataSize          = 296 // sizeof(ControlFileData)
)

// floatFormatValue is the double PostgreSQL stores to detect an
// incompatible floating-point format.
const floatFormatValue = 1234567.0

// ErrControlCRC is wrapped by ParseControlFile's error when the CRC does not
// match: a corrupt file, or one read while PostgreSQL was rewriting it.
var ErrControlCRC = errors.New("pg_control CRC mismatch")

// DBState is the cluster state recorded in pg_control.
type DBState uint32

// The cluster states of PostgreSQL 15, as pg_controldata names them.
const (
	DBStartup              DBState = 0
	DBShutdowned           DBState = 1
	DBShutdownedInRecovery DBState = 2
	DBShutdowning          DBState = 3
	DBInCrashRecovery      DBState = 4
	DBInArchiveRecovery    DBState = 5
	DBInProduction         DBState = 6
	dbStateCount                   = 7
)

var dbStateNames = [dbStateCount]string{
	"starting up", "shut down", "shut down in recovery", "shutting down",
	"in crash recovery", "in archive recovery", "in production",
}

// String returns the state as pg_controldata prints it ("in production").
func (s DBState) String() string {
	if s < dbStateCount {
		return dbStateNames[s]
	}
	return fmt.Sprintf("unrecognized status code %d", uint32(s))
}

// WAL levels recorded in pg_control.
const (
	WALLevelMinimal = 0
	WALLevelReplica = 1
	WALLevelLogical = 2
)

// ControlData is what walrus reads from global/pg_control.
type ControlData struct {
	SystemIdentifier uint64
	PGControlVersion uint32
	CatalogVersion   uint32
	State            DBState
	// Time is when pg_control was last updated.
	Time time.Time
	// CheckpointLSN is the location of the latest checkpoint record.
	CheckpointLSN LSN
	// RedoLSN is the REDO location of the latest checkpoint.
	RedoLSN LSN
	// TimeLineID is the timeline of the latest checkpoint.
	TimeLineID TimelineID
	// PrevTimeLineID differs from TimeLineID when that checkpoint began a
	// new timeline.
	PrevTimeLineID TimelineID
	FullPageWrites bool
	// NextXID is the next full (epoch-qualified) transaction ID.
	NextXID uint64
	NextOID uint32
	// CheckpointTime is the time of the latest checkpoint.
	CheckpointTime      time.Time
	MinRecoveryPoint    LSN
	MinRecoveryPointTLI TimelineID
	BackupStartPoint    LSN
	BackupEndPoint      LSN
	BackupEndRequired   bool
	// WALLevel is one of WALLevelMinimal, WALLevelReplica, WALLevelLogical.
	WALLevel    int32
	WALLogHints bool
	// MaxAlign is the alignment requirement of tuples (8 on 64-bit).
	MaxAlign uint32
	// BlockSize is the data page size in bytes (8192 by default).
	BlockSize uint32
	// RelSegSize is the number of blocks per relation segment file.
	RelSegSize uint32
	// WALBlockSize is the WAL page size in bytes.
	WALBlockSize uint32
	// WALSegSize is the WAL segment size in bytes.
	WALSegSize uint32
	// DataChecksumVersion is 0 when data checksums are off.
	DataChecksumVersion uint32
}

// DataChecksums reports whether data pages carry checksums.
func (c ControlData) DataChecksums() bool { return c.DataChecksumVersion != 0 }

// ParseControlFile decodes the content of global/pg_control of a
// PostgreSQL 13-16 cluster on a little-endian machine. It checks the format
// version, then the CRC-32C of the data (an error wrapping ErrControlCRC if
// it does not match), then the sizes.
func ParseControlFile(b []byte) (ControlData, error) {
	if len(b) < ctlDataSize {
		return ControlData{}, fmt.Errorf("parse pg_control: %d bytes, want at least %d", len(b), ctlDataSize)
	}
	le := binary.LittleEndian
	version := le.Uint32(b[ctlVersion:])
	if version != PGControlVersion {
		if binary.BigEndian.Uint32(b[ctlVersion:]) == PGControlVersion {
			return ControlData{}, fmt.Errorf("parse pg_control: version %d in the other byte order: the cluster is big-endian, which walrus does not support", PGControlVersion)
		}
		return ControlData{}, fmt.Errorf("parse pg_control: format version %d, want %d (PostgreSQL 13-16)", version, PGControlVersion)
	}
	want := le.Uint32(b[ctlCRC:])
	if got := crc32.Checksum(b[:ctlCRC], crc32.MakeTable(crc32.Castagnoli)); got != want {
		return ControlData{}, fmt.Errorf("parse pg_control: computed %08X, stored %08X: %w", got, want, ErrControlCRC)
	}
	if f := math.Float64frombits(le.Uint64(b[ctlFloatFormat:])); f != floatFormatValue {
		return ControlData{}, fmt.Errorf("parse pg_control: float format check value %v, want %v", f, floatFormatValue)
	}
	c := ControlData{
		SystemIdentifier:    le.Uint64(b[ctlSystemIdentifier:]),
		PGControlVersion:    version,
		CatalogVersion:      le.Uint32(b[ctlCatalogVersion:]),
		State:               DBState(le.Uint32(b[ctlState:])),
		Time:                time.Unix(int64(le.Uint64(b[ctlTime:])), 0).UTC(),
		CheckpointLSN:       LSN(le.Uint64(b[ctlCheckPoint:])),
		RedoLSN:             LSN(le.Uint64(b[ctlCkptRedo:])),
		TimeLineID:          TimelineID(le.Uint32(b[ctlCkptThisTLI:])),
		PrevTimeLineID:      TimelineID(le.Uint32(b[ctlCkptPrevTLI:])),
		FullPageWrites:      b[ctlCkptFullPages] != 0,
		NextXID:             le.Uint64(b[ctlCkptNextXID:]),
		NextOID:             le.Uint32(b[ctlCkptNextOID:]),
		CheckpointTime:      time.Unix(int64(le.Uint64(b[ctlCkptTime:])), 0).UTC(),
		MinRecoveryPoint:    LSN(le.Uint64(b[ctlMinRecoveryPoint:])),
		MinRecoveryPointTLI: TimelineID(le.Uint32(b[ctlMinRecoveryTLI:])),
		BackupStartPoint:    LSN(le.Uint64(b[ctlBackupStartPoint:])),
		BackupEndPoint:      LSN(le.Uint64(b[ctlBackupEndPoint:])),
		BackupEndRequired:   b[ctlBackupEndRequired] != 0,
		WALLevel:            int32(le.Uint32(b[ctlWALLevel:])),
		WALLogHints:         b[ctlWALLogHints] != 0,
		MaxAlign:            le.Uint32(b[ctlMaxAlign:]),
		BlockSize:           le.Uint32(b[ctlBlockSize:]),
		RelSegSize:          le.Uint32(b[ctlRelSegSize:]),
		WALBlockSize:        le.Uint32(b[ctlWALBlockSize:]),
		WALSegSize:          le.Uint32(b[ctlWALSegSize:]),
		DataChecksumVersion: le.Uint32(b[ctlChecksumVersion:]),
	}
	if !ValidWALSegSize(uint64(c.WALSegSize)) {
		return ControlData{}, fmt.Errorf("parse pg_control: invalid WAL segment size %d", c.WALSegSize)
	}
	if !validPageSize(c.BlockSize) || !validPageSize(c.WALBlockSize) {
		return ControlData{}, fmt.Errorf("parse pg_control: invalid block size %d or WAL block size %d", c.BlockSize, c.WALBlockSize)
	}
	if c.RelSegSize == 0 {
		return ControlData{}, fmt.Errorf("parse pg_control: relation segment size is 0")
	}
	return c, nil
}

// validPageSize reports whether n is a page size PostgreSQL can be built
// with: a power of two from 1 KiB to 32 KiB.
func validPageSize(n uint32) bool { return n >= 1024 && n <= 32768 && n&(n-1) == 0 }

// controlReadAttempts and controlRetryDelay bound the retries of a torn
// read of pg_control (TRAPS.md 12).
const (
	controlReadAttempts = 5
	controlRetryDelay   = 20 * time.Millisecond
)

// ReadControlFile reads and parses a pg_control file (normally
// PGDATA/global/pg_control). PostgreSQL rewrites the file in place, so a
// read can see a torn mix of two versions; on a CRC mismatch it reads again,
// a few times, before it gives up with an error wrapping ErrControlCRC.
func ReadControlFile(path string) (ControlData, error) {
	var lastErr error
	for attempt := 0; attempt < controlReadAttempts; attempt++ {
		if attempt > 0 {
			time.Sleep(controlRetryDelay)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return ControlData{}, fmt.Errorf("read control file: %w", err)
		}
		c, err := ParseControlFile(b)
		if err == nil {
			return c, nil
		}
		lastErr = fmt.Errorf("read control file %s: %w", path, err)
		if !errors.Is(err, ErrControlCRC) {
			return ControlData{}, lastErr
		}
	}
	return ControlData{}, fmt.Errorf("%w (after %d attempts)", lastErr, controlReadAttempts)
}
