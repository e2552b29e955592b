package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// repoSnapshot is every file of a filesystem repository with its size and
// modification time.
func repoSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%d %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// walSegNos returns the segment numbers of the stored WAL segments, and of
// the .backup files, of timeline 1.
func walSegNos(t *testing.T, repoDir string) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range storedWAL(t, repoDir) {
		if len(f) < 24 || !segmentName.MatchString(f[:24]) || !strings.HasPrefix(f, "00000001") {
			continue
		}
		w, err := pg.ParseWALFileName(f[:24], 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, w.SegNo)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func segOf(t *testing.T, lsn string) uint64 {
	t.Helper()
	l, err := pg.ParseLSN(lsn)
	if err != nil {
		t.Fatal(err)
	}
	return pg.SegmentForLSN(l, 16<<20)
}

// deletePlan is the part of delete --json the tests read.
type deletePlan struct {
	Rule   string                          `json:"rule"`
	Keep   []struct{ Name, Reason string } `json:"keep"`
	Delete []struct {
		Name    string `json:"name"`
		Objects int    `json:"objects"`
	} `json:"delete"`
	WAL []struct {
		First string `json:"first"`
		Last  string `json:"last"`
		Files int    `json:"files"`
	} `json:"wal"`
	RestorePoints []struct{ Name string } `json:"restore_points"`
	Objects       int                     `json:"objects"`
	Bytes         int64                   `json:"bytes"`
	Confirmed     bool                    `json:"confirmed"`
}

// TestRetention is issue 6's retention journey on a real filesystem
// repository: four full backups with WAL between them, the second marked
// permanent. delete retain 1 without --confirm changes nothing; with it,
// the permanent and the newest backups remain and both restore and start;
// the WAL below what the permanent backup needs is gone, the WAL it needs
// is kept, and so is everything from the newest backup on. A restore
// point between backups is deleted with its WAL.
func TestRetention(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	c.Exec(t, "CREATE TABLE gen (id int, gen int)")
	var names []string
	for i := 1; i <= 4; i++ {
		c.Exec(t, fmt.Sprintf("INSERT INTO gen SELECT g, %d FROM generate_series(1, 1000) g", i))
		names = append(names, strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout))
		archiveOneSegment(t, c)
		if i == 3 {
			mustRun(t, env, "create-restore-point", "between-3-and-4")
			archiveOneSegment(t, c)
		}
	}
	if r := mustRun(t, env, "backup-mark", names[1]); strings.TrimSpace(r.stdout) != names[1] || !strings.Contains(r.stderr, "now permanent") {
		t.Fatalf("backup-mark: %+v", r)
	}
	if r := mustRun(t, env, "backup-mark", names[1]); !strings.Contains(r.stderr, "already permanent") {
		t.Errorf("backup-mark twice: %s", r.stderr)
	}
	bs := listBackups(t, env)
	if len(bs) != 4 || bs[1].Name != names[1] || bs[1].Permanent == nil || !*bs[1].Permanent || *bs[0].Permanent {
		t.Fatalf("backup-list after backup-mark: %+v", bs)
	}
	segsBefore := walSegNos(t, repoDir)

	// The plan changes nothing.
	before := repoSnapshot(t, repoDir)
	plan := mustRun(t, env, "delete", "retain", "1")
	t.Logf("delete retain 1:\n%s%s", plan.stdout, plan.stderr)
	for _, want := range []string{"DELETE  backup " + names[0], "DELETE  backup " + names[2], "keep    backup " + names[1], "keep    backup " + names[3], "DELETE  WAL ", "DELETE  restore point between-3-and-4"} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	if !strings.Contains(plan.stderr, "--confirm") {
		t.Errorf("the plan does not say how to execute it:\n%s", plan.stderr)
	}
	var jp deletePlan
	if err := json.Unmarshal([]byte(mustRun(t, env, "delete", "retain", "1", "--json").stdout), &jp); err != nil {
		t.Fatal(err)
	}
	if len(jp.Delete) != 2 || jp.Delete[0].Name != names[0] || jp.Delete[1].Name != names[2] || len(jp.Keep) != 2 ||
		len(jp.WAL) == 0 || jp.Bytes <= 0 || jp.Confirmed || len(jp.RestorePoints) != 1 {
		t.Fatalf("delete --json: %+v", jp)
	}
	if after := repoSnapshot(t, repoDir); !reflect.DeepEqual(after, before) {
		t.Fatalf("delete without --confirm changed the repository")
	}

	r := mustRun(t, env, "delete", "retain", "1", "--confirm")
	if !strings.Contains(r.stderr, "deleted 2 backup(s)") {
		t.Errorf("delete --confirm:\n%s", r.stderr)
	}
	bs = listBackups(t, env)
	if len(bs) != 2 || bs[0].Name != names[1] || bs[1].Name != names[3] {
		t.Fatalf("backups after delete retain 1: %+v", bs)
	}
	for _, gone := range []string{names[0], names[2]} {
		if _, err := os.Stat(filepath.Join(repoDir, "backups", gone)); !os.IsNotExist(err) {
			t.Errorf("backups/%s is left: %v", gone, err)
		}
	}
	// WAL: below the permanent backup's start gone; its start to finish
	// kept; between it and the newest backup gone; from the newest on kept.
	pStart, pFinish := segOf(t, bs[0].StartLSN), segOf(t, bs[0].FinishLSN)
	nStart := segOf(t, bs[1].StartLSN)
	var want []uint64
	for _, s := range segsBefore {
		if (s >= pStart && s <= pFinish) || s >= nStart {
			want = append(want, s)
		}
	}
	if got := walSegNos(t, repoDir); !reflect.DeepEqual(got, want) {
		t.Fatalf("WAL segments after the delete: %v, want %v (before %v; permanent %d..%d, newest from %d)", got, want, segsBefore, pStart, pFinish, nStart)
	}
	if len(want) >= len(segsBefore) || pStart <= segsBefore[0] {
		t.Fatalf("test setup: nothing below the permanent backup to delete (%v)", segsBefore)
	}
	if out := mustRun(t, env, "restore-point-list").stdout; strings.Contains(out, "between-3-and-4") {
		t.Errorf("the restore point whose WAL is gone is still listed:\n%s", out)
	}
	if r := run(t, env, "wal-verify"); r.code != 0 {
		t.Errorf("wal-verify after the delete: exit %d\n%s", r.code, r.stdout)
	}
	if r := mustRun(t, env, "delete", "retain", "1", "--confirm"); !strings.Contains(r.stderr, "nothing to delete") {
		t.Errorf("a second delete:\n%s\n%s", r.stdout, r.stderr)
	}

	// Both remaining backups restore and start.
	shared := pgtest.SharedDir(t)
	t.Run("restore", func(t *testing.T) {
		for i, tc := range []struct {
			name string
			rows string
		}{{names[1], "2000"}, {names[3], "4000"}} {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				dest := filepath.Join(shared, fmt.Sprintf("restored%d", i))
				mustRun(t, env, "backup-fetch", dest, tc.name, "--target-immediate")
				rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
				rc.Start(t)
				rc.WaitPromoted(t, 120*time.Second)
				if n := rc.QueryRow(t, "SELECT count(*) FROM gen"); n != tc.rows {
					t.Errorf("restored %s: %s rows, want %s", tc.name, n, tc.rows)
				}
				rc.Stop(t)
			})
		}
	})
}
