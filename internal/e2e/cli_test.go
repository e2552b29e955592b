package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygen: the identity is written 0600, never overwritten, and the
// printed recipient encrypts for it.
func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "age.key")
	r := mustRun(t, nil, "keygen", "--output", key)
	rcpt := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(rcpt, "age1") || strings.Contains(r.stdout, "AGE-SECRET-KEY") {
		t.Fatalf("stdout %q", r.stdout)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	before, _ := os.ReadFile(key)
	r = run(t, nil, "keygen", "--output", key)
	if r.code == 0 || !strings.Contains(r.stderr, key) {
		t.Fatalf("overwrite: exit %d stderr %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(key)
	if string(before) != string(after) {
		t.Fatal("existing identity was changed")
	}
	if r := run(t, nil, "keygen"); r.code != 2 || !strings.Contains(r.stderr, "--output") {
		t.Fatalf("missing --output: exit %d stderr %s", r.code, r.stderr)
	}
}

// TestConfigShowMasksSecrets: config show prints the effective values with
// secrets masked, and config errors name the key.
func TestConfigShowMasksSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "walrus.yaml")
	os.WriteFile(cfg, []byte("repo: s3://bucket/prefix\ncompression: zstd\ns3:\n  access_key_id: AKIAEXAMPLE\n  secret_access_key: s3cr3t-value-xyz\npostgres:\n  dsn: postgres://backup:pgpass-abc@db/postgres\n"), 0o600)
	r := mustRun(t, []string{"WALRUS_COMPRESSION=brotli"}, "--config", cfg, "config", "show")
	for _, secret := range []string{"s3cr3t-value-xyz", "pgpass-abc"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("secret %q printed:\n%s", secret, r.stdout)
		}
	}
	for _, want := range []string{"compression:", "brotli", "AKIAEXAMPLE", "***"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	os.WriteFile(cfg, []byte("repo: /r\ncompresion: zstd\n"), 0o600)
	r = run(t, nil, "--config", cfg, "config", "show")
	if r.code == 0 || !strings.Contains(r.stderr, `"compresion"`) {
		t.Fatalf("unknown key: exit %d stderr %s", r.code, r.stderr)
	}
	r = run(t, []string{"WALRUS_REPO=/r", "WALRUS_COMPRESSION=gzip"}, "config", "show")
	if r.code == 0 || !strings.Contains(r.stderr, "WALRUS_COMPRESSION") {
		t.Fatalf("bad env value: exit %d stderr %s", r.code, r.stderr)
	}
}
