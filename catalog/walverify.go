package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// WALReport is what VerifyWAL found. Its JSON form is what
// `walrus wal-verify --json` prints; every list is present, empty when
// there is nothing to say.
type WALReport struct {
	// OK is true when nothing is missing, no name is ambiguous and every
	// backup can become consistent.
	OK bool `json:"ok"`
	// Missing names every WAL file (history files first, then segments in
	// replay order) that the checked range or a backup needs and the
	// repository lacks.
	Missing []string `json:"missing"`
	// Ambiguous names WAL files stored under more than one key; wal-fetch
	// refuses them, so a replay stops there.
	Ambiguous []string `json:"ambiguous"`
	// BrokenBackups are the backups whose replay from start LSN to finish
	// LSN cannot be done with the archive as it is.
	BrokenBackups []BrokenBackup `json:"broken_backups"`
	// Range is the stretch of WAL that was checked.
	Range WALRange `json:"range"`
	// Timelines is the lineage that was followed, oldest first.
	Timelines []WALTimeline `json:"timelines"`
	// WALSegmentSize is the segment size the names were read with (0 when
	// the repository holds no segment and no backup).
	WALSegmentSize uint64 `json:"wal_segment_size"`
	// Notes are facts worth knowing that are not failures, e.g. backups
	// that are not on the newest timeline's lineage.
	Notes []string `json:"notes"`
}

// WALRange is the stretch of WAL VerifyWAL checked: from the start of the
// oldest backup on the newest timeline's lineage that is not permanent nor
// in a permanent backup's chain (with only such backups: the newest; with
// none: the oldest archived segment of that lineage) to the newest segment
// archived on it.
type WALRange struct {
	// Empty is true when there was nothing to check (no WAL archived yet).
	Empty bool `json:"empty"`
	// StartBackup is the backup whose start LSN begins the range, or ""
	// when the range begins at the oldest archived segment.
	StartBackup string `json:"start_backup"`
	// FromTimeline and FromLSN are where the range begins.
	FromTimeline pg.TimelineID `json:"from_timeline"`
	FromLSN      pg.LSN        `json:"from_lsn"`
	// ToTimeline and ToLSN are where it ends: the last byte of the newest
	// segment archived on the lineage (or a backup's finish LSN past it).
	ToTimeline pg.TimelineID `json:"to_timeline"`
	ToLSN      pg.LSN        `json:"to_lsn"`
	// FirstSegment and LastSegment name the first and the last segment of
	// the range.
	FirstSegment string `json:"first_segment"`
	LastSegment  string `json:"last_segment"`
	// Segments is the number of segments the range needs.
	Segments int `json:"segments"`
}

// WALTimeline is one timeline of the followed lineage.
type WALTimeline struct {
	// Timeline is the timeline's ID.
	Timeline pg.TimelineID `json:"timeline"`
	// History is the name of its history file ("" for timeline 1).
	History string `json:"history"`
	// SwitchLSN is where the lineage left this timeline for the next; nil
	// for the newest timeline.
	SwitchLSN *pg.LSN `json:"switch_lsn"`
	// FirstSegment and LastSegment are the range's first and last segment
	// on this timeline ("" when the range holds none of its segments).
	FirstSegment string `json:"first_segment"`
	LastSegment  string `json:"last_segment"`
	// Segments is the number of the range's segments on this timeline.
	Segments int `json:"segments"`
}

// BrokenBackup is a backup that cannot become consistent.
type BrokenBackup struct {
	// Name is the backup's name.
	Name string `json:"name"`
	// Timeline, StartLSN and FinishLSN are the backup's, from its manifest.
	Timeline  pg.TimelineID `json:"timeline"`
	StartLSN  pg.LSN        `json:"start_lsn"`
	FinishLSN pg.LSN        `json:"finish_lsn"`
	// Missing are the WAL files its replay needs that are missing or
	// ambiguous.
	Missing []string `json:"missing"`
}

// VerifyWAL checks the continuity of the archive: every segment that a
// replay along the newest timeline's lineage needs, from the start of the
// oldest backup on that lineage (without one: from the oldest segment
// archived on it) to the newest segment archived on it, and, for every
// backup, every segment from its start LSN to its finish LSN on its own
// timeline (its replay to consistency). Backups that are permanent, or in
// the chain of a permanent backup, do not start the range unless there is
// no other: delete keeps only the WAL they need to become consistent
// (PlanDeletion).
//
// Words used here:
//   - newest timeline: the highest timeline that has a history file in the
//     repository (timeline 1 needs none), the one recovery_target_timeline
//     = 'latest' ends on. Segments of a higher timeline whose history file
//     is missing are not checked; the history file is reported missing.
//   - lineage: the newest timeline and its ancestors, from its history
//     file. Each segment position of the range is needed on the timeline
//     the lineage had at the end of that segment: the segment holding a
//     switch point is needed on the new timeline (PostgreSQL copies it
//     there at the switch), and a copy on the parent does not count.
//   - history files: every timeline above the range's first timeline up
//     to the newest needs its .history file, ancestors or not, because
//     PostgreSQL looks for the newest timeline by probing timeline IDs one
//     by one and stops at the first missing history file.
//
// The range ends at the last segment archived wholly on the lineage: the
// segment in which a timeline switched is waited for on the new timeline,
// not reported missing while only the parent's copy is archived. WAL on
// abandoned branches beyond their switch points is not checked. dec
// decodes history files (an encrypted repository needs the identity when
// there is more than one timeline); the segment size comes from the
// newest backup, else from an archived segment (DetectWALSegmentSize).
func VerifyWAL(ctx context.Context, st storage.Store, dec *repo.Decoder) (*WALReport, error) {
	backups, err := ListBackups(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("verify WAL: %w", err)
	}
	rep := &WALReport{Missing: []string{}, Ambiguous: []string{}, BrokenBackups: []BrokenBackup{}, Timelines: []WALTimeline{}, Notes: []string{}}
	segSize, err := DetectWALSegmentSize(ctx, st, dec, backups)
	if err != nil {
		return nil, fmt.Errorf("verify WAL: %w", err)
	}
	if segSize == 0 {
		rep.OK, rep.Range.Empty = true, true
		rep.Notes = append(rep.Notes, "the repository holds no WAL segment and no backup: nothing to check")
		return rep, nil
	}
	rep.WALSegmentSize = segSize
	idx, err := LoadWALIndex(ctx, st, segSize)
	if err != nil {
		return nil, fmt.Errorf("verify WAL: %w", err)
	}
	v := &walVerifier{rep: rep, idx: idx, missingSeen: map[string]bool{}, ambiguousSeen: map[string]bool{}}

	target := newestTimeline(idx)
	tlis := make([]pg.TimelineID, 0, len(idx.Segments))
	for t := range idx.Segments {
		tlis = append(tlis, t)
	}
	slices.Sort(tlis)
	for _, t := range tlis {
		if t > target {
			v.missing(pg.HistoryFileName(t))
			v.note("segments of timeline %d are not checked: its history file %s is not in the repository", t, pg.HistoryFileName(t))
		}
	}
	if target == 0 {
		// Only history files of timelines without any segment, or
		// nothing at all; there is no lineage to walk.
		target = 1
	}
	h, err := idx.History(ctx, st, dec, target)
	if err != nil {
		return nil, fmt.Errorf("verify WAL: %w", err)
	}
	v.h = h
	v.walkLineage(backups)
	for _, b := range backups {
		v.checkBackup(b)
	}
	slices.Sort(rep.Notes)
	rep.OK = len(rep.Missing) == 0 && len(rep.Ambiguous) == 0 && len(rep.BrokenBackups) == 0
	return rep, nil
}

// walVerifier holds the state of one VerifyWAL.
type walVerifier struct {
	rep           *WALReport
	idx           *WALIndex
	h             pg.History
	missingSeen   map[string]bool
	ambiguousSeen map[string]bool
}

func (v *walVerifier) missing(name string) {
	if !v.missingSeen[name] {
		v.missingSeen[name] = true
		v.rep.Missing = append(v.rep.Missing, name)
	}
}

func (v *walVerifier) ambiguous(name string) {
	if !v.ambiguousSeen[name] {
		v.ambiguousSeen[name] = true
		v.rep.Ambiguous = append(v.rep.Ambiguous, name)
	}
}

func (v *walVerifier) note(format string, args ...any) {
	v.rep.Notes = append(v.rep.Notes, fmt.Sprintf(format, args...))
}

// newestTimeline is the highest timeline with a history file, or 1 when
// timeline 1 has segments and no higher timeline has a history file; 0
// when there is neither.
func newestTimeline(idx *WALIndex) pg.TimelineID {
	var t pg.TimelineID
	for tli := range idx.Histories {
		t = max(t, tli)
	}
	if t == 0 && len(idx.Segments[1]) > 0 {
		t = 1
	}
	return t
}

// lineage returns the timelines of h, oldest first.
func lineage(h pg.History) []pg.TimelineID {
	out := make([]pg.TimelineID, 0, len(h.Entries)+1)
	for _, e := range h.Entries {
		out = append(out, e.Parent)
	}
	return append(out, h.TLI)
}

// wholly reports whether segment seg of timeline t is entirely WAL of the
// lineage: t is the newest timeline, or the lineage left t after the end
// of the segment.
func (v *walVerifier) wholly(t pg.TimelineID, seg uint64) bool {
	sw, ok := v.h.SwitchPoint(t)
	if !ok {
		return false
	}
	return sw == pg.InvalidLSN || pg.SegmentStartLSN(seg+1, v.idx.SegSize) <= sw
}

// partly reports whether segment seg of timeline t holds any WAL of the
// lineage.
func (v *walVerifier) partly(t pg.TimelineID, seg uint64) bool {
	sw, ok := v.h.SwitchPoint(t)
	if !ok {
		return false
	}
	return sw == pg.InvalidLSN || pg.SegmentStartLSN(seg, v.idx.SegSize) < sw
}

// walkLineage checks the range along the newest timeline's lineage.
func (v *walVerifier) walkLineage(backups []Backup) {
	segSize := v.idx.SegSize
	tlis := lineage(v.h)

	// The end: the newest segment archived wholly on the lineage.
	var last uint64
	haveLast := false
	for _, t := range tlis {
		for seg := range v.idx.Segments[t] {
			if v.wholly(t, seg) && (!haveLast || seg > last) {
				last, haveLast = seg, true
			}
		}
	}
	var to pg.LSN
	if haveLast {
		to = pg.SegmentStartLSN(last+1, segSize) - 1
	}
	for _, t := range tlis[:len(tlis)-1] {
		n := 0
		for seg := range v.idx.Segments[t] {
			if !v.partly(t, seg) {
				n++
			}
		}
		if n > 0 {
			sw, _ := v.h.SwitchPoint(t)
			v.note("timeline %d has %d segment(s) archived past %s, where the lineage of timeline %d left it: a restore to the latest timeline does not use them", t, n, sw, v.h.TLI)
		}
	}

	// The start: the oldest backup on the lineage that is not kept only
	// for being permanent (delete keeps just the WAL such a backup needs
	// to become consistent; without another, the newest backup), else the
	// oldest segment that holds WAL of the lineage.
	var start, newest *Backup
	permanent := permanentChains(backups)
	for i := range backups {
		b := &backups[i]
		if !v.h.Contains(b.Timeline, b.StartLSN) {
			v.note("backup %s (timeline %d, start %s) is not on the lineage of timeline %d: only its own replay to consistency was checked", b.Name, b.Timeline, b.StartLSN, v.h.TLI)
			continue
		}
		if newest == nil || b.StartLSN >= newest.StartLSN {
			newest = b
		}
		if !permanent[b.Name] && (start == nil || b.StartLSN < start.StartLSN) {
			start = b
		}
		if end := lastByte(*b, segSize); !haveLast || end > to {
			to, haveLast = end, true
		}
	}
	if start == nil {
		start = newest
	}
	for i := range backups {
		if b := &backups[i]; start != nil && permanent[b.Name] && b.StartLSN < start.StartLSN && v.h.Contains(b.Timeline, b.StartLSN) {
			v.note("backup %s is permanent or in the chain of a permanent backup: only its own replay to consistency was checked (delete keeps no later WAL for it)", b.Name)
		}
	}
	r := &v.rep.Range
	var from pg.LSN
	switch {
	case start != nil:
		from = start.StartLSN
		r.StartBackup = start.Name
	default:
		var first uint64
		found := false
		for _, t := range tlis {
			for seg := range v.idx.Segments[t] {
				if v.partly(t, seg) && (!found || seg < first) {
					first, found = seg, true
				}
			}
		}
		if !found {
			r.Empty = true
			v.note("no WAL segment of timeline %d's lineage is archived: nothing to check", v.h.TLI)
			for _, t := range tlis {
				v.rep.Timelines = append(v.rep.Timelines, v.timelineEntry(t))
			}
			return
		}
		from = pg.SegmentStartLSN(first, segSize)
	}
	if to < from {
		to = from
	}
	r.FromLSN, r.ToLSN = from, to
	r.FromTimeline, r.ToTimeline = v.h.TimelineAt(from), v.h.TimelineAt(to)

	// History files: every timeline above the first up to the newest.
	for t := r.FromTimeline + 1; t <= v.h.TLI; t++ {
		if _, ok := v.idx.Histories[t]; !ok {
			v.missing(pg.HistoryFileName(t))
		}
	}

	perTLI := map[pg.TimelineID]*WALTimeline{}
	for _, t := range tlis {
		e := v.timelineEntry(t)
		perTLI[t] = &e
	}
	firstSeg, lastSeg := pg.SegmentForLSN(from, segSize), pg.SegmentForLSN(to, segSize)
	for seg := firstSeg; seg <= lastSeg; seg++ {
		end := min(pg.SegmentStartLSN(seg+1, segSize)-1, to)
		want := v.h.TimelineAt(end)
		name := pg.SegmentName(want, seg, segSize)
		if seg == firstSeg {
			r.FirstSegment = name
		}
		r.LastSegment = name
		r.Segments++
		if e := perTLI[want]; e != nil {
			if e.FirstSegment == "" {
				e.FirstSegment = name
			}
			e.LastSegment = name
			e.Segments++
		}
		if _, ok := v.idx.Segments[want][seg]; !ok {
			v.missing(name)
		} else if len(v.idx.Duplicates[name]) > 0 {
			v.ambiguous(name)
		}
	}
	for _, t := range tlis {
		if t >= r.FromTimeline {
			v.rep.Timelines = append(v.rep.Timelines, *perTLI[t])
		}
	}
}

// timelineEntry describes timeline t of the lineage, without segments.
func (v *walVerifier) timelineEntry(t pg.TimelineID) WALTimeline {
	e := WALTimeline{Timeline: t}
	if t > 1 {
		e.History = pg.HistoryFileName(t)
	}
	if sw, ok := v.h.SwitchPoint(t); ok && sw != pg.InvalidLSN {
		e.SwitchLSN = &sw
	}
	return e
}

// checkBackup checks a backup's replay from start to finish LSN on its own
// timeline (pg_backup_stop fails if the server's timeline changed during
// the backup, so that replay never crosses a switch).
func (v *walVerifier) checkBackup(b Backup) {
	var need []string
	segSize := v.idx.SegSize
	end := lastByte(b, segSize)
	err := v.idx.Missing(pg.History{TLI: b.Timeline}, b.Timeline, b.StartLSN, end)
	var me *MissingError
	if errors.As(err, &me) {
		for _, n := range me.Names {
			v.missing(n)
			need = append(need, n)
		}
	}
	for seg := pg.SegmentForLSN(b.StartLSN, segSize); seg <= pg.SegmentForLSN(end, segSize); seg++ {
		name := pg.SegmentName(b.Timeline, seg, segSize)
		if len(v.idx.Duplicates[name]) > 0 {
			v.ambiguous(name)
			need = append(need, name)
		}
	}
	if len(need) > 0 {
		v.rep.BrokenBackups = append(v.rep.BrokenBackups, BrokenBackup{
			Name: b.Name, Timeline: b.Timeline, StartLSN: b.StartLSN, FinishLSN: b.FinishLSN, Missing: need,
		})
	}
}

// lastByte is the position of the last WAL byte a backup's replay to
// consistency reads: its finish LSN, or the byte before it when the finish
// LSN is exactly the start of a segment (the record ending there is in the
// previous segment; pg_walfile_name names that one too).
func lastByte(b Backup, segSize uint64) pg.LSN {
	if b.FinishLSN > b.StartLSN && uint64(b.FinishLSN)%segSize == 0 {
		return b.FinishLSN - 1
	}
	return b.FinishLSN
}

// errStopListing ends a listing early.
var errStopListing = errors.New("stop listing")

// DetectWALSegmentSize returns the cluster's WAL segment size as the
// repository records it: from the newest backup manifest that has one
// (backups are ordered as ListBackups orders them), else from the first
// archived segment: the plaintext size wal-push records with it (wal-push
// refuses a segment whose size differs from its header's), else that
// segment's header, decoded with dec. It returns 0 and no error when the
// repository holds neither a backup nor a segment.
func DetectWALSegmentSize(ctx context.Context, st storage.Store, dec *repo.Decoder, backups []Backup) (uint64, error) {
	for i := len(backups) - 1; i >= 0; i-- {
		if n := backups[i].WALSegmentSize; pg.ValidWALSegSize(n) {
			return n, nil
		}
	}
	var key string
	err := st.List(ctx, repo.WALPrefix, func(o storage.ObjectInfo) error {
		base, _, _, err := repo.ParseKey(o.Key)
		if err != nil {
			return nil
		}
		f, err := pg.ParseWALFileName(base[len(repo.WALPrefix):], pg.MinWALSegSize)
		if err != nil || f.Kind != pg.SegmentFile {
			return nil
		}
		key = o.Key
		return errStopListing
	})
	if err != nil && !errors.Is(err, errStopListing) {
		return 0, fmt.Errorf("find the WAL segment size: list WAL: %w", err)
	}
	if key == "" {
		return 0, nil
	}
	info, err := st.Stat(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("find the WAL segment size: stat %s: %w", key, err)
	}
	if n, err := strconv.ParseUint(info.Metadata[repo.MetaSize], 10, 64); err == nil && pg.ValidWALSegSize(n) {
		return n, nil
	}
	rc, err := dec.Open(ctx, st, key)
	if err != nil {
		return 0, fmt.Errorf("find the WAL segment size: read %s: %w", key, err)
	}
	defer rc.Close()
	buf := make([]byte, pg.SegmentHeaderSize)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return 0, fmt.Errorf("find the WAL segment size: read %s: %w", key, err)
	}
	hdr, err := pg.ParseSegmentHeader(buf)
	if err != nil {
		return 0, fmt.Errorf("find the WAL segment size: %s: %w", key, err)
	}
	return uint64(hdr.SegSize), nil
}
