package catalog

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// The fixtures below extend retRepo (retention_test.go) with WAL of any
// timeline, .partial files and .history files, and backups on any
// timeline. Segments are stored as retRepo.wal stores them (".lz4", a
// small body, the plaintext size recorded); history files with the
// "none" codec and their real text, so that VerifyWAL can follow the
// lineage they describe.

// tlSegs stores segments first..last of timeline tli.
func tlSegs(r *retRepo, tli pg.TimelineID, first, last uint64) {
	r.t.Helper()
	for s := first; s <= last; s++ {
		tlPutWAL(r, seg(tli, s)+".lz4", "segment", map[string]string{repo.MetaSize: strconv.Itoa(seg16M)})
	}
}

// tlPartial stores segment s of timeline tli as a .partial file, as
// PostgreSQL archives the last segment of a timeline it leaves.
func tlPartial(r *retRepo, tli pg.TimelineID, s uint64) {
	r.t.Helper()
	tlPutWAL(r, seg(tli, s)+".partial.lz4", "partial segment", map[string]string{repo.MetaSize: strconv.Itoa(seg16M)})
}

// tlHistory stores the history file of timeline tli.
func tlHistory(r *retRepo, tli pg.TimelineID, body string) {
	r.t.Helper()
	tlPutWAL(r, pg.HistoryFileName(tli)+".none", body, nil)
}

func tlPutWAL(r *retRepo, name, body string, md map[string]string) {
	r.t.Helper()
	if err := r.st.Put(context.Background(), repo.WALPrefix+name, strings.NewReader(body), storage.PutOptions{Size: int64(len(body)), Metadata: md}); err != nil {
		r.t.Fatal(err)
	}
}

// tlBackup stores a full backup on timeline tli from start to start+0x100;
// its start and finish times grow with hour, so that the order in time is
// the order of the story told.
func tlBackup(r *retRepo, name string, tli pg.TimelineID, start pg.LSN, hour uint64) {
	r.t.Helper()
	r.store(validManifest(name, sysID, tli, start), hour, false)
}

// tlWALLeft names the WAL files left in the repository (their names
// without the codec), in key order.
func tlWALLeft(r *retRepo) []string {
	r.t.Helper()
	var out []string
	for _, k := range r.keys() {
		if !strings.HasPrefix(k, repo.WALPrefix) {
			continue
		}
		base, _, _, err := repo.ParseKey(k)
		if err != nil {
			r.t.Fatalf("%s: %v", k, err)
		}
		out = append(out, strings.TrimPrefix(base, repo.WALPrefix))
	}
	return out
}

// tlRun names segments first..last of timeline tli.
func tlRun(tli pg.TimelineID, first, last uint64) []string {
	var out []string
	for s := first; s <= last; s++ {
		out = append(out, seg(tli, s))
	}
	return out
}

// tlSorted is the names given, sorted as keys are listed.
func tlSorted(parts ...[]string) []string {
	out := slices.Concat(parts...)
	slices.Sort(out)
	return out
}

// tlCheckAfter executes p and checks the result: the WAL left is exactly
// want; every WAL file in mustKeep is among it; every listed backup keeps
// its chain, its parts and the WAL from its start to its finish
// (checkRestorable); wal-verify finds nothing missing along the newest
// timeline's lineage from the oldest kept backup, history files included;
// the backups listed are exactly the plan's Keep; and the same rule plans
// nothing more.
func tlCheckAfter(t *testing.T, r *retRepo, p *DeletionPlan, rule Rule, want, mustKeep []string) {
	t.Helper()
	ctx := context.Background()
	execute(t, r.st, p)
	got := tlWALLeft(r)
	for _, k := range mustKeep {
		if !slices.Contains(got, k) {
			t.Errorf("%s deleted %s, which a kept backup needs for a restore", rule, k)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s left WAL\n%v\nwant\n%v", rule, got, want)
	}
	checkRestorable(t, r.st, "after "+rule.String())
	rep, err := VerifyWAL(ctx, r.st, &repo.Decoder{})
	if err != nil || !rep.OK || len(rep.Missing) != 0 {
		t.Errorf("wal-verify after %s: %v, missing %v, broken %+v, notes %q", rule, err, rep.Missing, rep.BrokenBackups, rep.Notes)
	}
	bs, err := ListBackups(ctx, r.st)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, b := range bs {
		listed = append(listed, b.Name)
	}
	if !reflect.DeepEqual(listed, names(p.Keep)) {
		t.Errorf("%s: backups listed after the delete %v, the plan kept %v", rule, listed, names(p.Keep))
	}
	if again := r.plan(rule); !again.Empty() {
		t.Errorf("%s run again plans more: delete %v, WAL %+v", rule, names(again.Delete), again.WAL)
	}
}

// tlHist2At8 is 00000002.history of a promotion at 0/8800000, inside
// segment 8.
const tlHist2At8 = "1\t0/8800000\tno recovery target specified\n"

// tlNewTimelineRepo is the repository of TestRetentionNewTimelineBackup:
// timeline 1 archived up to a promotion at 0/8800000 (segments 1-7, and
// segment 8 as the .partial PostgreSQL archives for the timeline it
// leaves), 00000002.history, timeline 2 from its switch segment 8 to 14;
// backups old1 (timeline 1, segment 2), old2 (timeline 1, segment 5) and
// new (timeline 2, starting at newStart).
func tlNewTimelineRepo(t *testing.T, newStart pg.LSN) *retRepo {
	r := newRetRepo(t)
	tlSegs(r, 1, 1, 7)
	tlPartial(r, 1, 8)
	tlHistory(r, 2, tlHist2At8)
	tlSegs(r, 2, 8, 14)
	tlBackup(r, "old1", 1, segLSN(2), 2)
	tlBackup(r, "old2", 1, segLSN(5), 5)
	tlBackup(r, "new", 2, newStart, 10)
	return r
}

// TestRetentionNewTimelineBackup (TRAPS.md 25, timelines): backups on
// timeline 1 and a newer one on timeline 2, after a promotion. Keeping
// only the newest (retain 1, before new, before LATEST, before the time
// new finished) keeps new and deletes old1 and old2; keeps
// 00000002.history and every timeline-2 segment from new's start
// segment on; deletes timeline 1's segments and its .partial, and
// timeline 2's segments before new's start, all wholly older than what is
// kept; wal-verify then finds nothing missing and every listed backup
// restorable. Restore points on timeline 2 after new's finish stay;
// those before new go. Two variants: new starts in the switch segment
// itself (0/8900028, whose timeline-2 copy a restore needs), or two
// segments later. Retention cuts WAL by segment number on every
// timeline at once: when new starts in segment 8, timeline 1's
// 000000010000000000000008.partial (segment number 8) is kept too,
// although nothing needs it; the test pins that down.
//
// Also before the time old2 finished: old2 (timeline 1) is kept, and
// with it the WAL a restore of it to the latest timeline follows,
// timeline 1 from segment 5, the .partial, 00000002.history and the
// whole of timeline 2.
func TestRetentionNewTimelineBackup(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name     string
		newStart pg.LSN
	}{
		{"start in the switch segment", 0x8900028},
		{"start after the switch segment", segLSN(10)},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			newSeg := pg.SegmentForLSN(v.newStart, seg16M)
			rps := []RestorePoint{
				{Name: "tl1-old", LSN: segLSN(4), Timeline: 1},
				{Name: "tl2-before-new", LSN: 0x8880000, Timeline: 2},
				{Name: "tl2-after-new", LSN: segLSN(12), Timeline: 2},
			}
			ref := tlNewTimelineRepo(t, v.newStart)
			newFinish := ref.ms["new"].FinishTime
			for _, rule := range []Rule{
				{Kind: RuleRetain, Retain: 1},
				{Kind: RuleBefore, Name: "new"},
				{Kind: RuleBefore, Name: Latest},
				{Kind: RuleBefore, Time: newFinish},
			} {
				t.Run(rule.String(), func(t *testing.T) {
					r := tlNewTimelineRepo(t, v.newStart)
					for _, rp := range rps {
						r.put(repo.RestorePointKey(rp.Name), "{}")
					}
					before := r.keys()
					p := r.plan(rule, rps...)
					if !reflect.DeepEqual(r.keys(), before) {
						t.Fatal("planning changed the repository")
					}
					checkPlan(t, p, []string{"new"}, []string{"old1", "old2"})
					if p.WALKeptFrom != seg(2, newSeg) {
						t.Errorf("WAL kept from %q, want %s (new's start segment)", p.WALKeptFrom, seg(2, newSeg))
					}
					var rpNames []string
					for _, rp := range p.RestorePoints {
						rpNames = append(rpNames, rp.Name)
					}
					if !reflect.DeepEqual(rpNames, []string{"tl1-old", "tl2-before-new"}) {
						t.Errorf("restore points deleted %v, want [tl1-old tl2-before-new]", rpNames)
					}
					mustKeep := append([]string{pg.HistoryFileName(2)}, tlRun(2, newSeg, 14)...)
					want := tlSorted(mustKeep)
					if newSeg == 8 {
						want = tlSorted(want, []string{seg(1, 8) + ".partial"})
					}
					tlCheckAfter(t, r, p, rule, want, mustKeep)
					for _, rp := range rps {
						_, err := r.st.Stat(context.Background(), repo.RestorePointKey(rp.Name))
						if kept := rp.Name == "tl2-after-new"; kept != (err == nil) {
							t.Errorf("restore point %s: kept %v, want %v (%v)", rp.Name, err == nil, kept, err)
						}
					}
				})
			}

			t.Run("before old2's finish", func(t *testing.T) {
				r := tlNewTimelineRepo(t, v.newStart)
				rule := Rule{Kind: RuleBefore, Time: r.ms["old2"].FinishTime}
				p := r.plan(rule)
				checkPlan(t, p, []string{"old2", "new"}, []string{"old1"})
				if p.WALKeptFrom != seg(1, 5) {
					t.Errorf("WAL kept from %q, want %s (old2's start segment)", p.WALKeptFrom, seg(1, 5))
				}
				mustKeep := tlSorted(tlRun(1, 5, 7), []string{seg(1, 8) + ".partial", pg.HistoryFileName(2)}, tlRun(2, 8, 14))
				tlCheckAfter(t, r, p, rule, mustKeep, mustKeep)
			})
		})
	}
}

// TestRetentionBranchAfterKeptBackup (TRAPS.md 25, timelines): the
// newest backup, base, is on timeline 1; later a point-in-time restore of
// it to 0/7800000 started timeline 2, whose WAL (switch segment 7 to 12)
// and 00000002.history are archived beside timeline 1's (1-9: the old
// branch went on past the switch). No backup was taken on timeline 2.
// retain 1 (and before base, before LATEST, before base's finish time)
// keeps base and deletes old; it keeps every segment from base's start
// on, on both timelines (timeline 1 5-9, timeline 2 7-12) and
// 00000002.history, so that a restore of base can follow the branch to
// timeline 2 (and replay timeline 1's old branch too); it deletes only
// timeline 1's segments 1-4, older than base. wal-verify then finds the
// lineage 1 -> 2 from base whole. A restore point on timeline 2 after the
// branch, and one on timeline 1's old branch past the switch, stay; one
// before base goes.
func TestRetentionBranchAfterKeptBackup(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T) *retRepo {
		r := newRetRepo(t)
		tlSegs(r, 1, 1, 9)
		tlHistory(r, 2, "1\t0/7800000\tbefore 2026-03-01 07:30:00+00\n")
		tlSegs(r, 2, 7, 12)
		tlBackup(r, "old", 1, segLSN(2), 2)
		tlBackup(r, "base", 1, segLSN(5), 5)
		return r
	}
	rps := []RestorePoint{
		{Name: "before-base", LSN: segLSN(3), Timeline: 1},
		{Name: "tl1-old-branch", LSN: segLSN(9), Timeline: 1},
		{Name: "tl2-branch", LSN: segLSN(11), Timeline: 2},
	}
	baseFinish := build(t).ms["base"].FinishTime
	for _, rule := range []Rule{
		{Kind: RuleRetain, Retain: 1},
		{Kind: RuleBefore, Name: "base"},
		{Kind: RuleBefore, Name: Latest},
		{Kind: RuleBefore, Time: baseFinish},
	} {
		t.Run(rule.String(), func(t *testing.T) {
			t.Parallel()
			r := build(t)
			for _, rp := range rps {
				r.put(repo.RestorePointKey(rp.Name), "{}")
			}
			p := r.plan(rule, rps...)
			checkPlan(t, p, []string{"base"}, []string{"old"})
			if p.WALKeptFrom != seg(1, 5) {
				t.Errorf("WAL kept from %q, want %s (base's start segment)", p.WALKeptFrom, seg(1, 5))
			}
			if len(p.WAL) != 1 || p.WAL[0].Timeline != 1 || p.WAL[0].First != seg(1, 1) || p.WAL[0].Last != seg(1, 4) || p.WAL[0].Files != 4 {
				t.Errorf("WAL deleted %+v, want timeline 1 segments 1-4 only", p.WAL)
			}
			mustKeep := tlSorted(tlRun(1, 5, 9), []string{pg.HistoryFileName(2)}, tlRun(2, 7, 12))
			tlCheckAfter(t, r, p, rule, mustKeep, mustKeep)
			for _, rp := range rps {
				_, err := r.st.Stat(context.Background(), repo.RestorePointKey(rp.Name))
				if kept := rp.Name != "before-base"; kept != (err == nil) {
					t.Errorf("restore point %s: kept %v, want %v (%v)", rp.Name, err == nil, kept, err)
				}
			}
		})
	}
}

// TestRetentionThreeTimelines (TRAPS.md 25, timelines): timeline 1 to a
// promotion at 0/4800000, timeline 2 to a promotion at 0/8800000,
// timeline 3 since, with 00000002.history and 00000003.history, and one
// backup on each timeline (b1 segment 2, b2 segment 6, b3 segment 10).
// retain 1 keeps b3, its timeline-3 segments from 10 on and both history
// files (a restore probes every timeline ID up to the newest, so an
// ancestor's history file is needed too, and .history files are never
// deleted); it deletes b1, b2 and every segment below 10 on every
// timeline. retain 2 keeps b2 and b3 and with them timeline 2 from
// segment 6, timeline 3 from its switch segment 8, and timeline 2's
// .partial of segment 8, deleting b1 and the segments below 6; wal-verify
// then finds the lineage 2 -> 3 from b2 whole.
func TestRetentionThreeTimelines(t *testing.T) {
	t.Parallel()
	build := func(t *testing.T) *retRepo {
		r := newRetRepo(t)
		tlSegs(r, 1, 1, 3)
		tlPartial(r, 1, 4)
		tlHistory(r, 2, "1\t0/4800000\tno recovery target specified\n")
		tlSegs(r, 2, 4, 7)
		tlPartial(r, 2, 8)
		tlHistory(r, 3, "1\t0/4800000\tno recovery target specified\n2\t0/8800000\tno recovery target specified\n")
		tlSegs(r, 3, 8, 13)
		tlBackup(r, "b1", 1, segLSN(2), 2)
		tlBackup(r, "b2", 2, segLSN(6), 6)
		tlBackup(r, "b3", 3, segLSN(10), 10)
		return r
	}
	hist := []string{pg.HistoryFileName(2), pg.HistoryFileName(3)}
	for _, c := range []struct {
		rule      Rule
		keep, del []string
		keptFrom  string
		want      []string
	}{
		{Rule{Kind: RuleRetain, Retain: 1}, []string{"b3"}, []string{"b1", "b2"}, seg(3, 10),
			tlSorted(hist, tlRun(3, 10, 13))},
		{Rule{Kind: RuleBefore, Name: "b3"}, []string{"b3"}, []string{"b1", "b2"}, seg(3, 10),
			tlSorted(hist, tlRun(3, 10, 13))},
		{Rule{Kind: RuleRetain, Retain: 2}, []string{"b2", "b3"}, []string{"b1"}, seg(2, 6),
			tlSorted(hist, tlRun(2, 6, 7), []string{seg(2, 8) + ".partial"}, tlRun(3, 8, 13))},
	} {
		t.Run(c.rule.String(), func(t *testing.T) {
			t.Parallel()
			r := build(t)
			p := r.plan(c.rule)
			checkPlan(t, p, c.keep, c.del)
			if p.WALKeptFrom != c.keptFrom {
				t.Errorf("WAL kept from %q, want %s", p.WALKeptFrom, c.keptFrom)
			}
			tlCheckAfter(t, r, p, c.rule, c.want, c.want)
		})
	}
}
