package restorepoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// TargetKind says where recovery stops.
type TargetKind int

// Target kinds.
const (
	// Latest replays all archived WAL.
	Latest TargetKind = iota
	// Immediate stops at the first consistent point after the backup.
	Immediate
	// Name stops at a named restore point.
	Name
	// Time stops before the first commit after a time.
	Time
	// LSN stops at a WAL position.
	LSN
)

func (k TargetKind) String() string {
	return [...]string{"latest", "immediate", "restore point", "time", "LSN"}[k]
}

// Target is a recovery target as the user gave it.
type Target struct {
	Kind TargetKind
	// Name is the restore point for Kind == Name.
	Name string
	// Time is the target time for Kind == Time.
	Time time.Time
	// LSN is the target position for Kind == LSN (and, once resolved, for
	// Kind == Name).
	LSN pg.LSN
	// Timeline is recovery_target_timeline ("" = PostgreSQL's default,
	// latest).
	Timeline string
}

// timeLayouts are the forms --target-time accepts besides RFC 3339: what
// PostgreSQL's timestamptz input takes in ISO style.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
}

// ParseTime parses a --target-time value: RFC 3339, or what PostgreSQL's
// recovery_target_time accepts in ISO form ("2026-11-21 18:50:00.123456+00").
// A time without a zone is local time, as it is for PostgreSQL when its
// timezone setting matches this machine's; FormatTime writes it back with
// an explicit offset so both agree.
func ParseTime(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	for _, l := range timeLayouts {
		if strings.Contains(l, "Z07") || strings.Contains(l, "MST") {
			if t, err := time.Parse(l, v); err == nil {
				return t, nil
			}
			continue
		}
		if t, err := time.ParseInLocation(l, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("target time %q: use RFC 3339 (2026-11-21T18:50:00Z) or PostgreSQL's form (2026-11-21 18:50:00.123456+00)", s)
}

// FormatTime formats t for recovery_target_time, with microseconds and an
// explicit offset.
func FormatTime(t time.Time) string {
	return t.Format("2006-01-02 15:04:05.999999-07:00")
}

// Choice is the outcome of Resolve.
type Choice struct {
	// Backup is the backup to restore.
	Backup catalog.Backup
	// Target is the target, with LSN and Timeline filled in for a restore
	// point.
	Target Target
	// RestorePoint is the record of a Name target.
	RestorePoint *Record
	// Reason says, for a person, why this backup was chosen.
	Reason string
}

// ErrNoBackup means no backup precedes the target.
var ErrNoBackup = errors.New("no backup precedes the target")

// Resolve picks the backup for target: the given one (name, or "" /
// "LATEST" for the newest that precedes the target), checks that it
// precedes the target on the target's timeline lineage, and that the
// repository holds every WAL file from the backup's start to the target.
func Resolve(ctx context.Context, st storage.Store, dec *repo.Decoder, backupName string, target Target) (Choice, error) {
	ch := Choice{Target: target}
	if target.Kind == Name {
		rec, err := Read(ctx, st, target.Name)
		if err != nil {
			return Choice{}, err
		}
		ch.RestorePoint = &rec
		ch.Target.LSN = rec.LSN
	}
	all, err := catalog.ListBackups(ctx, st)
	if err != nil {
		return Choice{}, err
	}
	backups, err := ownBackups(ctx, st, all, backupName, ch.RestorePoint)
	if err != nil {
		return Choice{}, err
	}
	if len(backups) == 0 {
		return Choice{}, fmt.Errorf("%w: the repository has no backups; take one with walrus backup-push", ErrNoBackup)
	}
	segSize := backups[len(backups)-1].WALSegmentSize
	idx, err := catalog.LoadWALIndex(ctx, st, segSize)
	if err != nil {
		return Choice{}, err
	}
	// The timeline recovery will follow: the restore point's, or the
	// newest archived (recovery_target_timeline = latest).
	tli := backups[len(backups)-1].Timeline
	if t, _, ok := idx.Newest(); ok && t > tli {
		tli = t
	}
	for t := range idx.Histories {
		if t > tli {
			tli = t
		}
	}
	if ch.RestorePoint != nil {
		tli = ch.RestorePoint.Timeline
	}
	hist, err := idx.History(ctx, st, dec, tli)
	if err != nil {
		return Choice{}, fmt.Errorf("resolve target: %w", err)
	}

	precedes := func(b catalog.Backup) bool {
		if !hist.Contains(b.Timeline, b.FinishLSN) {
			return false
		}
		switch ch.Target.Kind {
		case Name, LSN:
			return b.FinishLSN <= ch.Target.LSN
		case Time:
			return !b.FinishTime.After(ch.Target.Time)
		}
		return true
	}
	var chosen *catalog.Backup
	if backupName != "" && backupName != "LATEST" {
		for i := range backups {
			if backups[i].Name == backupName {
				chosen = &backups[i]
			}
		}
		if chosen == nil {
			return Choice{}, fmt.Errorf("backup %q is not in the repository (walrus backup-list shows them)", backupName)
		}
		if !precedes(*chosen) {
			return Choice{}, fmt.Errorf("%w: backup %s finished at %s (%s), after the %s target %s: choose an older backup, or omit the name to let walrus choose", ErrNoBackup, chosen.Name, chosen.FinishLSN, chosen.FinishTime.Format(time.RFC3339), ch.Target.Kind, describe(ch.Target))
		}
		ch.Reason = fmt.Sprintf("backup %s as requested; it finished at %s, before the %s target %s", chosen.Name, chosen.FinishLSN, ch.Target.Kind, describe(ch.Target))
	} else {
		for i := len(backups) - 1; i >= 0; i-- {
			if precedes(backups[i]) {
				chosen = &backups[i]
				break
			}
		}
		if chosen == nil {
			oldest := backups[0]
			return Choice{}, fmt.Errorf("%w: the oldest backup, %s, finished at %s (%s), after the %s target %s; a restore cannot go back before it: choose a target at or after its finish (walrus backup-list shows every backup's finish)", ErrNoBackup, oldest.Name, oldest.FinishLSN, oldest.FinishTime.Format(time.RFC3339), ch.Target.Kind, describe(ch.Target))
		}
		switch ch.Target.Kind {
		case Latest, Immediate:
			ch.Reason = fmt.Sprintf("backup %s is the newest (finished %s at %s)", chosen.Name, chosen.FinishTime.Format(time.RFC3339), chosen.FinishLSN)
		default:
			ch.Reason = fmt.Sprintf("backup %s is the newest that finished (%s at %s) before the %s target %s", chosen.Name, chosen.FinishTime.Format(time.RFC3339), chosen.FinishLSN, ch.Target.Kind, describe(ch.Target))
		}
	}
	ch.Backup = *chosen

	// WAL from the backup's start to the target must all be there.
	var to pg.LSN
	switch ch.Target.Kind {
	case Immediate:
		to = chosen.FinishLSN
	case Name, LSN:
		to = ch.Target.LSN
	default:
		to = walEnd(idx, hist, backups, ch.Target)
	}
	if to < chosen.FinishLSN {
		to = chosen.FinishLSN
	}
	if err := idx.Missing(hist, chosen.Timeline, chosen.StartLSN, to); err != nil {
		return Choice{}, fmt.Errorf("restore from %s to the %s target %s: %w; nothing was written: restore to an earlier target, or find the missing files", chosen.Name, ch.Target.Kind, describe(ch.Target), err)
	}
	return ch, nil
}

// ErrForeign means a backup or a restore point of the repository
// belongs to another cluster than the one walrus.json names: it was
// copied from another repository.
var ErrForeign = errors.New("belongs to another cluster than the repository")

// ownBackups returns the backups of the cluster that walrus.json names
// (all of them when the repository has no walrus.json). The backup named
// and the restore point must be of that cluster: an object copied from
// another cluster's repository is refused, never restored, and never
// chosen as the newest.
func ownBackups(ctx context.Context, st storage.Store, all []catalog.Backup, name string, rp *Record) ([]catalog.Backup, error) {
	id, err := repo.ReadIdentity(ctx, st)
	if errors.Is(err, storage.ErrNotFound) {
		return all, nil
	}
	if err != nil {
		return nil, err
	}
	sysid := id.SystemIdentifier
	if rp != nil && rp.SystemIdentifier != "" && rp.SystemIdentifier != sysid {
		return nil, fmt.Errorf("restore point %q %w: it was recorded for system %s, the repository holds system %s (walrus.json); it was copied from another repository: remove restore-points/%s.json",
			rp.Name, ErrForeign, rp.SystemIdentifier, sysid, rp.Name)
	}
	var own []catalog.Backup
	for _, b := range all {
		if b.SystemIdentifier == sysid {
			own = append(own, b)
			continue
		}
		if b.Name == name {
			return nil, fmt.Errorf("backup %s %w: it is a backup of system %s, the repository holds system %s (walrus.json); it was copied from another repository: restore it from its own",
				b.Name, ErrForeign, b.SystemIdentifier, sysid)
		}
	}
	return own, nil
}

// walEnd is how far the WAL check must reach for latest and time targets:
// the newest archived segment on the lineage, or for a time target the
// start of the first backup that began after that time (its WAL is
// certainly past the target).
func walEnd(idx *catalog.WALIndex, hist pg.History, backups []catalog.Backup, t Target) pg.LSN {
	if t.Kind == Time {
		for _, b := range backups {
			if b.StartTime.After(t.Time) && hist.Contains(b.Timeline, b.StartLSN) {
				return b.StartLSN
			}
		}
	}
	var end pg.LSN
	lineage := map[pg.TimelineID]bool{hist.TLI: true}
	for _, e := range hist.Entries {
		lineage[e.Parent] = true
	}
	for t, segs := range idx.Segments {
		if !lineage[t] {
			continue
		}
		for s := range segs {
			if l := pg.SegmentStartLSN(s, idx.SegSize); l > end {
				end = l
			}
		}
	}
	return end
}

func describe(t Target) string {
	switch t.Kind {
	case Name:
		return fmt.Sprintf("%q (%s)", t.Name, t.LSN)
	case Time:
		return FormatTime(t.Time)
	case LSN:
		return t.LSN.String()
	}
	return ""
}
