package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
)

// secretSet is the secrets a test configured, by what they are.
type secretSet map[string]string

// leaks fails the test for every secret that text (from where) holds.
func (s secretSet) leaks(t *testing.T, where, text string) {
	t.Helper()
	for what, v := range s {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s prints the %s", where, what)
		}
	}
}

func randomWord(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var commandLine = regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)\s`)

// TestSecretsNeverPrinted runs every command, as an operator would, with
// secrets configured: an S3 secret key, a DSN with a password (the test
// cluster trusts local connections, so the server ignores it, but walrus
// must never print it), and an age identity. setup writes them into the
// configuration file from the environment; every later command reads that
// file. Nothing any command prints, on success or failure, nor the server
// logs (archive_command and restore_command write there), nor the objects
// in the repository, holds a secret. The configuration and identity files
// are owner-only, and a configuration file made readable by others gets a
// warning; restored files and a filesystem repository are owner-only.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	shared := pgtest.SharedDir(t)
	cfg := filepath.Join(shared, "walrus.yaml")
	password := randomWord("pw")
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	dsn := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, c.Port())
	secrets := secretSet{"S3 secret key": srv.SecretKey, "DSN password": password}
	var outputs []string
	do := func(env []string, wantOK bool, args ...string) result {
		t.Helper()
		r := run(t, env, args...)
		if wantOK && r.code != 0 {
			t.Errorf("walrus %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		outputs = append(outputs, "walrus "+strings.Join(args, " ")+"\n"+r.stdout+r.stderr)
		return r
	}
	withCfg := func(args ...string) []string { return append([]string{"--config", cfg}, args...) }

	// setup takes the secrets from the environment into a new file.
	setupEnv := []string{
		"WALRUS_S3_ENDPOINT=" + srv.Endpoint, "WALRUS_S3_REGION=" + srv.Region, "WALRUS_S3_FORCE_PATH_STYLE=true",
		"WALRUS_S3_ACCESS_KEY_ID=" + srv.AccessKey, "WALRUS_S3_SECRET_ACCESS_KEY=" + srv.SecretKey,
		"WALRUS_POSTGRES_DSN=" + dsn, "WALRUS_COMPRESSION=zstd",
	}
	do(setupEnv, true, withCfg("setup", "--pgdata", c.DataDir(), "--repo", "s3://"+bucket+"/repo", "--encrypt")...)
	assertPostgresOwned(t, cfg, 0o600)
	keys, _ := filepath.Glob(filepath.Join(shared, "*.age.key"))
	if len(keys) != 1 {
		t.Fatalf("setup --encrypt made identity files %v, want one", keys)
	}
	assertPostgresOwned(t, keys[0], 0o600)
	for _, l := range strings.Split(readFile(t, keys[0]), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			secrets["age identity"] = l
		}
	}
	if secrets["age identity"] == "" {
		t.Fatalf("no AGE-SECRET-KEY line in %s", keys[0])
	}
	if text := readFile(t, cfg); !strings.Contains(text, srv.SecretKey) || !strings.Contains(text, password) {
		t.Fatalf("setup did not write the secrets of the environment into %s", cfg)
	}
	c.Restart(t) // archive_mode
	c.Exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	seg := archiveOneSegment(t, c)

	// Every command, with the file alone.
	other := filepath.Join(shared, "other.key")
	do(nil, true, "keygen", "--output", other)
	for _, l := range strings.Split(readFile(t, other), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			secrets["new age identity"] = l
		}
	}
	do(nil, true, withCfg("config", "show")...)
	do(nil, true, withCfg("setup", "--pgdata", c.DataDir())...)
	segCopy := filepath.Join(t.TempDir(), seg)
	copyFile(t, filepath.Join(c.DataDir(), "pg_wal", seg), segCopy)
	do(nil, true, withCfg("wal-push", segCopy)...)
	do(nil, true, withCfg("wal-fetch", seg, filepath.Join(t.TempDir(), "RECOVERYXLOG"))...)
	do(nil, false, withCfg("wal-fetch", "0000000100000000000000FE", filepath.Join(t.TempDir(), "RECOVERYXLOG"))...)
	do(nil, true, withCfg("--verbose", "backup-push", c.DataDir())...)
	c.Exec(t, "INSERT INTO t VALUES (0, 'after the backup')")
	do(nil, true, withCfg("create-restore-point", "rp1")...)
	for _, args := range [][]string{
		{"backup-list"}, {"backup-list", "--json"}, {"backup-list", "--detail"},
		{"restore-point-list"}, {"restore-point-list", "--json"},
		{"wal-verify"}, {"wal-verify", "--json"},
		{"check", "--timeout", "1m"},
	} {
		do(nil, true, withCfg(args...)...)
	}
	dest := filepath.Join(shared, "restored")
	do(nil, true, withCfg("backup-fetch", dest, "--restore-point", "rp1")...)
	ownerOnly(t, dest)
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 2*time.Minute)
	rc.Stop(t)

	// --help of every command.
	help := do(nil, true, "--help")
	cmds := []string{}
	for _, m := range commandLine.FindAllStringSubmatch(help.stdout[strings.Index(help.stdout, "Available Commands"):], -1) {
		cmds = append(cmds, m[1])
	}
	if len(cmds) < 12 {
		t.Fatalf("walrus --help lists %v", cmds)
	}
	for _, cmd := range append(cmds, "config show") {
		do(nil, true, withCfg(append(strings.Fields(cmd), "--help")...)...)
	}

	// Failures: a wrong secret key, an unreachable server, a DSN that
	// does not parse; and secrets given in the environment.
	wrong := randomWord("wrong")
	secrets["wrong S3 secret key"] = wrong
	do([]string{"WALRUS_S3_SECRET_ACCESS_KEY=" + wrong}, false, withCfg("backup-list")...)
	do([]string{"WALRUS_S3_SECRET_ACCESS_KEY=" + wrong}, false, withCfg("wal-push", segCopy)...)
	do([]string{"WALRUS_POSTGRES_DSN=" + strings.Replace(dsn, fmt.Sprint(c.Port()), "1", 1)}, false, withCfg("backup-push", c.DataDir())...)
	do([]string{"WALRUS_POSTGRES_DSN=" + strings.Replace(dsn, fmt.Sprint(c.Port()), "99999999", 1)}, false, withCfg("create-restore-point", "rp2")...)
	kv := fmt.Sprintf("host=127.0.0.1 port=1 user=postgres password=%s dbname=postgres", password)
	do([]string{"WALRUS_POSTGRES_DSN=" + kv}, false, withCfg("check", "--timeout", "5s")...)
	do([]string{"WALRUS_POSTGRES_DSN=" + kv}, true, withCfg("config", "show")...)
	envDest := filepath.Join(shared, "restored-env")
	do(append(setupEnv, "WALRUS_REPO=s3://"+bucket+"/repo", "WALRUS_AGE_IDENTITY_FILE="+keys[0]), true, "backup-fetch", envDest, "--target-immediate")
	// That restore's restore_command reads the settings from a file in
	// the restored directory: it holds the secret key by design, for the
	// owner alone.
	if fi, err := os.Stat(filepath.Join(envDest, "walrus-restore.yaml")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("walrus-restore.yaml: %v, want mode 0600", err)
	}
	ownerOnly(t, envDest)

	// A filesystem repository is owner-only, whatever the umask.
	repoDir := filepath.Join(shared, "fsrepo")
	do([]string{"WALRUS_REPO=file://" + repoDir}, true, withCfg("wal-push", segCopy)...)
	ownerOnly(t, repoDir)

	// The configuration file made readable by others: a warning.
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	r := do(nil, true, withCfg("config", "show")...)
	if !strings.Contains(r.stderr, "WARNING") || !strings.Contains(r.stderr, cfg) || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("config show with a world-readable configuration holding secrets gives no warning:\n%s", r.stderr)
	}
	r = do(nil, false, withCfg("check", "--timeout", "1m")...)
	if !strings.Contains(r.stdout, "chmod 600 "+cfg) {
		t.Errorf("check does not warn about the world-readable configuration:\n%s", r.stdout)
	}
	os.Chmod(cfg, 0o600)

	// Nothing printed, logged or stored holds a secret.
	for _, o := range outputs {
		secrets.leaks(t, strings.SplitN(o, "\n", 2)[0], o)
	}
	for _, l := range []struct{ what, path string }{{"the server log", c.LogFile()}, {"the restored server's log", rc.LogFile()}} {
		secrets.leaks(t, l.what, readFile(t, l.path))
	}
	filepath.WalkDir(shared, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			secrets.leaks(t, p, readFile(t, p))
		}
		return nil
	})
	n := 0
	filepath.WalkDir(srv.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			secrets.leaks(t, "the stored object "+p, readFile(t, p))
			n++
		}
		return nil
	})
	if n < 5 {
		t.Errorf("only %d objects in the repository", n)
	}
}

// ownerOnly checks that no file or directory under root (symbolic links
// aside) grants any permission to its group or others.
func ownerOnly(t *testing.T, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o: others than its owner may use it", p, fi.Mode().Perm())
		}
		n++
		return nil
	})
	if err != nil || n < 2 {
		t.Errorf("walk %s: %v (%d entries)", root, err, n)
	}
}
