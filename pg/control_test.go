package pg

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syntheticControl builds a pg_control image with the fields the parser
// checks set to plausible values, and a correct CRC.
func syntheticControl() []byte {
	b := make([]byte, ControlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[ctlSystemIdentifier:], 7300000000000000001)
	le.PutUint32(b[ctlVersion:], PGControlVersion)
	le.PutUint32(b[ctlCatalogVersion:], 202209061)
	le.PutUint32(b[ctlState:], uint32(DBInProduction))
	le.PutUint64(b[ctlCheckPoint:], 0x2000060)
	le.PutUint64(b[ctlCkptRedo:], 0x2000028)
	le.PutUint32(b[ctlCkptThisTLI:], 3)
	le.PutUint32(b[ctlCkptPrevTLI:], 2)
	le.PutUint64(b[ctlFloatFormat:], math.Float64bits(floatFormatValue))
	le.PutUint32(b[ctlBlockSize:], 8192)
	le.PutUint32(b[ctlRelSegSize:], 131072)
	le.PutUint32(b[ctlWALBlockSize:], 8192)
	le.PutUint32(b[ctlWALSegSize:], 64<<20)
	le.PutUint32(b[ctlChecksumVersion:], 1)
	resealControl(b)
	return b
}

func resealControl(b []byte) {
	binary.LittleEndian.PutUint32(b[ctlCRC:], crc32.Checksum(b[:ctlCRC], crc32.MakeTable(crc32.Castagnoli)))
}

func TestParseControlFileSynthetic(t *testing.T) {
	t.Parallel()
	c, err := ParseControlFile(syntheticControl())
	if err != nil {
		t.Fatal(err)
	}
	if c.SystemIdentifier != 7300000000000000001 || c.State != DBInProduction || c.CheckpointLSN != 0x2000060 ||
		c.RedoLSN != 0x2000028 || c.TimeLineID != 3 || c.PrevTimeLineID != 2 || c.WALSegSize != 64<<20 ||
		c.BlockSize != 8192 || c.RelSegSize != 131072 || !c.DataChecksums() {
		t.Fatalf("parsed %+v", c)
	}
	if c.State.String() != "in production" || DBState(99).String() == "" {
		t.Errorf("state names: %q", c.State)
	}
}

func TestParseControlFileRejects(t *testing.T) {
	t.Parallel()
	// Any flipped bit in the covered bytes is a CRC error.
	for _, off := range []int{0, ctlCkptRedo, ctlWALSegSize, ctlCRC - 1, ctlCRC} {
		b := syntheticControl()
		b[off] ^= 0x01
		_, err := ParseControlFile(b)
		if !errors.Is(err, ErrControlCRC) {
			t.Errorf("flip at %d: err = %v, want ErrControlCRC", off, err)
		}
	}
	// Bytes after the CRC are not covered.
	b := syntheticControl()
	b[ControlFileSize-1] = 0xFF
	if _, err := ParseControlFile(b); err != nil {
		t.Errorf("change after the CRC: %v", err)
	}

	tooShort := syntheticControl()[:ctlDataSize-1]
	if _, err := ParseControlFile(tooShort); err == nil {
		t.Error("short file accepted")
	}

	b = syntheticControl()
	binary.LittleEndian.PutUint32(b[ctlVersion:], 1700)
	resealControl(b)
	if _, err := ParseControlFile(b); err == nil || errors.Is(err, ErrControlCRC) || !strings.Contains(err.Error(), "1700") {
		t.Errorf("version 1700: %v", err)
	}
	binary.BigEndian.PutUint32(b[ctlVersion:], PGControlVersion)
	if _, err := ParseControlFile(b); err == nil || !strings.Contains(err.Error(), "big-endian") {
		t.Errorf("big-endian: %v", err)
	}

	b = syntheticControl()
	binary.LittleEndian.PutUint32(b[ctlWALSegSize:], 3<<20)
	resealControl(b)
	if _, err := ParseControlFile(b); err == nil {
		t.Error("3 MiB WAL segments accepted")
	}
}

func TestReadControlFileCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "pg_control")
	b := syntheticControl()
	b[100] ^= 0xFF
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadControlFile(p); !errors.Is(err, ErrControlCRC) {
		t.Fatalf("ReadControlFile(corrupt) = %v, want ErrControlCRC", err)
	}
	if _, err := ReadControlFile(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadControlFile(missing) = %v", err)
	}
	if err := os.WriteFile(p, syntheticControl(), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := ReadControlFile(p); err != nil || c.TimeLineID != 3 {
		t.Fatalf("ReadControlFile(good) = %+v, %v", c, err)
	}
}

func TestParseSegmentHeaderSynthetic(t *testing.T) {
	t.Parallel()
	mk := func() []byte {
		b := make([]byte, SegmentHeaderSize)
		le := binary.LittleEndian
		le.PutUint16(b[0:], WALPageMagic)
		le.PutUint16(b[2:], WALLongHeaderFlag)
		le.PutUint32(b[4:], 2)
		le.PutUint64(b[8:], 5<<20)
		le.PutUint64(b[24:], 42)
		le.PutUint32(b[32:], 1<<20)
		le.PutUint32(b[36:], 8192)
		return b
	}
	h, err := ParseSegmentHeader(mk())
	if err != nil {
		t.Fatal(err)
	}
	if h.Timeline != 2 || h.SegNo() != 5 || h.SystemIdentifier != 42 || h.SegSize != 1<<20 || h.BlockSize != 8192 {
		t.Fatalf("parsed %+v", h)
	}
	for name, mutate := range map[string]func([]byte){
		"magic":      func(b []byte) { binary.LittleEndian.PutUint16(b[0:], 0xD10D) },
		"short page": func(b []byte) { binary.LittleEndian.PutUint16(b[2:], 0) },
		"seg size":   func(b []byte) { binary.LittleEndian.PutUint32(b[32:], 1000) },
		"block size": func(b []byte) { binary.LittleEndian.PutUint32(b[36:], 100) },
		"page addr":  func(b []byte) { binary.LittleEndian.PutUint64(b[8:], 5<<20+8192) },
		"timeline":   func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 0) },
	} {
		b := mk()
		mutate(b)
		if _, err := ParseSegmentHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseSegmentHeader(mk()[:SegmentHeaderSize-1]); err == nil {
		t.Error("short header accepted")
	}
}

func TestParseBackupLabel(t *testing.T) {
	t.Parallel()
	const text = `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2024-01-02 03:04:05 UTC
LABEL: walrus: with colons
START TIMELINE: 1
`
	l, err := ParseBackupLabel(text)
	if err != nil {
		t.Fatal(err)
	}
	want := BackupLabel{StartLSN: 0x2000028, StartWALFile: "000000010000000000000002", CheckpointLSN: 0x2000060,
		Method: "streamed", From: "primary", StartTime: "2024-01-02 03:04:05 UTC", Label: "walrus: with colons", StartTimeline: 1}
	if l != want {
		t.Fatalf("ParseBackupLabel = %+v, want %+v", l, want)
	}
	if _, err := ParseBackupLabel("LABEL: x\n"); err == nil {
		t.Error("label without locations accepted")
	}
	if _, err := ParseBackupLabel(strings.Replace(text, "START TIMELINE: 1", "START TIMELINE: x", 1)); err == nil {
		t.Error("bad timeline accepted")
	}
}

func FuzzParseControlFile(f *testing.F) {
	f.Add(syntheticControl())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseControlFile(b)
		if err == nil && !ValidWALSegSize(uint64(c.WALSegSize)) {
			t.Fatalf("accepted WAL segment size %d", c.WALSegSize)
		}
	})
}

func FuzzParseSegmentHeader(f *testing.F) {
	f.Add(make([]byte, SegmentHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseSegmentHeader(b)
		if err == nil && uint64(h.PageAddr)%uint64(h.SegSize) != 0 {
			t.Fatalf("accepted page address %s", h.PageAddr)
		}
	})
}
