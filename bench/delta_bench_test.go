package bench

import (
	"fmt"
	"strconv"
	"testing"
)

// deltaRuns measures page deltas: after updates touching 1% of the pages
// of pgbench_accounts, then 10% (a superset), a delta of each target's
// full backup fulls[target] (runs times, the median printed) and its
// restore (the chain: the full backup and the delta). Every full backup
// must have been taken before: the updates are made once for all targets.
func deltaRuns(b *testing.B, d *benchDB, targets []walrusTarget, fulls map[string]pushResult, codec string, runs int, tab *resultTable) {
	b.Helper()
	pages, _ := strconv.Atoi(d.c.QueryRow(b, "SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int"))
	for _, pct := range []int{1, 10} {
		d.touch(b, 100/pct)
		for _, t := range targets {
			full := fulls[t.name]
			d.archiveTo(b, t.archiveScript(d.walrus))
			var pushes, fetches []usage
			var last pushResult
			for range runs {
				last = d.push(b, t, codec, "--delta-from", full.name)
				pushes = append(pushes, last.use)
				fetches = append(fetches, d.fetch(b, t, last.name))
			}
			last.use = medianUsage(pushes)
			op := fmt.Sprintf("delta %d%% backup-push", pct)
			tab.row(op, t.name, codec, last.info, last.info.StoredSize, last.use)
			tab.t.rows[len(tab.t.rows)-1][7] = fmt.Sprintf("%.1f", 100*float64(last.info.StoredSize)/float64(full.info.StoredSize))
			tab.fetch(fmt.Sprintf("delta %d%% backup-fetch", pct), t.name, codec, last.info, medianUsage(fetches))
		}
	}
	fmt.Printf("# pgbench_accounts: %d pages; a delta's stored %% is of its full backup's stored size; each updated row also\n# moves to another page and adds an index entry, whose pages count too\n", pages)
}

// BenchmarkDeltaBackup is the delta part of BenchmarkBackup alone, lz4 on
// the filesystem repository: a full backup, then a delta after updates
// touching 1% and then 10% of the pages of pgbench_accounts, with their
// restores. Scale: WALRUS_BENCH_SCALE (default 100); runs:
// WALRUS_BENCH_RUNS (3).
//
//	WALRUS_BENCH_SCALE=10 go test -run '^$' -bench DeltaBackup -benchtime 1x ./bench/
func BenchmarkDeltaBackup(b *testing.B) {
	scale := settingInt("WALRUS_BENCH_SCALE", 100)
	runs := settingInt("WALRUS_BENCH_RUNS", 3)
	printMachine(scale)
	d := newBenchDB(b, scale)
	t := fsTarget(b)
	tab := newResultTable()
	d.archiveTo(b, t.archiveScript(d.walrus))
	full := d.push(b, t, "lz4", "--full")
	tab.push("full backup-push", t.name, "lz4", full)
	deltaRuns(b, d, []walrusTarget{t}, map[string]pushResult{t.name: full}, "lz4", runs, tab)
	b.StopTimer()
	tab.print()
}
