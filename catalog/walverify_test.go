package catalog

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

const seg16M = 16 << 20

// walRepo is a synthetic archive on storage/mem.
type walRepo struct {
	t  *testing.T
	st *mem.Store
}

func newWALRepo(t *testing.T) *walRepo { return &walRepo{t: t, st: mem.New()} }

// segs stores segments first..last of timeline tli (16 MiB names), with
// the plaintext size wal-push records.
func (w *walRepo) segs(tli pg.TimelineID, first, last uint64) *walRepo {
	for s := first; s <= last; s++ {
		w.put(pg.SegmentName(tli, s, seg16M)+".none", "x", map[string]string{repo.MetaSize: strconv.Itoa(seg16M)})
	}
	return w
}

func (w *walRepo) history(tli pg.TimelineID, body string) *walRepo {
	w.put(pg.HistoryFileName(tli)+".none", body, nil)
	return w
}

func (w *walRepo) put(name, body string, md map[string]string) {
	w.t.Helper()
	if err := w.st.Put(context.Background(), repo.WALPrefix+name, strings.NewReader(body), storage.PutOptions{Size: int64(len(body)), Metadata: md}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *walRepo) del(name string) *walRepo {
	w.t.Helper()
	if err := w.st.Delete(context.Background(), repo.WALPrefix+name+".none"); err != nil {
		w.t.Fatal(err)
	}
	return w
}

func (w *walRepo) backup(name string, tli pg.TimelineID, start, finish pg.LSN) *walRepo {
	w.t.Helper()
	m := validManifest(name, "7300000000000000042", tli, start)
	m.FinishLSN = finish
	m.WALSegmentSize = seg16M
	if err := WriteManifest(context.Background(), w.st, m); err != nil {
		w.t.Fatal(err)
	}
	return w
}

func (w *walRepo) verify() *WALReport {
	w.t.Helper()
	rep, err := VerifyWAL(context.Background(), w.st, &repo.Decoder{})
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

func seg(tli pg.TimelineID, s uint64) string { return pg.SegmentName(tli, s, seg16M) }

func wantMissing(t *testing.T, rep *WALReport, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(rep.Missing, want) {
		t.Fatalf("missing = %v, want %v\nreport: %+v", rep.Missing, want, rep)
	}
	if rep.OK != (len(want) == 0 && len(rep.Ambiguous) == 0 && len(rep.BrokenBackups) == 0) {
		t.Fatalf("ok = %v with missing %v, broken %v", rep.OK, rep.Missing, rep.BrokenBackups)
	}
}

func TestVerifyWALEmpty(t *testing.T) {
	t.Parallel()
	rep := newWALRepo(t).verify()
	if !rep.OK || !rep.Range.Empty {
		t.Fatalf("empty repository: %+v", rep)
	}
	b, _ := json.Marshal(rep)
	for _, k := range []string{`"ok":true`, `"missing":[]`, `"broken_backups":[]`, `"range":{`, `"timelines":[]`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

func TestVerifyWALOneTimeline(t *testing.T) {
	t.Parallel()
	w := newWALRepo(t).segs(1, 1, 6)
	rep := w.verify()
	wantMissing(t, rep)
	if rep.Range.FirstSegment != seg(1, 1) || rep.Range.LastSegment != seg(1, 6) || rep.Range.Segments != 6 || rep.Range.StartBackup != "" {
		t.Fatalf("range %+v", rep.Range)
	}
	if rep.WALSegmentSize != seg16M {
		t.Fatalf("segment size %d", rep.WALSegmentSize)
	}

	// A hole in the middle is named exactly; the ends are not holes.
	w.del(seg(1, 4))
	wantMissing(t, w.verify(), seg(1, 4))
	w.del(seg(1, 1)).del(seg(1, 6))
	wantMissing(t, w.verify(), seg(1, 4))
}

func TestVerifyWALStartsAtOldestBackup(t *testing.T) {
	t.Parallel()
	// Segment 2 is missing, but the only backup starts in segment 3: what
	// precedes it is not needed.
	w := newWALRepo(t).segs(1, 1, 1).segs(1, 3, 8).backup("base_a", 1, 0x3000028, 0x4000100)
	rep := w.verify()
	wantMissing(t, rep)
	if rep.Range.StartBackup != "base_a" || rep.Range.FirstSegment != seg(1, 3) || rep.Range.LastSegment != seg(1, 8) {
		t.Fatalf("range %+v", rep.Range)
	}

	// A segment the backup needs to become consistent.
	w.del(seg(1, 4))
	rep = w.verify()
	wantMissing(t, rep, seg(1, 4))
	if len(rep.BrokenBackups) != 1 || rep.BrokenBackups[0].Name != "base_a" || !reflect.DeepEqual(rep.BrokenBackups[0].Missing, []string{seg(1, 4)}) {
		t.Fatalf("broken backups %+v", rep.BrokenBackups)
	}

	// A segment after the backup's finish: WAL is missing, the backup is
	// still restorable to consistency.
	w.segs(1, 4, 4).del(seg(1, 6))
	rep = w.verify()
	wantMissing(t, rep, seg(1, 6))
	if len(rep.BrokenBackups) != 0 {
		t.Fatalf("broken backups %+v", rep.BrokenBackups)
	}
}

func TestVerifyWALFinishAtSegmentBoundary(t *testing.T) {
	t.Parallel()
	// A backup that finishes exactly where segment 4 begins needs segments
	// 3 only; segment 4 is not archived yet.
	rep := newWALRepo(t).segs(1, 3, 3).backup("base_a", 1, 0x3000028, 0x4000000).verify()
	wantMissing(t, rep)
}

func TestVerifyWALTimelineSwitch(t *testing.T) {
	t.Parallel()
	// Timeline 2 left timeline 1 at 0/4800000, inside segment 4. Timeline
	// 1 went on (segment 5 is archived too); timeline 2 has segment 4 (a
	// copy PostgreSQL made at the switch) to 7.
	hist2 := "1\t0/4800000\tno recovery target specified\n"
	build := func() *walRepo {
		return newWALRepo(t).segs(1, 1, 5).history(2, hist2).segs(2, 4, 7)
	}
	rep := build().verify()
	wantMissing(t, rep)
	if rep.Range.FirstSegment != seg(1, 1) || rep.Range.LastSegment != seg(2, 7) || rep.Range.Segments != 7 {
		t.Fatalf("range %+v", rep.Range)
	}
	if len(rep.Timelines) != 2 || rep.Timelines[0].LastSegment != seg(1, 3) || rep.Timelines[1].FirstSegment != seg(2, 4) ||
		rep.Timelines[0].SwitchLSN == nil || *rep.Timelines[0].SwitchLSN != 0x4800000 || rep.Timelines[1].SwitchLSN != nil {
		t.Fatalf("timelines %+v", rep.Timelines)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "timeline 1 has 1 segment(s) archived past 0/4800000") {
		t.Fatalf("notes %q", rep.Notes)
	}

	// The switch segment is needed on the new timeline: the parent's copy
	// holds WAL of the abandoned branch after the switch point.
	rep = build().del(seg(2, 4)).verify()
	wantMissing(t, rep, seg(2, 4))

	// Before the switch, timeline 1's segments are needed.
	wantMissing(t, build().del(seg(1, 2)).verify(), seg(1, 2))

	// Just after the promotion: the history file is archived, no segment
	// of timeline 2 yet. Nothing is missing; the range ends before the
	// switch segment.
	rep = newWALRepo(t).segs(1, 1, 4).history(2, hist2).verify()
	wantMissing(t, rep)
	if rep.Range.LastSegment != seg(1, 3) {
		t.Fatalf("range %+v", rep.Range)
	}

	// Without its history file, timeline 2 cannot be followed.
	rep = build().delHistory(2).verify()
	wantMissing(t, rep, pg.HistoryFileName(2))

	// A backup on timeline 2 starts the range there; timeline 1's missing
	// segment 2 is then irrelevant.
	rep = build().del(seg(1, 2)).backup("base_b", 2, 0x5000028, 0x5000100).verify()
	wantMissing(t, rep)
	if rep.Range.StartBackup != "base_b" || rep.Range.FirstSegment != seg(2, 5) || len(rep.Timelines) != 1 {
		t.Fatalf("range %+v timelines %+v", rep.Range, rep.Timelines)
	}

	// A backup on the abandoned branch (timeline 1 after the switch) is
	// checked for its own consistency only, and noted.
	rep = build().backup("base_c", 1, 0x5000028, 0x5000100).verify()
	wantMissing(t, rep)
	if rep.Range.StartBackup != "" || !strings.Contains(strings.Join(rep.Notes, "\n"), "backup base_c (timeline 1, start 0/5000028) is not on the lineage of timeline 2") {
		t.Fatalf("range %+v notes %q", rep.Range, rep.Notes)
	}
	rep = build().backup("base_c", 1, 0x5000028, 0x5000100).del(seg(1, 5)).verify()
	wantMissing(t, rep, seg(1, 5))
	if len(rep.BrokenBackups) != 1 || rep.BrokenBackups[0].Name != "base_c" {
		t.Fatalf("broken %+v", rep.BrokenBackups)
	}
}

func (w *walRepo) delHistory(tli pg.TimelineID) *walRepo {
	w.t.Helper()
	if err := w.st.Delete(context.Background(), repo.WALPrefix+pg.HistoryFileName(tli)+".none"); err != nil {
		w.t.Fatal(err)
	}
	return w
}

func TestVerifyWALHistoryProbing(t *testing.T) {
	t.Parallel()
	// Timeline 3 branched from timeline 1; timeline 2 was another branch
	// of 1. Restoring to the latest timeline probes 2 before 3, so
	// 00000002.history is needed although 2 is not an ancestor of 3.
	w := newWALRepo(t).segs(1, 1, 4).history(3, "1\t0/3800000\tbranch\n").segs(3, 3, 5)
	wantMissing(t, w.verify(), pg.HistoryFileName(2))
	w.history(2, "1\t0/2800000\tother branch\n").segs(2, 2, 2)
	rep := w.verify()
	wantMissing(t, rep)
	if rep.Range.LastSegment != seg(3, 5) || len(rep.Timelines) != 2 || rep.Timelines[0].Timeline != 1 || rep.Timelines[1].Timeline != 3 {
		t.Fatalf("range %+v timelines %+v", rep.Range, rep.Timelines)
	}
}

func TestVerifyWALAmbiguous(t *testing.T) {
	t.Parallel()
	w := newWALRepo(t).segs(1, 1, 3)
	w.put(seg(1, 2)+".lz4", "y", nil)
	rep := w.verify()
	if rep.OK || !reflect.DeepEqual(rep.Ambiguous, []string{seg(1, 2)}) || len(rep.Missing) != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestDetectWALSegmentSizeFromHeader: without a backup and without the
// recorded size, the first segment's header says it (1 MiB segments).
func TestDetectWALSegmentSizeFromHeader(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	w := newWALRepo(t)
	for s := uint64(3); s <= 5; s++ {
		hdr := make([]byte, pg.SegmentHeaderSize)
		le := binary.LittleEndian
		le.PutUint16(hdr[0:], pg.WALPageMagic)
		le.PutUint16(hdr[2:], pg.WALLongHeaderFlag)
		le.PutUint32(hdr[4:], 1)
		le.PutUint64(hdr[8:], s*size)
		le.PutUint64(hdr[24:], 7300000000000000042)
		le.PutUint32(hdr[32:], size)
		le.PutUint32(hdr[36:], 8192)
		w.put(pg.SegmentName(1, s, size)+".none", string(hdr), nil)
	}
	rep := w.verify()
	wantMissing(t, rep)
	if rep.WALSegmentSize != size || rep.Range.Segments != 3 || rep.Range.LastSegment != pg.SegmentName(1, 5, size) {
		t.Fatalf("report %+v", rep)
	}
}
