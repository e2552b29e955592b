package pg_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// waitLimit only turns a hang into a failure; it is not a performance
// assertion.
const waitLimit = 2 * time.Minute

// controldata runs pg_controldata on dataDir and returns its fields by
// label.
func controldata(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	out, err := pgtest.RunAsPostgresEnv(t, []string{"LC_ALL=C", "LANG=C"}, "pg_controldata", "-D", dataDir)
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return fields
}

func TestControlFileMatchesPgControldata(t *testing.T) {
	t.Parallel()
	for _, segMB := range []int{0, 64} {
		t.Run(fmt.Sprintf("walsegsize=%d", segMB), func(t *testing.T) {
			t.Parallel()
			c := pgtest.New(t, pgtest.Options{WALSegSizeMB: segMB})
			c.Start(t)
			c.Exec(t, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; CHECKPOINT")
			c.Stop(t)

			path := filepath.Join(c.DataDir(), "global", "pg_control")
			cd, err := pg.ReadControlFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := controldata(t, c.DataDir())
			wantSeg := uint32(16 << 20)
			if segMB != 0 {
				wantSeg = uint32(segMB) << 20
			}
			checks := []struct {
				label string
				got   string
			}{
				{"pg_control version number", fmt.Sprint(cd.PGControlVersion)},
				{"Catalog version number", fmt.Sprint(cd.CatalogVersion)},
				{"Database system identifier", fmt.Sprint(cd.SystemIdentifier)},
				{"Database cluster state", cd.State.String()},
				{"Latest checkpoint location", cd.CheckpointLSN.String()},
				{"Latest checkpoint's REDO location", cd.RedoLSN.String()},
				{"Latest checkpoint's TimeLineID", fmt.Sprint(cd.TimeLineID)},
				{"Latest checkpoint's PrevTimeLineID", fmt.Sprint(cd.PrevTimeLineID)},
				{"Latest checkpoint's full_page_writes", map[bool]string{true: "on", false: "off"}[cd.FullPageWrites]},
				{"Latest checkpoint's NextXID", fmt.Sprintf("%d:%d", cd.NextXID>>32, uint32(cd.NextXID))},
				{"Latest checkpoint's NextOID", fmt.Sprint(cd.NextOID)},
				{"Minimum recovery ending location", cd.MinRecoveryPoint.String()},
				{"Backup start location", cd.BackupStartPoint.String()},
				{"wal_level setting", []string{"minimal", "replica", "logical"}[cd.WALLevel]},
				{"Maximum data alignment", fmt.Sprint(cd.MaxAlign)},
				{"Database block size", fmt.Sprint(cd.BlockSize)},
				{"Blocks per segment of large relation", fmt.Sprint(cd.RelSegSize)},
				{"WAL block size", fmt.Sprint(cd.WALBlockSize)},
				{"Bytes per WAL segment", fmt.Sprint(cd.WALSegSize)},
				{"Data page checksum version", fmt.Sprint(cd.DataChecksumVersion)},
			}
			for _, ch := range checks {
				if w, ok := want[ch.label]; !ok || w != ch.got {
					t.Errorf("%s: parsed %q, pg_controldata says %q", ch.label, ch.got, w)
				}
			}
			if cd.WALSegSize != wantSeg || cd.DataChecksumVersion != 1 || cd.State != pg.DBShutdowned {
				t.Errorf("segment size %d (want %d), checksum version %d, state %v", cd.WALSegSize, wantSeg, cd.DataChecksumVersion, cd.State)
			}

			// A corrupted copy fails with a CRC error.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[60] ^= 0x10
			bad := filepath.Join(t.TempDir(), "pg_control")
			if err := os.WriteFile(bad, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := pg.ReadControlFile(bad); !errors.Is(err, pg.ErrControlCRC) {
				t.Fatalf("corrupted copy: err = %v, want ErrControlCRC", err)
			}

			// The first segment initdb wrote starts with a long header
			// naming this cluster.
			seg := pg.SegmentName(1, 1, uint64(cd.WALSegSize))
			h := readSegmentHeader(t, filepath.Join(c.DataDir(), "pg_wal", seg))
			if h.Magic != pg.WALPageMagic || h.SystemIdentifier != cd.SystemIdentifier || h.SegSize != cd.WALSegSize ||
				h.BlockSize != cd.WALBlockSize || h.Timeline != 1 || h.SegNo() != 1 {
				t.Errorf("header of %s = %+v", seg, h)
			}
		})
	}
}

func readSegmentHeader(t *testing.T, path string) pg.SegmentHeader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, pg.SegmentHeaderSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	h, err := pg.ParseSegmentHeader(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return h
}

// TestServerFunctions runs a backup start/stop, a WAL switch and a restore
// point on a real server with 1 MiB WAL segments and a tablespace, and
// checks the results against the archive and the control file.
func TestServerFunctions(t *testing.T) {
	t.Parallel()
	archive := pgtest.SharedDir(t)
	tsDir := pgtest.SharedDir(t)
	c := pgtest.New(t, pgtest.Options{
		WALSegSizeMB: 1,
		Conf: []string{
			"archive_mode = on",
			"archive_command = 'test ! -f " + archive + "/%f && cp %p " + archive + "/%f'",
		},
	})
	c.Start(t)
	ctx := t.Context()

	conn, err := pg.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	var appName, stmtTimeout string
	if err := conn.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('statement_timeout')").Scan(&appName, &stmtTimeout); err != nil {
		t.Fatal(err)
	}
	if appName != "walrus" || stmtTimeout != "0" {
		t.Errorf("application_name %q, statement_timeout %q; want walrus, 0", appName, stmtTimeout)
	}

	info, err := pg.ServerInfo(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	cd, err := pg.ReadControlFile(filepath.Join(c.DataDir(), "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	if info.VersionNum < 150000 || info.VersionNum >= 160000 || info.SystemIdentifier != cd.SystemIdentifier ||
		info.DataDirectory != c.DataDir() || info.WALSegSize != 1<<20 || !info.DataChecksums || info.InRecovery ||
		info.Timeline != 1 || info.CurrentLSN == pg.InvalidLSN {
		t.Fatalf("ServerInfo = %+v (control file system identifier %d)", info, cd.SystemIdentifier)
	}

	ts, err := pg.Tablespaces(ctx, conn)
	if err != nil || len(ts) != 0 {
		t.Fatalf("Tablespaces of a fresh cluster = %+v, %v", ts, err)
	}
	c.Exec(t, "CREATE TABLESPACE walrus_ts LOCATION '"+tsDir+"'")
	c.Exec(t, "CREATE TABLE in_ts (x int) TABLESPACE walrus_ts; INSERT INTO in_ts VALUES (1)")
	ts, err = pg.Tablespaces(ctx, conn)
	if err != nil || len(ts) != 1 || ts[0].Name != "walrus_ts" || ts[0].Location != tsDir || ts[0].OID == 0 {
		t.Fatalf("Tablespaces = %+v, %v", ts, err)
	}

	const label = "walrus test backup"
	start, tli, err := pg.BackupStart(ctx, conn, label, true)
	if err != nil {
		t.Fatal(err)
	}
	if tli != 1 || start <= info.CurrentLSN-1 {
		t.Errorf("BackupStart = %s on timeline %d (server was at %s)", start, tli, info.CurrentLSN)
	}
	name, err := pg.WALFileName(ctx, conn, start)
	if err != nil {
		t.Fatal(err)
	}
	if want := pg.SegmentName(tli, pg.SegmentForLSN(start, info.WALSegSize), info.WALSegSize); name != want {
		t.Errorf("WALFileName(%s) = %s, SegmentName gives %s", start, name, want)
	}
	c.Exec(t, "INSERT INTO in_ts VALUES (2)")
	if _, _, err := pg.BackupStart(ctx, conn, "second", true); err == nil {
		t.Error("a second backup on the same session started")
	}

	stop, err := pg.BackupStop(ctx, conn, true)
	if err != nil {
		t.Fatal(err)
	}
	if stop.LSN <= start {
		t.Errorf("stop LSN %s not after start %s", stop.LSN, start)
	}
	bl, err := pg.ParseBackupLabel(stop.Label)
	if err != nil {
		t.Fatalf("%v\n%s", err, stop.Label)
	}
	if bl.StartLSN != start || bl.StartTimeline != tli || bl.Label != label || bl.StartWALFile != name || bl.From != "primary" {
		t.Errorf("backup label %+v, want start %s timeline %d label %q file %s", bl, start, tli, label, name)
	}
	if want := fmt.Sprintf("%d %s", ts[0].OID, tsDir); strings.TrimSpace(stop.TablespaceMap) != want {
		t.Errorf("tablespace map %q, want %q", stop.TablespaceMap, want)
	}
	if _, err := pg.BackupStop(ctx, conn, false); err == nil {
		t.Error("BackupStop without a backup in progress succeeded")
	}

	// pg_backup_stop(true) returned, so the backup history file and the
	// segments up to the stop LSN are archived.
	backupFile := fmt.Sprintf("%s.%08X.backup", name, uint64(start)%info.WALSegSize)
	wf, err := pg.ParseWALFileName(backupFile, info.WALSegSize)
	if err != nil || wf.Kind != pg.BackupFile || wf.StartLSN(info.WALSegSize) != start {
		t.Fatalf("ParseWALFileName(%s) = %+v, %v", backupFile, wf, err)
	}
	if _, err := os.Stat(filepath.Join(archive, backupFile)); err != nil {
		t.Errorf("backup history file not archived: %v", err)
	}

	rp, err := pg.CreateRestorePoint(ctx, conn, "walrus_rp")
	if err != nil || rp <= stop.LSN {
		t.Errorf("CreateRestorePoint = %s, %v (stop LSN %s)", rp, err, stop.LSN)
	}

	switchLSN, seg, err := pg.SwitchWAL(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := pg.ParseWALFileName(seg, info.WALSegSize)
	if err != nil || sf.Kind != pg.SegmentFile || sf.Timeline != 1 || sf.SegNo != pg.SegmentForLSN(switchLSN-1, info.WALSegSize) {
		t.Fatalf("SwitchWAL = %s, %s; parsed %+v, %v", switchLSN, seg, sf, err)
	}
	c.WaitArchived(t, seg, waitLimit)
	h := readSegmentHeader(t, filepath.Join(archive, seg))
	if h.SegNo() != sf.SegNo || h.SystemIdentifier != info.SystemIdentifier || uint64(h.SegSize) != info.WALSegSize || h.Timeline != 1 {
		t.Errorf("archived %s has header %+v", seg, h)
	}
	c.Stop(t)
}

func TestConnectFromEnvironment(t *testing.T) {
	// Not parallel: it sets libpq environment variables.
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	t.Setenv("PGHOST", c.SocketDir())
	t.Setenv("PGPORT", strconv.Itoa(c.Port()))
	t.Setenv("PGUSER", "postgres")
	t.Setenv("PGDATABASE", "template1")
	t.Setenv("PGAPPNAME", "")
	conn, err := pg.Connect(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var db string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != "template1" {
		t.Fatalf("current_database() = %q, %v; want template1 from PGDATABASE", db, err)
	}
}

func TestConnectErrorsHidePassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	for _, dsn := range []string{
		"postgres://walrus:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=5",
		"postgres://walrus:" + secret + "@127.0.0.1:notaport/db",
		"postgres://walrus:" + secret + ":x@127.0.0.1/db",
		"host=127.0.0.1 port=1 user=walrus password=" + secret + " sslmode=disable connect_timeout=5",
		"host=127.0.0.1 port=bad password=" + secret,
		"host=127.0.0.1 password='" + secret,
	} {
		_, err := pg.Connect(t.Context(), dsn)
		if err == nil {
			t.Errorf("Connect(%q) succeeded", dsn)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Connect error shows the password: %v", err)
		}
	}
}

// TestRestoreStartsNewTimeline restores a pg_basebackup of a cluster with
// archived WAL into a new data directory, lets recovery run to the end of
// the archive, and reads the history file of the new timeline it archives.
func TestRestoreStartsNewTimeline(t *testing.T) {
	t.Parallel()
	archive := pgtest.SharedDir(t)
	archiveCmd := "archive_command = 'test ! -f " + archive + "/%f && cp %p " + archive + "/%f'"
	src := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{"archive_mode = on", archiveCmd}})
	src.Start(t)
	src.Exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g")

	target := filepath.Join(pgtest.SharedDir(t), "restore")
	if out, err := pgtest.RunAsPostgres(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(src.Port()),
		"-U", "postgres", "-D", target, "-X", "none", "-c", "fast"); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	src.Exec(t, "INSERT INTO t SELECT g FROM generate_series(501, 700) g")
	last := src.QueryRow(t, "SELECT pg_walfile_name(pg_switch_wal())")
	src.WaitArchived(t, last, waitLimit)
	want := src.TableDigest(t, "t")
	src.Stop(t)

	if err := os.WriteFile(filepath.Join(target, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := pgtest.Attach(t, target, pgtest.Options{Conf: []string{
		"restore_command = 'cp " + archive + "/%f %p'",
	}})
	dst.Start(t)
	dst.WaitPromoted(t, waitLimit)
	if got := dst.TableDigest(t, "t"); got != want {
		t.Fatalf("restored digest %s, source %s", got, want)
	}

	conn, err := pg.Connect(t.Context(), dst.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	info, err := pg.ServerInfo(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if info.Timeline != 2 || info.InRecovery {
		t.Fatalf("restored server: timeline %d, in recovery %v; want 2, false", info.Timeline, info.InRecovery)
	}
	_, seg, err := pg.SwitchWAL(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	dst.WaitArchived(t, seg, waitLimit)

	f, err := os.Open(filepath.Join(archive, pg.HistoryFileName(2)))
	if err != nil {
		t.Fatalf("history file of timeline 2 not archived: %v", err)
	}
	defer f.Close()
	h, err := pg.ReadHistory(2, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != 1 || h.Entries[0].Parent != 1 {
		t.Fatalf("history of timeline 2 = %+v", h)
	}
	sw := h.Entries[0].SwitchLSN
	lastSeg, err := pg.ParseWALFileName(last, info.WALSegSize)
	if err != nil {
		t.Fatal(err)
	}
	// Recovery replayed everything archived, so the switch point is in or
	// after the last archived segment of timeline 1.
	if pg.SegmentForLSN(sw, info.WALSegSize) < lastSeg.SegNo || !h.Contains(1, sw-1) || h.Contains(1, sw) || h.TimelineAt(sw) != 2 {
		t.Errorf("switch point %s (last archived segment of timeline 1: %s); history %+v", sw, last, h)
	}
}
