package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
)

// listedBackup is one object of backup-list --json.
type listedBackup struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	StartLSN   string  `json:"start_lsn"`
	FinishLSN  string  `json:"finish_lsn"`
	StartTime  string  `json:"start_time"`
	FinishTime string  `json:"finish_time"`
	Timeline   int     `json:"timeline"`
	DataSize   int64   `json:"data_size"`
	StoredSize int64   `json:"stored_size"`
	DeltaFrom  *string `json:"delta_from"`
	Permanent  *bool   `json:"permanent"`
	Encrypted  bool    `json:"encrypted"`
	// The WAL a restore of it needs, and the cluster's segment size.
	StartWALFile   string `json:"start_wal_file"`
	FinishWALFile  string `json:"finish_wal_file"`
	WALSegmentSize uint64 `json:"wal_segment_size"`
}

// listBackups runs backup-list --json.
func listBackups(t *testing.T, env []string) []listedBackup {
	t.Helper()
	out := mustRun(t, env, "backup-list", "--json").stdout
	var doc struct {
		Backups []listedBackup `json:"backups"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out)
	}
	if doc.Backups == nil {
		t.Fatalf("backup-list --json has no backups array:\n%s", out)
	}
	return doc.Backups
}

// TestBackupJourney is issue 3's journey: pgbench data and a table in a
// tablespace, backup-push while pgbench writes, more writes, backup-fetch
// LATEST with the tablespace moved, start, promotion, every table equal
// to the source, pg_checksums clean. On the filesystem repository in
// plaintext, and on S3 with encryption.
func TestBackupJourney(t *testing.T) {
	t.Parallel()
	for _, sk := range storages {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			testBackupJourney(t, sk, sk.name == "s3")
		})
	}
}

func testBackupJourney(t *testing.T, sk storageKind, encrypted bool) {
	repoEnv, repoDir := sk.setup(t)
	pushEnv := append([]string{}, repoEnv...)
	fetchEnv := append([]string{}, repoEnv...)
	if encrypted {
		keys := pgtest.SharedDir(t)
		identity := filepath.Join(keys, "age.key")
		recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
		// restore_command runs as the server's user and needs the identity.
		pgtest.ChownPostgres(t, keys)
		pushEnv = append(pushEnv, "WALRUS_AGE_RECIPIENTS="+recipient, "WALRUS_COMPRESSION=zstd")
		fetchEnv = append(fetchEnv, "WALRUS_AGE_IDENTITY_FILE="+identity)
	}
	c, _ := archivingCluster(t, pushEnv)

	// Data: pgbench, a table in a tablespace, an unlogged table.
	shared := pgtest.SharedDir(t)
	tsDir := filepath.Join(shared, "ts1")
	if err := os.Mkdir(tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.ChownPostgres(t, tsDir)
	pgtest.Pgbench(t, c, "-i", "-s", "1", "-q")
	c.Exec(t, fmt.Sprintf("CREATE TABLESPACE ts1 LOCATION '%s'", tsDir))
	c.Exec(t, "CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE ts1")
	c.Exec(t, "INSERT INTO in_ts SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	c.Exec(t, "CREATE UNLOGGED TABLE scratch (id int, v text)")
	c.Exec(t, "INSERT INTO scratch SELECT g, 'gone after restore' FROM generate_series(1, 5000) g")
	spcOID := c.QueryRow(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")

	// backup-push while pgbench writes.
	env := append(append([]string{}, pushEnv...),
		"WALRUS_POSTGRES_DSN="+c.DSN(), "WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=3")
	var wg sync.WaitGroup
	wg.Add(1)
	var benchOut string
	go func() {
		defer wg.Done()
		benchOut = pgtest.Pgbench(t, c, "-c", "2", "-T", "4", "-n")
	}()
	push := mustRun(t, env, "backup-push", c.DataDir())
	wg.Wait()
	name := strings.TrimSpace(push.stdout)
	if !strings.HasPrefix(name, "base_") || strings.Contains(name, "\n") {
		t.Fatalf("backup-push printed %q\nstderr: %s\npgbench: %s", push.stdout, push.stderr, benchOut)
	}
	if !strings.Contains(push.stderr, "backup-push "+name+": done") {
		t.Errorf("no summary line on stderr:\n%s", push.stderr)
	}

	// More writes after the backup, then archive everything.
	pgtest.Pgbench(t, c, "-c", "1", "-t", "200", "-n")
	c.Exec(t, "UPDATE in_ts SET v = 'after backup' WHERE id % 7 = 0")
	c.Exec(t, "INSERT INTO in_ts SELECT g, 'late' FROM generate_series(20001, 21000) g")
	c.Exec(t, "CREATE TABLE after_backup AS SELECT g AS id FROM generate_series(1, 1000) g")
	want := c.AllTableDigests(t, "postgres")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 60*time.Second)

	// backup-list.
	bs := listBackups(t, fetchEnv)
	if len(bs) != 1 || bs[0].Name != name || bs[0].Kind != "full" || bs[0].DeltaFrom != nil ||
		bs[0].Permanent == nil || *bs[0].Permanent || bs[0].Timeline != 1 || bs[0].DataSize <= 0 ||
		bs[0].StoredSize <= 0 || bs[0].StartLSN == "" || bs[0].FinishLSN == "" || bs[0].Encrypted != encrypted {
		t.Fatalf("backup-list --json: %+v", bs)
	}
	table := mustRun(t, fetchEnv, "backup-list", "--detail").stdout
	if !strings.Contains(table, name) || !strings.Contains(table, "START LSN") {
		t.Errorf("backup-list --detail:\n%s", table)
	}

	// A non-empty destination is refused and left alone.
	busy := filepath.Join(shared, "busy")
	os.Mkdir(busy, 0o700)
	os.WriteFile(filepath.Join(busy, "keep"), []byte("mine"), 0o600)
	r := run(t, fetchEnv, "backup-fetch", busy, "LATEST")
	if r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("backup-fetch into a non-empty directory: exit %d\n%s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Fatalf("the non-empty destination was changed: %v", entries)
	}

	// backup-fetch LATEST with the tablespace moved.
	dest := filepath.Join(shared, "restored")
	newTS := filepath.Join(shared, "ts_new")
	mustRun(t, fetchEnv, "backup-fetch", dest, "LATEST", "--tablespace-map", spcOID+"="+newTS)
	for _, f := range []string{"backup_label", "recovery.signal", "global/pg_control", "PG_VERSION"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Fatalf("restored directory lacks %s: %v", f, err)
		}
	}
	auto, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if !strings.Contains(string(auto), "restore_command = '") || !strings.Contains(string(auto), "recovery_target_action = 'promote'") {
		t.Fatalf("postgresql.auto.conf:\n%s", auto)
	}

	// Start it: it recovers from the archive and promotes.
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 180*time.Second)
	got := rc.AllTableDigests(t, "postgres")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restored tables differ from the source:\n got %v\nwant %v\n%s", sortedKeys(got), sortedKeys(want), diffDigests(got, want))
	}
	if loc := rc.QueryRow(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"); loc != newTS {
		t.Errorf("tablespace ts1 is at %q, want %q", loc, newTS)
	}
	if n := rc.QueryRow(t, "SELECT count(*) FROM scratch"); n != "0" {
		t.Errorf("unlogged table has %s rows after the restore, want 0", n)
	}
	// The original tablespace directory was not touched by the restore.
	if entries, err := os.ReadDir(tsDir); err != nil || len(entries) != 1 {
		t.Errorf("original tablespace directory: %v %v", entries, err)
	}
	rc.Stop(t)
	if out, err := pgtest.RunAsPostgres(t, filepath.Join(pgtest.BinDir(), "pg_checksums"), "--check", "-D", dest); err != nil {
		t.Fatalf("pg_checksums --check: %v\n%s", err, out)
	}

	if repoDir != "" {
		// A missing part is named before anything is written.
		parts, _ := filepath.Glob(filepath.Join(repoDir, "backups", name, "parts", "part_*"))
		if len(parts) < 2 {
			t.Fatalf("parts: %v", parts)
		}
		victim := parts[len(parts)/2]
		if err := os.Remove(victim); err != nil {
			t.Fatal(err)
		}
		dest2 := filepath.Join(shared, "restored2")
		r := run(t, fetchEnv, "backup-fetch", dest2, name, "--tablespace-map", spcOID+"="+filepath.Join(shared, "ts_new2"))
		partName := strings.SplitN(filepath.Base(victim), ".", 3)[0] + ".tar"
		if r.code == 0 || !strings.Contains(r.stderr, partName) || !strings.Contains(r.stderr, "missing") {
			t.Fatalf("backup-fetch with a missing part: exit %d\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(dest2); !os.IsNotExist(err) {
			t.Fatal("backup-fetch with a missing part created the destination")
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func diffDigests(got, want map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			fmt.Fprintf(&b, "%s: got %q, want %q\n", k, got[k], want[k])
		}
	}
	return b.String()
}

// TestBackupInterrupted: a backup killed part way (SIGKILL, then SIGTERM)
// leaves no backup in the list and no backup session on the server, a
// second backup-push while one runs is refused without disturbing it, and
// the next backup-push succeeds.
func TestBackupInterrupted(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	pgtest.Pgbench(t, c, "-i", "-s", "1", "-q")
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	// Slow enough that the backup is still uploading when it is killed:
	// about 25 MB at 2 MiB/s, in 1 MiB parts.
	slowEnv := append(append([]string{}, env...), "WALRUS_BACKUP_RATE_LIMIT=2MiB", "WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=1")

	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		before := len(storedParts(repoDir)) // the SIGKILLed backup leaves its parts
		cmd, stderr := startWalrus(t, slowEnv, "backup-push", c.DataDir())
		waitFor(t, "a part of the slow backup in the repository", func() bool { return len(storedParts(repoDir)) > before })

		if sig == syscall.SIGKILL {
			// Meanwhile a second backup of the cluster is refused.
			r := run(t, env, "backup-push", c.DataDir())
			if r.code == 0 || !strings.Contains(r.stderr, "another backup of this cluster is running") {
				t.Fatalf("concurrent backup-push: exit %d\n%s", r.code, r.stderr)
			}
		}

		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if err == nil {
			t.Fatalf("backup-push survived %v\n%s", sig, stderr.String())
		}
		if sig == syscall.SIGTERM {
			if !strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("backup-push after SIGTERM: %v\n%s", err, stderr.String())
			}
			// An orderly cancel removes its parts.
			if parts := storedParts(repoDir); len(parts) != before {
				t.Errorf("parts left after a cancelled backup: %v", parts)
			}
		}
		if bs := listBackups(t, env); len(bs) != 0 {
			t.Fatalf("after %v: backup-list shows %+v", sig, bs)
		}
		// The backup's session is gone, so PostgreSQL aborted its backup.
		waitFor(t, "the killed backup's session to end", func() bool {
			return c.QueryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walrus'") == "0"
		})
	}
	if log := c.LogTail(400); strings.Count(log, "aborting backup due to backend exiting before pg_backup_stop was called") < 2 {
		t.Errorf("the server did not report both backups aborted:\n%s", log)
	}

	name := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	bs := listBackups(t, env)
	if len(bs) != 1 || bs[0].Name != name {
		t.Fatalf("backup-list after a successful push: %+v (pushed %s)", bs, name)
	}

	// A delete never runs beside a backup-push (the repository lock): told
	// not to wait, it fails at once naming the backup and deletes nothing;
	// told to wait, it runs once the backup is done.
	before := len(storedParts(repoDir))
	cmd, stderr := startWalrus(t, slowEnv, "backup-push", "--full", c.DataDir())
	waitFor(t, "a part of the slow backup in the repository", func() bool { return len(storedParts(repoDir)) > before })
	r := run(t, append(append([]string{}, env...), "WALRUS_LOCK_WAIT=0s"), "delete", "everything", "--confirm")
	if r.code == 0 || !strings.Contains(r.stderr, "locked by another command: backup-push") || !strings.Contains(r.stderr, "nothing was deleted") {
		t.Fatalf("delete beside a backup-push: exit %d\n%s", r.code, r.stderr)
	}
	if bs := listBackups(t, env); len(bs) != 1 || bs[0].Name != name {
		t.Fatalf("after the refused delete: %+v", bs)
	}
	r = run(t, append(append([]string{}, env...), "WALRUS_LOCK_WAIT=2m"), "delete", "retain", "1", "--confirm")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the slow backup-push: %v\n%s", err, stderr.String())
	}
	if r.code != 0 || !strings.Contains(r.stderr, "waiting up to 2m0s (lock_wait) for backup-push") {
		t.Fatalf("delete waiting for a backup-push: exit %d\n%s", r.code, r.stderr)
	}
	if bs := listBackups(t, env); len(bs) != 1 || bs[0].Name == name {
		t.Fatalf("after delete retain 1: %+v, want only the new full backup", bs)
	}
}

// startWalrus starts walrus in the background; its stderr is collected.
func startWalrus(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(testbin.Walrus(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &stderr
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// storedParts lists the backup parts in a filesystem repository.
func storedParts(repoDir string) []string {
	parts, _ := filepath.Glob(filepath.Join(repoDir, "backups", "*", "parts", "part_*"))
	return parts
}

// waitFor polls cond until it holds; it fails the test after a generous
// minute (a hang, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTamperedManifest (TRAPS.md 29): on an encrypted repository a
// manifest edited in the bucket is refused by backup-fetch (nothing is
// written) and reported by backup-verify; a backup whose authenticator is
// gone is refused unless --allow-unauthenticated.
func TestTamperedManifest(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	keys := pgtest.SharedDir(t)
	identity := filepath.Join(keys, "age.key")
	recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
	pgtest.ChownPostgres(t, keys)
	pushEnv := append(append([]string{}, repoEnv...), "WALRUS_AGE_RECIPIENTS="+recipient)
	c, _ := archivingCluster(t, pushEnv)
	env := append(append([]string{}, pushEnv...), "WALRUS_POSTGRES_DSN="+c.DSN(), "WALRUS_AGE_IDENTITY_FILE="+identity)
	name := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)

	manifest := filepath.Join(repoDir, "backups", name, "manifest.json")
	orig, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	// Point global/pg_control at another checksum, as one would to pass
	// off another file.
	i := bytes.Index(orig, []byte(`{"path":"global/pg_control"`))
	j := bytes.Index(orig[i:], []byte(`"crc32c":"`))
	if i < 0 || j < 0 {
		t.Fatalf("no pg_control entry in the manifest:\n%s", orig)
	}
	k := i + j + len(`"crc32c":"`)
	tampered := append([]byte(nil), orig...)
	tampered[k] = "01"[(tampered[k]-'0'+1)%2]
	if tampered[k] == orig[k] {
		tampered[k] = 'f'
	}
	if err := os.WriteFile(manifest, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "restore")
	r := run(t, env, "backup-fetch", dest, name)
	if r.code == 0 || !strings.Contains(r.stderr, "does not match its authenticator") || !strings.Contains(r.stderr, "nothing was written") {
		t.Fatalf("backup-fetch of a tampered manifest: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("backup-fetch of a tampered manifest created %s: %v", dest, err)
	}
	rep, r := backupVerify(t, env, name)
	if rep.OK || len(rep.Backups) != 1 || len(rep.Backups[0].Problems) == 0 || !strings.Contains(rep.Backups[0].Problems[0].Message, "does not match its authenticator") {
		t.Fatalf("backup-verify of a tampered manifest: %+v\n%s", rep, r.stderr)
	}

	// Without its authenticator.
	if err := os.WriteFile(manifest, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	auths, _ := filepath.Glob(filepath.Join(repoDir, "backups", name, "manifest-auth.*.age"))
	if len(auths) != 1 {
		t.Fatalf("authenticators of %s: %v", name, auths)
	}
	if err := os.Remove(auths[0]); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "backup-fetch", dest, name)
	if r.code == 0 || !strings.Contains(r.stderr, "has no authenticator") || !strings.Contains(r.stderr, "--allow-unauthenticated") {
		t.Fatalf("backup-fetch without an authenticator: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, env, "backup-fetch", dest, name, "--allow-unauthenticated", "--target-immediate")
	if _, err := os.Stat(filepath.Join(dest, "global", "pg_control")); err != nil {
		t.Fatalf("restore with --allow-unauthenticated: %v", err)
	}
}
