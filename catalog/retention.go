package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// Retention rule kinds.
const (
	// RuleRetain keeps the Retain newest full backups and everything
	// newer.
	RuleRetain = "retain"
	// RuleBefore deletes what is older than a backup (Name) or than what a
	// restore to a time needs (Time).
	RuleBefore = "before"
	// RuleEverything deletes every backup that is not permanent, and the
	// WAL.
	RuleEverything = "everything"
)

// Rule says which backups a delete keeps. Whatever the rule, permanent
// backups, and every backup a kept backup is based on, are kept.
type Rule struct {
	// Kind is RuleRetain, RuleBefore or RuleEverything.
	Kind string
	// Retain is, for RuleRetain, the number of full backups kept: the
	// window starts at the Retain-th newest full backup.
	Retain int
	// Name is, for RuleBefore, the oldest backup kept (or Latest): the
	// window starts there.
	Name string
	// Time is, for RuleBefore without Name: the window starts at the
	// newest backup that finished at or before Time, so that every point
	// from Time on can still be restored.
	Time time.Time
}

// String is the rule as the delete command takes it.
func (r Rule) String() string {
	switch r.Kind {
	case RuleRetain:
		return fmt.Sprintf("retain %d", r.Retain)
	case RuleBefore:
		if r.Name != "" {
			return "before " + r.Name
		}
		return "before " + r.Time.UTC().Format(time.RFC3339)
	}
	return r.Kind
}

// RestorePoint is what retention needs of a restore point record
// (package restorepoint keeps them; catalog cannot import it).
type RestorePoint struct {
	Name     string
	LSN      pg.LSN
	Timeline pg.TimelineID
}

// DefaultOrphanAge is how long the objects of a backup without a manifest
// are left alone before a delete removes them: until then they may be a
// backup in progress.
const DefaultOrphanAge = 24 * time.Hour

// DefaultDeleteBatch is the number of keys deleted per storage call.
const DefaultDeleteBatch = 1000

// tombstoneName is the object a delete writes into a backup's directory
// before it deletes the manifest: a directory without a manifest but with
// a tombstone is the rest of a deleted backup, which any later delete
// removes at once (a directory without either may be a backup in
// progress). Beside a manifest it means nothing.
const tombstoneName = "deleting"

func tombstoneKey(name string) string { return repo.BackupsPrefix + name + "/" + tombstoneName }

// PlanOptions configure PlanDeletion.
type PlanOptions struct {
	// Store is the repository. Decoder reads a WAL segment's header when
	// neither a manifest nor the segment's metadata records the segment
	// size.
	Store   storage.Store
	Decoder *repo.Decoder
	// Rule says which backups are kept.
	Rule Rule
	// RestorePoints are the restore points recorded in the repository.
	RestorePoints []RestorePoint
	// OrphanAge: a backup directory without a manifest or tombstone whose
	// newest object is older than this is deleted. 0 means
	// DefaultOrphanAge.
	OrphanAge time.Duration
	// Now is the time orphans are aged against; zero means time.Now().
	Now time.Time
}

// DeletionPlan is what a delete removes and keeps. It changes nothing
// until Execute. Its JSON form is what `walrus delete --json` prints;
// every list is present, empty when there is nothing in it.
type DeletionPlan struct {
	// Rule is the rule as given, e.g. "retain 2".
	Rule string `json:"rule"`
	// Keep are the backups kept, each with why; Delete those deleted.
	// Both in ListBackups order.
	Keep   []PlannedBackup `json:"keep"`
	Delete []PlannedBackup `json:"delete"`
	// Orphans are backup directories without a manifest that are deleted:
	// the rest of an interrupted delete, or of a backup that never
	// finished.
	Orphans []PlannedOrphan `json:"orphans"`
	// WAL are the runs of WAL files deleted, by timeline and segment.
	WAL []PlannedWAL `json:"wal"`
	// WALKeptFrom names the segment from which all WAL is kept, ""
	// when no backup is retained by the rule (everything) or when no WAL
	// is deleted.
	WALKeptFrom string `json:"wal_kept_from"`
	// WALProtected are the WAL ranges below WALKeptFrom that kept backups
	// need to become consistent (their start to finish), kept.
	WALProtected []PlannedWAL `json:"wal_protected"`
	// RestorePoints are the restore points deleted because no kept
	// backup precedes them with the WAL to reach them left.
	RestorePoints []PlannedRestorePoint `json:"restore_points"`
	// Objects and Bytes are what the plan deletes in all: the stored
	// objects and their stored sizes.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Notes are facts worth knowing that change nothing.
	Notes []string `json:"notes"`

	known     map[string]bool  // backups listed when planning
	sizes     map[string]int64 // stored size of every key to delete
	backups   []deleteBackup   // newest first
	orphans   [][]string       // keys of each orphan, tombstone last
	walKeys   []string         // oldest first
	rpKeys    []string
	totalKeys int
}

// PlannedBackup is a backup the plan keeps or deletes.
type PlannedBackup struct {
	Name      string        `json:"name"`
	Kind      string        `json:"kind"`
	DeltaFrom *string       `json:"delta_from"`
	Timeline  pg.TimelineID `json:"timeline"`
	StartLSN  pg.LSN        `json:"start_lsn"`
	FinishLSN pg.LSN        `json:"finish_lsn"`
	StartTime time.Time     `json:"start_time"`
	Permanent bool          `json:"permanent"`
	// Reason says why the backup is kept or deleted.
	Reason string `json:"reason"`
	// Objects and Bytes are, for a deleted backup, its stored objects
	// (manifest and parts) and their size.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// PlannedOrphan is a backup directory without a manifest that the plan
// deletes.
type PlannedOrphan struct {
	Name    string `json:"name"`
	Reason  string `json:"reason"`
	Objects int    `json:"objects"`
	Bytes   int64  `json:"bytes"`
}

// PlannedWAL is a run of WAL files of one timeline, by segment.
type PlannedWAL struct {
	Timeline pg.TimelineID `json:"timeline"`
	// First and Last name the run's first and last segment.
	First string `json:"first"`
	Last  string `json:"last"`
	// Files and Bytes count the stored objects (segments, and .partial
	// and .backup files) and their size; 0 for a protected range.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Backup is, for a protected range, the backup that needs it.
	Backup string `json:"backup,omitempty"`
}

// PlannedRestorePoint is a restore point the plan deletes.
type PlannedRestorePoint struct {
	Name     string        `json:"name"`
	LSN      pg.LSN        `json:"lsn"`
	Timeline pg.TimelineID `json:"timeline"`
	Reason   string        `json:"reason"`
}

type deleteBackup struct {
	name string
	keys []string // every key but the manifest; tombstone last
}

// backupDir is what one listing of backups/ holds for one name.
type backupDir struct {
	keys      []string
	sizes     map[string]int64
	bytes     int64
	newest    time.Time
	manifest  bool
	tombstone bool
}

// walObject is one object under wal/.
type walObject struct {
	key  string
	file pg.WALFile
	size int64
}

// segRange is an inclusive range of segment numbers.
type segRange struct{ first, last uint64 }

// PlanDeletion works out what a delete with opts.Rule removes, and why.
// It reads the repository and changes nothing.
//
// Backups are ordered as ListBackups orders them (TRAPS.md 24). The rule
// picks a window, the backups from some point on: retain N starts it at
// the N-th newest full backup; before NAME at NAME; before TIME at the
// newest backup that finished at or before TIME (so that any point from
// TIME on remains restorable); everything leaves it empty. Kept: the
// window, every permanent backup, and every backup a kept one is based
// on, down to its root (a delta is never left without its chain).
// Everything else is deleted; newer backups are never deleted while older
// ones are kept by the rule.
//
// WAL: every segment (with its .partial and .backup files) whose position
// is before the start of the oldest backup of the window or of its chains
// is deleted, on every timeline, except the segments from start to finish
// of each kept backup, which it needs to become consistent. .history
// files are always kept. A repository without any backup keeps all its
// WAL (TRAPS.md 25), except under everything.
//
// A restore point is deleted when no kept backup that finished before it
// (on its timeline or an older one) leaves an unbroken stretch of kept WAL
// from its start to the restore point.
//
// Backup directories without a manifest are deleted when they hold a
// tombstone (the rest of an interrupted delete) or when nothing in them
// was written for OrphanAge (a backup that never finished); younger ones
// may be a backup in progress and are left alone.
func PlanDeletion(ctx context.Context, opts PlanOptions) (*DeletionPlan, error) {
	st := opts.Store
	if st == nil || opts.Decoder == nil {
		return nil, errors.New("plan delete: no repository")
	}
	r := opts.Rule
	switch r.Kind {
	case RuleRetain:
		if r.Retain < 1 {
			return nil, fmt.Errorf("plan delete: retain %d: keep at least 1 full backup (delete everything removes them all)", r.Retain)
		}
	case RuleBefore:
		if r.Name == "" && r.Time.IsZero() {
			return nil, errors.New("plan delete: before needs a backup name or a time")
		}
	case RuleEverything:
	default:
		return nil, fmt.Errorf("plan delete: unknown rule %q: use retain, before or everything", r.Kind)
	}
	orphanAge := opts.OrphanAge
	if orphanAge <= 0 {
		orphanAge = DefaultOrphanAge
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := &DeletionPlan{Rule: r.String(), Keep: []PlannedBackup{}, Delete: []PlannedBackup{}, Orphans: []PlannedOrphan{},
		WAL: []PlannedWAL{}, WALProtected: []PlannedWAL{}, RestorePoints: []PlannedRestorePoint{}, Notes: []string{},
		known: map[string]bool{}, sizes: map[string]int64{}}

	dirs, bs, err := listBackupDirs(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("plan delete: %w", err)
	}
	byName := make(map[string]*Backup, len(bs))
	for i := range bs {
		byName[bs[i].Name] = &bs[i]
		p.known[bs[i].Name] = true
	}
	if len(bs) > 0 && bs[0].SystemIdentifier != bs[len(bs)-1].SystemIdentifier {
		return nil, fmt.Errorf("plan delete: the repository holds backups of more than one system (%s and %s): retention cannot order them; move one system's backups to their own repository", bs[0].SystemIdentifier, bs[len(bs)-1].SystemIdentifier)
	}

	// The window.
	start := 0
	var windowWhy string
	switch r.Kind {
	case RuleRetain:
		var fulls []int
		for i := range bs {
			if bs[i].IsFull() {
				fulls = append(fulls, i)
			}
		}
		if len(fulls) > r.Retain {
			start = fulls[len(fulls)-r.Retain]
		}
		windowWhy = fmt.Sprintf("one of the %d newest full backups, or newer", r.Retain)
		if r.Retain == 1 {
			windowWhy = "the newest full backup, or newer"
		}
	case RuleBefore:
		if r.Name != "" {
			name := r.Name
			if name == Latest {
				if len(bs) == 0 {
					return nil, fmt.Errorf("plan delete: before %s: %w in the repository", Latest, ErrNoBackup)
				}
				name = bs[len(bs)-1].Name
			}
			i := slices.IndexFunc(bs, func(b Backup) bool { return b.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("plan delete: before %s: backup %s: %w (walrus backup-list shows the backups)", r.Name, name, ErrNoBackup)
			}
			start = i
			windowWhy = name + " or newer"
		} else {
			start = -1
			for i := range bs {
				if !bs[i].FinishTime.After(r.Time) {
					start = i
				}
			}
			if start < 0 {
				start = 0
				if len(bs) > 0 {
					p.note("no backup finished at or before %s: every backup is needed to restore to that time or later", r.Time.UTC().Format(time.RFC3339))
				}
			}
			windowWhy = "needed to restore to " + r.Time.UTC().Format(time.RFC3339) + " or later"
		}
	case RuleEverything:
		start = len(bs)
	}

	// Kept: the window, permanent backups, and the chains of both.
	why := map[string]string{}
	window := map[string]bool{}
	keepChain := func(b *Backup, because string) {
		for cur := b; cur.DeltaFrom != nil; {
			base, ok := byName[*cur.DeltaFrom]
			if !ok {
				p.note("backup %s is based on %s, which is not in the repository: %s cannot be restored", cur.Name, *cur.DeltaFrom, cur.Name)
				return
			}
			if _, done := why[base.Name]; done {
				return
			}
			why[base.Name] = because
			cur = base
		}
	}
	for i := start; i < len(bs); i++ {
		why[bs[i].Name] = windowWhy
		window[bs[i].Name] = true
	}
	for i := len(bs) - 1; i >= start; i-- {
		keepChain(&bs[i], "in the chain of "+bs[i].Name+", which is kept")
	}
	for n := range why {
		window[n] = true // the chains of the window count as the window
	}
	for i := range bs {
		if _, ok := why[bs[i].Name]; !ok && bs[i].Permanent {
			why[bs[i].Name] = "permanent"
		}
	}
	for i := range bs {
		if bs[i].Permanent {
			keepChain(&bs[i], "in the chain of permanent backup "+bs[i].Name)
		}
	}

	for i := range bs {
		b := &bs[i]
		pb := PlannedBackup{Name: b.Name, Kind: b.Kind, DeltaFrom: b.DeltaFrom, Timeline: b.Timeline, StartLSN: b.StartLSN,
			FinishLSN: b.FinishLSN, StartTime: b.StartTime, Permanent: b.Permanent}
		if reason, ok := why[b.Name]; ok {
			pb.Reason = reason
			if b.Permanent && reason != "permanent" {
				pb.Reason += "; permanent"
			}
			p.Keep = append(p.Keep, pb)
			continue
		}
		switch r.Kind {
		case RuleEverything:
			pb.Reason = "not permanent"
		default:
			pb.Reason = "older than the backups the rule keeps"
		}
		d := dirs[b.Name]
		pb.Objects, pb.Bytes = len(d.keys), d.bytes
		maps.Copy(p.sizes, d.sizes)
		p.Delete = append(p.Delete, pb)
		p.Objects += pb.Objects
		p.Bytes += pb.Bytes
	}
	for i := len(p.Delete) - 1; i >= 0; i-- {
		name := p.Delete[i].Name
		var keys []string
		for _, k := range dirs[name].keys {
			if k != repo.ManifestKey(name) && k != tombstoneKey(name) {
				keys = append(keys, k)
			}
		}
		p.backups = append(p.backups, deleteBackup{name: name, keys: append(keys, tombstoneKey(name))})
		p.totalKeys += 1 + len(keys) + 1 // the manifest, the rest, the tombstone
	}

	// Orphans.
	for _, name := range sortedKeys(dirs) {
		d := dirs[name]
		if d.manifest {
			continue
		}
		var reason string
		switch {
		case d.tombstone:
			reason = "the rest of a delete that was interrupted"
		case !d.newest.IsZero() && now.Sub(d.newest) >= orphanAge:
			reason = fmt.Sprintf("a backup that never finished: no manifest, nothing written for %s", now.Sub(d.newest).Round(time.Minute))
		default:
			p.note("backups/%s/ holds %d object(s) and no manifest, the newest written %s ago: a backup in progress? Left alone; a delete removes it once nothing was written to it for %s", name, len(d.keys), now.Sub(d.newest).Round(time.Second), orphanAge)
			continue
		}
		keys := slices.DeleteFunc(slices.Clone(d.keys), func(k string) bool { return k == tombstoneKey(name) })
		if d.tombstone {
			keys = append(keys, tombstoneKey(name))
		}
		maps.Copy(p.sizes, d.sizes)
		p.Orphans = append(p.Orphans, PlannedOrphan{Name: name, Reason: reason, Objects: len(d.keys), Bytes: d.bytes})
		p.orphans = append(p.orphans, keys)
		p.Objects += len(d.keys)
		p.Bytes += d.bytes
		p.totalKeys += len(keys)
	}

	// WAL.
	segSize, err := DetectWALSegmentSize(ctx, st, opts.Decoder, bs)
	if err != nil {
		return nil, fmt.Errorf("plan delete: %w", err)
	}
	if segSize == 0 {
		// No backup and no segment: no WAL to delete, and restore points
		// cannot be reached whatever the rule.
		segSize = 16 << 20
	}
	cutoff := uint64(0) // segments below it are deleted, unless protected
	switch {
	case r.Kind == RuleEverything:
		cutoff = math.MaxUint64
	case len(bs) == 0:
		p.note("the repository holds no backup: its WAL is kept (a repository without a backup never loses WAL to retention; delete everything removes it)")
	default:
		first := true
		for i := range bs {
			if window[bs[i].Name] {
				if s := pg.SegmentForLSN(bs[i].StartLSN, segSize); first || s < cutoff {
					cutoff, first = s, false
					p.WALKeptFrom = pg.SegmentName(bs[i].Timeline, s, segSize)
				}
			}
		}
	}
	var protected []segRange
	for _, pb := range p.Keep {
		b := byName[pb.Name]
		pr := segRange{pg.SegmentForLSN(b.StartLSN, segSize), pg.SegmentForLSN(lastByte(*b, segSize), segSize)}
		protected = append(protected, pr)
		if pr.first < cutoff {
			p.WALProtected = append(p.WALProtected, PlannedWAL{Timeline: b.Timeline, First: pg.SegmentName(b.Timeline, pr.first, segSize),
				Last: pg.SegmentName(b.Timeline, min(pr.last, cutoff-1), segSize), Backup: b.Name})
		}
	}
	isProtected := func(seg uint64) bool {
		return slices.ContainsFunc(protected, func(pr segRange) bool { return seg >= pr.first && seg <= pr.last })
	}
	if cutoff > 0 {
		objs, skipped, err := listWAL(ctx, st, segSize)
		if err != nil {
			return nil, fmt.Errorf("plan delete: %w", err)
		}
		if skipped > 0 {
			p.note("%d object(s) under wal/ are not WAL files of %d-byte segments: left alone", skipped, segSize)
		}
		// Deleted oldest first across timelines (listWAL's order), so that
		// an interrupted delete leaves the WAL it keeps contiguous.
		var doomed []walObject
		for _, o := range objs {
			if o.file.Kind == pg.HistoryFile || o.file.SegNo >= cutoff || isProtected(o.file.SegNo) {
				continue
			}
			doomed = append(doomed, o)
			p.walKeys = append(p.walKeys, o.key)
			p.sizes[o.key] = o.size
			p.Objects++
			p.Bytes += o.size
		}
		p.totalKeys += len(p.walKeys)
		// Reported as runs of consecutive segments per timeline.
		slices.SortStableFunc(doomed, func(a, b walObject) int {
			if a.file.Timeline != b.file.Timeline {
				return cmp(a.file.Timeline, b.file.Timeline)
			}
			return 0
		})
		var run *PlannedWAL
		var runLast uint64
		for _, o := range doomed {
			seg := o.file.SegNo
			if run == nil || run.Timeline != o.file.Timeline || seg > runLast+1 {
				p.WAL = append(p.WAL, PlannedWAL{Timeline: o.file.Timeline, First: pg.SegmentName(o.file.Timeline, seg, segSize)})
				run = &p.WAL[len(p.WAL)-1]
			}
			run.Last = pg.SegmentName(o.file.Timeline, seg, segSize)
			runLast = seg
			run.Files++
			run.Bytes += o.size
		}
	}

	// Restore points.
	if r.Kind == RuleEverything || len(bs) > 0 {
		kept := append(slices.Clone(protected), segRange{cutoff, math.MaxUint64})
		if cutoff == math.MaxUint64 {
			kept = kept[:len(kept)-1]
		}
		kept = mergeRanges(kept)
		covered := func(first, last uint64) bool {
			return slices.ContainsFunc(kept, func(k segRange) bool { return k.first <= first && last <= k.last })
		}
		for _, rp := range opts.RestorePoints {
			reachable := false
			for _, pb := range p.Keep {
				b := byName[pb.Name]
				if b.FinishLSN <= rp.LSN && b.Timeline <= rp.Timeline &&
					covered(pg.SegmentForLSN(b.StartLSN, segSize), pg.SegmentForLSN(rp.LSN, segSize)) {
					reachable = true
					break
				}
			}
			if reachable {
				continue
			}
			p.RestorePoints = append(p.RestorePoints, PlannedRestorePoint{Name: rp.Name, LSN: rp.LSN, Timeline: rp.Timeline,
				Reason: "no kept backup finished before it with the WAL from its start to the restore point kept"})
			p.rpKeys = append(p.rpKeys, repo.RestorePointKey(rp.Name))
			p.sizes[repo.RestorePointKey(rp.Name)] = 0
			p.Objects++
		}
		p.totalKeys += len(p.rpKeys)
	}
	return p, nil
}

func (p *DeletionPlan) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// Empty reports whether the plan deletes nothing.
func (p *DeletionPlan) Empty() bool { return p.totalKeys == 0 }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mergeRanges sorts and merges overlapping or adjacent ranges.
func mergeRanges(rs []segRange) []segRange {
	slices.SortFunc(rs, func(a, b segRange) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	var out []segRange
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].last == math.MaxUint64 || r.first <= out[n-1].last+1) {
			out[n-1].last = max(out[n-1].last, r.last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// listBackupDirs lists backups/ once: the objects of every backup
// directory, and the summaries of the backups whose manifest is there,
// in ListBackups order. A manifest that cannot be read fails the listing:
// a delete never plans around a backup it cannot see.
func listBackupDirs(ctx context.Context, st storage.Store) (map[string]*backupDir, []Backup, error) {
	dirs := map[string]*backupDir{}
	err := st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
		name, rest, ok := strings.Cut(strings.TrimPrefix(o.Key, repo.BackupsPrefix), "/")
		if !ok || ValidateName(name) != nil {
			return nil
		}
		d := dirs[name]
		if d == nil {
			d = &backupDir{sizes: map[string]int64{}}
			dirs[name] = d
		}
		d.keys = append(d.keys, o.Key)
		d.sizes[o.Key] = o.Size
		d.bytes += o.Size
		if o.ModTime.After(d.newest) {
			d.newest = o.ModTime
		}
		switch rest {
		case "manifest.json":
			d.manifest = true
		case tombstoneName:
			d.tombstone = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list backups: %w", err)
	}
	var bs []Backup
	for _, name := range sortedKeys(dirs) {
		if !dirs[name].manifest {
			continue
		}
		b, err := readSummary(ctx, st, name)
		if errors.Is(err, ErrNoBackup) {
			// Deleted since the listing: treat it as listed without one.
			dirs[name].manifest = false
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list backups: %w (inspect backups/%s/; a delete plans nothing around a backup it cannot read)", err, name)
		}
		bs = append(bs, b)
	}
	SortBackups(bs)
	return dirs, bs, nil
}

// listWAL lists wal/ once: every WAL file, ordered by segment number
// (history files first), then timeline, then key. It also counts the
// objects that are not WAL files.
func listWAL(ctx context.Context, st storage.Store, segSize uint64) ([]walObject, int, error) {
	var objs []walObject
	skipped := 0
	err := st.List(ctx, repo.WALPrefix, func(o storage.ObjectInfo) error {
		base, _, _, err := repo.ParseKey(o.Key)
		if err != nil {
			skipped++
			return nil
		}
		f, err := pg.ParseWALFileName(strings.TrimPrefix(base, repo.WALPrefix), segSize)
		if err != nil {
			skipped++
			return nil
		}
		objs = append(objs, walObject{key: o.Key, file: f, size: o.Size})
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list WAL: %w", err)
	}
	slices.SortStableFunc(objs, func(a, b walObject) int {
		ha, hb := a.file.Kind == pg.HistoryFile, b.file.Kind == pg.HistoryFile
		switch {
		case ha != hb:
			if ha {
				return -1
			}
			return 1
		case a.file.SegNo != b.file.SegNo:
			return cmp(a.file.SegNo, b.file.SegNo)
		case a.file.Timeline != b.file.Timeline:
			return cmp(a.file.Timeline, b.file.Timeline)
		}
		return strings.Compare(a.key, b.key)
	})
	return objs, skipped, nil
}

// ExecuteOptions configure DeletionPlan.Execute.
type ExecuteOptions struct {
	// Progress, when not nil, receives a redrawn status line (a terminal).
	Progress io.Writer
	// BatchSize is the number of keys per Delete call; 0 means
	// DefaultDeleteBatch.
	BatchSize int
	// Now stamps the tombstones; zero means time.Now().
	Now time.Time
	// Lock sets how Execute waits for the repository's exclusive lock.
	Lock repo.LockOptions
	// Held is the exclusive lock when the caller took it before
	// planning (so that the plan is of the repository as the delete
	// finds it); Execute then does not take one, nor release it.
	Held *repo.Lock
}

// DeleteResult is what Execute deleted.
type DeleteResult struct {
	// Objects and Bytes count the objects deleted and their stored size
	// as planned.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// ErrPlanStale means the repository changed since the plan was made in a
// way that makes the plan unsafe; nothing more was deleted.
var ErrPlanStale = errors.New("the repository changed since the delete was planned")

// Execute carries out the plan, in an order that keeps the repository
// consistent whenever it stops (TRAPS.md 23):
//
//  1. Check that no backup appeared since the plan that is based on a
//     backup to delete; if one did, stop before anything is deleted.
//  2. For each backup, newest first (a delta before its base): write a
//     tombstone into its directory, read its manifest again (stop if it
//     was marked permanent since), delete the manifest. From then on the
//     backup is not listed; no listed backup has lost anything.
//  3. Delete the data of those backups and the orphans, each directory's
//     tombstone last.
//  4. Delete WAL, oldest first, so that what remains stays contiguous.
//  5. Delete the restore points.
//
// Execute holds the repository's exclusive lock throughout (opts.Held,
// or taken before step 1 with opts.Lock's wait): no backup-push runs
// meanwhile, so none can choose a base it deletes or have its unfinished
// parts taken for an orphan's, and no backup-mark rewrites a manifest it
// removes.
//
// Every Delete's error stops the execution and is returned: a failed key
// is never skipped silently. An execution that stops part way is finished
// by planning and executing the same rule again: a backup whose manifest
// is gone but whose tombstone remains is deleted as an orphan at once; WAL
// and restore points are planned from the backups that remain, which are
// the same.
func (p *DeletionPlan) Execute(ctx context.Context, st storage.Store, opts ExecuteOptions) (res DeleteResult, err error) {
	if p.Empty() {
		return res, nil
	}
	lk := opts.Held
	if lk == nil || lk.Info().Mode != repo.LockExclusive {
		if lk, err = repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", opts.Lock); err != nil {
			return res, fmt.Errorf("%w; nothing was deleted", err)
		}
		defer func() {
			if rerr := lk.Release(ctx); rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	defer func() {
		if cause := context.Cause(lk.Context()); err != nil && errors.Is(cause, repo.ErrLockLost) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
	}()
	ctx = lk.Context()
	batch := opts.BatchSize
	if batch <= 0 {
		batch = DefaultDeleteBatch
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	prog := progress.New(opts.Progress, "delete", "objects")
	prog.SetTotals(p.Bytes, int64(p.totalKeys))
	stop := prog.Run(ctx)
	defer stop()
	sizes := p.sizes
	del := func(keys []string) error {
		for chunk := range slices.Chunk(keys, batch) {
			if err := st.Delete(ctx, chunk...); err != nil {
				return fmt.Errorf("delete: %w; nothing listed was damaged: run the same delete again to finish", err)
			}
			for _, k := range chunk {
				res.Objects++
				res.Bytes += sizes[k]
				prog.AddBytes(sizes[k])
			}
			prog.AddUnits(int64(len(chunk)))
		}
		return nil
	}

	if err := p.checkNewBackups(ctx, st); err != nil {
		return res, err
	}
	for _, b := range p.backups {
		body, _ := json.Marshal(struct {
			Backup string    `json:"backup"`
			Time   time.Time `json:"time"`
		}{b.name, now.UTC()})
		if err := st.Put(ctx, tombstoneKey(b.name), bytes.NewReader(body), storage.PutOptions{Size: int64(len(body))}); err != nil {
			return res, fmt.Errorf("delete backup %s: write %s: %w; nothing of it was deleted: run the same delete again", b.name, tombstoneKey(b.name), err)
		}
		m, err := ReadManifest(ctx, st, b.name)
		switch {
		case errors.Is(err, ErrNoBackup):
			continue
		case err != nil:
			return res, fmt.Errorf("delete backup %s: %w", b.name, err)
		case m.Permanent:
			// Its tombstone would mean nothing beside the manifest; remove
			// it anyway, best effort, so that nothing looks half-deleted.
			_ = st.Delete(ctx, tombstoneKey(b.name))
			return res, fmt.Errorf("delete backup %s: %w: it was marked permanent; nothing more was deleted: run delete again for a new plan", b.name, ErrPlanStale)
		}
		if err := del([]string{repo.ManifestKey(b.name)}); err != nil {
			return res, fmt.Errorf("delete backup %s: %w", b.name, err)
		}
	}
	for _, b := range p.backups {
		if err := del(b.keys); err != nil {
			return res, fmt.Errorf("delete the data of backup %s (no longer listed): %w", b.name, err)
		}
	}
	for i, keys := range p.orphans {
		if err := del(keys); err != nil {
			return res, fmt.Errorf("delete backups/%s/: %w", p.Orphans[i].Name, err)
		}
	}
	if err := del(p.walKeys); err != nil {
		return res, fmt.Errorf("delete WAL: %w", err)
	}
	if err := del(p.rpKeys); err != nil {
		return res, fmt.Errorf("delete restore points: %w", err)
	}
	stop()
	return res, nil
}

// checkNewBackups refuses to go on when a backup listed now but not when
// planning is based, directly or through other new backups, on a backup
// the plan deletes: a backup-push chose it as a base meanwhile.
func (p *DeletionPlan) checkNewBackups(ctx context.Context, st storage.Store) error {
	if len(p.backups) == 0 {
		return nil
	}
	deleting := map[string]bool{}
	for _, b := range p.backups {
		deleting[b.name] = true
	}
	names, err := listManifestNames(ctx, st)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	base := map[string]string{}
	for _, n := range names {
		if p.known[n] {
			continue
		}
		m, err := ReadManifest(ctx, st, n)
		if errors.Is(err, ErrNoBackup) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if m.DeltaFrom != nil {
			base[n] = *m.DeltaFrom
		}
	}
	for n := range base {
		for cur, steps := n, 0; steps <= MaxChainLength; steps++ {
			from, ok := base[cur]
			if !ok {
				break
			}
			if deleting[from] {
				return fmt.Errorf("delete: %w: backup %s, taken meanwhile, is based on %s, which the plan deletes; nothing was deleted: run delete again for a new plan", ErrPlanStale, n, from)
			}
			cur = from
		}
	}
	return nil
}

// SetPermanent marks the backup called name (or Latest) permanent, or
// not, and returns its manifest as it is now and whether it changed.
// Retention never deletes a permanent backup, the backups it is based on,
// or the WAL they need to become consistent.
//
// Manifests are otherwise written once, create-only; this is the one
// rewrite. The new manifest is the stored one with only the value of
// "permanent" changed, byte for byte (a manifest not in walrus's own
// encoding is re-encoded); it is decoded and compared with the old one
// before it is stored, and stored with one Put that replaces the object
// atomically (fs: rename; S3: a single PUT), so a reader sees the old
// manifest or the new one. It holds the repository's shared lock
// (repo.AcquireLock, with lock's wait) while it reads and rewrites, so it
// never runs beside a delete, which could otherwise remove the manifest
// between the read and the rewrite and have the rewrite bring back a
// manifest without data.
func SetPermanent(ctx context.Context, st storage.Store, name string, permanent bool, lock repo.LockOptions) (_ *Manifest, _ bool, err error) {
	lk, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-mark", lock)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if rerr := lk.Release(ctx); rerr != nil && err == nil {
			err = rerr
		}
	}()
	ctx = lk.Context()
	if name == Latest {
		m, err := Resolve(ctx, st, name)
		if err != nil {
			return nil, false, err
		}
		name = m.Name
	}
	if err := ValidateName(name); err != nil {
		return nil, false, err
	}
	key := repo.ManifestKey(name)
	rc, err := st.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, fmt.Errorf("backup %s: %w (walrus backup-list shows the backups)", name, ErrNoBackup)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	m, err := Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	if m.Name != name {
		return nil, false, fmt.Errorf("read %s: %w: it names itself %q", key, ErrInvalidManifest, m.Name)
	}
	if m.Permanent == permanent {
		return m, false, nil
	}
	out, err := withPermanent(raw, m, permanent)
	if err != nil {
		return nil, false, fmt.Errorf("rewrite %s: %w", key, err)
	}
	if err := st.Put(ctx, key, bytes.NewReader(out), storage.PutOptions{Size: int64(len(out))}); err != nil {
		return nil, false, fmt.Errorf("rewrite %s: %w", key, err)
	}
	m.Permanent = permanent
	return m, true, nil
}

// permanentLine is the "permanent" key of a manifest in walrus's
// encoding, with value v.
func permanentLine(v bool) []byte { return []byte(fmt.Sprintf("\n  \"permanent\": %v,\n", v)) }

// permanentAt returns where permanentLine(v) stands in the manifest raw,
// or -1 when it is not there exactly once before the file list (in
// walrus's encoding a newline never occurs inside a JSON string, so those
// bytes are the top-level key).
func permanentAt(raw []byte, v bool) int {
	head := raw
	if i := bytes.Index(raw, []byte("\n  \"files\": [")); i >= 0 {
		head = raw[:i]
	}
	if bytes.Count(head, permanentLine(v)) != 1 {
		return -1
	}
	return bytes.Index(head, permanentLine(v))
}

// withPermanent returns the manifest raw (decoded as m) with "permanent"
// set, checked by decoding it again.
func withPermanent(raw []byte, m *Manifest, permanent bool) ([]byte, error) {
	var out []byte
	if i := permanentAt(raw, m.Permanent); i >= 0 {
		out = slices.Concat(raw[:i], permanentLine(permanent), raw[i+len(permanentLine(m.Permanent)):])
	} else {
		re := *m
		re.Permanent = permanent
		var buf bytes.Buffer
		if err := re.Encode(&buf); err != nil {
			return nil, err
		}
		out = buf.Bytes()
	}
	got, err := Decode(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	want := *m
	want.Permanent = permanent
	if !reflect.DeepEqual(got, &want) {
		return nil, errors.New("the rewritten manifest does not decode to the original with only permanent changed (internal error); nothing was changed")
	}
	return out, nil
}

// permanentChains returns the names of the permanent backups and of every
// backup their chains hold (followed through DeltaFrom among bs).
func permanentChains(bs []Backup) map[string]bool {
	byName := make(map[string]*Backup, len(bs))
	for i := range bs {
		byName[bs[i].Name] = &bs[i]
	}
	out := map[string]bool{}
	for i := range bs {
		if !bs[i].Permanent {
			continue
		}
		for cur := &bs[i]; cur != nil && !out[cur.Name]; {
			out[cur.Name] = true
			if cur.DeltaFrom == nil {
				break
			}
			cur = byName[*cur.DeltaFrom]
		}
	}
	return out
}
