package pg

import (
	"strings"
	"testing"
)

// Fuzz targets for the decoders of pg that the targets next to their
// tests do not cover. Each must never panic or hang, must refuse garbage
// with an error, and must only accept what it can render back.

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF", " 1/2 ", "1/", "/1", "g/1", "123456789/0", "-1/0", "+1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		if !strings.Contains(s, "/") {
			t.Fatalf("ParseLSN(%q) = %s without a '/'", s, l)
		}
		again, err := ParseLSN(l.String())
		if err != nil || again != l {
			t.Fatalf("ParseLSN(%q) = %s, which parses back as %s, %v", s, l, again, err)
		}
		var u LSN
		if err := u.UnmarshalText([]byte(s)); err != nil || u != l {
			t.Fatalf("UnmarshalText(%q) = %s, %v; ParseLSN gave %s", s, u, err, l)
		}
	})
}

func FuzzParseBackupLabel(f *testing.F) {
	f.Add(`START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-21 18:50:00 UTC
LABEL: walrus
START TIMELINE: 1
`)
	f.Add("START WAL LOCATION: 0/2000028\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 0\n")
	f.Add("START WAL LOCATION: x/y (file z)\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		l, err := ParseBackupLabel(text)
		if err != nil {
			return
		}
		if l.StartTimeline == 0 {
			t.Fatalf("accepted START TIMELINE 0 from %q", text)
		}
		for _, key := range []string{"START WAL LOCATION: ", "CHECKPOINT LOCATION: ", "START TIMELINE: "} {
			if !strings.Contains(text, key) {
				t.Fatalf("accepted a label without %q: %q", key, text)
			}
		}
	})
}

// FuzzParseControlFileResealed fixes the CRC of its input, so that the
// fuzzer explores the checks that come after it.
func FuzzParseControlFileResealed(f *testing.F) {
	f.Add(syntheticControl())
	f.Add(syntheticControl()[:ctlDataSize])
	b := syntheticControl()
	b[ctlWALSegSize] = 3
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= ctlDataSize {
			b = append([]byte(nil), b...)
			resealControl(b)
		}
		c, err := ParseControlFile(b)
		if err != nil {
			return
		}
		switch {
		case len(b) < ctlDataSize:
			t.Fatalf("accepted %d bytes", len(b))
		case c.PGControlVersion != PGControlVersion:
			t.Fatalf("accepted format version %d", c.PGControlVersion)
		case !ValidWALSegSize(uint64(c.WALSegSize)):
			t.Fatalf("accepted WAL segment size %d", c.WALSegSize)
		case !validPageSize(c.BlockSize) || !validPageSize(c.WALBlockSize):
			t.Fatalf("accepted block sizes %d and %d", c.BlockSize, c.WALBlockSize)
		case c.RelSegSize == 0:
			t.Fatal("accepted a relation segment size of 0")
		}
	})
}

func FuzzReadHistory(f *testing.F) {
	f.Add(uint32(3), history3)
	f.Add(uint32(2), history3)
	f.Add(uint32(1), "")
	f.Add(uint32(5), "1\t0/3000158\tno recovery target specified\n2\t0/2000000\tbackwards\n")
	f.Fuzz(func(t *testing.T, tli uint32, in string) {
		h, err := ReadHistory(TimelineID(tli), strings.NewReader(in))
		if err != nil {
			return
		}
		for i, e := range h.Entries {
			if e.Parent >= TimelineID(tli) {
				t.Fatalf("timeline %d accepted ancestor %d", tli, e.Parent)
			}
			if i > 0 && (e.Parent <= h.Entries[i-1].Parent || e.SwitchLSN < h.Entries[i-1].SwitchLSN) {
				t.Fatalf("accepted out-of-order entries %+v", h.Entries)
			}
			// The lineage answers consistently about its own switch points.
			if sp, ok := h.SwitchPoint(e.Parent); !ok || sp != e.SwitchLSN {
				t.Fatalf("SwitchPoint(%d) = %s, %v; the entry says %s", e.Parent, sp, ok, e.SwitchLSN)
			}
		}
		_ = h.TimelineAt(0)
		_ = h.Contains(TimelineID(tli), InvalidLSN)
	})
}

func FuzzParseRelFilePath(f *testing.F) {
	for _, s := range []string{"base/1/1259", "base/16384/16385_vm", "base/5/2619.3", "global/1262", "global/pg_control",
		"pg_tblspc/16400/PG_15_202209061/16384/16401_fsm.2", "base/1/t3_1259", "base/01/1259", "base/1/1259.0", "/base/1/1259", "base/1/../1/1259"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		r, ok := ParseRelFilePath(rel)
		if !ok {
			return
		}
		if strings.HasPrefix(rel, "/") || strings.Contains(rel, "//") || strings.Contains(rel, "..") || strings.Contains(rel, "./") {
			t.Fatalf("accepted the path %q as a relation file", rel)
		}
		if r.RelNode == 0 || r.Segment < 0 || !(r.Fork == ForkMain || r.Fork == ForkFSM || r.Fork == ForkVM || r.Fork == ForkInit) {
			t.Fatalf("ParseRelFilePath(%q) = %+v", rel, r)
		}
	})
}
