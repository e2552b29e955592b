package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "walrus.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"WALRUS_REPO": "/var/lib/walrus"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Compression != "lz4" || c.DeltaMaxSteps != DefaultDeltaMaxSteps || c.PartSize != DefaultPartSize {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedenceEnvOverFile(t *testing.T) {
	t.Parallel()
	p := writeFile(t, `
repo: s3://bucket/prefix
compression: zstd
compression_level: 3
encryption:
  recipients: [age1fromfile]
s3:
  region: eu-west-1
  force_path_style: true
`)
	c, err := Load(p, env(map[string]string{
		"WALRUS_COMPRESSION":    "brotli",
		"WALRUS_AGE_RECIPIENTS": "age1a, age1b",
		"WALRUS_S3_REGION":      "us-east-2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != "s3://bucket/prefix" || c.Compression != "brotli" || c.CompressionLevel != 3 {
		t.Errorf("got repo=%s compression=%s level=%d", c.Repo, c.Compression, c.CompressionLevel)
	}
	if strings.Join(c.Encryption.Recipients, "|") != "age1a|age1b" {
		t.Errorf("recipients %v", c.Encryption.Recipients)
	}
	if c.S3.Region != "us-east-2" || !c.S3.ForcePathStyle {
		t.Errorf("s3 %+v", c.S3)
	}
	if c.Source != p {
		t.Errorf("source %q", c.Source)
	}
}

func TestConfigFromWALRUSCONFIG(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "repo: /from/file\n")
	c, err := Load("", env(map[string]string{"WALRUS_CONFIG": p}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != "/from/file" {
		t.Fatalf("repo %q", c.Repo)
	}
}

func TestPGDATAFallback(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"WALRUS_REPO": "/r", "PGDATA": "/data"}))
	if err != nil || c.PGData != "/data" {
		t.Fatalf("pgdata %q err %v", c.PGData, err)
	}
	c, err = Load("", env(map[string]string{"WALRUS_REPO": "/r", "PGDATA": "/data", "WALRUS_PGDATA": "/w"}))
	if err != nil || c.PGData != "/w" {
		t.Fatalf("pgdata %q err %v", c.PGData, err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		file string
		env  map[string]string
		want []string
	}{
		{"missing repo", "", nil, []string{"repo", "WALRUS_REPO", "missing"}},
		{"relative repo", "repo: relative/dir\n", nil, []string{"repo", "relative/dir"}},
		{"unknown top key", "repo: /r\ncompresion: lz4\n", nil, []string{`unknown key "compresion"`}},
		{"unknown nested key", "repo: /r\ns3:\n  regoin: x\n", nil, []string{`unknown key "s3.regoin"`}},
		{"bad codec", "repo: /r\ncompression: gzip\n", nil, []string{"compression", "gzip", "lz4"}},
		{"bad codec env", "", map[string]string{"WALRUS_REPO": "/r", "WALRUS_COMPRESSION": "snappy"}, []string{"WALRUS_COMPRESSION", "snappy"}},
		{"bad level env", "", map[string]string{"WALRUS_REPO": "/r", "WALRUS_COMPRESSION_LEVEL": "fast"}, []string{"compression_level", "WALRUS_COMPRESSION_LEVEL", "integer"}},
		{"bad bool", "", map[string]string{"WALRUS_REPO": "/r", "WALRUS_S3_FORCE_PATH_STYLE": "maybe"}, []string{"s3.force_path_style", "maybe"}},
		{"bad recipient", "repo: /r\nencryption:\n  recipients: [ssh-rsa AAA]\n", nil, []string{"encryption.recipients", "ssh-rsa AAA", "keygen"}},
		{"relative identity", "repo: /r\nencryption:\n  identity_file: key.txt\n", nil, []string{"encryption.identity_file", "absolute"}},
		{"bad endpoint", "repo: s3://b/p\ns3:\n  endpoint: localhost:9000\n", nil, []string{"s3.endpoint", "http"}},
		{"half credentials", "repo: s3://b/p\ns3:\n  access_key_id: AKIA\n", nil, []string{"s3.secret_access_key"}},
		{"creds in url", "repo: s3://user:pw@b/p\n", nil, []string{"repo", "credentials"}},
		{"negative steps", "repo: /r\ndelta_max_steps: -1\n", nil, []string{"delta_max_steps"}},
		{"type mismatch", "repo: /r\nupload_concurrency: many\n", nil, []string{"many"}},
		{"small s3 part", "repo: s3://b/p\ns3:\n  part_size: 1024\n", nil, []string{"s3.part_size", "5 MiB"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			_, err := Load(path, env(tc.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load("/nonexistent/walrus.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/walrus.yaml") {
		t.Fatalf("err %v", err)
	}
}

func TestRedactedMasksSecrets(t *testing.T) {
	t.Parallel()
	p := writeFile(t, `
repo: s3://bucket/p
s3:
  access_key_id: AKIAEXAMPLE
  secret_access_key: verysecretvalue123
postgres:
  dsn: "host=db user=backup password=hunter2pass dbname=postgres"
`)
	c, err := Load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	out := c.Redacted()
	for _, s := range []string{"verysecretvalue123", "hunter2pass"} {
		if strings.Contains(out, s) {
			t.Errorf("secret %q printed:\n%s", s, out)
		}
	}
	for _, s := range []string{"AKIAEXAMPLE", "s3.secret_access_key:", "***", "WALRUS_REPO", "password=***"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if len(c.Secrets()) != 2 {
		t.Errorf("Secrets() = %d values", len(c.Secrets()))
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:pw123@h:5432/db":     "postgres://u:%2A%2A%2A@h:5432/db",
		"postgres://u@h/db?password=pw123": "postgres://u@h/db?password=%2A%2A%2A",
		"host=h password='p w123' user=u":  "host=h password=*** user=u",
		"host=h user=u":                    "host=h user=u",
	} {
		got := RedactDSN(in)
		if strings.Contains(got, "pw123") || strings.Contains(got, "w123") {
			t.Errorf("RedactDSN(%q) = %q leaks", in, got)
		}
		_ = want
	}
}
