package catalog

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/mem"
)

// The tests in this file check that retention (PlanDeletion, then
// Execute) keeps and deletes by (system identifier, timeline, start LSN)
// read from the manifests (TRAPS.md 24) and keeps the WAL kept backups
// need (TRAPS.md 25), in repositories where every other order disagrees:
// names sort opposite to the LSN order, start_time and finish_time go
// back where the clock jumped back (one backup even finished before it
// started), and the objects' modification times follow a shuffled write
// order in which the oldest backup was stored last (as if copied into the
// repository later). On storage/mem the modification times are those of
// the shuffled writes; on storage/fs they are also set with os.Chtimes.

// ordBackup is one backup of an ordScenario.
type ordBackup struct {
	name string
	// base is the backup it is a delta of; "" for a full backup.
	base string
	// seg is the segment (timeline 1) its start and finish fall in.
	seg uint64
	// start and finish are its start_time and finish_time after epoch.
	start, finish time.Duration
}

// ordScenario is a repository of backups on timeline 1 of one system.
type ordScenario struct {
	// backups are in (timeline, start LSN) order, bases before deltas.
	backups []ordBackup
	// written is the order the backups are stored in, and so the order
	// of their objects' modification times.
	written []string
	// lastSeg: segments 1..lastSeg of timeline 1 are archived.
	lastSeg uint64
}

// ordStores are the stores each scenario runs on.
var ordStores = []string{"mem", "fs"}

// ordRepo is an ordScenario stored.
type ordRepo struct {
	t  *testing.T
	st storage.Store
	ms map[string]*Manifest
}

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// ordMain is the main scenario. In LSN order:
//
//	name        kind             seg  start_time  finish_time
//	base_7_f1   full               2  10:00       10:05
//	base_6_d1   delta of f1        3  11:00       11:05
//	base_5_f2   full               5  12:00       12:05
//	base_4_d2a  delta of f2        6  13:00       13:05
//	base_3_d2b  delta of d2a       7  13:30       06:00  (clock set back 8 h during it)
//	base_2_f3   full               9  07:00       07:05
//	base_1_d3   delta of f3       10  08:00       08:05
//
// Names sort in the reverse order; by start_time the newest is d2b and the
// newest full f2; by finish_time the newest is d2a; by object time (write
// order d3, d2a, f3, d1, d2b, f2, f1) the newest is f1. WAL: segments 1-13.
var ordMain = ordScenario{
	backups: []ordBackup{
		{"base_7_f1", "", 2, hm(10, 0), hm(10, 5)},
		{"base_6_d1", "base_7_f1", 3, hm(11, 0), hm(11, 5)},
		{"base_5_f2", "", 5, hm(12, 0), hm(12, 5)},
		{"base_4_d2a", "base_5_f2", 6, hm(13, 0), hm(13, 5)},
		{"base_3_d2b", "base_4_d2a", 7, hm(13, 30), hm(6, 0)},
		{"base_2_f3", "", 9, hm(7, 0), hm(7, 5)},
		{"base_1_d3", "base_2_f3", 10, hm(8, 0), hm(8, 5)},
	},
	written: []string{"base_1_d3", "base_4_d2a", "base_2_f3", "base_6_d1", "base_3_d2b", "base_5_f2", "base_7_f1"},
	lastSeg: 13,
}

// ordOldChain is the scenario of TestRetentionOrderOldChainInWindow. In
// LSN order:
//
//	name        kind             seg  start_time  finish_time
//	base_7_f1   full               2  09:00       09:05
//	base_6_d1   delta of f1        3  10:00       10:05
//	base_5_f2   full               5  11:00       11:05
//	base_4_d2   delta of f2        6  12:00       12:05
//	base_3_f3   full               8  03:00       03:05  (clock set back 9 h)
//	base_2_dx   delta of d1        9  04:00       04:05  (based on the old chain)
//	base_1_d3   delta of dx       10  05:00       05:05
//
// Written in the order d3, f3, d2, dx, d1, f2, f1. WAL: segments 1-13.
var ordOldChain = ordScenario{
	backups: []ordBackup{
		{"base_7_f1", "", 2, hm(9, 0), hm(9, 5)},
		{"base_6_d1", "base_7_f1", 3, hm(10, 0), hm(10, 5)},
		{"base_5_f2", "", 5, hm(11, 0), hm(11, 5)},
		{"base_4_d2", "base_5_f2", 6, hm(12, 0), hm(12, 5)},
		{"base_3_f3", "", 8, hm(3, 0), hm(3, 5)},
		{"base_2_dx", "base_6_d1", 9, hm(4, 0), hm(4, 5)},
		{"base_1_d3", "base_2_dx", 10, hm(5, 0), hm(5, 5)},
	},
	written: []string{"base_1_d3", "base_3_f3", "base_4_d2", "base_2_dx", "base_6_d1", "base_5_f2", "base_7_f1"},
	lastSeg: 13,
}

// checkDecoys fails the test unless every order but the LSN order (by
// name, start_time, finish_time, object time) puts another backup last,
// another full backup last, and another pair of full backups newest, so
// that retention in any of those orders would plan differently.
func (sc ordScenario) checkDecoys(t *testing.T) {
	t.Helper()
	byName := map[string]ordBackup{}
	var lsn []string
	for _, b := range sc.backups {
		byName[b.name] = b
		lsn = append(lsn, b.name)
	}
	fulls := func(order []string) []string {
		var out []string
		for _, n := range order {
			if byName[n].base == "" {
				out = append(out, n)
			}
		}
		return out
	}
	newest2 := func(order []string) []string {
		f := fulls(order)
		return slices.Sorted(slices.Values(f[len(f)-2:]))
	}
	sortedBy := func(less func(a, b ordBackup) int) []string {
		out := slices.Clone(lsn)
		slices.SortStableFunc(out, func(a, b string) int { return less(byName[a], byName[b]) })
		return out
	}
	decoys := map[string][]string{
		"name":         sortedBy(func(a, b ordBackup) int { return strings.Compare(a.name, b.name) }),
		"start_time":   sortedBy(func(a, b ordBackup) int { return int(a.start - b.start) }),
		"finish_time":  sortedBy(func(a, b ordBackup) int { return int(a.finish - b.finish) }),
		"object times": sc.written,
	}
	for what, d := range decoys {
		if d[len(d)-1] == lsn[len(lsn)-1] || fulls(d)[len(fulls(d))-1] == fulls(lsn)[len(fulls(lsn))-1] || slices.Equal(newest2(d), newest2(lsn)) {
			t.Fatalf("bad scenario: the order by %s %v is too close to the LSN order %v", what, d, lsn)
		}
	}
}

// build stores the scenario on a new store of the kind given ("mem" or
// "fs") and checks that the store reports the objects' modification times
// in the order sc.written.
func (sc ordScenario) build(t *testing.T, kind string) *ordRepo {
	t.Helper()
	ctx := context.Background()
	r := &ordRepo{t: t, ms: map[string]*Manifest{}}
	var chtimes func(key string, mod time.Time)
	switch kind {
	case "mem":
		r.st = mem.New()
	case "fs":
		root := t.TempDir()
		st, err := fs.New(root)
		if err != nil {
			t.Fatal(err)
		}
		r.st = st
		chtimes = func(key string, mod time.Time) {
			if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(key)), mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unknown store %s", kind)
	}
	for _, b := range sc.backups {
		var m *Manifest
		if b.base == "" {
			m = validManifest(b.name, sysID, 1, segLSN(b.seg))
		} else {
			m = deltaManifest(b.name, r.ms[b.base], segLSN(b.seg))
		}
		m.WALSegmentSize = seg16M
		m.StartTime, m.FinishTime = epoch.Add(b.start), epoch.Add(b.finish)
		r.ms[b.name] = m
	}
	for s := uint64(1); s <= sc.lastSeg; s++ {
		r.put(repo.WALPrefix+seg(1, s)+".lz4", "segment", map[string]string{repo.MetaSize: strconv.Itoa(seg16M)})
	}
	for i, name := range sc.written {
		m := r.ms[name]
		for _, p := range m.Parts {
			r.put(p.Key, "part of "+name, nil)
		}
		if err := WriteManifest(ctx, r.st, m); err != nil {
			t.Fatal(err)
		}
		if chtimes != nil {
			mod := epoch.Add(time.Duration(i) * time.Hour)
			for _, p := range m.Parts {
				chtimes(p.Key, mod)
			}
			chtimes(repo.ManifestKey(name), mod)
		}
	}
	mod := map[string]time.Time{}
	if err := r.st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
		name, _, _ := strings.Cut(strings.TrimPrefix(o.Key, repo.BackupsPrefix), "/")
		if o.ModTime.After(mod[name]) {
			mod[name] = o.ModTime
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(sc.written); i++ {
		if !mod[sc.written[i-1]].Before(mod[sc.written[i]]) {
			t.Fatalf("object times are not in the order %v: %v", sc.written, mod)
		}
	}
	return r
}

func (r *ordRepo) put(key, body string, md map[string]string) {
	r.t.Helper()
	if err := r.st.Put(context.Background(), key, strings.NewReader(body), storage.PutOptions{Size: int64(len(body)), Metadata: md}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *ordRepo) plan(rule Rule) *DeletionPlan {
	r.t.Helper()
	p, err := PlanDeletion(context.Background(), PlanOptions{Store: r.st, Decoder: &repo.Decoder{}, Rule: rule})
	if err != nil {
		r.t.Fatalf("plan %s: %v", rule, err)
	}
	return p
}

func (r *ordRepo) list() []Backup {
	r.t.Helper()
	bs, err := ListBackups(context.Background(), r.st)
	if err != nil {
		r.t.Fatal(err)
	}
	return bs
}

// walLeft names the WAL files in the repository, in key order.
func (r *ordRepo) walLeft() []string {
	r.t.Helper()
	var out []string
	if err := r.st.List(context.Background(), repo.WALPrefix, func(o storage.ObjectInfo) error {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(o.Key, repo.WALPrefix), ".lz4"))
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// ordCase is one rule applied to a fresh copy of a scenario.
type ordCase struct {
	rule Rule
	// keep and del are the backups kept and deleted, in LSN order.
	keep, del []string
	// walFrom is the first segment kept: the start segment of the oldest
	// kept backup.
	walFrom uint64
	// check, when not nil, runs after the delete with the backups listed
	// before and after it.
	check func(t *testing.T, p *DeletionPlan, before, after []Backup)
}

// run builds sc on each store and applies c: the plan keeps and deletes
// exactly c.keep and c.del, in LSN order; it keeps WAL from c.walFrom,
// the start segment of the oldest kept backup, and deletes exactly the
// segments below it, protecting nothing else; planning changes nothing.
// Executed, it leaves exactly segments walFrom..lastSeg, no object of a
// deleted backup, every kept backup restorable (checkRestorable: its
// chain, its parts, its WAL from start to finish), wal-verify OK over a
// range that starts at the oldest kept backup, and exactly c.keep listed,
// in that order. The same rule then plans nothing.
func (sc ordScenario) run(t *testing.T, c ordCase) {
	t.Helper()
	for _, kind := range ordStores {
		t.Run(kind+": "+c.rule.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := sc.build(t, kind)
			before := r.list()
			keysBefore := r.walLeft()
			p := r.plan(c.rule)
			if got := r.walLeft(); !reflect.DeepEqual(got, keysBefore) || len(r.list()) != len(before) {
				t.Fatal("planning changed the repository")
			}
			checkPlan(t, p, c.keep, c.del)
			oldest := uint64(0)
			for _, n := range c.keep {
				if s := pg.SegmentForLSN(r.ms[n].StartLSN, seg16M); oldest == 0 || s < oldest {
					oldest = s
				}
			}
			if oldest != c.walFrom {
				t.Fatalf("bad case: the oldest kept backup starts in segment %d, the case keeps WAL from %d", oldest, c.walFrom)
			}
			if p.WALKeptFrom != seg(1, c.walFrom) {
				t.Errorf("%s: WAL kept from %q, want %s (the oldest kept backup's start)", c.rule, p.WALKeptFrom, seg(1, c.walFrom))
			}
			if len(p.WAL) != 1 || p.WAL[0].First != seg(1, 1) || p.WAL[0].Last != seg(1, c.walFrom-1) || p.WAL[0].Files != int(c.walFrom-1) {
				t.Errorf("%s: WAL deleted %+v, want segments 1-%d", c.rule, p.WAL, c.walFrom-1)
			}
			if len(p.WALProtected) != 0 {
				t.Errorf("%s: WAL protected below the cut: %+v", c.rule, p.WALProtected)
			}

			execute(t, r.st, p)

			if got, want := r.walLeft(), segs(c.walFrom, sc.lastSeg); !reflect.DeepEqual(got, want) {
				t.Errorf("%s left WAL %v, want %v", c.rule, got, want)
			}
			if err := r.st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
				name, _, _ := strings.Cut(strings.TrimPrefix(o.Key, repo.BackupsPrefix), "/")
				if slices.Contains(c.del, name) {
					t.Errorf("%s: %s of a deleted backup is left", c.rule, o.Key)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			checkRestorable(t, r.st, "after "+c.rule.String())
			rep, err := VerifyWAL(ctx, r.st, &repo.Decoder{})
			if err != nil || !rep.OK || len(rep.Missing) != 0 {
				t.Errorf("wal-verify after %s: %v, missing %v, broken %+v, notes %q", c.rule, err, rep.Missing, rep.BrokenBackups, rep.Notes)
			} else if rep.Range.StartBackup != c.keep[0] || rep.Range.FirstSegment != seg(1, c.walFrom) {
				t.Errorf("wal-verify after %s checked from %s (%s), want from %s (%s)", c.rule, rep.Range.StartBackup, rep.Range.FirstSegment, c.keep[0], seg(1, c.walFrom))
			}
			after := r.list()
			var listed []string
			for _, b := range after {
				listed = append(listed, b.Name)
			}
			if !reflect.DeepEqual(listed, c.keep) {
				t.Errorf("%s: listed after the delete %v, want %v", c.rule, listed, c.keep)
			}
			if c.check != nil {
				c.check(t, p, before, after)
			}
			if again := r.plan(c.rule); !again.Empty() {
				t.Errorf("%s run again plans more: delete %v, WAL %+v, orphans %+v", c.rule, names(again.Delete), again.WAL, again.Orphans)
			}
		})
	}
}

// TestRetainOrderIgnoresNamesAndTimes (TRAPS.md 24, 25): on ordMain,
// where names, start/finish times and object times all give other
// orders, retain 1 keeps the newest full backup by start LSN, f3, and its
// delta d3, deleting f1, d1, f2, d2a, d2b (by name, object time or
// start_time the newest full would be f1 or f2); retain 2 keeps f2 and f3
// and everything after f2 (d2a, d2b whose finish_time 06:00 is the
// oldest, d3), deleting f1 and d1. Each keeps the WAL from the oldest kept
// backup's start (segment 9, resp. 5) and deletes the segments below it;
// after the delete every kept backup is restorable and wal-verify finds
// nothing missing, and the same rule plans nothing more (see ordScenario.run).
func TestRetainOrderIgnoresNamesAndTimes(t *testing.T) {
	t.Parallel()
	ordMain.checkDecoys(t)
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleRetain, Retain: 1},
		keep:    []string{"base_2_f3", "base_1_d3"},
		del:     []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b"},
		walFrom: 9})
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleRetain, Retain: 2},
		keep:    []string{"base_5_f2", "base_4_d2a", "base_3_d2b", "base_2_f3", "base_1_d3"},
		del:     []string{"base_7_f1", "base_6_d1"},
		walFrom: 5})
}

// TestBeforeNameOrderIgnoresNamesAndTimes (TRAPS.md 24, 25): on ordMain,
// "before NAME" keeps NAME, every backup after it in LSN order and their
// chains, whatever the names and times say. before d2b keeps f2, d2a (its
// chain), d2b, f3 and d3 and deletes f1 and d1 (by name, "after d2b"
// would be d2a, f2, d1, f1, and f3 and d3 would go); before f3 keeps f3
// and d3 only; before LATEST is before d3, the last in LSN order
// (although f1 has the greatest name and the newest objects, and d2b the
// newest start_time): it keeps d3 and its base f3; before d1 keeps every
// backup (d1's chain reaches f1) and deletes only WAL segment 1, older
// than f1's start. WAL is kept from the oldest kept backup's start; see
// ordScenario.run for the checks after the delete.
func TestBeforeNameOrderIgnoresNamesAndTimes(t *testing.T) {
	t.Parallel()
	ordMain.checkDecoys(t)
	newest := []string{"base_2_f3", "base_1_d3"}
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Name: "base_3_d2b"},
		keep:    []string{"base_5_f2", "base_4_d2a", "base_3_d2b", "base_2_f3", "base_1_d3"},
		del:     []string{"base_7_f1", "base_6_d1"},
		walFrom: 5})
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Name: "base_2_f3"},
		keep:    newest,
		del:     []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b"},
		walFrom: 9})
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Name: Latest},
		keep:    newest,
		del:     []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b"},
		walFrom: 9})
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Name: "base_6_d1"},
		keep:    []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b", "base_2_f3", "base_1_d3"},
		del:     []string{},
		walFrom: 2})
}

// timeChoice is the backup a restore to time tm starts from when walrus
// chooses it (restorepoint.Choose, which package catalog cannot import):
// the last backup in ListBackups order that finished at or before tm (all
// backups here are on timeline 1, the lineage's only timeline); "" when
// none did.
func timeChoice(bs []Backup, tm time.Time) string {
	for i := len(bs) - 1; i >= 0; i-- {
		if !bs[i].FinishTime.After(tm) {
			return bs[i].Name
		}
	}
	return ""
}

// TestBeforeTimeNonMonotonicClock (TRAPS.md 24, 25) pins down what
// "before TIME" does when the clock went back. The rule is defined by
// finish_time, in LSN order: the window starts at the backup LAST IN LSN
// ORDER among those whose finish_time is at or before TIME (not the one
// whose finish_time is the latest such), and keeps it, every backup after
// it in LSN order whatever their times, and their chains. That is exactly
// the backup a restore to TIME picks (restorepoint.Choose), so for every
// time T' >= TIME the backup a restore to T' picks is the same before and
// after the delete, and kept (asserted for TIME, every recorded time at
// or after it and a time after all). Backups earlier in LSN order are
// deleted even when they finished after TIME: on ordMain,
//
//   - before 06:00 (d2b's finish, inclusive) keeps f2, d2a (d2b's chain),
//     d2b, f3, d3 and deletes f1 and d1, which finished at 10:05 and
//     11:05, after TIME: a restore to any time from 06:00 on starts from
//     d2b, f3 or d3 (a restore from f1 or d1 by name to a time before the
//     clock jump is no longer possible);
//   - before 12:30 keeps f3 and d3 only: d3 (finished 08:05) is the last
//     in LSN order to finish by then, so f2 (finished 12:05, the latest
//     finish_time at or before 12:30) and d2a (finished 13:05, after
//     TIME) go; ordering by finish_time would have kept f2 and d2a and
//     deleted f3 and d3;
//   - before 05:00, earlier than every finish_time, keeps every backup,
//     says so in a note, and deletes only WAL segment 1, older than f1.
//
// Each keeps WAL from the oldest kept backup's start; after the delete
// every kept backup is restorable (its chain, its parts, its WAL), and the
// same rule plans nothing more (see ordScenario.run).
func TestBeforeTimeNonMonotonicClock(t *testing.T) {
	t.Parallel()
	ordMain.checkDecoys(t)
	sameChoice := func(tm time.Time) func(t *testing.T, p *DeletionPlan, before, after []Backup) {
		return func(t *testing.T, p *DeletionPlan, before, after []Backup) {
			t.Helper()
			targets := []time.Time{tm, epoch.Add(100 * time.Hour)}
			for _, b := range before {
				for _, x := range []time.Time{b.StartTime, b.FinishTime, b.FinishTime.Add(-time.Second)} {
					if !x.Before(tm) {
						targets = append(targets, x)
					}
				}
			}
			for _, x := range targets {
				was, is := timeChoice(before, x), timeChoice(after, x)
				if was != is || (was != "" && !slices.Contains(names(p.Keep), was)) {
					t.Errorf("%s: a restore to %s started from %q before the delete, from %q after it (kept %v)", p.Rule, x.Format(time.TimeOnly), was, is, names(p.Keep))
				}
			}
		}
	}
	all := []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b", "base_2_f3", "base_1_d3"}

	at6 := epoch.Add(hm(6, 0))
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Time: at6},
		keep:    []string{"base_5_f2", "base_4_d2a", "base_3_d2b", "base_2_f3", "base_1_d3"},
		del:     []string{"base_7_f1", "base_6_d1"},
		walFrom: 5,
		check:   sameChoice(at6)})
	at1230 := epoch.Add(hm(12, 30))
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Time: at1230},
		keep:    []string{"base_2_f3", "base_1_d3"},
		del:     []string{"base_7_f1", "base_6_d1", "base_5_f2", "base_4_d2a", "base_3_d2b"},
		walFrom: 9,
		check:   sameChoice(at1230)})
	at5 := epoch.Add(hm(5, 0))
	ordMain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Time: at5},
		keep:    all,
		del:     []string{},
		walFrom: 2,
		check: func(t *testing.T, p *DeletionPlan, before, after []Backup) {
			sameChoice(at5)(t, p, before, after)
			if !slices.ContainsFunc(p.Notes, func(n string) bool { return strings.Contains(n, "no backup finished at or before") }) {
				t.Errorf("%s: no note that every backup is needed: %q", p.Rule, p.Notes)
			}
		}})
}

// TestRetentionOrderOldChainInWindow (TRAPS.md 24, 25): on ordOldChain,
// whose window holds deltas (dx, and d3 based on dx) of an older chain
// (d1, f1), with names reversed and a clock set back between d2 and f3:
// retain 1 keeps f3 (the newest full by start LSN; by name or object time
// it would be f1, by start_time f2), dx, d3 and their chain d1 and f1,
// deletes f2 and d2, and keeps the WAL from f1's start, the oldest kept
// backup's (segment 2); before dx keeps dx, d3, d1 and f1 and deletes f2, d2 and
// f3, which starts before dx although its name sorts after dx's and its
// times are older than f2's. See ordScenario.run for the checks after the
// delete.
func TestRetentionOrderOldChainInWindow(t *testing.T) {
	t.Parallel()
	ordOldChain.checkDecoys(t)
	ordOldChain.run(t, ordCase{rule: Rule{Kind: RuleRetain, Retain: 1},
		keep:    []string{"base_7_f1", "base_6_d1", "base_3_f3", "base_2_dx", "base_1_d3"},
		del:     []string{"base_5_f2", "base_4_d2"},
		walFrom: 2})
	ordOldChain.run(t, ordCase{rule: Rule{Kind: RuleBefore, Name: "base_2_dx"},
		keep:    []string{"base_7_f1", "base_6_d1", "base_2_dx", "base_1_d3"},
		del:     []string{"base_5_f2", "base_4_d2", "base_3_f3"},
		walFrom: 2})
}
