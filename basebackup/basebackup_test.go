package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	m := pushSynthetic(t, st, s, "base_test", 1<<20)

	// Several parts; pg_control alone in the last one (read last).
	if len(m.Parts) < 3 {
		t.Errorf("%d parts, want at least 3 with a 1 MiB part size", len(m.Parts))
	}
	for _, f := range m.Files {
		if f.Path == controlFilePath && f.Part != m.Parts[len(m.Parts)-1].Name {
			t.Errorf("pg_control is in %s, not in the last part %s", f.Part, m.Parts[len(m.Parts)-1].Name)
		}
	}
	if len(m.Tablespaces) != 1 || m.Tablespaces[0].Name != "ts1" || m.Tablespaces[0].Location != s.spc {
		t.Errorf("tablespaces = %+v", m.Tablespaces)
	}

	root := t.TempDir()
	dest := filepath.Join(root, "restored")
	newSpc := filepath.Join(root, "spc2")
	opts := fetchOptions(st, dest)
	opts.TablespaceMap = map[string]string{"16400": newSpc}
	opts.Concurrency = 2
	res, err := Fetch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "base_test" || res.Dest != dest || res.Tablespaces[16400] != newSpc {
		t.Errorf("result = %+v", res)
	}
	got := treeOf(t, dest)
	for rel, want := range s.want {
		p := rel
		if inner, ok := strings.CutPrefix(rel, "pg_tblspc/16400/"); ok {
			b, err := os.ReadFile(filepath.Join(newSpc, inner))
			if err != nil || string(b) != want {
				t.Errorf("%s: not restored into the mapped tablespace (%v)", rel, err)
			}
			continue
		}
		if p == "postgresql.auto.conf" {
			continue // appended to: checked below
		}
		if got[p] != want {
			t.Errorf("%s: restored %q, want %q", rel, abbrev(got[p]), abbrev(want))
		}
	}
	for _, rel := range s.absent {
		if rel == "recovery.signal" {
			if got[rel] != "" {
				t.Errorf("recovery.signal holds the source's content %q", got[rel])
			}
			continue
		}
		if _, ok := got[rel]; ok {
			t.Errorf("%s was restored, it must be excluded", rel)
		}
		if inner, ok := strings.CutPrefix(rel, "pg_tblspc/16400/"); ok {
			if _, err := os.Lstat(filepath.Join(newSpc, inner)); err == nil {
				t.Errorf("%s was restored into the tablespace, it must be excluded", rel)
			}
		}
	}
	if got["pg_tblspc/16400"] != "-> "+newSpc {
		t.Errorf("tablespace link = %q, want -> %s", got["pg_tblspc/16400"], newSpc)
	}
	if got["backup_label"] != m.BackupLabel {
		t.Errorf("backup_label = %q", got["backup_label"])
	}
	if got["tablespace_map"] != "16400 "+newSpc+"\n" {
		t.Errorf("tablespace_map = %q", got["tablespace_map"])
	}
	if _, ok := got["recovery.signal"]; !ok {
		t.Error("no recovery.signal")
	}
	auto := got["postgresql.auto.conf"]
	for _, want := range []string{"# auto\n", "restore_command = '/usr/bin/walrus --config /etc/walrus.yaml wal-fetch %f %p'", "recovery_target_action = 'promote'"} {
		if !strings.Contains(auto, want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, auto)
		}
	}
	if strings.Contains(auto, "recovery_target =") {
		t.Errorf("postgresql.auto.conf sets a target without being asked:\n%s", auto)
	}
	fi, err := os.Stat(dest)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("destination mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	fi, err = os.Stat(filepath.Join(dest, "base/1/1259"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// The original tablespace location was not touched.
	if _, err := os.Stat(filepath.Join(s.spc, "lost+found/x")); err != nil {
		t.Errorf("the original tablespace location changed: %v", err)
	}
}

func abbrev(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestFetchTargetImmediate(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	pushSynthetic(t, st, s, "base_test", 64<<20)
	dest := filepath.Join(t.TempDir(), "restored")
	opts := fetchOptions(st, dest)
	opts.TablespaceMap = map[string]string{s.spc: filepath.Join(t.TempDir(), "ts")} // by location
	opts.Recovery.Target.Immediate = true
	opts.Recovery.Action = ActionShutdown
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	for _, want := range []string{"recovery_target = 'immediate'", "recovery_target_action = 'shutdown'"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, b)
		}
	}
}

func TestFetchRefusesNonEmptyTargets(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	pushSynthetic(t, st, s, "base_test", 64<<20)

	t.Run("destination", func(t *testing.T) {
		dest := t.TempDir()
		writeFile(t, filepath.Join(dest, "keep"), "mine")
		opts := fetchOptions(st, dest)
		opts.TablespaceMap = map[string]string{"16400": filepath.Join(t.TempDir(), "ts")}
		_, err := Fetch(context.Background(), opts)
		if !errors.Is(err, ErrDestNotEmpty) {
			t.Fatalf("err = %v, want ErrDestNotEmpty", err)
		}
		if tree := treeOf(t, dest); len(tree) != 1 || tree["keep"] != "mine" {
			t.Fatalf("destination was touched: %v", tree)
		}
	})
	t.Run("original tablespace location", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "restored")
		_, err := Fetch(context.Background(), fetchOptions(st, dest))
		if !errors.Is(err, ErrDestNotEmpty) || !strings.Contains(err.Error(), "--tablespace-map") {
			t.Fatalf("err = %v, want ErrDestNotEmpty pointing at --tablespace-map", err)
		}
		if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("destination was created")
		}
	})
	t.Run("tablespace inside the destination", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "restored")
		opts := fetchOptions(st, dest)
		opts.TablespaceMap = map[string]string{"16400": filepath.Join(dest, "ts")}
		_, err := Fetch(context.Background(), opts)
		if err == nil || !strings.Contains(err.Error(), "overlap") {
			t.Fatalf("err = %v, want overlap", err)
		}
	})
	t.Run("unknown tablespace in the map", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "restored")
		opts := fetchOptions(st, dest)
		opts.TablespaceMap = map[string]string{"99999": t.TempDir()}
		_, err := Fetch(context.Background(), opts)
		if err == nil || !strings.Contains(err.Error(), "99999") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestFetchMissingPart(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	m := pushSynthetic(t, st, s, "base_test", 1<<20)
	victim := m.Parts[1]
	if err := st.Delete(context.Background(), victim.Key); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "restored")
	opts := fetchOptions(st, dest)
	opts.TablespaceMap = map[string]string{"16400": filepath.Join(t.TempDir(), "ts")}
	_, err := Fetch(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), victim.Name) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v, want an error naming the missing part %s", err, victim.Name)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("destination was created before the parts were checked")
	}
}

// TestFetchCorruptPart: a part whose bytes changed fails the restore, and
// the destination is left without the files that would let it start.
func TestFetchCorruptPart(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	m := pushSynthetic(t, st, s, "base_test", 1<<20)
	ctx := context.Background()
	for i, p := range m.Parts {
		if i == len(m.Parts)-1 {
			break // keep pg_control's part intact: the failure comes before it matters
		}
		rc, err := st.Get(ctx, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		b[len(b)/2] ^= 0x40
		if err := st.Put(ctx, p.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		break
	}
	dest := filepath.Join(t.TempDir(), "restored")
	opts := fetchOptions(st, dest)
	opts.TablespaceMap = map[string]string{"16400": filepath.Join(t.TempDir(), "ts")}
	_, err := Fetch(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("err = %v, want a failed, incomplete restore", err)
	}
	for _, p := range []string{"PG_VERSION", "global/pg_control", "recovery.signal", "backup_label"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
			t.Errorf("%s exists after a failed restore", p)
		}
	}
}

// minimalManifest is a valid manifest of one part holding PG_VERSION and
// global/pg_control.
func minimalManifest(t *testing.T, st storage.Store, name string, extra []*tar.Header, extraBodies []string) *catalog.Manifest {
	t.Helper()
	ctl := string(controlImage())
	hdrs := append([]*tar.Header{
		{Typeflag: tar.TypeReg, Name: "PG_VERSION", Size: 3, Mode: 0o600},
		{Typeflag: tar.TypeReg, Name: "global/pg_control", Size: int64(len(ctl)), Mode: 0o600},
	}, extra...)
	bodies := append([]string{"15\n", ctl}, extraBodies...)
	part := tarPart(t, st, name, "part_00001.tar", hdrs, bodies)
	m := &catalog.Manifest{}
	m.FormatVersion = catalog.FormatVersion
	m.Name = name
	m.Kind = catalog.KindFull
	fillHeader(m)
	now := time.Now().UTC()
	m.Files = []catalog.File{
		{Path: "PG_VERSION", Kind: catalog.FileWhole, Size: 3, Mode: 0o600, MTime: now, Part: part.Name, CRC32C: crcOf("15\n")},
		{Path: "global", Kind: catalog.FileDir, Mode: 0o700, MTime: now},
		{Path: "global/pg_control", Kind: catalog.FileWhole, Size: int64(len(ctl)), Mode: 0o600, MTime: now, Part: part.Name, CRC32C: crcOf(ctl)},
	}
	m.DataSize = 3 + int64(len(ctl))
	m.Parts = []catalog.Part{part}
	m.StoredSize = part.StoredSize
	return m
}

// putRawManifest stores m as JSON without validating it.
func putRawManifest(t *testing.T, st storage.Store, m *catalog.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), repo.ManifestKey(m.Name), &buf, storage.PutOptions{Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchMinimal(t *testing.T) {
	t.Parallel()
	st := newMem()
	m := minimalManifest(t, st, "base_min", nil, nil)
	putRawManifest(t, st, m)
	dest := filepath.Join(t.TempDir(), "restored")
	if _, err := Fetch(context.Background(), fetchOptions(st, dest)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "PG_VERSION")); string(b) != "15\n" {
		t.Fatalf("PG_VERSION = %q", b)
	}
}

// TestFetchRefusesCraftedTar: tar entries that are not the manifest's files
// of that part (traversal, absolute names, links, extra names) are refused
// and nothing is written outside the destination.
func TestFetchRefusesCraftedTar(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		hdr  *tar.Header
		body string
	}{
		{"dot-dot", &tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Size: 4, Mode: 0o600}, "evil"},
		{"deep dot-dot", &tar.Header{Typeflag: tar.TypeReg, Name: "global/../../evil", Size: 4, Mode: 0o600}, "evil"},
		{"absolute", &tar.Header{Typeflag: tar.TypeReg, Name: "/tmp/walrus-evil-abs", Size: 4, Mode: 0o600}, "evil"},
		{"symlink out", &tar.Header{Typeflag: tar.TypeSymlink, Name: "evil", Linkname: "/etc"}, ""},
		{"hard link out", &tar.Header{Typeflag: tar.TypeLink, Name: "evil", Linkname: "/etc/passwd"}, ""},
		{"not in the manifest", &tar.Header{Typeflag: tar.TypeReg, Name: "base/1/evil", Size: 4, Mode: 0o600}, "evil"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newMem()
			m := minimalManifest(t, st, "base_evil", []*tar.Header{tc.hdr}, []string{tc.body})
			putRawManifest(t, st, m)
			root := t.TempDir()
			dest := filepath.Join(root, "a", "restored")
			_, err := Fetch(context.Background(), fetchOptions(st, dest))
			if err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Fatalf("err = %v, want a refusal", err)
			}
			for _, p := range []string{filepath.Join(root, "a", "evil"), filepath.Join(root, "evil"), "/tmp/walrus-evil-abs"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			if _, err := os.Lstat(filepath.Join(dest, "global/pg_control")); err == nil {
				t.Error("pg_control exists after a refused restore")
			}
		})
	}
}

// TestFetchRefusesCraftedManifest: manifests that could make a restore
// write outside its targets are refused before anything is written.
func TestFetchRefusesCraftedManifest(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	cases := []struct {
		name string
		edit func(m *catalog.Manifest)
	}{
		{"dot-dot file", func(m *catalog.Manifest) {
			m.Files = append([]catalog.File{{Path: "../evil", Kind: catalog.FileWhole, Size: 0, Mode: 0o600, MTime: now, Part: "part_00001.tar", CRC32C: crcOf("")}}, m.Files...)
		}},
		{"absolute file", func(m *catalog.Manifest) {
			m.Files = append([]catalog.File{{Path: "/tmp/walrus-evil", Kind: catalog.FileWhole, Mode: 0o600, MTime: now, Part: "part_00001.tar", CRC32C: crcOf("")}}, m.Files...)
		}},
		{"dot-dot inside", func(m *catalog.Manifest) {
			m.Files = append(m.Files, catalog.File{Path: "global/../../evil", Kind: catalog.FileDir, Mode: 0o700, MTime: now})
		}},
		{"symlink that is not a tablespace", func(m *catalog.Manifest) {
			m.Files = append(m.Files, catalog.File{Path: "zz", Kind: catalog.FileSymlink, Link: "/etc", Mode: 0o777, MTime: now})
		}},
		{"file under a symlink", func(m *catalog.Manifest) {
			m.Tablespaces = []catalog.Tablespace{{OID: 16400, Location: "/tmp/somewhere"}}
			m.Files = append(m.Files,
				catalog.File{Path: "pg_tblspc", Kind: catalog.FileDir, Mode: 0o700, MTime: now},
				catalog.File{Path: "pg_tblspc/16400", Kind: catalog.FileSymlink, Link: "/etc", Mode: 0o777, MTime: now},
				catalog.File{Path: "pg_tblspc/16400x", Kind: catalog.FileSymlink, Link: "/etc", Mode: 0o777, MTime: now},
			)
		}},
		{"file without its directory", func(m *catalog.Manifest) {
			m.Files = append(m.Files, catalog.File{Path: "zz/passwd", Kind: catalog.FileWhole, Mode: 0o600, MTime: now, Part: "part_00001.tar", CRC32C: crcOf("")})
		}},
		{"part key outside the backup", func(m *catalog.Manifest) {
			m.Parts[0].Key = "backups/other/parts/part_00001.tar.lz4"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newMem()
			m := minimalManifest(t, st, "base_evil", nil, nil)
			tc.edit(m)
			putRawManifest(t, st, m)
			dest := filepath.Join(t.TempDir(), "restored")
			_, err := Fetch(context.Background(), fetchOptions(st, dest))
			if !errors.Is(err, catalog.ErrInvalidManifest) {
				t.Fatalf("err = %v, want ErrInvalidManifest", err)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Fatal("destination was created")
			}
		})
	}
}

// TestVanishedFile: a file dropped between the walk and its read is left
// out of the backup without an error.
func TestVanishedFile(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	walked, err := walkDataDir(s.pgdata)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.pgdata, "base/1/1259_fsm")); err != nil {
		t.Fatal(err)
	}
	st := newMem()
	up := &uploader{st: st, enc: testEncoder(t), backup: "b", partSize: 1 << 20, prog: progress.New(nil, "test", "files")}
	stored, err := up.upload(context.Background(), walked.entries, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range walked.entries {
		if e.rel == "base/1/1259_fsm" && stored[i] != nil {
			t.Error("the vanished file is in the backup")
		}
		if e.rel == "base/1/1259" && stored[i] == nil {
			t.Error("a present file is missing")
		}
	}
}

// failingStore fails every Put whose key contains fail.
type failingStore struct {
	storage.Store
	fail string
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if strings.Contains(key, f.fail) {
		io.CopyN(io.Discard, r, 1000)
		return errors.New("injected failure")
	}
	return f.Store.Put(ctx, key, r, opts)
}

// TestUploadFailure: a failed part fails the backup, and the parts already
// stored can be removed.
func TestUploadFailure(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	fs := &failingStore{Store: st, fail: "part_00003"}
	up := &uploader{st: fs, enc: testEncoder(t), backup: "b", partSize: 1 << 20, prog: progress.New(nil, "test", "files")}
	_, err := copyDataDir(context.Background(), up, s.pgdata, 1)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if _, err := up.removeStored(context.Background()); err != nil {
		t.Fatal(err)
	}
	var left []string
	st.List(context.Background(), "", func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
	if len(left) != 0 {
		t.Fatalf("objects left after cleanup: %v", left)
	}
}

func TestChooseName(t *testing.T) {
	t.Parallel()
	st := newMem()
	ctx := context.Background()
	start := time.Date(2026, 11, 21, 19, 30, 12, 0, time.FixedZone("X", 3600))
	name, err := chooseName(ctx, st, start, "000000010000000000000004")
	if err != nil || name != "base_20261121T183012Z_000000010000000000000004" {
		t.Fatalf("name %q, %v", name, err)
	}
	st.Put(ctx, repo.PartsPrefix(name)+"part_00001.tar.lz4", strings.NewReader("x"), storage.PutOptions{Size: 1})
	name2, err := chooseName(ctx, st, start, "000000010000000000000004")
	if err != nil || name2 != name+"_2" {
		t.Fatalf("second name %q, %v", name2, err)
	}
	if err := catalog.ValidateName(name2); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverySettings(t *testing.T) {
	t.Parallel()
	r := Recovery{RestoreCommand: `/opt/it's/walrus wal-fetch %f %p`, Target: RecoveryTarget{LSN: 0x5000000, Exclusive: true, Timeline: "latest"}}
	lines, err := r.settings()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		`restore_command = '/opt/it''s/walrus wal-fetch %f %p'`,
		"recovery_target_action = 'promote'",
		"recovery_target_lsn = '0/5000000'",
		"recovery_target_inclusive = off",
		"recovery_target_timeline = 'latest'",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("settings lack %q:\n%s", want, got)
		}
	}
	if _, err := (Recovery{RestoreCommand: "x", Action: "explode"}).settings(); err == nil {
		t.Error("a bad action was accepted")
	}
	b := &catalog.Backup{Name: "b", FinishLSN: 0x6000000, FinishTime: time.Now()}
	if err := (RecoveryTarget{LSN: 0x5000000}).Validate(b); err == nil || !strings.Contains(err.Error(), "older backup") {
		t.Errorf("a target before the backup's end was accepted: %v", err)
	}
	if err := (RecoveryTarget{Time: time.Now().Add(-time.Hour)}).Validate(b); err == nil {
		t.Error("a target time before the backup was accepted")
	}
	if err := (RecoveryTarget{Immediate: true, Name: "x"}).Validate(b); err == nil {
		t.Error("two targets were accepted")
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/usr/bin/walrus": "/usr/bin/walrus",
		"/a b/walrus":     "'/a b/walrus'",
		"/it's":           `'/it'\''s'`,
		"":                "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestEscapeMapPath(t *testing.T) {
	t.Parallel()
	if got := escapeMapPath("/a\\b\nc"); got != "/a\\\\b\\\nc" {
		t.Errorf("escapeMapPath = %q", got)
	}
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	var nilLimiter *rateLimiter
	if err := nilLimiter.wait(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
	l := newRateLimiter(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.wait(ctx, 10)
	if err := l.wait(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's", err)
	}
}

func TestManifestFilesSorted(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	m := pushSynthetic(t, newMem(), s, "base_sorted", 1<<20)
	if !slices.IsSortedFunc(m.Files, func(a, b catalog.File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Fatal("files are not sorted by path")
	}
}

func TestRestoreCommandFor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "walrus.yaml")
	writeFile(t, cfgFile, "repo: s3://bucket/prefix\ns3:\n  force_path_style: true\n")
	env := func(kv map[string]string) config.LookupFunc {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	environ := func(kv map[string]string) []string {
		var out []string
		for k, v := range kv {
			out = append(out, k+"="+v)
		}
		return append(out, "PATH=/usr/bin", "WALRUS_CONFIG="+cfgFile)
	}

	t.Run("a config file alone is named", func(t *testing.T) {
		cfg, err := config.Load(cfgFile, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		plan, err := RestoreCommandFor(cfg, cfgFile, "/opt/walrus/bin/walrus", "/srv/restored", environ(nil))
		if err != nil {
			t.Fatal(err)
		}
		if plan.Command != "/opt/walrus/bin/walrus --config "+cfgFile+" wal-fetch %f %p" || plan.ConfigFile != nil {
			t.Fatalf("plan = %+v", plan)
		}
	})

	t.Run("the environment is frozen into a file", func(t *testing.T) {
		vars := map[string]string{
			"WALRUS_REPO":              "s3://other/prefix",
			"AWS_ACCESS_KEY_ID":        "AKIDEXAMPLE",
			"AWS_SECRET_ACCESS_KEY":    "secret/example",
			"AWS_REGION":               "eu-west-3",
			"AWS_ENDPOINT_URL_S3":      "http://127.0.0.1:9000",
			"WALRUS_AGE_IDENTITY_FILE": "/etc/walrus/age.key",
			"WALRUS_POSTGRES_DSN":      "host=db password=hunter2",
		}
		cfg, err := config.Load(cfgFile, env(vars))
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, "restored")
		plan, err := RestoreCommandFor(cfg, cfgFile, "/usr/bin/walrus", dest, environ(vars))
		if err != nil {
			t.Fatal(err)
		}
		frozen := filepath.Join(dest, "walrus-restore.yaml")
		if plan.Command != "/usr/bin/walrus --config "+frozen+" wal-fetch %f %p" {
			t.Fatalf("command = %s", plan.Command)
		}
		if strings.Contains(string(plan.ConfigFile), "hunter2") {
			t.Fatal("the frozen configuration holds the database password")
		}
		writeFile(t, frozen, string(plan.ConfigFile))
		// wal-fetch, run by the server without this environment, reads the
		// same settings from the file.
		back, err := config.Load(frozen, env(nil))
		if err != nil {
			t.Fatalf("load the frozen configuration: %v\n%s", err, plan.ConfigFile)
		}
		if back.Repo != "s3://other/prefix" || back.S3.AccessKeyID != "AKIDEXAMPLE" || back.S3.SecretAccessKey != "secret/example" ||
			back.S3.Region != "eu-west-3" || back.S3.Endpoint != "http://127.0.0.1:9000" || !back.S3.ForcePathStyle ||
			back.Encryption.IdentityFile != "/etc/walrus/age.key" || back.Postgres.DSN != "" {
			t.Fatalf("frozen configuration: %+v", back)
		}
		if len(plan.Notes) == 0 {
			t.Error("no note about the credentials in the file")
		}
	})

	t.Run("relative binary", func(t *testing.T) {
		cfg, _ := config.Load(cfgFile, env(nil))
		if _, err := RestoreCommandFor(cfg, cfgFile, "walrus", "/srv/x", environ(nil)); err == nil {
			t.Fatal("a relative binary path was accepted")
		}
	})
}

// TestShrinkingFile: a file that ends before the size its tar header
// announced (it shrank while read) is stored as read, and restores to
// exactly the bytes read; a read error fails.
func TestShrinkingFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newMem()
	up := &uploader{st: st, enc: testEncoder(t), backup: "b", partSize: 1 << 30, prog: progress.New(nil, "test", "files")}
	p := up.startPart(ctx)
	buf := make([]byte, 4096) // smaller than the file: several reads
	f, err := up.writeEntry(ctx, p, "base/1/16384", "", strings.NewReader(strings.Repeat("p", 10000)), 3*8192, 0o600, time.Now(), buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != 10000 || f.CRC32C != crcOf(strings.Repeat("p", 10000)) {
		t.Fatalf("entry = %+v, want the 10000 bytes read", f)
	}
	next, err := up.writeEntry(ctx, p, "base/1/16385", "", strings.NewReader("after"), 5, 0o600, time.Now(), buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.finishPart(p); err != nil {
		t.Fatal(err)
	}
	if next.Offset <= f.Offset+3*8192 {
		t.Errorf("the next entry starts at %d, inside the padded one", next.Offset)
	}
	dest := t.TempDir()
	pl := &plan{dest: dest, spcTarget: map[uint32]string{}}
	os.MkdirAll(filepath.Join(dest, "base/1"), 0o700)
	m := &catalog.Manifest{Files: []catalog.File{*f, *next}, Parts: up.parts}
	chain, err := planChain([]*catalog.Manifest{m})
	if err != nil {
		t.Fatal(err)
	}
	w := &restorer{pl: pl, m: m, links: chain.links, chain: chain, st: st, dec: &repo.Decoder{}, prog: progress.New(nil, "test", "files"), held: map[string][]byte{}}
	if err := w.restorePart(ctx, 0, up.parts[0]); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "base/1/16384")); string(b) != strings.Repeat("p", 10000) {
		t.Fatalf("restored %d bytes", len(b))
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "base/1/16385")); string(b) != "after" {
		t.Fatalf("next file restored as %q", b)
	}

	p = up.startPart(ctx)
	_, err = up.writeEntry(ctx, p, "base/1/bad", "", io.MultiReader(strings.NewReader("x"), errReader{}), 100, 0o600, time.Now(), buf, nil)
	p.abort(errors.New("test over"))
	if err == nil || !strings.Contains(err.Error(), "read base/1/bad") {
		t.Fatalf("a read error gave %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }

// TestRecoveryTargetTimeFormat: PostgreSQL rejects a "Z" zone suffix in
// recovery_target_time; the time must carry a numeric offset.
func TestRecoveryTargetTimeFormat(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 19, 50, 0, 123456000, time.FixedZone("CET", 3600))
	lines, err := Recovery{RestoreCommand: "walrus wal-fetch %f %p", Target: RecoveryTarget{Time: at}}.settings()
	if err != nil {
		t.Fatal(err)
	}
	want := "recovery_target_time = '2026-11-21 18:50:00.123456+00:00'"
	if !strings.Contains(strings.Join(lines, "\n"), want) {
		t.Fatalf("settings lack %q:\n%s", want, strings.Join(lines, "\n"))
	}
}
