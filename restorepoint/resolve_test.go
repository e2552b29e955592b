package restorepoint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/restorepoint"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

// The repository that every Resolve test starts from. Its own cluster
// (walrus.json) is resolveSysid, with three full backups on timeline 1,
// B1 < B2 < B3 by start, finish LSN and finish time, and every WAL segment
// from 1 to 9 archived. Three backups of other clusters are copied in,
// each placed where it would win if Resolve did not filter it out:
// foreign_old finishes before B1, foreign_mid between B1 and B2, and
// foreign_new after B3 (with a higher system identifier, so it also sorts
// last in ListBackups order).
const (
	resolveSysid   = 7300000000000000042
	resolveSegSize = 16 << 20
	lowSysid       = "7300000000000000001"
	highSysid      = "7300000000000000099"
)

var resolveDay = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

// at is a time on the fixture's day.
func at(hour, min int) time.Time {
	return resolveDay.Add(time.Duration(hour)*time.Hour + time.Duration(min)*time.Minute)
}

// lsn parses an LSN literal of the fixture.
func lsn(t *testing.T, s string) pg.LSN {
	t.Helper()
	l, err := pg.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type fixtureBackup struct {
	name          string
	sysid         string
	start, finish string
	startTime     time.Time
	finishTime    time.Time
}

// ownSysidText is resolveSysid as manifests and records write it.
const ownSysidText = "7300000000000000042"

var fixtureBackups = []fixtureBackup{
	{"b1", ownSysidText, "0/2000028", "0/2000200", at(10, 0), at(10, 5)},
	{"b2", ownSysidText, "0/4000028", "0/4000200", at(12, 0), at(12, 5)},
	{"b3", ownSysidText, "0/6000028", "0/6000200", at(14, 0), at(14, 5)},
	{"foreign_old", lowSysid, "0/1000028", "0/1000200", at(9, 0), at(9, 5)},
	{"foreign_mid", lowSysid, "0/3000028", "0/3000200", at(11, 0), at(11, 5)},
	{"foreign_new", highSysid, "0/8000028", "0/8000200", at(16, 0), at(16, 5)},
}

// fixtureRestorePoints are the restore point records of the fixture.
var fixtureRestorePoints = []restorepoint.Record{
	{Name: "before-b1", LSN: 0x1800000, Timeline: 1, Time: at(9, 30), SystemIdentifier: ownSysidText, WALFile: "000000010000000000000001"},
	{Name: "between-b2-b3", LSN: 0x5000100, Timeline: 1, Time: at(13, 0), SystemIdentifier: ownSysidText, WALFile: "000000010000000000000005"},
	{Name: "at-b2-finish", LSN: 0x4000200, Timeline: 1, Time: at(12, 5), SystemIdentifier: ownSysidText, WALFile: "000000010000000000000004"},
	{Name: "other-cluster", LSN: 0x5000100, Timeline: 1, Time: at(13, 0), SystemIdentifier: highSysid, WALFile: "000000010000000000000005"},
}

// fixtureManifest is a minimal valid full-backup manifest.
func fixtureManifest(t *testing.T, b fixtureBackup) *catalog.Manifest {
	t.Helper()
	m := &catalog.Manifest{}
	m.FormatVersion = catalog.FormatVersion
	m.Name = b.name
	m.Kind = catalog.KindFull
	m.SystemIdentifier = b.sysid
	m.PGVersion = 170002
	m.Timeline = 1
	m.StartLSN, m.FinishLSN = lsn(t, b.start), lsn(t, b.finish)
	m.StartWALFile = pg.SegmentName(1, pg.SegmentForLSN(m.StartLSN, resolveSegSize), resolveSegSize)
	m.FinishWALFile = pg.SegmentName(1, pg.SegmentForLSN(m.FinishLSN, resolveSegSize), resolveSegSize)
	m.StartTime, m.FinishTime = b.startTime, b.finishTime
	m.WALSegmentSize = resolveSegSize
	m.Codec = "none"
	m.BackupLabel = "START WAL LOCATION: " + b.start + "\n"
	part := "part_00001.tar"
	m.Parts = []catalog.Part{{Name: part, Key: repo.PartsPrefix(b.name) + part + ".none", RawSize: 10240, StoredSize: 10240, StoredSHA256: strings.Repeat("ab", 32)}}
	m.Files = []catalog.File{
		{Path: "PG_VERSION", Kind: catalog.FileWhole, Size: 3, Mode: 0o600, MTime: b.startTime, Part: part, CRC32C: "0badcafe"},
		{Path: "global", Kind: catalog.FileDir, Mode: 0o700, MTime: b.startTime},
		{Path: "global/pg_control", Kind: catalog.FileWhole, Size: 8192, Mode: 0o600, MTime: b.startTime, Part: part, Offset: 1024, CRC32C: "12345678"},
	}
	m.DataSize = 8195
	m.StoredSize = 10240
	return m
}

// newResolveRepo builds the fixture repository in memory.
func newResolveRepo(t *testing.T) storage.Store {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	if _, err := repo.EnsureIdentity(ctx, st, resolveSysid, false); err != nil {
		t.Fatal(err)
	}
	for _, b := range fixtureBackups {
		if err := catalog.WriteManifest(ctx, st, fixtureManifest(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	for seg := uint64(1); seg <= 9; seg++ {
		key := repo.WALBase(pg.SegmentName(1, seg, resolveSegSize)) + ".none"
		if err := st.Put(ctx, key, strings.NewReader("wal"), storage.PutOptions{Size: 3}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rp := range fixtureRestorePoints {
		b, err := json.Marshal(rp)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, repo.RestorePointKey(rp.Name), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func resolve(t *testing.T, st storage.Store, backup string, target restorepoint.Target) (restorepoint.Choice, error) {
	t.Helper()
	return restorepoint.Resolve(context.Background(), st, &repo.Decoder{}, backup, target)
}

// wantChosen fails unless Resolve chose backup want.
func wantChosen(t *testing.T, ch restorepoint.Choice, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Resolve: %v, want backup %s", err, want)
	}
	if ch.Backup.Name != want {
		t.Fatalf("Resolve chose %s (%s), want %s", ch.Backup.Name, ch.Reason, want)
	}
	if !strings.Contains(ch.Reason, want) {
		t.Errorf("reason %q does not name the chosen backup %s", ch.Reason, want)
	}
}

// wantRefused fails unless err wraps restorepoint.ErrNoBackup and its text
// holds every one of parts.
func wantRefused(t *testing.T, ch restorepoint.Choice, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Resolve chose %s (%s), want a refusal", ch.Backup.Name, ch.Reason)
	}
	if !errors.Is(err, restorepoint.ErrNoBackup) {
		t.Errorf("error %q does not wrap ErrNoBackup", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
	if strings.Contains(err.Error(), "foreign_") {
		t.Errorf("error %q names a backup of another cluster", err)
	}
}

// TestResolveTimeTarget proves TRAPS.md 26 for time targets, with no
// backup named and with LATEST (the name backup-fetch passes when none is
// given): the backup chosen is the newest of the repository's cluster
// whose finish time is at or before the target, so an older target picks
// an older backup, never the newest; a target before the oldest backup is
// refused with an error naming the target and the earliest point a
// restore can reach (the oldest backup's finish). A target exactly at a
// backup's finish chooses that backup: recovery must reach the backup's
// end (its consistent point) before it may stop, and every commit it
// replays up to there happened at or before its finish time, so the stop
// (before the first commit after the target) cannot come before
// consistency. A nanosecond earlier and it cannot be used.
func TestResolveTimeTarget(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	b1Finish := at(10, 5).Format(time.RFC3339)
	for _, backup := range []string{"", "LATEST"} {
		for _, tc := range []struct {
			desc   string
			target time.Time
			want   string // "" = refused
		}{
			{"before b1, after a foreign backup", at(9, 30), ""},
			{"one nanosecond before b1's finish", at(10, 5).Add(-time.Nanosecond), ""},
			{"exactly b1's finish", at(10, 5), "b1"},
			{"between b1 and b2, after a foreign backup", at(11, 30), "b1"},
			{"one nanosecond before b2's finish", at(12, 5).Add(-time.Nanosecond), "b1"},
			{"exactly b2's finish", at(12, 5), "b2"},
			{"between b2 and b3", at(13, 0), "b2"},
			{"exactly b3's finish", at(14, 5), "b3"},
			{"after b3, after a newer foreign backup", at(23, 0), "b3"},
		} {
			target := restorepoint.Target{Kind: restorepoint.Time, Time: tc.target}
			t.Run(tc.desc+"/"+backup, func(t *testing.T) {
				ch, err := resolve(t, st, backup, target)
				if tc.want == "" {
					// Why (the oldest backup finished after the target) and
					// what can be done (a target at or after b1's finish).
					wantRefused(t, ch, err, "time target", restorepoint.FormatTime(tc.target), "oldest backup, b1", b1Finish, "0/2000200", "choose a target at or after")
					return
				}
				wantChosen(t, ch, err, tc.want)
			})
		}
	}
}

// TestResolveLSNTarget proves TRAPS.md 26 for LSN targets: the newest
// backup of the repository's cluster whose finish LSN is at or before the
// target is chosen; a target before b1's finish is refused with an error
// naming the target and b1's finish. A target equal to a backup's finish
// LSN chooses it: replay reaches consistency at that LSN, which is not
// before the stop point; one byte earlier it would be.
func TestResolveLSNTarget(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	for _, backup := range []string{"", "LATEST"} {
		for _, tc := range []struct {
			desc   string
			target string
			want   string
		}{
			{"before b1, after a foreign backup", "0/1800000", ""},
			{"one byte before b1's finish", "0/20001FF", ""},
			{"exactly b1's finish", "0/2000200", "b1"},
			{"between b1 and b2, after a foreign backup", "0/3800000", "b1"},
			{"one byte before b2's finish", "0/40001FF", "b1"},
			{"exactly b2's finish", "0/4000200", "b2"},
			{"between b2 and b3", "0/5000100", "b2"},
			{"after b3, after a newer foreign backup", "0/9000100", "b3"},
		} {
			target := restorepoint.Target{Kind: restorepoint.LSN, LSN: lsn(t, tc.target)}
			t.Run(tc.desc+"/"+backup, func(t *testing.T) {
				ch, err := resolve(t, st, backup, target)
				if tc.want == "" {
					wantRefused(t, ch, err, "LSN target", tc.target, "oldest backup, b1", "0/2000200", "choose a target at or after")
					return
				}
				wantChosen(t, ch, err, tc.want)
				if ch.Target.LSN != lsn(t, tc.target) {
					t.Errorf("target LSN became %s", ch.Target.LSN)
				}
			})
		}
	}
}

// TestResolveRestorePoint proves that a named restore point is resolved
// through its record: a point between b2 and b3 chooses b2 (not the newest,
// b3) and fills in the target's LSN and the record; a point at b2's finish
// chooses b2; a point before b1 is refused naming it; an unknown name
// fails with ErrNotFound; a point recorded for another cluster is refused
// with ErrForeign and a hint.
func TestResolveRestorePoint(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	for _, backup := range []string{"", "LATEST"} {
		ch, err := resolve(t, st, backup, restorepoint.Target{Kind: restorepoint.Name, Name: "between-b2-b3"})
		wantChosen(t, ch, err, "b2")
		if ch.Target.LSN != 0x5000100 || ch.RestorePoint == nil || ch.RestorePoint.Name != "between-b2-b3" {
			t.Errorf("choice target %+v, restore point %+v: want LSN 0/5000100 and the record", ch.Target, ch.RestorePoint)
		}

		ch, err = resolve(t, st, backup, restorepoint.Target{Kind: restorepoint.Name, Name: "at-b2-finish"})
		wantChosen(t, ch, err, "b2")

		ch, err = resolve(t, st, backup, restorepoint.Target{Kind: restorepoint.Name, Name: "before-b1"})
		wantRefused(t, ch, err, "restore point target", `"before-b1"`, "0/1800000", "oldest backup, b1", "0/2000200", "choose a target at or after")
	}

	_, err := resolve(t, st, "", restorepoint.Target{Kind: restorepoint.Name, Name: "never-made"})
	if !errors.Is(err, restorepoint.ErrNotFound) || !strings.Contains(err.Error(), "never-made") || !strings.Contains(err.Error(), "restore-point-list") {
		t.Errorf("unknown restore point: %v, want ErrNotFound naming it and restore-point-list", err)
	}

	_, err = resolve(t, st, "", restorepoint.Target{Kind: restorepoint.Name, Name: "other-cluster"})
	if !errors.Is(err, restorepoint.ErrForeign) || !strings.Contains(err.Error(), "other-cluster") || !strings.Contains(err.Error(), "remove restore-points/other-cluster.json") {
		t.Errorf("restore point of another cluster: %v, want ErrForeign naming it and what to remove", err)
	}
}

// TestResolveNamedBackup proves that an explicitly named backup is taken
// as given when it finished at or before the target (even if it is not
// the newest that does), and refused when it finished after the target,
// with an error naming the backup, the target, and what to do; an unknown
// name is refused naming it.
func TestResolveNamedBackup(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	const hint = "choose an older backup, or omit the name to let walrus choose"
	for _, tc := range []struct {
		desc   string
		backup string
		target restorepoint.Target
		want   string   // chosen backup; "" = refused
		parts  []string // what the refusal must mention
	}{
		{"b3, time before its finish", "b3", restorepoint.Target{Kind: restorepoint.Time, Time: at(11, 30)}, "",
			[]string{"backup b3", "0/6000200", at(14, 5).Format(time.RFC3339), "time target " + restorepoint.FormatTime(at(11, 30)), hint}},
		{"b3, one nanosecond before its finish", "b3", restorepoint.Target{Kind: restorepoint.Time, Time: at(14, 5).Add(-time.Nanosecond)}, "",
			[]string{"backup b3", "time target", hint}},
		{"b3, LSN before its finish", "b3", restorepoint.Target{Kind: restorepoint.LSN, LSN: 0x5000100}, "",
			[]string{"backup b3", "LSN target 0/5000100", hint}},
		{"b3, restore point before its finish", "b3", restorepoint.Target{Kind: restorepoint.Name, Name: "between-b2-b3"}, "",
			[]string{"backup b3", `restore point target "between-b2-b3" (0/5000100)`, hint}},
		{"b1, time before its finish", "b1", restorepoint.Target{Kind: restorepoint.Time, Time: at(9, 30)}, "",
			[]string{"backup b1", "time target", hint}},
		{"b2, time exactly at its finish", "b2", restorepoint.Target{Kind: restorepoint.Time, Time: at(12, 5)}, "b2", nil},
		{"b2, LSN exactly at its finish", "b2", restorepoint.Target{Kind: restorepoint.LSN, LSN: 0x4000200}, "b2", nil},
		{"b1, time after b3", "b1", restorepoint.Target{Kind: restorepoint.Time, Time: at(23, 0)}, "b1", nil},
		{"b1, restore point between b2 and b3", "b1", restorepoint.Target{Kind: restorepoint.Name, Name: "between-b2-b3"}, "b1", nil},
		{"b2, latest", "b2", restorepoint.Target{Kind: restorepoint.Latest}, "b2", nil},
		{"b1, immediate", "b1", restorepoint.Target{Kind: restorepoint.Immediate}, "b1", nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ch, err := resolve(t, st, tc.backup, tc.target)
			if tc.want == "" {
				wantRefused(t, ch, err, tc.parts...)
				return
			}
			wantChosen(t, ch, err, tc.want)
		})
	}

	_, err := resolve(t, st, "b9", restorepoint.Target{Kind: restorepoint.Latest})
	if err == nil || !strings.Contains(err.Error(), `backup "b9" is not in the repository`) || !strings.Contains(err.Error(), "backup-list") {
		t.Errorf("unknown backup: %v, want a refusal naming it and backup-list", err)
	}
}

// TestResolveLatestAndImmediate proves that without a stop point (latest,
// immediate) the newest backup of the repository's cluster is chosen, b3,
// not a newer-looking backup of another cluster.
func TestResolveLatestAndImmediate(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	for _, backup := range []string{"", "LATEST"} {
		for _, kind := range []restorepoint.TargetKind{restorepoint.Latest, restorepoint.Immediate} {
			ch, err := resolve(t, st, backup, restorepoint.Target{Kind: kind})
			wantChosen(t, ch, err, "b3")
		}
	}
}

// TestResolveNeverChoosesForeignBackup proves that a backup of another
// cluster copied into the repository is never chosen: not when it is the
// only backup before the target (the target is refused, naming b1), not
// when it is newer than the repository's best candidate, and not when it
// is named (refused with ErrForeign and what to do).
func TestResolveNeverChoosesForeignBackup(t *testing.T) {
	t.Parallel()
	st := newResolveRepo(t)
	for _, target := range []restorepoint.Target{
		{Kind: restorepoint.Latest},
		{Kind: restorepoint.Immediate},
		{Kind: restorepoint.Time, Time: at(9, 30)},
		{Kind: restorepoint.Time, Time: at(11, 30)},
		{Kind: restorepoint.Time, Time: at(23, 0)},
		{Kind: restorepoint.LSN, LSN: 0x1800000},
		{Kind: restorepoint.LSN, LSN: 0x3800000},
		{Kind: restorepoint.LSN, LSN: 0x9000000},
		{Kind: restorepoint.Name, Name: "between-b2-b3"},
	} {
		for _, backup := range []string{"", "LATEST"} {
			ch, err := resolve(t, st, backup, target)
			if strings.HasPrefix(ch.Backup.Name, "foreign_") {
				t.Errorf("%s target %+v: chose %s, a backup of system %s", target.Kind, target, ch.Backup.Name, ch.Backup.SystemIdentifier)
			}
			if err != nil && strings.Contains(err.Error(), "foreign_") {
				t.Errorf("%s target %+v: error %q names a backup of another cluster", target.Kind, target, err)
			}
		}
	}
	for _, name := range []string{"foreign_old", "foreign_mid", "foreign_new"} {
		ch, err := resolve(t, st, name, restorepoint.Target{Kind: restorepoint.Time, Time: at(23, 0)})
		if !errors.Is(err, restorepoint.ErrForeign) {
			t.Errorf("named %s: chose %q, err %v; want ErrForeign", name, ch.Backup.Name, err)
			continue
		}
		if !strings.Contains(err.Error(), "backup "+name) || !strings.Contains(err.Error(), "restore it from its own") {
			t.Errorf("named %s: error %q does not name it and say what to do", name, err)
		}
	}
}
