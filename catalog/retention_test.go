package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
)

const sysID = "7300000000000000042"

var epoch = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// retRepo is a synthetic repository on storage/mem: backups whose start
// and finish fall in one given segment, parts stored as small objects,
// and WAL segments of 16 MiB names.
type retRepo struct {
	t  *testing.T
	st *mem.Store
	ms map[string]*Manifest
}

func newRetRepo(t *testing.T) *retRepo {
	return &retRepo{t: t, st: mem.New(), ms: map[string]*Manifest{}}
}

// segLSN is an LSN inside segment seg.
func segLSN(seg uint64) pg.LSN { return pg.LSN(seg<<24 + 0x28) }

func (r *retRepo) put(key, body string) {
	r.t.Helper()
	if err := r.st.Put(context.Background(), key, strings.NewReader(body), storage.PutOptions{Size: int64(len(body))}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *retRepo) store(m *Manifest, seg uint64, permanent bool) *retRepo {
	r.t.Helper()
	m.WALSegmentSize = seg16M
	m.Permanent = permanent
	m.StartTime = epoch.Add(time.Duration(seg) * time.Hour)
	m.FinishTime = m.StartTime.Add(time.Minute)
	if err := WriteManifest(context.Background(), r.st, m); err != nil {
		r.t.Fatal(err)
	}
	for _, p := range m.Parts {
		r.put(p.Key, "part of "+m.Name)
	}
	r.ms[m.Name] = m
	return r
}

// full stores a full backup within segment seg.
func (r *retRepo) full(name string, seg uint64, permanent bool) *retRepo {
	return r.store(validManifest(name, sysID, 1, segLSN(seg)), seg, permanent)
}

// delta stores a delta of base within segment seg.
func (r *retRepo) delta(name, base string, seg uint64, permanent bool) *retRepo {
	return r.store(deltaManifest(name, r.ms[base], segLSN(seg)), seg, permanent)
}

// wal stores segments first..last of timeline 1, and a history file.
func (r *retRepo) wal(first, last uint64) *retRepo {
	for s := first; s <= last; s++ {
		key := repo.WALPrefix + pg.SegmentName(1, s, seg16M) + ".lz4"
		md := map[string]string{repo.MetaSize: strconv.Itoa(seg16M)}
		if err := r.st.Put(context.Background(), key, strings.NewReader("segment"), storage.PutOptions{Size: 7, Metadata: md}); err != nil {
			r.t.Fatal(err)
		}
	}
	return r
}

func (r *retRepo) keys() []string {
	r.t.Helper()
	var out []string
	if err := r.st.List(context.Background(), "", func(o storage.ObjectInfo) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *retRepo) plan(rule Rule, rps ...RestorePoint) *DeletionPlan {
	r.t.Helper()
	p, err := PlanDeletion(context.Background(), PlanOptions{Store: r.st, Decoder: &repo.Decoder{}, Rule: rule, RestorePoints: rps})
	if err != nil {
		r.t.Fatalf("plan %s: %v", rule, err)
	}
	return p
}

func names(bs []PlannedBackup) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func walNames(r *retRepo) []string {
	var out []string
	for _, k := range r.keys() {
		if rest, ok := strings.CutPrefix(k, repo.WALPrefix); ok {
			out = append(out, strings.TrimSuffix(rest, ".lz4"))
		}
	}
	return out
}

func segs(first, last uint64) []string {
	var out []string
	for s := first; s <= last; s++ {
		out = append(out, seg(1, s))
	}
	return out
}

func checkPlan(t *testing.T, p *DeletionPlan, keep, del []string) {
	t.Helper()
	if got := names(p.Keep); !reflect.DeepEqual(got, keep) {
		t.Errorf("%s keeps %v, want %v", p.Rule, got, keep)
	}
	if got := names(p.Delete); !reflect.DeepEqual(got, del) {
		t.Errorf("%s deletes %v, want %v", p.Rule, got, del)
	}
}

func execute(t *testing.T, st storage.Store, p *DeletionPlan) {
	t.Helper()
	if _, err := p.Execute(context.Background(), st, ExecuteOptions{}); err != nil {
		t.Fatalf("execute %s: %v", p.Rule, err)
	}
}

// TestRetainKeepsWholeChains: retain N counts full backups; every delta
// newer than the oldest kept full is kept with its chain, even one whose
// chain reaches below the window.
func TestRetainKeepsWholeChains(t *testing.T) {
	t.Parallel()
	r := newRetRepo(t).wal(1, 14).
		full("f1", 2, false).delta("d1", "f1", 3, false).
		full("f2", 5, false).delta("d2a", "f2", 6, false).delta("d2b", "d2a", 7, false).
		full("f3", 9, false).
		delta("d1late", "d1", 11, false) // --delta-from an old chain, after f3
	checkPlan(t, r.plan(Rule{Kind: RuleRetain, Retain: 1}), []string{"f1", "d1", "f3", "d1late"}, []string{"f2", "d2a", "d2b"})
	checkPlan(t, r.plan(Rule{Kind: RuleRetain, Retain: 2}), []string{"f1", "d1", "f2", "d2a", "d2b", "f3", "d1late"}, []string{})

	r2 := newRetRepo(t).wal(1, 14).
		full("f1", 2, false).delta("d1", "f1", 3, false).
		full("f2", 5, false).delta("d2a", "f2", 6, false).delta("d2b", "d2a", 7, false).
		full("f3", 9, false)
	p := r2.plan(Rule{Kind: RuleRetain, Retain: 2})
	checkPlan(t, p, []string{"f2", "d2a", "d2b", "f3"}, []string{"f1", "d1"})
	if p.WALKeptFrom != seg(1, 5) || len(p.WAL) != 1 || p.WAL[0].First != seg(1, 1) || p.WAL[0].Last != seg(1, 4) || p.WAL[0].Files != 4 {
		t.Fatalf("WAL plan: kept from %s, runs %+v", p.WALKeptFrom, p.WAL)
	}
	before := r2.keys()
	if p2 := r2.plan(Rule{Kind: RuleRetain, Retain: 2}); !reflect.DeepEqual(r2.keys(), before) || p2.Objects != p.Objects {
		t.Fatal("planning changed the repository")
	}
	execute(t, r2.st, p)
	if got := walNames(r2); !reflect.DeepEqual(got, segs(5, 14)) {
		t.Fatalf("WAL left: %v", got)
	}
	for _, k := range r2.keys() {
		if strings.Contains(k, "/f1/") || strings.Contains(k, "/d1/") {
			t.Errorf("%s is left", k)
		}
	}
	bs, err := ListBackups(context.Background(), r2.st)
	if err != nil || len(bs) != 4 {
		t.Fatalf("backups after delete: %v %v", bs, err)
	}
	if p := r2.plan(Rule{Kind: RuleRetain, Retain: 2}); !p.Empty() {
		t.Fatalf("a second run plans more: %+v", p)
	}
}

// TestBeforeNeverOrphansADelta: before NAME keeps NAME's chain; before
// TIME keeps what a restore to that time needs.
func TestBeforeNeverOrphansADelta(t *testing.T) {
	t.Parallel()
	r := newRetRepo(t).wal(1, 12).
		full("f1", 2, false).delta("d1", "f1", 3, false).delta("d2", "d1", 4, false).
		full("f2", 6, false).delta("d3", "f2", 7, false)
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Name: "d2"}), []string{"f1", "d1", "d2", "f2", "d3"}, []string{})
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Name: "f2"}), []string{"f2", "d3"}, []string{"f1", "d1", "d2"})
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Name: "d3"}), []string{"f2", "d3"}, []string{"f1", "d1", "d2"})
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Name: Latest}), []string{"f2", "d3"}, []string{"f1", "d1", "d2"})
	// A restore to a time between d2 and f2 starts from d2.
	tm := r.ms["d2"].FinishTime.Add(time.Minute)
	p := r.plan(Rule{Kind: RuleBefore, Time: tm})
	checkPlan(t, p, []string{"f1", "d1", "d2", "f2", "d3"}, []string{})
	if p.WALKeptFrom != seg(1, 2) {
		t.Errorf("WAL kept from %s, want the chain root's start %s", p.WALKeptFrom, seg(1, 2))
	}
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Time: r.ms["f2"].FinishTime}), []string{"f2", "d3"}, []string{"f1", "d1", "d2"})
	checkPlan(t, r.plan(Rule{Kind: RuleBefore, Time: epoch}), []string{"f1", "d1", "d2", "f2", "d3"}, []string{})
	if _, err := PlanDeletion(context.Background(), PlanOptions{Store: r.st, Decoder: &repo.Decoder{}, Rule: Rule{Kind: RuleBefore, Name: "nope"}}); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("before a missing backup: %v", err)
	}
}

// TestPermanentBackups: a permanent delta keeps its chain and the WAL each
// link needs from start to finish; the WAL between them goes.
func TestPermanentBackups(t *testing.T) {
	t.Parallel()
	r := newRetRepo(t).wal(1, 14).
		full("f1", 2, false).delta("d1", "f1", 4, true).
		full("f2", 6, false).full("f3", 9, false).full("f4", 11, true)
	rps := []RestorePoint{
		{Name: "in-f1", LSN: segLSN(2) + 0x200, Timeline: 1},   // after f1 finished, same segment: reachable
		{Name: "after-f1", LSN: segLSN(3), Timeline: 1},        // WAL from f1 to it goes
		{Name: "after-f3", LSN: segLSN(10), Timeline: 1},       // kept
		{Name: "before-all", LSN: segLSN(1), Timeline: 1},      // no backup precedes it
		{Name: "other-timeline", LSN: segLSN(12), Timeline: 2}, // a later timeline: kept
	}
	p := r.plan(Rule{Kind: RuleRetain, Retain: 1}, rps...)
	checkPlan(t, p, []string{"f1", "d1", "f4"}, []string{"f2", "f3"})
	var gotRPs []string
	for _, rp := range p.RestorePoints {
		gotRPs = append(gotRPs, rp.Name)
	}
	// retain 1 keeps f4 (permanent and newest) from segment 11 on.
	if !reflect.DeepEqual(gotRPs, []string{"after-f1", "after-f3", "before-all"}) {
		t.Errorf("restore points deleted: %v", gotRPs)
	}
	for _, rp := range rps {
		r.put(repo.RestorePointKey(rp.Name), "{}")
	}
	execute(t, r.st, p)
	want := append(append(segs(2, 2), segs(4, 4)...), segs(11, 14)...)
	if got := walNames(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("WAL left %v, want %v", got, want)
	}
	for _, name := range []string{"in-f1", "other-timeline"} {
		if _, err := r.st.Stat(context.Background(), repo.RestorePointKey(name)); err != nil {
			t.Errorf("restore point %s: %v", name, err)
		}
	}
	// The WAL check agrees: nothing a kept backup needs is missing.
	rep, err := VerifyWAL(context.Background(), r.st, &repo.Decoder{})
	if err != nil || !rep.OK {
		t.Fatalf("wal-verify after the delete: %v %+v", err, rep)
	}

	// everything keeps the permanent backups and their chains, the WAL they
	// need, and .history files.
	r.full("f5", 13, false)
	r.put(repo.WALPrefix+"00000002.history.lz4", "1\t0/3000000\tno reason\n")
	p = r.plan(Rule{Kind: RuleEverything})
	checkPlan(t, p, []string{"f1", "d1", "f4"}, []string{"f5"})
	execute(t, r.st, p)
	want = append(append(append(segs(2, 2), segs(4, 4)...), segs(11, 11)...), "00000002.history")
	if got := walNames(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("WAL left after everything: %v, want %v", got, want)
	}
}

// TestNoBackupKeepsWAL: retention never expires WAL in a repository without
// a backup (TRAPS.md 25); everything does.
func TestNoBackupKeepsWAL(t *testing.T) {
	t.Parallel()
	r := newRetRepo(t).wal(1, 5)
	p := r.plan(Rule{Kind: RuleRetain, Retain: 1}, RestorePoint{Name: "rp", LSN: segLSN(3), Timeline: 1})
	if !p.Empty() || len(p.Notes) == 0 {
		t.Fatalf("retain on a repository without backups: %+v", p)
	}
	p = r.plan(Rule{Kind: RuleEverything})
	execute(t, r.st, p)
	if got := walNames(r); len(got) != 0 {
		t.Fatalf("everything left %v", got)
	}
}

// TestOrphans: a directory without a manifest is deleted at once when a
// tombstone says a delete left it, after OrphanAge otherwise.
func TestOrphans(t *testing.T) {
	t.Parallel()
	r := newRetRepo(t).wal(1, 4).full("f1", 2, false)
	r.put(repo.PartsPrefix("inprogress")+"part_00001.tar.lz4", "x")
	r.put(repo.PartsPrefix("halfdeleted")+"part_00001.tar.lz4", "x")
	r.put(tombstoneKey("halfdeleted"), "{}")
	ctx := context.Background()
	p, err := PlanDeletion(ctx, PlanOptions{Store: r.st, Decoder: &repo.Decoder{}, Rule: Rule{Kind: RuleRetain, Retain: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Orphans) != 1 || p.Orphans[0].Name != "halfdeleted" || p.Orphans[0].Objects != 2 || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "inprogress") {
		t.Fatalf("orphans %+v, notes %v", p.Orphans, p.Notes)
	}
	p, err = PlanDeletion(ctx, PlanOptions{Store: r.st, Decoder: &repo.Decoder{}, Rule: Rule{Kind: RuleRetain, Retain: 1}, Now: time.Now().Add(25 * time.Hour)})
	if err != nil || len(p.Orphans) != 2 {
		t.Fatalf("a day later: %+v %v", p, err)
	}
	execute(t, r.st, p)
	for _, k := range r.keys() {
		if strings.Contains(k, "inprogress") || strings.Contains(k, "halfdeleted") {
			t.Errorf("%s is left", k)
		}
	}
}

// buildInterruptRepo is the repository of TestInterruptedDelete: two old
// chains, a permanent backup, restore points.
func buildInterruptRepo(t *testing.T) *retRepo {
	r := newRetRepo(t).wal(1, 16).
		full("f1", 2, false).delta("d1", "f1", 3, false).
		full("f2", 5, true).
		full("f3", 7, false).delta("d3", "f3", 8, false).delta("d3b", "d3", 9, false).
		full("f4", 11, false).delta("d4", "f4", 12, false)
	for _, m := range []*Manifest{r.ms["f1"], r.ms["f3"]} {
		// Two parts each, so a delete can stop between them.
		extra := Part{Name: "part_00002.tar", Key: repo.PartsPrefix(m.Name) + "part_00002.tar.lz4", RawSize: 10, StoredSize: 10, StoredSHA256: strings.Repeat("cd", 32)}
		r.put(extra.Key, "second part")
	}
	for _, rp := range []string{"rp-a", "rp-b"} {
		r.put(repo.RestorePointKey(rp), "{}")
	}
	return r
}

var interruptRPs = []RestorePoint{{Name: "rp-a", LSN: segLSN(4), Timeline: 1}, {Name: "rp-b", LSN: segLSN(13), Timeline: 1}}

// checkRestorable fails unless every listed backup has its whole chain and
// every part of it, and the WAL from its start to its finish.
func checkRestorable(t *testing.T, st storage.Store, when string) {
	t.Helper()
	ctx := context.Background()
	bs, err := ListBackups(ctx, st)
	if err != nil {
		t.Fatalf("%s: list: %v", when, err)
	}
	for _, b := range bs {
		m, err := ReadManifest(ctx, st, b.Name)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		links, err := ReadChain(ctx, st, m)
		if err != nil {
			t.Fatalf("%s: backup %s is listed but its chain is broken: %v", when, b.Name, err)
		}
		for _, l := range links {
			for _, p := range l.Parts {
				if _, err := st.Stat(ctx, p.Key); err != nil {
					t.Fatalf("%s: backup %s is listed but part %s of %s is gone: %v", when, b.Name, p.Name, l.Name, err)
				}
			}
		}
	}
	rep, err := VerifyWAL(ctx, st, &repo.Decoder{})
	if err != nil || len(rep.BrokenBackups) > 0 {
		t.Fatalf("%s: a listed backup lost its WAL: %v %+v", when, err, rep.BrokenBackups)
	}
}

// TestInterruptedDelete stops a delete at every storage call it makes, in
// both ways a call fails (before and after taking effect), and checks that
// every listed backup stays restorable and that running the delete again
// ends in the state an uninterrupted delete gives.
func TestInterruptedDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rule := Rule{Kind: RuleRetain, Retain: 1}
	ref := buildInterruptRepo(t)
	p := ref.plan(rule, interruptRPs...)
	checkPlan(t, p, []string{"f2", "f4", "d4"}, []string{"f1", "d1", "f3", "d3", "d3b"})
	if len(p.RestorePoints) != 1 || p.RestorePoints[0].Name != "rp-a" {
		t.Fatalf("restore points deleted: %+v", p.RestorePoints)
	}
	execute(t, ref.st, p)
	want := ref.keys()
	checkRestorable(t, ref.st, "after the delete")

	points := 0
	defer func() { t.Logf("%d interruption points tested", points) }()
	for _, op := range []faulty.Op{faulty.Delete, faulty.Put, faulty.Get} {
		for _, kind := range []faulty.Kind{faulty.Fail, faulty.FailAfter} {
			for call := 1; ; call++ {
				r := buildInterruptRepo(t)
				p := r.plan(rule, interruptRPs...)
				fs := faulty.New(r.st, faulty.Script{Rules: []faulty.Rule{{Ops: op, Kind: kind, Calls: []int{call}, Err: faulty.ErrPermanent}}})
				_, err := p.Execute(ctx, fs, ExecuteOptions{BatchSize: 1})
				if fs.Faults(op) == 0 {
					if err != nil {
						t.Fatalf("%v %v: no fault injected, yet: %v", op, kind, err)
					}
					if call == 1 && op == faulty.Delete {
						t.Fatalf("no delete call was interrupted")
					}
					break
				}
				points++
				when := fmt.Sprintf("%v %v on call %d", op, kind, call)
				if err == nil {
					t.Fatalf("%s: execute reported success", when)
				}
				checkRestorable(t, r.st, when)
				p2 := r.plan(rule, interruptRPs...)
				if !reflect.DeepEqual(names(p2.Keep), names(p.Keep)) {
					t.Fatalf("%s: the second run keeps %v, the first kept %v", when, names(p2.Keep), names(p.Keep))
				}
				execute(t, r.st, p2)
				if got := r.keys(); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s, then delete again: repository\n%v\nwant\n%v", when, got, want)
				}
			}
		}
	}
}

// TestExecuteRechecks: a backup marked permanent, or a new delta of a
// backup being deleted, since the plan stops the delete.
func TestExecuteRechecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRetRepo(t).wal(1, 10).full("f1", 2, false).full("f2", 4, false).full("f3", 6, false)
	p := r.plan(Rule{Kind: RuleRetain, Retain: 1})
	if _, _, err := SetPermanent(ctx, r.st, "f1", true, repo.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Execute(ctx, r.st, ExecuteOptions{}); !errors.Is(err, ErrPlanStale) {
		t.Fatalf("execute after f1 was marked permanent: %v", err)
	}
	checkRestorable(t, r.st, "stopped")
	if _, err := r.st.Stat(ctx, tombstoneKey("f1")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a tombstone is left beside the permanent backup's manifest: %v", err)
	}
	if _, err := ReadManifest(ctx, r.st, "f1"); err != nil {
		t.Fatal(err)
	}

	r = newRetRepo(t).wal(1, 10).full("f1", 2, false).full("f2", 4, false).full("f3", 6, false)
	p = r.plan(Rule{Kind: RuleRetain, Retain: 1})
	before := r.keys()
	r.delta("d2", "f2", 8, false)
	if _, err := p.Execute(ctx, r.st, ExecuteOptions{}); !errors.Is(err, ErrPlanStale) || !strings.Contains(err.Error(), "d2") {
		t.Fatalf("execute after a delta of f2 appeared: %v", err)
	}
	if got := r.keys(); len(got) != len(before)+2 {
		t.Fatalf("something was deleted: %v", got)
	}
}

// TestDeleteLocks: a delete never runs beside a backup-push or a
// backup-mark (they hold the shared lock): it fails, deleting nothing and
// naming the command, or waits for it; and backup-mark does not rewrite a
// manifest while a delete runs.
func TestDeleteLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRetRepo(t).wal(1, 10).full("f1", 2, false).full("f2", 4, false).full("f3", 6, false)
	p := r.plan(Rule{Kind: RuleRetain, Retain: 1})
	push, err := repo.AcquireLock(ctx, r.st, repo.LockShared, "backup-push", repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := r.keys()
	_, err = p.Execute(ctx, r.st, ExecuteOptions{})
	if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "backup-push") || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Fatalf("delete beside a backup-push: %v", err)
	}
	if got := r.keys(); !reflect.DeepEqual(got, before) {
		t.Fatalf("the refused delete changed the repository:\n%v\nwant\n%v", got, before)
	}
	// Told to wait, it runs once the backup-push is done.
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = push.Release(ctx)
	}()
	waited := false
	if _, err := p.Execute(ctx, r.st, ExecuteOptions{Lock: repo.LockOptions{Wait: time.Minute, Waiting: func(repo.LockInfo) { waited = true }}}); err != nil || !waited {
		t.Fatalf("delete after waiting (waited %t): %v", waited, err)
	}
	if _, err := ReadManifest(ctx, r.st, "f1"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("f1 not deleted: %v", err)
	}

	// backup-mark refuses while a delete holds the lock.
	del, err := repo.AcquireLock(ctx, r.st, repo.LockExclusive, "delete", repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer del.Release(ctx)
	if _, _, err := SetPermanent(ctx, r.st, "f3", true, repo.LockOptions{}); !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "delete") {
		t.Fatalf("backup-mark beside a delete: %v", err)
	}
	if m, err := ReadManifest(ctx, r.st, "f3"); err != nil || m.Permanent {
		t.Fatalf("f3 changed: %+v %v", m, err)
	}
}

// TestSetPermanent: the manifest is rewritten with only the flag changed.
func TestSetPermanent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRetRepo(t).full("f1", 2, false).delta("d1", "f1", 3, false)
	get := func(name string) []byte {
		rc, err := r.st.Get(ctx, repo.ManifestKey(name))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	orig := get("d1")
	m, changed, err := SetPermanent(ctx, r.st, Latest, true, repo.LockOptions{})
	if err != nil || !changed || m.Name != "d1" || !m.Permanent {
		t.Fatalf("mark LATEST: %v %v %+v", changed, err, m)
	}
	marked := get("d1")
	if want := bytes.Replace(orig, []byte(`"permanent": false`), []byte(`"permanent": true`), 1); !bytes.Equal(marked, want) {
		t.Fatalf("marked manifest differs beyond the flag:\n%s\nwant\n%s", marked, want)
	}
	if _, changed, err := SetPermanent(ctx, r.st, "d1", true, repo.LockOptions{}); err != nil || changed {
		t.Fatalf("marking again: %v %v", changed, err)
	}
	bs, _ := ListBackups(ctx, r.st)
	if !bs[1].Permanent || bs[0].Permanent {
		t.Fatalf("listing: %+v", bs)
	}
	if _, _, err := SetPermanent(ctx, r.st, "d1", false, repo.LockOptions{}); err != nil || !bytes.Equal(get("d1"), orig) {
		t.Fatalf("unmarking: %v\n%s", err, get("d1"))
	}
	if _, _, err := SetPermanent(ctx, r.st, "nope", true, repo.LockOptions{}); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("marking a missing backup: %v", err)
	}
	// A manifest in another encoding is re-encoded, still with only the
	// flag changed once decoded.
	var compact bytes.Buffer
	if err := json.Compact(&compact, orig); err != nil {
		t.Fatal(err)
	}
	r.put(repo.ManifestKey("d1"), compact.String())
	if m, _, err := SetPermanent(ctx, r.st, "d1", true, repo.LockOptions{}); err != nil || !m.Permanent {
		t.Fatalf("marking a compact manifest: %v", err)
	}
	got, err := ReadManifest(ctx, r.st, "d1")
	if err != nil {
		t.Fatal(err)
	}
	got.Permanent = false
	if !reflect.DeepEqual(got, r.ms["d1"]) {
		t.Fatalf("re-encoded manifest differs")
	}
}
