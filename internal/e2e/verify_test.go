package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// backupVerifyReport is the part of backup-verify --json the tests read.
type backupVerifyReport struct {
	OK      bool `json:"ok"`
	Backups []struct {
		Name     string   `json:"name"`
		OK       bool     `json:"ok"`
		Chain    []string `json:"chain"`
		Parts    int      `json:"parts"`
		Files    int      `json:"files"`
		FirstWAL string   `json:"first_wal"`
		Problems []struct {
			Backup  string `json:"backup"`
			Object  string `json:"object"`
			Part    string `json:"part"`
			File    string `json:"file"`
			WALFile string `json:"wal_file"`
			Message string `json:"message"`
		} `json:"problems"`
	} `json:"backups"`
}

func backupVerify(t *testing.T, env []string, args ...string) (backupVerifyReport, result) {
	t.Helper()
	r := run(t, env, append([]string{"backup-verify", "--json"}, args...)...)
	var rep backupVerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("backup-verify --json (exit %d): %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if rep.OK != (r.code == 0) {
		t.Fatalf("backup-verify: ok %v but exit %d", rep.OK, r.code)
	}
	return rep, r
}

// TestBackupVerify: a full backup and a delta of a real cluster verify
// clean; one flipped byte in any part of either, a removed part, and a
// missing WAL segment each make backup-verify of the delta fail, naming
// the part (and its backup) or the segment.
func TestBackupVerify(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN(), "WALRUS_PART_SIZE=8MiB")
	c.Exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g")
	full := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)
	c.Exec(t, "UPDATE t SET v = 'changed' WHERE id % 500 = 0")
	delta := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	archiveOneSegment(t, c)

	rep, r := backupVerify(t, env, "--all")
	if !rep.OK || len(rep.Backups) != 2 || rep.Backups[1].Name != delta || len(rep.Backups[1].Chain) != 2 || rep.Backups[1].Chain[1] != full {
		t.Fatalf("backup-verify --all: %+v\n%s", rep, r.stderr)
	}
	if out := mustRun(t, env, "backup-verify", "LATEST").stdout; !strings.Contains(out, "backup "+delta) || !strings.Contains(out, ": OK:") {
		t.Fatalf("backup-verify LATEST:\n%s", out)
	}

	// One flipped byte in each part in turn.
	for _, name := range []string{full, delta} {
		parts, _ := filepath.Glob(filepath.Join(repoDir, "backups", name, "parts", "part_*"))
		if len(parts) == 0 {
			t.Fatalf("backup %s has no parts", name)
		}
		for _, p := range parts {
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b := append([]byte(nil), orig...)
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			part := strings.SplitN(filepath.Base(p), ".", 3)[0] + ".tar"
			rep, r := backupVerify(t, env, delta)
			found := false
			for _, pr := range rep.Backups[0].Problems {
				found = found || (pr.Backup == name && pr.Part == part && strings.HasSuffix(p, pr.Object))
			}
			if rep.OK || !found {
				t.Fatalf("a flipped byte in %s: %+v\n%s", p, rep, r.stderr)
			}
			if name == full && p == parts[0] {
				text := run(t, env, "backup-verify", delta)
				t.Logf("backup-verify with a flipped byte:\n%s%s", text.stdout, text.stderr)
				if text.code != 1 || !strings.Contains(text.stdout, "PROBLEM backup "+name+", part "+part) || !strings.Contains(text.stderr, "cannot be restored") {
					t.Fatalf("backup-verify, flipped byte in %s: exit %d\n%s\n%s", p, text.code, text.stdout, text.stderr)
				}
			}
			if err := os.WriteFile(p, orig, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A removed part.
	parts, _ := filepath.Glob(filepath.Join(repoDir, "backups", full, "parts", "part_*"))
	victim := parts[0]
	if err := os.Rename(victim, victim+"-away"); err != nil {
		t.Fatal(err)
	}
	rep, _ = backupVerify(t, env, delta)
	if rep.OK || len(rep.Backups[0].Problems) != 1 || !strings.Contains(rep.Backups[0].Problems[0].Message, "missing") ||
		!strings.HasSuffix(victim, rep.Backups[0].Problems[0].Object) {
		t.Fatalf("removed part %s: %+v", victim, rep)
	}
	if err := os.Rename(victim+"-away", victim); err != nil {
		t.Fatal(err)
	}

	// A missing WAL segment the delta needs to become consistent.
	first := rep.Backups[0].FirstWAL
	removeWAL(t, repoDir, first)
	rep, _ = backupVerify(t, env, delta)
	if rep.OK || len(rep.Backups[0].Problems) != 1 || rep.Backups[0].Problems[0].WALFile != first {
		t.Fatalf("missing WAL %s: %+v", first, rep)
	}
	if rep, _ := backupVerify(t, env, full); !rep.OK {
		t.Fatalf("the full backup does not need %s: %+v", first, rep)
	}
}
