package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExposedSecretsWarn: a configuration file holding a secret that its
// group or others may read, and such an identity file, get a warning that
// names the file, the secret's key (never its value) and the fix.
func TestExposedSecretsWarn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	identity := filepath.Join(dir, "age.key")
	if err := os.WriteFile(identity, []byte("AGE-SECRET-KEY-1XYZ\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       []string
	}{
		{"secret key, world-readable", "repo: /r\ns3:\n  access_key_id: AK\n  secret_access_key: hunter2\n", 0o644, []string{"s3.secret_access_key", "0644", "chmod 600"}},
		{"password, group-readable", "repo: /r\npostgres:\n  dsn: postgres://u:hunter2@h/db\n", 0o640, []string{"password in postgres.dsn", "0640"}},
		{"secret key, owner only", "repo: /r\ns3:\n  access_key_id: AK\n  secret_access_key: hunter2\n", 0o600, nil},
		{"no secret, world-readable", "repo: /r\ncompression: zstd\n", 0o644, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "walrus.yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p, func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(c.Warnings) != 0 {
					t.Fatalf("warnings %q, want none", c.Warnings)
				}
				return
			}
			if len(c.Warnings) != 1 {
				t.Fatalf("warnings %q, want one", c.Warnings)
			}
			w := c.Warnings[0]
			for _, s := range append(tc.want, p) {
				if !strings.Contains(w, s) {
					t.Errorf("warning %q does not name %q", w, s)
				}
			}
			if strings.Contains(w, "hunter2") {
				t.Errorf("warning %q prints the secret", w)
			}
		})
	}
	t.Run("identity file", func(t *testing.T) {
		if err := os.Chmod(identity, 0o644); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"WALRUS_REPO": "/r", "WALRUS_AGE_IDENTITY_FILE": identity}
		c, err := Load("", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], identity) || strings.Contains(c.Warnings[0], "AGE-SECRET") {
			t.Fatalf("warnings %q, want one naming %s", c.Warnings, identity)
		}
	})
}
