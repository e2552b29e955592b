package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
	"github.com/walrusdb/walrus/pg"
)

// walrusProc27 is a walrus command running in the background.
type walrusProc27 struct {
	cmd    *exec.Cmd
	so, se bytes.Buffer
	done   chan struct{}
	code   int
}

// startWalrusProc27 starts walrus with args and env (added to the same minimal
// environment as run). Cleanup kills it if it is still running, stopped
// or not.
func startWalrusProc27(t *testing.T, env []string, args ...string) *walrusProc27 {
	t.Helper()
	p := &walrusProc27{done: make(chan struct{})}
	p.cmd = exec.Command(testbin.Walrus(t), args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.so, &p.se
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start walrus %v: %v", args, err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *walrusProc27) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var restorePointRecord27 = regexp.MustCompile(`lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F/]+, desc: RESTORE_POINT (\S+)`)

// TestTrap27ConcurrentSameNameRestoresToRecordedPoint is TRAPS.md 27 with
// two create-restore-point runs of one name at once, on the filesystem
// repository. Backup B1; batch A; run L of "dup" calls
// pg_create_restore_point and switches WAL, but archiving is held so it
// cannot record, and it is then frozen (SIGSTOP); batch B; archiving
// resumes; run W of "dup" passes the existence check (nothing is recorded
// yet), creates its restore point after batch B, and records it; L is
// thawed and finds the record there. So WAL holds two RESTORE_POINT
// records of "dup", the loser's first, before batch B: recovery by name
// would stop there. Asserted: W succeeds; L fails with an error naming
// "dup" and saying it already exists; restore-points/ holds exactly one
// record, dup.json, with W's LSN (restore-point-list agrees); WAL holds
// the two records, the first one before W's LSN; and backup-fetch
// --restore-point dup, which stops at the recorded LSN, restores batches A
// and B (W's point), not just A (the first record of the name), nor batch
// C written after W.
func TestTrap27ConcurrentSameNameRestoresToRecordedPoint(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	dir := pgtest.SharedDir(t)
	hold := filepath.Join(dir, "hold-archiving")
	held := filepath.Join(dir, "held-segment")

	// archive_command: while the hold file exists, note the segment and
	// wait; then archive through walrus.
	c, _ := archivingClusterWith(t, repoEnv, fmt.Sprintf("if [ -e '%s' ]; then basename \"$2\" > '%s'; fi\nwhile [ -e '%s' ]; do sleep 0.1; done\n", hold, held, hold))
	t.Cleanup(func() { os.Remove(hold) }) // before the cluster stops
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())

	c.Exec(t, "CREATE TABLE journal (batch text, n int)")
	insert := func(batch string) {
		c.Exec(t, fmt.Sprintf("INSERT INTO journal SELECT '%s', g FROM generate_series(1, 1000) g", batch))
	}
	b1 := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	insert("A")
	walStart := c.QueryRow(t, "SELECT pg_current_wal_lsn()::text")

	// The loser: its restore point goes into WAL, its segment is held.
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	loser := startWalrusProc27(t, env, "create-restore-point", "dup")
	deadline := time.Now().Add(2 * time.Minute) // a hang, not a speed limit
	for {
		if b, err := os.ReadFile(held); err == nil && len(bytes.TrimSpace(b)) > 0 {
			break
		}
		if loser.exited() {
			t.Fatalf("create-restore-point (loser) exited %d while archiving was held:\n%s%s", loser.code, loser.so.String(), loser.se.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the loser's WAL segment never reached archive_command\n%s", c.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := loser.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	// The winner, after batch B.
	insert("B")
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	w := mustRun(t, env, "create-restore-point", "dup")
	winLSN := strings.TrimSpace(w.stdout)
	win, err := pg.ParseLSN(winLSN)
	if err != nil {
		t.Fatalf("create-restore-point printed %q: %v", w.stdout, err)
	}

	if err := loser.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-loser.done:
	case <-time.After(2 * time.Minute): // a hang, not a speed limit
		t.Fatal("the loser did not finish once thawed")
	}
	t.Logf("loser: exit %d: %s", loser.code, strings.TrimSpace(loser.se.String()))
	if loser.code == 0 {
		t.Errorf("both create-restore-point runs of dup succeeded; the loser printed %q", loser.so.String())
	} else if msg := loser.se.String(); !strings.Contains(msg, `"dup"`) || !strings.Contains(msg, "already exists") {
		t.Errorf("the loser exited %d with an unclear error (want the name and \"already exists\"):\n%s", loser.code, msg)
	}

	// The repository holds exactly the winner's record.
	entries, err := os.ReadDir(filepath.Join(repoDir, "restore-points"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "dup.json" {
		t.Errorf("restore-points/ holds %v, want only dup.json", names)
	}
	var list struct {
		RestorePoints []struct {
			Name string `json:"name"`
			LSN  string `json:"lsn"`
		} `json:"restore_points"`
	}
	out := mustRun(t, env, "restore-point-list", "--json").stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("restore-point-list --json: %v\n%s", err, out)
	}
	if len(list.RestorePoints) != 1 || list.RestorePoints[0].Name != "dup" || list.RestorePoints[0].LSN != winLSN {
		t.Errorf("restore-point-list --json: %s, want only dup at the winner's %s", out, winLSN)
	}

	// Batch C after the winner's point, archived.
	insert("C")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	walEnd := c.QueryRow(t, "SELECT pg_current_wal_flush_lsn()::text")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 60*time.Second)

	// WAL holds both records of dup, the loser's first, before the winner.
	dump, err := pgtest.RunAsPostgres(t, "pg_waldump", "-p", filepath.Join(c.DataDir(), "pg_wal"), "-r", "XLOG", "-s", walStart, "-e", walEnd)
	if err != nil {
		t.Fatalf("pg_waldump: %v\n%s", err, dump)
	}
	var dups []pg.LSN
	for _, m := range restorePointRecord27.FindAllStringSubmatch(string(dump), -1) {
		if m[2] == "dup" {
			l, err := pg.ParseLSN(m[1])
			if err != nil {
				t.Fatal(err)
			}
			dups = append(dups, l)
		}
	}
	if len(dups) != 2 || dups[0] >= dups[1] || dups[1] >= win {
		t.Fatalf("RESTORE_POINT records of dup at %v, want two, both before the winner's end %s: the race did not happen as staged\n%s", dups, winLSN, dump)
	}

	t.Logf("RESTORE_POINT records of dup at %v; recorded (winner) %s", dups, winLSN)

	// A restore to dup stops at the winner's point: batches A and B.
	dest := filepath.Join(dir, "restore")
	r := mustRun(t, repoEnv, "backup-fetch", dest, "--restore-point", "dup")
	if !strings.Contains(r.stdout+r.stderr, b1) {
		t.Errorf("backup-fetch did not say it chose %s:\n%s%s", b1, r.stdout, r.stderr)
	}
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 120*time.Second)
	var got []string
	for _, row := range rc.Query(t, "SELECT batch || ':' || count(*) FROM journal GROUP BY batch ORDER BY batch") {
		got = append(got, row[0])
	}
	rc.Stop(t)
	if g := strings.Join(got, ","); g != "A:1000,B:1000" {
		t.Errorf("restore to dup gave %s, want A:1000,B:1000 (the winner's point; A:1000 alone is the loser's earlier record)", g)
	}
}
