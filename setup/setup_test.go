package setup

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/pg"
)

func TestQuoteConfRoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"", "on", "/usr/bin/walrus --config /etc/walrus.yaml wal-push %p",
		"it's", `back\slash`, `'/path with spaces/walrus' --config '/x'\''y' wal-push %p`, "tab\there",
	} {
		line := "archive_command = " + pg.QuoteConf(v)
		name, got, ok := pg.ParseConfLine(line)
		if !ok || name != "archive_command" || got != v {
			t.Errorf("%q: parsed back as %q %q %v", v, name, got, ok)
		}
	}
}

func TestParseConfLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line, name, value string
		ok                bool
	}{
		{"archive_mode = on", "archive_mode", "on", true},
		{"Archive_Mode=on # comment", "archive_mode", "on", true},
		{"  wal_level replica", "wal_level", "replica", true},
		{"archive_command = 'a ''b'' \\\\c' # x", "archive_command", `a 'b' \c`, true},
		{"restore_command = 'x\\ny'", "restore_command", "x\ny", true},
		{"shared_buffers = 128MB", "shared_buffers", "128MB", true},
		{"my.custom_param = '1'", "my.custom_param", "1", true},
		{"# archive_mode = on", "", "", false},
		{"", "", "", false},
		{"archive_mode =", "", "", false},
		{"archive_command = 'unterminated", "", "", false},
		{"archive_mode = on off", "", "", false},
	}
	for _, c := range cases {
		name, value, ok := pg.ParseConfLine(c.line)
		if name != c.name || value != c.value || ok != c.ok {
			t.Errorf("%q: got %q %q %v, want %q %q %v", c.line, name, value, ok, c.name, c.value, c.ok)
		}
	}
}

func TestEditAutoConf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, AutoConfName)
	orig := autoConfHeader + "work_mem = '8MB'\narchive_mode = 'off'\n# a comment\narchive_mode = 'off'\n"
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	err := editAutoConf(dir, []setting{{"archive_mode", "on"}, {"archive_command", "/bin/walrus --config '/a b' wal-push %p"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := autoConfHeader + "work_mem = '8MB'\narchive_mode = 'on'\n# a comment\narchive_command = '/bin/walrus --config ''/a b'' wal-push %p'\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want the file's own 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}

	// A new file gets PostgreSQL's header and mode 0600.
	dir2 := t.TempDir()
	if err := editAutoConf(dir2, []setting{{"wal_level", "replica"}}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(dir2, AutoConfName))
	if string(got) != autoConfHeader+"wal_level = 'replica'\n" {
		t.Fatalf("new file:\n%s", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir2, AutoConfName)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}

func TestReadConfFilesIncludes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte("wal_level = minimal\ninclude 'extra.conf'\ninclude_dir 'conf.d'\ninclude_if_exists 'absent.conf'\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("archive_mode = on\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "conf.d", "b.conf"), []byte("archive_command = 'b'\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "conf.d", "a.conf"), []byte("archive_command = 'a'\nwal_level = logical\n"), 0o600)
	os.WriteFile(filepath.Join(dir, AutoConfName), []byte("archive_mode = 'off'\n"), 0o600)
	cs, hasMain, err := readConfFiles(dir)
	if err != nil || !hasMain {
		t.Fatal(err, hasMain)
	}
	want := map[string]string{"wal_level": "logical", "archive_mode": "off", "archive_command": "b"}
	if !reflect.DeepEqual(cs.values, want) {
		t.Fatalf("values %v, want %v", cs.values, want)
	}
	if len(cs.unread) != 0 {
		t.Fatalf("unread %v", cs.unread)
	}
}

func TestWanted(t *testing.T) {
	t.Parallel()
	conf := func(m map[string]string) configured {
		return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
	}
	names := func(ss []setting) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.name+"="+s.value)
		}
		return strings.Join(out, " ")
	}
	cases := []struct {
		have map[string]string
		want string
	}{
		{map[string]string{}, "archive_mode=on archive_command=A restore_command=R"},
		{map[string]string{"archive_mode": "always", "wal_level": "logical", "archive_command": "A", "restore_command": "R"}, ""},
		{map[string]string{"archive_mode": "true", "wal_level": "hot_standby", "archive_command": "A", "restore_command": "R"}, ""},
		{map[string]string{"archive_mode": "off", "wal_level": "minimal", "archive_command": "/bin/true", "restore_command": "R"}, "archive_mode=on wal_level=replica archive_command=A"},
	}
	for _, c := range cases {
		if got := names(wanted(conf(c.have), "A", "R")); got != c.want {
			t.Errorf("%v: got %q, want %q", c.have, got, c.want)
		}
	}
}

func TestCommandLines(t *testing.T) {
	t.Parallel()
	got := ArchiveCommand("/usr/local/bin/walrus", "/etc/walrus/db1.yaml")
	if got != "/usr/local/bin/walrus --config /etc/walrus/db1.yaml wal-push %p" {
		t.Fatalf("archive_command %q", got)
	}
	if got := RestoreCommand("/usr/local/bin/walrus", ""); got != "/usr/local/bin/walrus wal-fetch %f %p" {
		t.Fatalf("restore_command %q", got)
	}
	// Hostile paths survive the shell and the %-placeholders: run the
	// command through sh as PostgreSQL would (after substituting %p and
	// undoing %%) with a fake walrus that prints its arguments.
	dir := t.TempDir()
	bin := filepath.Join(dir, "it's a 100% walrus")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "/etc/wal rus/$HOME/%p.yaml"
	cmd := ArchiveCommand(bin, cfg)
	shell := substitute(cmd, "pg_wal/000000010000000000000001")
	out, err := exec.Command("sh", "-c", shell).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	want := "[--config]\n[" + cfg + "]\n[wal-push]\n[pg_wal/000000010000000000000001]\n"
	if string(out) != want {
		t.Fatalf("arguments:\n%s\nwant:\n%s", out, want)
	}
	ci := ParseCommand(cmd)
	if !ci.WALPush || ci.Binary != bin || ci.Config != cfg {
		t.Fatalf("ParseCommand(%q) = %+v", cmd, ci)
	}
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cmd  string
		want CommandInfo
	}{
		{"/bin/true", CommandInfo{Binary: "/bin/true"}},
		{"", CommandInfo{}},
		{"cp %p /mnt/archive/%f", CommandInfo{Binary: "cp"}},
		{"WALRUS_REPO=/r env X=1 /opt/walrus --config=/c.yaml wal-push %p", CommandInfo{WALPush: true, Binary: "/opt/walrus", Config: "/c.yaml"}},
		{`"/opt/my walrus" -v --config "/etc/a b.yaml" wal-push %p`, CommandInfo{WALPush: true, Binary: "/opt/my walrus", Config: "/etc/a b.yaml"}},
		{"sh -c 'walrus wal-push %p'", CommandInfo{WALPush: true}},
	}
	for _, c := range cases {
		if got := ParseCommand(c.cmd); got != c.want {
			t.Errorf("%q: got %+v, want %+v", c.cmd, got, c.want)
		}
	}
}

func TestDefaultConfigPath(t *testing.T) {
	t.Parallel()
	if got := DefaultConfigPath("/var/lib/postgresql/15/main/"); got != "/var/lib/postgresql/15/walrus-main.yaml" {
		t.Fatal(got)
	}
	if got := identityPath("/var/lib/postgresql/15/walrus-main.yaml"); got != "/var/lib/postgresql/15/walrus-main.age.key" {
		t.Fatal(got)
	}
}

// substitute replaces the placeholders of an archive_command as
// PostgreSQL does, left to right: %p by path, %% by %.
func substitute(cmd, path string) string {
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == '%' && i+1 < len(cmd) {
			switch cmd[i+1] {
			case 'p':
				b.WriteString(path)
				i++
				continue
			case '%':
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(cmd[i])
	}
	return b.String()
}

// TestWriteConfigRoundTrip: the file setup writes loads back (without any
// environment) into the configuration it was made from, holds only what
// differs from the defaults, is 0600, and is never overwritten.
func TestWriteConfigRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "main")
	env := map[string]string{"WALRUS_S3_REGION": "eu-west-3", "WALRUS_DELTA_MAX_STEPS": "3", "WALRUS_REPO": "s3://ignored/by-flag"}
	o := &Options{
		PGData: pgdata, ConfigPath: DefaultConfigPath(pgdata), Repo: "s3://bucket/db1", Compression: "zstd", Encrypt: true,
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
	me, err := ownerOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := writeConfig(o, me)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.IdentityFile != filepath.Join(dir, "walrus-main.age.key") || !strings.HasPrefix(res.Recipient, "age1") {
		t.Fatalf("result %+v", res)
	}
	back, err := config.Load(o.ConfigPath, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	back.Source = ""
	if !reflect.DeepEqual(back, res.Config) {
		t.Fatalf("loaded back:\n%+v\nwritten:\n%+v", back, res.Config)
	}
	if back.Repo != "s3://bucket/db1" || back.S3.Region != "eu-west-3" || back.DeltaMaxSteps != 3 || back.Encryption.IdentityFile != res.IdentityFile {
		t.Fatalf("loaded back %+v", back)
	}
	text, _ := os.ReadFile(o.ConfigPath)
	for _, absent := range []string{"upload_concurrency", "part_size:", "force_path_style"} {
		if strings.Contains(string(text), absent) {
			t.Errorf("default %s written:\n%s", absent, text)
		}
	}
	if fi, _ := os.Stat(o.ConfigPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}

	// A second run leaves the file alone and says where the flags differ.
	o.Repo = "s3://bucket/other"
	res, err = writeConfig(o, me)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.IdentityFile != "" || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "--repo s3://bucket/other differs") {
		t.Fatalf("second run: %+v", res)
	}
	if again, _ := os.ReadFile(o.ConfigPath); string(again) != string(text) {
		t.Fatal("the file changed")
	}
}
