package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// segNo1MiB is the segment number of a WAL file name for 1 MiB segments
// (4096 segments per log id).
func segNo1MiB(t *testing.T, name string) uint64 {
	t.Helper()
	if !segmentName.MatchString(name) {
		t.Fatalf("%q is not a WAL segment name", name)
	}
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	if seg >= 4096 {
		t.Fatalf("WAL file %s: segment field %#x is impossible with 1 MiB segments", name, seg)
	}
	return log*4096 + seg
}

// TestSmallWALSegments runs backup-push, backup-list, backup-fetch to a
// restore point and with --target-immediate, delete retain and wal-verify
// on a cluster with 1 MiB WAL segments: WAL file names follow the
// cluster's segment size, the restore point restores exactly its rows,
// and retention cuts WAL at the kept backup's start segment without
// breaking it.
func TestSmallWALSegments(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	shared := pgtest.SharedDir(t)
	push := walrusScript(t, shared, repoEnv)
	c := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", push),
		"wal_keep_size = '1GB'",
	}})
	c.Start(t)
	if got := c.QueryRow(t, "SHOW wal_segment_size"); got != "1MB" {
		t.Fatalf("wal_segment_size = %s, want 1MB", got)
	}
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	count := func(c *pgtest.Cluster) int {
		t.Helper()
		n, err := strconv.Atoi(c.QueryRow(t, "SELECT count(*) FROM t"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(n int) {
		c.Exec(t, fmt.Sprintf("INSERT INTO t SELECT g, 'row' FROM generate_series(1, %d) g", n))
	}

	c.Exec(t, "CREATE TABLE t(id int, v text)")
	insert(1000)
	a := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)
	const switches = 5
	burstWAL(t, c, switches, 500)
	b := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)
	atB := count(c)
	insert(1000)
	rpLSN := strings.TrimSpace(mustRun(t, env, "create-restore-point", "rp1").stdout)
	atRP := count(c)
	insert(1000)
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 30*time.Second)
	t.Logf("backup A %s, backup B %s, rp1 at %s (%d rows at B, %d at rp1)", a, b, rpLSN, atB, atRP)

	// 1. WAL file names in the manifests follow 1 MiB segments.
	bs := listBackups(t, repoEnv)
	if len(bs) != 2 || bs[0].Name != a || bs[1].Name != b {
		t.Fatalf("backup-list: %+v, want %s then %s", bs, a, b)
	}
	for _, bk := range bs {
		if bk.WALSegmentSize != 1<<20 {
			t.Errorf("backup %s: wal_segment_size %d, want %d", bk.Name, bk.WALSegmentSize, 1<<20)
		}
		if bk.Kind != "full" || bk.Timeline != 1 {
			t.Errorf("backup %s: kind %s timeline %d, want full on timeline 1", bk.Name, bk.Kind, bk.Timeline)
		}
		wantStart := c.QueryRow(t, "SELECT pg_walfile_name($1::pg_lsn)", bk.StartLSN)
		wantFinish := c.QueryRow(t, "SELECT pg_walfile_name($1::pg_lsn)", bk.FinishLSN)
		if bk.StartWALFile != wantStart || bk.FinishWALFile != wantFinish {
			t.Errorf("backup %s: WAL files %s..%s, but the server names LSNs %s..%s as %s..%s",
				bk.Name, bk.StartWALFile, bk.FinishWALFile, bk.StartLSN, bk.FinishLSN, wantStart, wantFinish)
		}
	}
	if gap := segNo1MiB(t, bs[1].StartWALFile) - segNo1MiB(t, bs[0].FinishWALFile); gap < switches {
		t.Errorf("B starts in %s, only %d segments after A finished in %s; %d switches of 1 MiB segments lie between",
			bs[1].StartWALFile, gap, bs[0].FinishWALFile, switches)
	}
	if t.Failed() {
		t.FailNow()
	}

	restore := func(name string, args ...string) *pgtest.Cluster {
		t.Helper()
		dest := filepath.Join(shared, name)
		r := mustRun(t, repoEnv, append([]string{"backup-fetch", dest}, args...)...)
		if !strings.Contains(r.stdout+r.stderr, b) {
			t.Errorf("backup-fetch %v did not say it restores %s:\n%s%s", args, b, r.stdout, r.stderr)
		}
		rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
		rc.Start(t)
		rc.WaitPromoted(t, 20*time.Second)
		return rc
	}

	// 2. The restore point picks B and restores exactly its rows.
	rc := restore("to-rp1", "--restore-point", "rp1")
	if got := count(rc); got != atRP {
		t.Errorf("restored to rp1: %d rows, want %d (rows at the restore point)", got, atRP)
	}
	rc.Stop(t)

	// 3. Retention keeps B and cuts WAL at B's start segment.
	walOf := func(bk listedBackup) (older, kept []string) {
		for _, f := range storedWAL(t, repoDir) {
			if len(f) < 24 || !segmentName.MatchString(f[:24]) {
				continue
			}
			if f[:24] < bk.StartWALFile {
				older = append(older, f)
			} else if f[:24] <= bk.FinishWALFile && !strings.Contains(f[24:], "backup") {
				kept = append(kept, f)
			}
		}
		return older, kept
	}
	if older, _ := walOf(bs[1]); len(older) < switches {
		t.Fatalf("before delete: only %v stored before B's start segment %s", older, bs[1].StartWALFile)
	}
	mustRun(t, repoEnv, "delete", "retain", "1", "--confirm")
	bs = listBackups(t, repoEnv)
	if len(bs) != 1 || bs[0].Name != b {
		t.Fatalf("after delete retain 1: backups %+v, want only %s", bs, b)
	}
	older, kept := walOf(bs[0])
	if len(older) != 0 {
		t.Errorf("WAL older than B's start segment %s left after delete: %v", bs[0].StartWALFile, older)
	}
	if want := segNo1MiB(t, bs[0].FinishWALFile) - segNo1MiB(t, bs[0].StartWALFile) + 1; uint64(len(kept)) < want {
		t.Errorf("B's WAL %s..%s: only %v stored, want %d segments", bs[0].StartWALFile, bs[0].FinishWALFile, kept, want)
	}
	rep, r := walVerify(t, repoEnv)
	if !rep.OK || len(rep.Missing) != 0 || len(rep.BrokenBackups) != 0 || rep.Range.StartBackup != b {
		t.Fatalf("wal-verify after delete: exit %d, report %+v\n%s%s", r.code, rep, r.stdout, r.stderr)
	}
	if rep.Range.FirstSegment != bs[0].StartWALFile {
		t.Errorf("wal-verify checks from %s, want B's start segment %s", rep.Range.FirstSegment, bs[0].StartWALFile)
	}

	rc = restore("b-immediate", b, "--target-immediate")
	if got := count(rc); got < atB {
		t.Errorf("restored %s with --target-immediate: %d rows, want at least %d", b, got, atB)
	}
	rc.Stop(t)
}
