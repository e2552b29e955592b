package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/internal/testbin"
)

// BenchmarkPeers runs the same operations with walrus and with pgBackRest
// (which must be installed: make bench-peers installs it) on the same
// pgbench database (WALRUS_BENCH_SCALE, default 100) and the same storage,
// lz4 for both: a full backup, its restore, and a delta (pgBackRest: a
// differential backup) after updates touching 1% of the pages of
// pgbench_accounts, to the filesystem and to S3 over TLS (versitygw with a
// self-signed certificate and --keep-alive; pgBackRest's S3 driver needs
// TLS), plus walrus on plain HTTP; then the archiving of
// WALRUS_BENCH_SEGMENTS (100) real 16 MiB segments, one archive-push
// process per segment as PostgreSQL calls it (pgBackRest with
// archive-async; while the backups are measured, the cluster archives
// with synchronous archive-push, see newPgBackRestAt). Each figure is the
// median of WALRUS_BENCH_RUNS (3). It
// prints one table with the speed ratio walrus/pgBackRest per operation.
// pgBackRest runs with process-max=2, start-fast=y, compress-type=lz4.
func BenchmarkPeers(b *testing.B) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		b.Fatalf("pgbackrest is not installed: run make bench-peers, or apt-get install -y pgbackrest")
	}
	scale := settingInt("WALRUS_BENCH_SCALE", 100)
	runs := settingInt("WALRUS_BENCH_RUNS", 3)
	printMachine(scale)
	if out, err := exec.Command("pgbackrest", "version").Output(); err == nil {
		fmt.Printf("# %s\n", strings.TrimSpace(string(out)))
	}

	d := newBenchDB(b, scale)
	tlsSrv := startTLSServer(b)
	httpSrv := s3test.Start(b, s3test.KeepAlive())
	tlsCPU := func() time.Duration { return processCPU(tlsSrv.pid) }

	type side struct {
		full, fetch, delta usage
		stored, deltaSize  int64
	}
	type pair struct {
		repo         string
		walrus, peer side
		hasPeer      bool
	}
	var pairs []*pair

	// Each repository is measured with both tools (walrus alone on plain
	// HTTP, which pgBackRest does not speak), full backups and restores
	// first, then, after the update, the deltas.
	walrusTargets := []walrusTarget{
		fsTarget(b),
		{name: "s3-tls", env: tlsSrv.walrusEnv(tlsSrv.newBucket(b)), pid: tlsSrv.pid},
		s3Target(b, httpSrv, "s3-http"),
	}
	peers := []*pgBackRest{
		d.newPgBackRest(b, "fs", nil, nil),
		d.newPgBackRest(b, "s3-tls", tlsSrv.pgBackRestRepo(tlsSrv.newBucket(b)), tlsCPU),
	}
	for i, t := range walrusTargets {
		p := &pair{repo: t.name, hasPeer: i < len(peers)}
		pairs = append(pairs, p)
	}
	// The runs of the two tools alternate, so that whatever else the
	// machine does meanwhile weighs on both alike.
	fulls := map[string]pushResult{}
	for i, t := range walrusTargets {
		p := pairs[i]
		var wFull, wFetch, rFull, rFetch []usage
		for range runs {
			d.archiveTo(b, t.archiveScript(d.walrus))
			full := d.push(b, t, "lz4", "--full")
			fetch := d.fetch(b, t, full.name)
			fulls[t.name] = full
			wFull, wFetch = append(wFull, full.use), append(wFetch, fetch)
			p.walrus.stored = full.info.StoredSize
			fmt.Printf("# walrus %s: full backup %s (CPU %s, disk read %.0f MB), restore %s (CPU %s, disk written %.0f MB)\n",
				t.name, secs(full.use.wall), secs(full.use.cpu), full.use.readMB, secs(fetch.wall), secs(fetch.cpu), fetch.writtenMB)
			if !p.hasPeer {
				continue
			}
			pb := peers[i]
			d.archiveTo(b, pb.archiveScript())
			u, info := pb.backup(b, "full")
			f := pb.restore(b, d, info.Label)
			rFull, rFetch = append(rFull, u), append(rFetch, f)
			p.peer.stored = info.Info.Repository.Delta
			fmt.Printf("# pgBackRest %s: full backup %s (CPU %s, disk read %.0f MB), restore %s (CPU %s, disk written %.0f MB)\n",
				pb.name, secs(u.wall), secs(u.cpu), u.readMB, secs(f.wall), secs(f.cpu), f.writtenMB)
		}
		p.walrus.full, p.walrus.fetch = medianUsage(wFull), medianUsage(wFetch)
		if p.hasPeer {
			p.peer.full, p.peer.fetch = medianUsage(rFull), medianUsage(rFetch)
		}
	}
	d.touch(b, 100)
	for i, t := range walrusTargets {
		p := pairs[i]
		var wu, ru []usage
		for range runs {
			d.archiveTo(b, t.archiveScript(d.walrus))
			last := d.push(b, t, "lz4", "--delta-from", fulls[t.name].name)
			wu = append(wu, last.use)
			p.walrus.deltaSize = last.info.StoredSize
			fmt.Printf("# walrus %s: delta %s\n", t.name, secs(last.use.wall))
			if !p.hasPeer {
				continue
			}
			pb := peers[i]
			d.archiveTo(b, pb.archiveScript())
			u, info := pb.backup(b, "diff")
			ru = append(ru, u)
			p.peer.deltaSize = info.Info.Repository.Delta
			fmt.Printf("# pgBackRest %s: diff backup %s\n", pb.name, secs(u.wall))
		}
		p.walrus.delta = medianUsage(wu)
		if p.hasPeer {
			p.peer.delta = medianUsage(ru)
		}
	}
	d.archiveTo(b, "exit 0")

	tab := table{head: []string{"operation", "repo", "walrus s", "pgBackRest s", "speed walrus/pgBackRest", "walrus CPU s", "pgBackRest CPU s", "walrus RSS MiB", "pgBackRest RSS MiB", "walrus stored MB", "pgBackRest stored MB"}}
	peerOf := func(p *pair) *pair {
		if p.hasPeer {
			return p
		}
		return pairs[1] // walrus on HTTP against pgBackRest on TLS
	}
	for _, op := range []string{"full backup", "restore", "delta 1%"} {
		for _, p := range pairs {
			q := peerOf(p)
			var w, r usage
			var ws, rs int64 = -1, -1
			switch op {
			case "full backup":
				w, r, ws, rs = p.walrus.full, q.peer.full, p.walrus.stored, q.peer.stored
			case "restore":
				w, r = p.walrus.fetch, q.peer.fetch
			case "delta 1%":
				w, r, ws, rs = p.walrus.delta, q.peer.delta, p.walrus.deltaSize, q.peer.deltaSize
			}
			repo := p.repo
			if !p.hasPeer {
				repo += " (pgBackRest: s3-tls)"
			}
			tab.add(op, repo, secs(w.wall), secs(r.wall), fmt.Sprintf("%.2f", r.wall.Seconds()/w.wall.Seconds()),
				secs(w.cpu), secs(r.cpu), fmt.Sprintf("%.0f", w.rssMiB()), fmt.Sprintf("%.0f", r.rssMiB()), mbOrDash(ws), mbOrDash(rs))
		}
	}
	archiveRows(b, runs, tlsSrv, httpSrv, &tab)
	b.StopTimer()
	fmt.Printf("\nwalrus vs pgBackRest: pgbench scale %d (%s), lz4, median of %d runs; speed ratio = pgBackRest time / walrus time\n", scale, mb(fulls["fs"].info.DataSize), runs)
	tab.print()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func mbOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(n)/1e6)
}

// pgBackRest is one pgBackRest repository of the benchmark cluster (stanza
// "bench"), with its own configuration file, lock and spool directories.
type pgBackRest struct {
	name  string
	conf  string
	dir   string
	cpuOf func() time.Duration
}

// newPgBackRest writes the configuration (repo lines: nil for a posix
// repository in the benchmark directory) and creates the stanza for
// pg1-path (the benchmark cluster, or pgdata when given).
func (d *benchDB) newPgBackRest(b *testing.B, name string, repo []string, cpuOf func() time.Duration) *pgBackRest {
	b.Helper()
	dir := filepath.Join(d.dir, "pgbackrest-"+name)
	return newPgBackRestAt(b, name, dir, repo, cpuOf, fmt.Sprintf("pg1-path=%s\npg1-port=%d\npg1-socket-path=%s\npg1-user=postgres\n", d.c.DataDir(), d.c.Port(), d.c.SocketDir()), true)
}

// newPgBackRestAt is newPgBackRest for any pg1 section; online says
// whether the cluster runs, which also decides archive-async: the
// archiving benchmark measures pgBackRest's asynchronous archive-push (a
// stopped cluster's segments), while the running benchmark cluster
// archives synchronously: pgBackRest 2.45's asynchronous archive-push
// there sometimes waited out archive-timeout for a segment (then found it
// pushed), which made a backup take two minutes. The backups measured do
// not depend on how the archive is pushed, only on its arriving.
func newPgBackRestAt(b *testing.B, name, dir string, repo []string, cpuOf func() time.Duration, pg string, online bool) *pgBackRest {
	b.Helper()
	for _, sub := range []string{"", "lock", "spool", "log", "repo"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	if repo == nil {
		repo = []string{"repo1-type=posix", "repo1-path=" + filepath.Join(dir, "repo")}
	}
	conf := "[global]\n" + strings.Join(repo, "\n") + `
repo1-retention-full=1000
process-max=2
compress-type=lz4
start-fast=y
archive-async=` + map[bool]string{true: "n", false: "y"}[online] + `
archive-timeout=120
log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=` + filepath.Join(dir, "lock") + `
spool-path=` + filepath.Join(dir, "spool") + `
log-path=` + filepath.Join(dir, "log") + `

[bench]
` + pg
	p := &pgBackRest{name: name, conf: filepath.Join(dir, "pgbackrest.conf"), dir: dir, cpuOf: cpuOf}
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	pgtest.ChownPostgres(b, dir)
	args := []string{"stanza-create"}
	if !online {
		args = append(args, "--no-online")
	}
	p.run(b, args...)
	return p
}

// command is pgbackrest with args, run as the postgres user.
func (p *pgBackRest) command(b *testing.B, args ...string) *exec.Cmd {
	b.Helper()
	cmd, err := pgtest.Command(context.Background(), "pgbackrest", append([]string{"--config=" + p.conf, "--stanza=bench"}, args...)...)
	if err != nil {
		b.Fatal(err)
	}
	return cmd
}

// run runs pgbackrest with args, unmeasured, and returns its stdout.
func (p *pgBackRest) run(b *testing.B, args ...string) string {
	b.Helper()
	out, _ := measure(b, p.command(b, args...), nil)
	return out
}

// pgBackRestBackup is one backup as pgbackrest info --output=json shows it.
type pgBackRestBackup struct {
	Label string `json:"label"`
	Type  string `json:"type"`
	Info  struct {
		Size       int64 `json:"size"`
		Delta      int64 `json:"delta"`
		Repository struct {
			Size  int64 `json:"size"`
			Delta int64 `json:"delta"`
		} `json:"repository"`
	} `json:"info"`
}

// backup takes a backup of kind "full" or "diff" and measures it.
func (p *pgBackRest) backup(b *testing.B, kind string) (usage, pgBackRestBackup) {
	b.Helper()
	_, u := measure(b, p.command(b, "backup", "--type="+kind), p.cpuOf)
	var stanzas []struct {
		Backup []pgBackRestBackup `json:"backup"`
	}
	out := p.run(b, "info", "--output=json")
	if err := json.Unmarshal([]byte(out), &stanzas); err != nil || len(stanzas) == 0 || len(stanzas[0].Backup) == 0 {
		b.Fatalf("pgbackrest info: %v\n%s", err, out)
	}
	bs := stanzas[0].Backup
	return u, bs[len(bs)-1]
}

// restore restores the backup label into a new directory, measures it and
// removes the directory.
func (p *pgBackRest) restore(b *testing.B, d *benchDB, label string) usage {
	b.Helper()
	dest := filepath.Join(restoreDir(b), "restored")
	if err := os.Mkdir(dest, 0o700); err != nil {
		b.Fatal(err)
	}
	pgtest.ChownPostgres(b, dest)
	_, u := measure(b, p.command(b, "restore", "--pg1-path="+dest, "--set="+label, "--type=immediate"), p.cpuOf)
	removeRestore(b, dest)
	return u
}

// archiveScript is the archive target script that pushes $1 with
// pgBackRest.
func (p *pgBackRest) archiveScript() string {
	return fmt.Sprintf("exec pgbackrest --config=%s --stanza=bench archive-push \"$1\"", shellQuote(p.conf))
}

// pgBackRestRepo is the configuration of a pgBackRest repository in
// bucket on this server.
func (s *tlsServer) pgBackRestRepo(bucket string) []string {
	return []string{
		"repo1-type=s3",
		"repo1-path=/pgbackrest",
		"repo1-s3-bucket=" + bucket,
		"repo1-s3-endpoint=127.0.0.1",
		fmt.Sprintf("repo1-storage-port=%d", s.port),
		"repo1-s3-region=" + s.region,
		"repo1-s3-key=" + s.accessKey,
		"repo1-s3-key-secret=" + s.secretKey,
		"repo1-s3-uri-style=path",
		"repo1-storage-verify-tls=n",
	}
}

// archiveRows measures archiving WALRUS_BENCH_SEGMENTS real segments, one
// process per segment in order as PostgreSQL calls archive_command, with
// walrus (wal-push, pushing ready segments ahead in parallel) and with
// pgBackRest (archive-push, archive-async: a background process pushes
// ahead), each into a fresh repository per run, and adds a row per
// repository to tab; then walrus again with wal_push_async (wal-push
// starts a wal-push-daemon that serves the calls; its CPU counts). pgBackRest's background process is not a child
// of the measured one: its CPU is not in the figures.
func archiveRows(b *testing.B, runs int, tlsSrv *tlsServer, httpSrv *s3test.Server, tab *table) {
	n := settingInt("WALRUS_BENCH_SEGMENTS", 100)
	w := makeWAL(b, n)
	control := filepath.Join(w.pgdata, "global", "pg_control")
	if _, err := os.Stat(control); err != nil {
		b.Fatalf("the WAL source has no pg_control (pgBackRest needs it); run without WALRUS_BENCH_WAL_DIR: %v", err)
	}
	type result struct{ walrus, daemon, peer usage }
	repos := []string{"fs", "s3-tls"}
	res := map[string]*result{}
	for _, repo := range repos {
		r := &result{}
		res[repo] = r
		var wu, du, pu []usage
		for range runs {
			dir := walCluster(b, w, control)
			newEnv := func() []string { // a fresh repository
				if repo == "fs" {
					return []string{"WALRUS_REPO=" + filepath.Join(pgtest.SharedDir(b), "repo")}
				}
				return tlsSrv.walrusEnv(tlsSrv.newBucket(b))
			}
			env := newEnv()
			wu = append(wu, archiveLoop(b, dir, w.segs, func(seg string) *exec.Cmd {
				cmd := exec.Command(testbin.Walrus(b), "wal-push", filepath.Join("pg_wal", seg))
				cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
				return cmd
			}, tlsSrvCPU(repo, tlsSrv)))

			// The same with wal_push_async: the first wal-push starts a
			// wal-push-daemon, which serves the rest (as pgBackRest's
			// archive-async starts its background process); its CPU
			// counts, unlike pgBackRest's.
			dir = walCluster(b, w, control)
			env = append(newEnv(), asyncEnv...)
			u := archiveLoop(b, dir, w.segs, func(seg string) *exec.Cmd {
				cmd := exec.Command(testbin.Walrus(b), "wal-push", filepath.Join("pg_wal", seg))
				cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
				return cmd
			}, tlsSrvCPU(repo, tlsSrv))
			cpu, rss := stopAsyncDaemon(b, dir)
			u.cpu += cpu
			u.rssKiB = max(u.rssKiB, rss)
			du = append(du, u)

			dir = walCluster(b, w, control)
			var repoConf []string
			if repo == "s3-tls" {
				repoConf = tlsSrv.pgBackRestRepo(tlsSrv.newBucket(b))
			}
			pb := newPgBackRestAt(b, "wal", filepath.Join(pgtest.SharedDir(b), "pgbackrest"), repoConf, nil,
				"pg1-path="+dir+"\n", false)
			pu = append(pu, archiveLoop(b, dir, w.segs, func(seg string) *exec.Cmd {
				cmd := pb.command(b, "archive-push", filepath.Join("pg_wal", seg))
				cmd.Dir = dir
				return cmd
			}, tlsSrvCPU(repo, tlsSrv)))
		}
		r.walrus, r.daemon, r.peer = medianUsage(wu), medianUsage(du), medianUsage(pu)
	}
	for _, repo := range repos {
		r := res[repo]
		tab.add(fmt.Sprintf("archive %d segments (segments/s)", n), repo,
			fmt.Sprintf("%.1f/s", float64(n)/r.walrus.wall.Seconds()), fmt.Sprintf("%.1f/s", float64(n)/r.peer.wall.Seconds()),
			fmt.Sprintf("%.2f", r.peer.wall.Seconds()/r.walrus.wall.Seconds()),
			secs(r.walrus.cpu), secs(r.peer.cpu)+" (+async)", fmt.Sprintf("%.0f", r.walrus.rssMiB()), fmt.Sprintf("%.0f", r.peer.rssMiB()), "-", "-")
		tab.add(fmt.Sprintf("archive %d segments, wal_push_async (segments/s)", n), repo,
			fmt.Sprintf("%.1f/s", float64(n)/r.daemon.wall.Seconds()), fmt.Sprintf("%.1f/s", float64(n)/r.peer.wall.Seconds()),
			fmt.Sprintf("%.2f", r.peer.wall.Seconds()/r.daemon.wall.Seconds()),
			secs(r.daemon.cpu), secs(r.peer.cpu)+" (+async)", fmt.Sprintf("%.0f", r.daemon.rssMiB()), fmt.Sprintf("%.0f", r.peer.rssMiB()), "-", "-")
	}
}

func tlsSrvCPU(repo string, s *tlsServer) func() time.Duration {
	if repo == "fs" {
		return nil
	}
	return func() time.Duration { return processCPU(s.pid) }
}

// walCluster is a directory that looks like the data directory of the WAL
// source to both tools: PG_VERSION, global/pg_control, and pg_wal holding
// hard links to the segments, each marked ready.
func walCluster(b *testing.B, w walSource, control string) string {
	b.Helper()
	d := filepath.Join(pgtest.SharedDir(b), "data")
	for _, sub := range []string{"global", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	ctl, err := os.ReadFile(control)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "global", "pg_control"), ctl, 0o600)
	os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
	for _, s := range w.segs {
		if err := os.Link(filepath.Join(w.pgdata, "pg_wal", s), filepath.Join(d, "pg_wal", s)); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", s+".ready"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	pgtest.ChownPostgres(b, d)
	return d
}

// archiveLoop runs the command of each segment in order in dir, and after
// each success marks the segment done, as PostgreSQL does. It returns the
// wall time of the whole loop, the CPU of all the processes, the largest
// RSS of one.
func archiveLoop(b *testing.B, dir string, segs []string, cmdOf func(seg string) *exec.Cmd, cpuOf func() time.Duration) usage {
	b.Helper()
	var total usage
	var srv0 time.Duration
	if cpuOf != nil {
		srv0 = cpuOf()
	}
	start := time.Now()
	for _, s := range segs {
		cmd := cmdOf(s)
		cmd.Dir = dir
		_, u := measure(b, cmd, nil)
		total.cpu += u.cpu
		total.rssKiB = max(total.rssKiB, u.rssKiB)
		st := filepath.Join(dir, "pg_wal", "archive_status", s)
		if err := os.Rename(st+".ready", st+".done"); err != nil {
			b.Fatal(err)
		}
	}
	total.wall = time.Since(start)
	if cpuOf != nil {
		total.serverCPU = cpuOf() - srv0
	}
	return total
}
