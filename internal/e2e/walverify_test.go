package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// walVerifyReport is the part of wal-verify --json the tests read.
type walVerifyReport struct {
	OK            bool     `json:"ok"`
	Missing       []string `json:"missing"`
	BrokenBackups []struct {
		Name    string   `json:"name"`
		Missing []string `json:"missing"`
	} `json:"broken_backups"`
	Range struct {
		StartBackup  string `json:"start_backup"`
		FirstSegment string `json:"first_segment"`
		LastSegment  string `json:"last_segment"`
		Segments     int    `json:"segments"`
	} `json:"range"`
	Timelines []struct {
		Timeline int `json:"timeline"`
	} `json:"timelines"`
}

func walVerify(t *testing.T, env []string) (walVerifyReport, result) {
	t.Helper()
	r := run(t, env, "wal-verify", "--json")
	var rep walVerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("wal-verify --json (exit %d): %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if rep.OK != (r.code == 0) {
		t.Fatalf("wal-verify: ok %v but exit %d", rep.OK, r.code)
	}
	return rep, r
}

// removeWAL deletes the stored object of WAL file name from a filesystem
// repository.
func removeWAL(t *testing.T, repoDir, name string) {
	t.Helper()
	for _, f := range storedWAL(t, repoDir) {
		// name.<codec>[.age]; not name.<offset>.backup.<codec>.
		base := strings.TrimSuffix(f, ".age")
		if i := strings.LastIndexByte(base, '.'); i >= 0 && base[:i] == name {
			if err := os.Remove(filepath.Join(repoDir, "wal", f)); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s is not in the repository", name)
}

// TestWALVerify: a real archive is complete; a segment removed from its
// middle is named, exactly; once a backup exists, the check starts at
// the backup, and a backup whose WAL is gone is named as broken.
func TestWALVerify(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	for range 5 {
		archiveOneSegment(t, c)
	}
	rep, r := walVerify(t, repoEnv)
	if !rep.OK || rep.Range.Segments < 5 || rep.Range.StartBackup != "" || len(rep.Timelines) != 1 {
		t.Fatalf("complete archive: %+v\n%s", rep, r.stdout)
	}
	if r := mustRun(t, repoEnv, "wal-verify"); !strings.Contains(r.stdout, "OK: the archive is complete") {
		t.Fatalf("wal-verify:\n%s", r.stdout)
	}

	var segs []string
	for _, f := range storedWAL(t, repoDir) {
		if name, _, _ := strings.Cut(f, "."); segmentName.MatchString(name) {
			segs = append(segs, name)
		}
	}
	sort.Strings(segs)
	victim := segs[len(segs)/2]
	removeWAL(t, repoDir, victim)
	rep, _ = walVerify(t, repoEnv)
	if rep.OK || !reflect.DeepEqual(rep.Missing, []string{victim}) {
		t.Fatalf("after removing %s: missing %v", victim, rep.Missing)
	}
	r = run(t, repoEnv, "wal-verify")
	if r.code != 1 || strings.Count(r.stdout, "MISSING ") != 1 || !strings.Contains(r.stdout, "MISSING "+victim+"\n") {
		t.Fatalf("wal-verify: exit %d\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "1 WAL file(s) missing") {
		t.Errorf("stderr: %s", r.stderr)
	}

	// A backup taken after the gap: restores from it do not need the gap.
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	name := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	archiveOneSegment(t, c)
	rep, r = walVerify(t, repoEnv)
	if !rep.OK || rep.Range.StartBackup != name {
		t.Fatalf("after backup %s: %+v\n%s", name, rep, r.stdout)
	}
	t.Logf("after backup %s:\n%s", name, mustRun(t, repoEnv, "wal-verify").stdout)

	// Its first WAL segment gone: the backup cannot become consistent.
	first := rep.Range.FirstSegment
	removeWAL(t, repoDir, first)
	rep, _ = walVerify(t, repoEnv)
	if rep.OK || !reflect.DeepEqual(rep.Missing, []string{first}) || len(rep.BrokenBackups) != 1 ||
		rep.BrokenBackups[0].Name != name || !reflect.DeepEqual(rep.BrokenBackups[0].Missing, []string{first}) {
		t.Fatalf("after removing %s: %+v", first, rep)
	}
}
