package pg

import (
	"strconv"
	"strings"
	"testing"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func TestValidWALSegSize(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1 * mib, 2 * mib, 16 * mib, 64 * mib, 512 * mib, 1 * gib} {
		if !ValidWALSegSize(n) {
			t.Errorf("ValidWALSegSize(%d) = false", n)
		}
	}
	for _, n := range []uint64{0, 1, 512 * 1024, mib - 1, mib + 1, 3 * mib, 2 * gib, 1 << 63} {
		if ValidWALSegSize(n) {
			t.Errorf("ValidWALSegSize(%d) = true", n)
		}
	}
}

func TestSegmentNameKnown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tli     TimelineID
		segNo   uint64
		segSize uint64
		want    string
	}{
		{1, 1, 16 * mib, "000000010000000000000001"},
		{1, 0xFF, 16 * mib, "0000000100000000000000FF"},
		{1, 0x100, 16 * mib, "000000010000000100000000"},
		{0x1A, 0x1234 + 5*256, 16 * mib, "0000001A0000001700000034"},
		{1, 0xFFF, 1 * mib, "000000010000000000000FFF"},
		{1, 0x1000, 1 * mib, "000000010000000100000000"},
		{2, 0x3F, 64 * mib, "00000002000000000000003F"},
		{2, 0x40, 64 * mib, "000000020000000100000000"},
		{3, 4, 1 * gib, "000000030000000100000000"},
		{0xFFFFFFFF, 0xFFFFFFFF*256 + 0xFF, 16 * mib, "FFFFFFFFFFFFFFFF000000FF"},
	}
	for _, tt := range tests {
		if got := SegmentName(tt.tli, tt.segNo, tt.segSize); got != tt.want {
			t.Errorf("SegmentName(%d, %#x, %d) = %s, want %s", tt.tli, tt.segNo, tt.segSize, got, tt.want)
		}
	}
}

func TestSegmentNameRoundTrip(t *testing.T) {
	t.Parallel()
	for _, segSize := range []uint64{1 * mib, 16 * mib, 64 * mib, 1 * gib} {
		per := 0x100000000 / segSize
		for _, segNo := range []uint64{0, 1, per - 1, per, per + 1, 7*per + 3, 0xFFFFFFFF*per + per - 1} {
			for _, tli := range []TimelineID{1, 2, 0xABCDEF01} {
				name := SegmentName(tli, segNo, segSize)
				for _, suffix := range []string{"", ".partial"} {
					f, err := ParseWALFileName(name+suffix, segSize)
					if err != nil {
						t.Fatalf("ParseWALFileName(%q, %d): %v", name+suffix, segSize, err)
					}
					want := SegmentFile
					if suffix != "" {
						want = PartialFile
					}
					if f.Kind != want || f.Timeline != tli || f.SegNo != segNo || f.Name != name+suffix {
						t.Errorf("ParseWALFileName(%q, %d) = %+v, want %v tli %d segNo %#x", name+suffix, segSize, f, want, tli, segNo)
					}
				}
				start := SegmentStartLSN(segNo, segSize)
				if SegmentForLSN(start, segSize) != segNo || SegmentForLSN(start+LSN(segSize)-1, segSize) != segNo {
					t.Errorf("segment %#x of %d bytes: LSN range does not map back", segNo, segSize)
				}
				if segNo > 0 && SegmentForLSN(start-1, segSize) != segNo-1 {
					t.Errorf("segment %#x of %d bytes: LSN before start maps to %#x", segNo, segSize, SegmentForLSN(start-1, segSize))
				}
			}
		}
	}
}

func TestSegmentForLSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lsn     string
		segSize uint64
		want    uint64
	}{
		{"0/16B3748", 16 * mib, 1},
		{"0/1000000", 16 * mib, 1},
		{"0/FFFFFF", 16 * mib, 0},
		{"1/0", 16 * mib, 256},
		{"16/B374D848", 16 * mib, 0x16*256 + 0xB3},
		{"0/16B3748", 1 * mib, 0x16},
		{"2/80000000", 64 * mib, 2*64 + 32},
	}
	for _, tt := range tests {
		lsn, err := ParseLSN(tt.lsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := SegmentForLSN(lsn, tt.segSize); got != tt.want {
			t.Errorf("SegmentForLSN(%s, %d) = %#x, want %#x", tt.lsn, tt.segSize, got, tt.want)
		}
	}
	if got := SegmentStartLSN(0x16*256+0xB3, 16*mib).String(); got != "16/B3000000" {
		t.Errorf("SegmentStartLSN = %s, want 16/B3000000", got)
	}
}

func TestParseHistoryAndBackupNames(t *testing.T) {
	t.Parallel()
	if got := HistoryFileName(0x1A); got != "0000001A.history" {
		t.Errorf("HistoryFileName(0x1A) = %s", got)
	}
	f, err := ParseWALFileName("0000001A.history", 16*mib)
	if err != nil || f.Kind != HistoryFile || f.Timeline != 0x1A || f.SegNo != 0 || f.StartLSN(16*mib) != InvalidLSN {
		t.Errorf("ParseWALFileName(history) = %+v, %v", f, err)
	}
	f, err = ParseWALFileName("000000010000000000000002.00000028.backup", 16*mib)
	if err != nil || f.Kind != BackupFile || f.Timeline != 1 || f.SegNo != 2 || f.Offset != 0x28 {
		t.Fatalf("ParseWALFileName(backup) = %+v, %v", f, err)
	}
	if got := f.StartLSN(16 * mib).String(); got != "0/2000028" {
		t.Errorf("backup StartLSN = %s, want 0/2000028", got)
	}
	// The offset must fit in the segment: 0x00200000 is past a 1 MiB one.
	if _, err := ParseWALFileName("000000010000000000000002.00200000.backup", 1*mib); err == nil {
		t.Error("backup offset past the segment end accepted")
	}
	for k, want := range map[WALFileKind]string{SegmentFile: "segment", HistoryFile: "history", BackupFile: "backup", PartialFile: "partial"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestParseWALFileNameStrict(t *testing.T) {
	t.Parallel()
	bad := []string{
		"",
		"00000001000000000000000",   // 23
		"0000000100000000000000001", // 25
		"000000010000000000000001 ",
		" 000000010000000000000001",
		"00000001000000000000000a", // lower case
		"0000000100000000000000G1",
		"000000000000000000000001", // timeline 0
		"pg_wal/000000010000000000000001",
		"../00000001000000000000001",
		"0000000/000000000000000001",
		"00000001\\00000000000000001",
		"000000010000000000000100", // seg 0x100 does not exist with 16 MiB segments
		"00000001.HISTORY",
		"0000001a.history",
		"00000000.history",
		"000000001.history",
		"00000001.history.gz",
		"000000010000000000000001.PARTIAL",
		"000000010000000000000001.partial.lz4",
		"000000010000000000000001.00000028.backupx",
		"000000010000000000000001.0000002.backup",
		"000000010000000000000001.0000002g.backup",
		"000000010000000000000001_00000028.backup",
		"000000010000000000000001.lz4",
		"0000000100000000000000é1",
		"archive_status",
	}
	for _, name := range bad {
		_, err := ParseWALFileName(name, 16*mib)
		if err == nil {
			t.Errorf("ParseWALFileName(%q) accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("ParseWALFileName(%q) error does not name the value: %v", name, err)
		}
	}
	// Valid with 64 MiB segments only up to 0x3F per log.
	if _, err := ParseWALFileName("000000010000000000000040", 64*mib); err == nil {
		t.Error("segment 0x40 accepted with 64 MiB segments")
	}
	if _, err := ParseWALFileName("00000001000000000000003F", 64*mib); err != nil {
		t.Errorf("segment 0x3F with 64 MiB segments: %v", err)
	}
	if _, err := ParseWALFileName("000000010000000000000FFF", 1*mib); err != nil {
		t.Errorf("segment 0xFFF with 1 MiB segments: %v", err)
	}
	if _, err := ParseWALFileName("000000010000000000000001", 3*mib); err == nil {
		t.Error("invalid segment size accepted")
	}
}

func FuzzParseWALFileName(f *testing.F) {
	for _, s := range []string{"000000010000000000000001", "00000002.history", "000000010000000000000002.00000028.backup", "000000010000000000000003.partial", "x"} {
		f.Add(s, uint8(24))
	}
	f.Fuzz(func(t *testing.T, name string, shift uint8) {
		segSize := uint64(1) << (20 + shift%11)
		w, err := ParseWALFileName(name, segSize)
		if err != nil {
			return
		}
		var again string
		switch w.Kind {
		case SegmentFile:
			again = SegmentName(w.Timeline, w.SegNo, segSize)
		case PartialFile:
			again = SegmentName(w.Timeline, w.SegNo, segSize) + ".partial"
		case HistoryFile:
			again = HistoryFileName(w.Timeline)
		case BackupFile:
			again = SegmentName(w.Timeline, w.SegNo, segSize) + "." + strings.ToUpper(strings.TrimPrefix(name[24:33], ".")) + ".backup"
		default:
			t.Fatalf("unknown kind %v", w.Kind)
		}
		if again != name {
			t.Fatalf("ParseWALFileName(%q) = %+v, which renders as %q", name, w, again)
		}
	})
}
