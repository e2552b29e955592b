package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a configuration file. Load must
// never panic or hang; what it accepts must be valid, and secrets must
// stay masked in config show.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"repo: /var/lib/walrus\n",
		`repo: s3://bucket/prefix
compression: zstd
compression_level: 3
encryption:
  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
  identity_file: /etc/walrus/age.key
s3:
  endpoint: https://s3.example.com:9000
  region: eu-west-1
  force_path_style: true
  access_key_id: AKIAEXAMPLE
  secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  part_size: 16777216
  concurrency: 4
postgres:
  dsn: "host=/run/postgresql user=postgres password=hunter22"
upload_concurrency: 8
part_size: 1073741824
delta_max_steps: 6
retry:
  max_attempts: 7
  call_timeout: 45s
command_timeout: 1h
`,
		"repo: relative/path\n",
		"repo: s3://user:pass@bucket/x\n",
		"repo: /x\ncompression: nope\n",
		"repo: /x\nretry:\n  max_attempts: 0\n",
		"repo: /x\ncommand_timeout: 5\n",
		"repo: [unclosed\n",
		"repo: /x\nunknown_key: 1\n",
		"a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
		"---\nrepo: /x\n---\nrepo: /y\n",
		"\x00\xff\xfe",
		"",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		fh, err := os.CreateTemp(dir, "config-*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		path := fh.Name()
		defer os.Remove(path)
		if _, err := fh.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, env(nil))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if c.Repo == "" || c.Source != path {
			t.Fatalf("accepted a config without a repository or source: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that Validate refuses: %v", err)
		}
		if c.S3.SecretAccessKey == "" {
			return
		}
		for _, line := range strings.Split(c.Redacted(), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "s3.secret_access_key:" && f[1] != "***" {
				t.Fatalf("config show does not mask the secret access key: %q", line)
			}
		}
	})
}
