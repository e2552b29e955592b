package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigShowJSON reads config show --json as a script would: every
// setting with the value walrus uses, the environment overriding the
// file, and no secret in the output.
func TestConfigShowJSON(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "walrus.yaml")
	yaml := "repo: " + filepath.Join(dir, "repo") + "\ncompression: zstd\n" +
		"s3:\n  access_key_id: AKIAFILE\n  secret_access_key: file-secret-value\n" +
		"postgres:\n  dsn: \"host=db user=backup password=dsn-secret-value\"\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WALRUS_COMPRESSION", "lz4")

	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout, &stderr)
	root.SetArgs([]string{"--config", cfg, "config", "show", "--json"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("config show --json: %v (stderr %s)", err, stderr.String())
	}
	for _, secret := range []string{"file-secret-value", "dsn-secret-value"} {
		if strings.Contains(stdout.String(), secret) {
			t.Fatalf("config show --json printed the secret %q:\n%s", secret, stdout.String())
		}
	}
	var out struct {
		Source   string `json:"source"`
		Settings []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
			Env   string `json:"env"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("config show --json is not JSON: %v\n%s", err, stdout.String())
	}
	if out.Source != cfg {
		t.Errorf("source = %q, want %q", out.Source, cfg)
	}
	got := map[string]string{}
	env := map[string]string{}
	for _, s := range out.Settings {
		got[s.Key] = s.Value
		env[s.Key] = s.Env
	}
	want := map[string]string{
		"repo":                 filepath.Join(dir, "repo"),
		"compression":          "lz4", // the environment wins over the file
		"s3.access_key_id":     "AKIAFILE",
		"s3.secret_access_key": "***",
		"postgres.dsn":         "host=db user=backup password=***",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("setting %s = %q, want %q", k, got[k], v)
		}
	}
	if env["compression"] != "WALRUS_COMPRESSION" {
		t.Errorf("env of compression = %q, want WALRUS_COMPRESSION", env["compression"])
	}
	// The text form lists the same keys.
	stdout.Reset()
	root = newRootCmd(&stdout, &stderr)
	root.SetArgs([]string{"--config", cfg, "config", "show"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("config show: %v", err)
	}
	for _, s := range out.Settings {
		if !strings.Contains(stdout.String(), s.Key+":") {
			t.Errorf("config show lacks %s, which --json lists", s.Key)
		}
	}
}
