package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// BenchmarkRecovery measures what issue 7 asks of wal-fetch: recovery of a
// long WAL range bound by PostgreSQL's replay, not by fetching. A pgbench
// cluster (scale WALRUS_BENCH_RECOVERY_SCALE, default 10) archives into a
// filesystem repository; after a full backup it writes at least
// WALRUS_BENCH_SEGMENTS (default 100) segments: pgbench initialising a
// second database (bulk loads, index builds: records PostgreSQL replays
// fast, the hardest case for fetching to keep up with), then pgbench
// transactions. Each run restores the backup with backup-fetch (not
// timed) and times the server from pg_ctl start to the end of recovery
// (promotion), in three modes:
//   - replay only: every archived segment is put into pg_wal beforehand
//     (with wal-fetch, not timed) and restore_command is false, so nothing
//     is fetched while PostgreSQL replays: the bound;
//   - wal-fetch, prefetch=0: restore_command as backup-fetch writes it,
//     one segment per call;
//   - wal-fetch, prefetch=8: the same with the default prefetch;
//   - with WALRUS_BENCH_PEERS=1 (make bench-peers), pgBackRest's
//     archive-get with archive-async (its queue, archive-get-queue-max,
//     left at 128 MiB: 8 segments, as walrus's default prefetch) from a
//     posix repository the cluster archived to as well, restoring the
//     same walrus backup.
//
// It prints the median of WALRUS_BENCH_RUNS runs (default 3) of each, and
// the ratio to replay only.
func BenchmarkRecovery(b *testing.B) {
	segs := walEnvInt("WALRUS_BENCH_SEGMENTS", 100)
	runs := settingInt("WALRUS_BENCH_RUNS", 3)
	scale := settingInt("WALRUS_BENCH_RECOVERY_SCALE", 10)
	withPeer := os.Getenv("WALRUS_BENCH_PEERS") == "1"
	if _, err := exec.LookPath("pgbackrest"); withPeer && err != nil {
		b.Fatalf("WALRUS_BENCH_PEERS=1 but pgbackrest is not installed: run make bench-peers, or apt-get install -y pgbackrest")
	}
	for range b.N {
		d := newBenchDB(b, scale)
		t := walrusTarget{name: "fs", env: []string{"WALRUS_REPO=" + filepath.Join(pgtest.SharedDir(b), "repo")}}
		repoDir := strings.TrimPrefix(t.env[0], "WALRUS_REPO=")
		script := t.archiveScript(d.walrus)
		var peer *pgBackRest
		if withPeer {
			// The cluster archives to both; pgBackRest's push is
			// synchronous here (see newPgBackRestAt), which only slows
			// the WAL generation, not what is measured.
			peer = d.newPgBackRest(b, "recovery", nil, nil)
			script = "(\n" + script + "\n) || exit 1\n" + peer.archiveScript()
		}
		d.archiveTo(b, script)
		full := d.push(b, t, "lz4", "--full")

		first := d.c.QueryRow(b, "SELECT pg_walfile_name(pg_current_wal_lsn())")
		startGen := time.Now()
		d.c.Exec(b, "CREATE DATABASE bench2")
		initScale := max(1, segs*6/10)
		if out, err := pgtest.RunAsPostgres(b, "pgbench", "-h", "127.0.0.1", "-p", strconv.Itoa(d.c.Port()), "-U", "postgres",
			"-i", "-q", "-s", strconv.Itoa(initScale), "bench2"); err != nil {
			b.Fatalf("pgbench -i bench2: %v\n%s", err, out)
		}
		for walSegmentsSince(b, d, first) < segs {
			d.c.Exec(b, "CHECKPOINT")
			pgtest.Pgbench(b, d.c, "-c", "4", "-j", "2", "-T", "10")
		}
		d.c.Exec(b, "SELECT pg_switch_wal()")
		d.waitArchiverIdle(b)
		d.c.Stop(b)
		archived := archivedSegments(b, repoDir, first)
		fmt.Printf("# recovery: backup %s, then %d segments of WAL archived (pgbench -i -s %d of a second database, then transactions) in %s\n",
			full.name, len(archived), initScale, time.Since(startGen).Round(time.Second))

		type mode struct {
			name     string
			prefetch int
			replay   bool
			peer     *pgBackRest
		}
		modes := []mode{{"replay only (WAL in pg_wal)", 0, true, nil}, {"wal-fetch, prefetch=0", 0, false, nil}, {"wal-fetch, prefetch=8", 8, false, nil}}
		if peer != nil {
			modes = append(modes, mode{"pgBackRest archive-get, archive-async", 0, false, peer})
		}
		medians := make([]time.Duration, len(modes))
		for i, m := range modes {
			var times []time.Duration
			for range runs {
				times = append(times, d.recoverOnce(b, t, full.name, archived, m.prefetch, m.replay, m.peer))
			}
			fmt.Printf("# %s: %v\n", m.name, times)
			slices.Sort(times)
			medians[i] = times[len(times)/2]
		}
		tab := &table{head: []string{"mode", "recovery s", "segments/s", "vs replay only"}}
		for i, m := range modes {
			tab.add(m.name, secs(medians[i]), fmt.Sprintf("%.1f", float64(len(archived))/medians[i].Seconds()),
				fmt.Sprintf("%.2f", medians[i].Seconds()/medians[0].Seconds()))
		}
		fmt.Printf("\nrecovery of %d segments from a full backup, fs repository, median of %d runs (pg_ctl start to promotion)\n", len(archived), runs)
		tab.print()
	}
}

// walSegmentsSince counts the segments written since segment first.
func walSegmentsSince(b *testing.B, d *benchDB, first string) int {
	b.Helper()
	cur := d.c.QueryRow(b, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	return segmentNumber(b, cur) - segmentNumber(b, first)
}

// segmentNumber is the position of a segment on its timeline.
func segmentNumber(b *testing.B, name string) int {
	b.Helper()
	n, err := strconv.ParseInt(name[8:], 16, 64)
	if err != nil {
		b.Fatalf("segment name %q: %v", name, err)
	}
	hi, lo := n>>32, n&0xffffffff
	return int(hi*0x100 + lo) // 16 MiB segments: 256 per log file
}

// archivedSegments lists the segments in the repository from first on.
func archivedSegments(b *testing.B, repoDir, first string) []string {
	b.Helper()
	entries, err := os.ReadDir(filepath.Join(repoDir, "wal"))
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		name, _, _ := strings.Cut(e.Name(), ".")
		if walSegmentName.MatchString(name) && name >= first {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// recoverOnce restores backup name, and times its recovery to the end of
// the archive. replay puts every archived segment into pg_wal first and
// turns restore_command off; a peer replaces restore_command with
// pgBackRest's asynchronous archive-get.
func (d *benchDB) recoverOnce(b *testing.B, t walrusTarget, name string, archived []string, prefetch int, replay bool, peer *pgBackRest) time.Duration {
	b.Helper()
	dest := filepath.Join(restoreDir(b), "restored")
	env := append(slices.Clone(t.env), "WALRUS_WAL_PREFETCH="+strconv.Itoa(prefetch))
	measure(b, d.walrusCmd(env, "backup-fetch", dest, name), nil)
	conf := []string{"archive_mode = off"}
	if replay {
		for _, s := range archived {
			measure(b, d.walrusCmd(t.env, "wal-fetch", s, filepath.Join(dest, "pg_wal", s)), nil)
		}
		conf = append(conf, "restore_command = 'false'")
	}
	if peer != nil {
		// A queue left by the previous run would be served from.
		if err := os.RemoveAll(filepath.Join(peer.dir, "spool", "archive")); err != nil {
			b.Fatal(err)
		}
		conf = append(conf, fmt.Sprintf("restore_command = 'pgbackrest --config=%s --stanza=bench --pg1-path=%s --archive-async archive-get %%f \"%%p\"'", peer.conf, dest))
	}
	rc := pgtest.Attach(b, dest, pgtest.Options{Conf: conf})
	start := time.Now()
	rc.Start(b)
	rc.WaitPromoted(b, 30*time.Minute)
	took := time.Since(start)
	rc.Stop(b)
	removeRestore(b, dest)
	return took
}
