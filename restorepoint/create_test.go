package restorepoint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/restorepoint"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

// These tests run restorepoint.Create against a throwaway PostgreSQL 15
// cluster (internal/pgtest) and an in-memory repository. The cluster does
// not archive: archiveGate stands in for archive_command, and says that a
// WAL segment is in the repository only once the test opens the gate, so
// a test decides when each Create may get past its wait for the segment.

// createSuffix is the encoder suffix the tests pass to Create.
const createSuffix = ".lz4"

// callerKey tags the context of one Create call, so that archiveGate can
// tell the calls apart.
type callerKey struct{}

func callerCtx(ctx context.Context, tag string) context.Context {
	return context.WithValue(ctx, callerKey{}, tag)
}

// archiveGate is a repository (a mem.Store) whose wal/ objects exist,
// for Stat, exactly when the gate is open. It records which WAL keys were
// asked about and reports each caller's first WAL check on arrived.
type archiveGate struct {
	storage.Store
	open    atomic.Bool
	arrived chan string

	mu     sync.Mutex
	seen   map[string]bool
	polled map[string][]string // caller tag -> WAL keys asked about
}

func newArchiveGate() *archiveGate {
	return &archiveGate{Store: mem.New(), arrived: make(chan string, 16), seen: map[string]bool{}, polled: map[string][]string{}}
}

func (g *archiveGate) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if !strings.HasPrefix(key, repo.WALPrefix) {
		return g.Store.Stat(ctx, key)
	}
	tag, _ := ctx.Value(callerKey{}).(string)
	g.mu.Lock()
	g.polled[tag] = append(g.polled[tag], key)
	first := !g.seen[tag]
	g.seen[tag] = true
	g.mu.Unlock()
	if first {
		g.arrived <- tag
	}
	if g.open.Load() {
		return storage.ObjectInfo{Key: key, Size: 16 << 20, ModTime: time.Now()}, nil
	}
	return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
}

// walKeys returns the distinct WAL keys caller asked about.
func (g *archiveGate) walKeys(caller string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, k := range g.polled[caller] {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// waitArrived waits until every caller in tags has checked the repository
// for its WAL segment (it is then past pg_create_restore_point and
// pg_switch_wal). A Create that returns first fails the test.
func (g *archiveGate) waitArrived(t *testing.T, results <-chan createResult, tags ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, tag := range tags {
		want[tag] = true
	}
	timeout := time.After(2 * time.Minute) // a hang, not a speed limit
	for len(want) > 0 {
		select {
		case tag := <-g.arrived:
			delete(want, tag)
		case r := <-results:
			t.Fatalf("Create (%s) returned before it waited for its WAL segment: %+v, %v", r.tag, r.rec, r.err)
		case <-timeout:
			t.Fatalf("Create calls %v never checked the repository for their WAL segment", tags)
		}
	}
}

// createCluster starts a cluster that keeps its WAL (so pg_waldump can
// read all of it) and a repository whose walrus.json names it.
func createCluster(t *testing.T) (*pgtest.Cluster, *archiveGate, string) {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Conf: []string{"wal_keep_size = '1GB'"}})
	c.Start(t)
	sysid := c.QueryRow(t, "SELECT system_identifier FROM pg_control_system()")
	n, err := strconv.ParseUint(sysid, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	st := newArchiveGate()
	if _, err := repo.EnsureIdentity(t.Context(), st, n, false); err != nil {
		t.Fatal(err)
	}
	return c, st, sysid
}

func createOptions(st storage.Store, c *pgtest.Cluster) restorepoint.CreateOptions {
	return restorepoint.CreateOptions{Store: st, Suffix: createSuffix, DSN: c.DSN(), Timeout: 2 * time.Minute, Poll: 10 * time.Millisecond}
}

type createResult struct {
	tag string
	rec restorepoint.Record
	err error
}

// startCreate runs Create in a goroutine, tagged for archiveGate.
func startCreate(t *testing.T, st *archiveGate, c *pgtest.Cluster, tag, name string, results chan<- createResult) {
	ctx := callerCtx(t.Context(), tag)
	go func() {
		rec, err := restorepoint.Create(ctx, name, createOptions(st, c))
		results <- createResult{tag, rec, err}
	}()
}

// walRecord is one record as pg_waldump prints it.
type walRecord struct {
	rmgr string
	lsn  pg.LSN
	tot  uint64
	desc string
}

var waldumpLine = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (.*)$`)

// walMark writes a row and returns the flushed WAL position: the commit
// of a transaction that wrote WAL flushes WAL up to its commit record, so
// pg_waldump can read up to there.
func walMark(t *testing.T, c *pgtest.Cluster) pg.LSN {
	t.Helper()
	c.Exec(t, "CREATE TABLE IF NOT EXISTS walrus_test_mark (n int)")
	c.Exec(t, "INSERT INTO walrus_test_mark VALUES (1)")
	l, err := pg.ParseLSN(c.QueryRow(t, "SELECT pg_current_wal_flush_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// walDump returns every record pg_waldump reads from the cluster's pg_wal
// between from and to.
func walDump(t *testing.T, c *pgtest.Cluster, from, to pg.LSN) []walRecord {
	t.Helper()
	out, err := pgtest.RunAsPostgres(t, "pg_waldump", "-p", c.DataDir()+"/pg_wal", "-s", from.String(), "-e", to.String())
	if err != nil {
		t.Fatalf("pg_waldump: %v\n%s", err, out)
	}
	var recs []walRecord
	for _, line := range strings.Split(string(out), "\n") {
		m := waldumpLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		l, err := pg.ParseLSN(m[3])
		if err != nil {
			t.Fatalf("pg_waldump line %q: %v", line, err)
		}
		tot, _ := strconv.ParseUint(m[2], 10, 64)
		recs = append(recs, walRecord{rmgr: m[1], lsn: l, tot: tot, desc: strings.TrimSpace(m[4])})
	}
	if len(recs) == 0 {
		t.Fatalf("pg_waldump printed no records from %s to %s:\n%s", from, to, out)
	}
	return recs
}

// restorePoints returns the RESTORE_POINT records of name.
func restorePoints(recs []walRecord, name string) []walRecord {
	var out []walRecord
	for _, r := range recs {
		if r.rmgr == "XLOG" && r.desc == "RESTORE_POINT "+name {
			out = append(out, r)
		}
	}
	return out
}

// endsAt reports whether lsn is where record r ends, as PostgreSQL
// returns it from XLogInsert (and so from pg_create_restore_point): after
// MAXALIGN(tot) bytes of record from r.lsn, skipping the header of every
// page the record continues on (24 bytes, 40 at a segment start; the
// clusters use the default 16 MB segments and 8 kB pages).
func endsAt(r walRecord, lsn pg.LSN) bool {
	const page, seg = 8192, 16 << 20
	pos, left := uint64(r.lsn), (r.tot+7)&^7
	for {
		next := (pos/page + 1) * page
		if left <= next-pos {
			return pg.LSN(pos+left) == lsn
		}
		left -= next - pos
		pos = next + 24
		if next%seg == 0 {
			pos = next + 40
		}
	}
}

// storedRecords returns the objects under restore-points/, by key.
func storedRecords(t *testing.T, st storage.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := st.List(t.Context(), repo.RestorePointsPrefix, func(o storage.ObjectInfo) error {
		rc, err := st.Get(t.Context(), o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out[o.Key] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRecord(a, b restorepoint.Record) bool {
	return a.Name == b.Name && a.LSN == b.LSN && a.Timeline == b.Timeline && a.Time.Equal(b.Time) &&
		a.SystemIdentifier == b.SystemIdentifier && a.WALFile == b.WALFile
}

// TestCreateRecordsRestorePointOnceArchived: Create writes one
// RESTORE_POINT record of the name into WAL and forces its segment out
// (an XLOG SWITCH follows it); it waits for exactly that segment
// (wal/<WALFile><suffix>) and records nothing while the segment is not in
// the repository. Once it is, restore-points/<name>.json holds what
// Create returned: the name, the LSN at the end of the RESTORE_POINT
// record (what backup-fetch hands to recovery_target_lsn), the segment
// PostgreSQL names for that LSN, timeline 1, the cluster's system
// identifier and the time of the call; Read gives it back.
func TestCreateRecordsRestorePointOnceArchived(t *testing.T) {
	t.Parallel()
	c, st, sysid := createCluster(t)
	from := walMark(t, c)
	before := time.Now().UTC()

	results := make(chan createResult, 1)
	startCreate(t, st, c, "only", "before-migration-42", results)
	st.waitArrived(t, results, "only")
	time.Sleep(100 * time.Millisecond) // several more polls with the gate closed
	if got := storedRecords(t, st); len(got) != 0 {
		t.Fatalf("a restore point was recorded before its WAL segment was in the repository: %v", keys(got))
	}
	st.open.Store(true)
	var r createResult
	select {
	case r = <-results:
	case <-time.After(2 * time.Minute): // a hang, not a speed limit
		t.Fatal("Create did not return once its segment was in the repository")
	}
	after := time.Now().UTC()
	if r.err != nil {
		t.Fatalf("Create: %v", r.err)
	}
	rec := r.rec

	if rec.Name != "before-migration-42" || rec.Timeline != 1 || rec.SystemIdentifier != sysid {
		t.Errorf("record %+v: want name before-migration-42, timeline 1, system %s", rec, sysid)
	}
	if rec.Time.Before(before.Add(-time.Second)) || rec.Time.After(after.Add(time.Second)) {
		t.Errorf("record time %v is not the time of the call (%v .. %v)", rec.Time, before, after)
	}
	if want := c.QueryRow(t, "SELECT pg_walfile_name($1::text::pg_lsn)", rec.LSN.String()); rec.WALFile != want {
		t.Errorf("record WAL file %s, PostgreSQL names %s for %s", rec.WALFile, want, rec.LSN)
	}
	if got, want := st.walKeys("only"), repo.WALBase(rec.WALFile)+createSuffix; len(got) != 1 || got[0] != want {
		t.Errorf("Create waited for %v, want only %s", got, want)
	}

	recs := walDump(t, c, from, walMark(t, c))
	rps := restorePoints(recs, rec.Name)
	if len(rps) != 1 {
		t.Fatalf("WAL holds %d RESTORE_POINT records of %q, want 1: %+v", len(rps), rec.Name, rps)
	}
	if !endsAt(rps[0], rec.LSN) {
		t.Errorf("recorded LSN %s is not the end of the RESTORE_POINT record at %s (%d bytes)", rec.LSN, rps[0].lsn, rps[0].tot)
	}
	switched := false
	for _, r := range recs {
		if r.rmgr == "XLOG" && r.desc == "SWITCH" && r.lsn >= rps[0].lsn {
			switched = true
			if got := c.QueryRow(t, "SELECT pg_walfile_name($1::text::pg_lsn)", r.lsn.String()); got != rec.WALFile {
				t.Errorf("the WAL switch after the restore point is in %s, not in its segment %s", got, rec.WALFile)
			}
			break
		}
	}
	if !switched {
		t.Error("no WAL switch after the restore point: its segment would wait until it fills to be archived")
	}

	stored := storedRecords(t, st)
	body, ok := stored[repo.RestorePointKey(rec.Name)]
	if len(stored) != 1 || !ok {
		t.Fatalf("restore-points/ holds %v, want only %s", keys(stored), repo.RestorePointKey(rec.Name))
	}
	var fromJSON restorepoint.Record
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&fromJSON); err != nil || !sameRecord(fromJSON, rec) {
		t.Errorf("stored record %s (%v), Create returned %+v", body, err, rec)
	}
	read, err := restorepoint.Read(t.Context(), st, rec.Name)
	if err != nil || !sameRecord(read, rec) {
		t.Errorf("Read: %+v, %v; Create returned %+v", read, err, rec)
	}
}

// TestCreateRefusesDuplicateNameBeforeWritingWAL is TRAPS.md 27: once
// "dup" is recorded, a second Create of "dup" fails with ErrExists, an
// error that names "dup" and says to choose another name, and it does so
// before touching the server: the WAL from just after the first Create to
// just after the refusal holds no RESTORE_POINT record and no WAL switch,
// the whole WAL holds exactly one RESTORE_POINT record of "dup", the
// refused call never waited for a segment, and the stored record is
// unchanged.
func TestCreateRefusesDuplicateNameBeforeWritingWAL(t *testing.T) {
	t.Parallel()
	c, st, _ := createCluster(t)
	st.open.Store(true)
	start := walMark(t, c)
	first, err := restorepoint.Create(callerCtx(t.Context(), "first"), "dup", createOptions(st, c))
	if err != nil {
		t.Fatalf("first Create: %v", err)
	}
	storedBefore := storedRecords(t, st)

	from := walMark(t, c)
	_, err = restorepoint.Create(callerCtx(t.Context(), "second"), "dup", createOptions(st, c))
	to := walMark(t, c)
	if err == nil {
		t.Fatal("a second restore point named dup was created")
	}
	if !errors.Is(err, restorepoint.ErrExists) {
		t.Errorf("error %v is not ErrExists", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"dup"`) || !strings.Contains(msg, "another name") {
		t.Errorf("error %q must name the restore point and say to choose another name", msg)
	}

	for _, r := range walDump(t, c, from, to) {
		if r.rmgr == "XLOG" && (strings.HasPrefix(r.desc, "RESTORE_POINT") || r.desc == "SWITCH") {
			t.Errorf("the refused Create wrote WAL: %s at %s", r.desc, r.lsn)
		}
	}
	if rps := restorePoints(walDump(t, c, start, to), "dup"); len(rps) != 1 || !endsAt(rps[0], first.LSN) {
		t.Errorf("WAL holds RESTORE_POINT records of dup %+v, want exactly the first Create's (ending at %s)", rps, first.LSN)
	}
	if got := st.walKeys("second"); len(got) != 0 {
		t.Errorf("the refused Create waited for WAL %v", got)
	}
	storedAfter := storedRecords(t, st)
	if len(storedAfter) != 1 || !bytes.Equal(storedAfter[repo.RestorePointKey("dup")], storedBefore[repo.RestorePointKey("dup")]) {
		t.Errorf("restore-points/ changed: before %q, after %q", storedBefore, storedAfter)
	}
}

// raceCreate runs two Creates of name at once, and lets neither get past
// its wait for the archived segment until both are waiting: both have then
// passed the existence check and called pg_create_restore_point, and only
// the create-only write can decide. It returns the winner and the loser.
func raceCreate(t *testing.T, c *pgtest.Cluster, st *archiveGate, name string) (win, lose createResult) {
	t.Helper()
	results := make(chan createResult, 2)
	startCreate(t, st, c, "a", name, results)
	startCreate(t, st, c, "b", name, results)
	st.waitArrived(t, results, "a", "b")
	st.open.Store(true)
	var rs []createResult
	for len(rs) < 2 {
		select {
		case r := <-results:
			rs = append(rs, r)
		case <-time.After(2 * time.Minute): // a hang, not a speed limit
			t.Fatal("the racing Creates did not return")
		}
	}
	switch {
	case rs[0].err == nil && rs[1].err != nil:
		return rs[0], rs[1]
	case rs[1].err == nil && rs[0].err != nil:
		return rs[1], rs[0]
	}
	t.Fatalf("two Creates of %q: want exactly one to succeed, got %+v / %v and %+v / %v", name, rs[0].rec, rs[0].err, rs[1].rec, rs[1].err)
	return
}

// TestCreateConcurrentSameName: two Creates of "race" that both pass the
// existence check (both reach pg_create_restore_point). Exactly one
// succeeds; the other fails with ErrExists naming "race"; the repository
// holds exactly one restore point record, the winner's, and its LSN is the
// end of one of the two RESTORE_POINT records of "race" that WAL now holds
// (the loser's stays in WAL: why backup-fetch stops at the recorded LSN,
// never by name).
func TestCreateConcurrentSameName(t *testing.T) {
	t.Parallel()
	c, st, _ := createCluster(t)
	from := walMark(t, c)
	win, lose := raceCreate(t, c, st, "race")

	if !errors.Is(lose.err, restorepoint.ErrExists) || !strings.Contains(lose.err.Error(), `"race"`) {
		t.Errorf("loser's error %q: want ErrExists naming \"race\"", lose.err)
	}
	stored := storedRecords(t, st)
	if len(stored) != 1 {
		t.Fatalf("restore-points/ holds %v, want exactly one record", keys(stored))
	}
	got, err := restorepoint.Read(t.Context(), st, "race")
	if err != nil || !sameRecord(got, win.rec) {
		t.Errorf("recorded %+v (%v), the winner returned %+v", got, err, win.rec)
	}
	list, err := restorepoint.List(t.Context(), st)
	if err != nil || len(list) != 1 {
		t.Errorf("List: %+v, %v; want one record", list, err)
	}
	rps := restorePoints(walDump(t, c, from, walMark(t, c)), "race")
	if len(rps) != 2 {
		t.Fatalf("WAL holds %d RESTORE_POINT records of race, want 2 (both Creates passed the check): %+v", len(rps), rps)
	}
	if !endsAt(rps[0], win.rec.LSN) && !endsAt(rps[1], win.rec.LSN) {
		t.Errorf("the recorded LSN %s ends neither RESTORE_POINT record of race: %+v", win.rec.LSN, rps)
	}
}

// TestCreateConcurrentLoserSaysWhatToDo: the loser of two concurrent
// Creates of one name has already written a RESTORE_POINT record of the
// name into WAL when the create-only write refuses it. Its error must name
// the restore point and, like the refusal of an already-recorded name,
// say what to do (choose another name).
// (Until the create-only write's refusal said so, the loser got only
// `restore point "race": restore point already exists`.)
func TestCreateConcurrentLoserSaysWhatToDo(t *testing.T) {
	t.Parallel()
	c, st, _ := createCluster(t)
	_, lose := raceCreate(t, c, st, "race")
	msg := lose.err.Error()
	if !strings.Contains(msg, `"race"`) || !strings.Contains(msg, "another name") {
		t.Errorf("loser's error %q must name the restore point and say to choose another name", msg)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
