package catalog

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

func validManifest(name string, sysid string, tli pg.TimelineID, start pg.LSN) *Manifest {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &Manifest{}
	m.FormatVersion = FormatVersion
	m.Name = name
	m.Kind = KindFull
	m.SystemIdentifier = sysid
	m.PGVersion = 150004
	m.Timeline = tli
	m.StartLSN, m.FinishLSN = start, start+0x100
	m.StartTime, m.FinishTime = now, now.Add(time.Minute)
	m.Codec = "lz4"
	m.BackupLabel = "START WAL LOCATION: ...\n"
	m.Tablespaces = []Tablespace{{OID: 16400, Name: "ts", Location: "/srv/ts"}}
	sum := strings.Repeat("ab", 32)
	m.Parts = []Part{{Name: "part_00001.tar", Key: repo.PartsPrefix(name) + "part_00001.tar.lz4", RawSize: 10240, StoredSize: 300, StoredSHA256: sum}}
	m.Files = []File{
		{Path: "PG_VERSION", Kind: FileWhole, Size: 3, Mode: 0o600, MTime: now, Part: "part_00001.tar", Offset: 0, CRC32C: "0badcafe"},
		{Path: "global", Kind: FileDir, Mode: 0o700, MTime: now},
		{Path: "global/pg_control", Kind: FileWhole, Size: 8192, Mode: 0o600, MTime: now, Part: "part_00001.tar", Offset: 1024, CRC32C: "12345678"},
		{Path: "pg_tblspc", Kind: FileDir, Mode: 0o700, MTime: now},
		{Path: "pg_tblspc/16400", Kind: FileSymlink, Mode: 0o777, MTime: now, Link: "/srv/ts"},
		{Path: "pg_tblspc/16400/PG_15_202209061", Kind: FileDir, Mode: 0o700, MTime: now},
	}
	m.DataSize = 8195
	m.StoredSize = 300
	return m
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	m := validManifest("base_a", "7300000000000000042", 1, 0x3000028)
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, m)
	}
	buf.Reset()
	m.Encode(&buf)
	for _, key := range []string{`"delta_from": null`, `"start_lsn": "0/3000028"`, `"mode":"0600"`, `"system_identifier": "7300000000000000042"`, `"kind": "full"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("manifest lacks %s:\n%s", key, buf.String())
		}
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]func(m *Manifest){
		"future format":           func(m *Manifest) { m.FormatVersion = 99 },
		"bad name":                func(m *Manifest) { m.Name = "../x" },
		"bad sysid":               func(m *Manifest) { m.SystemIdentifier = "x" },
		"unknown kind":            func(m *Manifest) { m.Kind = "partial" },
		"full with base":          func(m *Manifest) { s := "b"; m.DeltaFrom = &s },
		"finish before start":     func(m *Manifest) { m.FinishLSN = m.StartLSN - 1 },
		"no label":                func(m *Manifest) { m.BackupLabel = "" },
		"absolute path":           func(m *Manifest) { m.Files[0].Path = "/PG_VERSION" },
		"dot-dot":                 func(m *Manifest) { m.Files[0].Path = "../PG_VERSION" },
		"dot":                     func(m *Manifest) { m.Files[0].Path = "./PG_VERSION" },
		"NUL":                     func(m *Manifest) { m.Files[0].Path = "PG\x00VERSION" },
		"unsorted":                func(m *Manifest) { m.Files[0].Path = "zz" },
		"duplicate":               func(m *Manifest) { m.Files[1] = m.Files[0] },
		"missing parent":          func(m *Manifest) { m.Files = m.Files[2:] },
		"unknown part":            func(m *Manifest) { m.Files[0].Part = "part_9" },
		"bad crc":                 func(m *Manifest) { m.Files[0].CRC32C = "xyz" },
		"setuid mode":             func(m *Manifest) { m.Files[0].Mode = 0o4755 },
		"part outside":            func(m *Manifest) { m.Parts[0].Key = "backups/other/parts/part_00001.tar.lz4" },
		"part nested":             func(m *Manifest) { m.Parts[0].Key = repo.PartsPrefix(m.Name) + "part_00001.tar/x.lz4" },
		"bad part sha":            func(m *Manifest) { m.Parts[0].StoredSHA256 = "00" },
		"format 2 with sha256":    func(m *Manifest) { m.Parts[0].SHA256 = m.Parts[0].StoredSHA256 },
		"format 1 without sha256": func(m *Manifest) { m.FormatVersion = 1 },
		"no pg_control":           func(m *Manifest) { m.Files = append(m.Files[:2], m.Files[3:]...); m.DataSize = 3 },
		"wrong data size":         func(m *Manifest) { m.DataSize++ },
		"increment in full":       func(m *Manifest) { m.Files[0].Kind = FileIncrement },
		"relative tablespace":     func(m *Manifest) { m.Tablespaces[0].Location = "ts" },
		"link not tablespace":     func(m *Manifest) { m.Tablespaces = nil },
		"relative link":           func(m *Manifest) { m.Files[4].Link = "ts" },
		"under a plain symlink": func(m *Manifest) {
			m.Files[4].Path = "pg_tblspc/x"
			m.Files[5].Path = "pg_tblspc/x/y"
		},
		"file larger than its part": func(m *Manifest) { m.Parts[0].RawSize = 8000 },
		"absurd file size": func(m *Manifest) {
			m.Parts[0].RawSize = 1<<63 - 1
			m.DataSize += 1<<62 - m.Files[0].Size
			m.Files[0].Size = 1 << 62
			m.Files[2].Size = 1<<63 - 1 - 1<<62 + 100
		},
	}
	for name, edit := range cases {
		m := validManifest("base_a", "1", 1, 0x3000028)
		edit(m)
		if err := m.Validate(); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: Validate = %v, want ErrInvalidManifest", name, err)
		}
	}
	if err := validManifest("base_a", "1", 1, 0x3000028).Validate(); err != nil {
		t.Fatalf("a valid manifest: %v", err)
	}
}

func TestListAndResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	if bs, err := ListBackups(ctx, st); err != nil || len(bs) != 0 {
		t.Fatalf("empty repository: %v %v", bs, err)
	}
	if _, err := Resolve(ctx, st, Latest); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("LATEST of an empty repository: %v", err)
	}
	// Names sort the other way round from (timeline, start LSN): the
	// order must come from the manifests (TRAPS.md 24).
	for _, m := range []*Manifest{
		validManifest("base_c", "7", 1, 0x1000028),
		validManifest("base_b", "7", 1, 0x5000028),
		validManifest("base_a", "7", 2, 0x2000028),
	} {
		if err := WriteManifest(ctx, st, m); err != nil {
			t.Fatal(err)
		}
	}
	// A part key or a stray object is not a backup.
	st.Put(ctx, "backups/base_x/parts/part_00001.tar.lz4", strings.NewReader("x"), storage.PutOptions{Size: 1})
	st.Put(ctx, "backups/base_y/sub/manifest.json", strings.NewReader("x"), storage.PutOptions{Size: 1})
	bs, err := ListBackups(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	if strings.Join(names, " ") != "base_c base_b base_a" {
		t.Fatalf("order %v, want base_c base_b base_a", names)
	}
	m, err := Resolve(ctx, st, Latest)
	if err != nil || m.Name != "base_a" {
		t.Fatalf("LATEST = %v, %v", m, err)
	}
	if _, err := Resolve(ctx, st, "base_zz"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("missing backup: %v", err)
	}
	// Create-only.
	if err := WriteManifest(ctx, st, validManifest("base_a", "7", 2, 0x2000028)); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("overwrite: %v, want ErrExists", err)
	}
	// A damaged manifest fails the listing, naming it, rather than hiding
	// a backup.
	st.Put(ctx, repo.ManifestKey("base_d"), strings.NewReader("{"), storage.PutOptions{Size: 1})
	if _, err := ListBackups(ctx, st); err == nil || !strings.Contains(err.Error(), "base_d") {
		t.Fatalf("damaged manifest: %v", err)
	}
}

func TestModeText(t *testing.T) {
	t.Parallel()
	var m Mode
	if err := m.UnmarshalText([]byte("0750")); err != nil || m != 0o750 {
		t.Fatalf("%o %v", m, err)
	}
	for _, bad := range []string{"", "9", "077777", "rwx"} {
		if err := m.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("mode %q accepted", bad)
		}
	}
}

// deltaManifest is a valid delta of base holding one increment and one
// unchanged file.
func deltaManifest(name string, base *Manifest, start pg.LSN) *Manifest {
	m := validManifest(name, base.SystemIdentifier, base.Timeline, start)
	from, root := base.Name, base.Name
	if !base.IsFull() {
		root = *base.DeltaRoot
	}
	m.Kind, m.DeltaFrom, m.DeltaRoot = KindDelta, &from, &root
	m.BlockSize = 8192
	m.Parts[0].RawSize = 40960 // room for the increment
	now := m.StartTime
	m.Files = append(m.Files[:2],
		File{Path: "global/1262", Kind: FileIncrement, Size: 3 * 8192, Mode: 0o600, MTime: now, Part: "part_00001.tar", Offset: 512, CRC32C: "0badcafe", StoredSize: MinIncrementSize + 2*(4+8192), Blocks: 2},
		File{Path: "global/1263", Kind: FileUnchanged, Size: 8192, Mode: 0o600, MTime: now, Source: base.Name},
		m.Files[2], m.Files[3], m.Files[4], m.Files[5])
	m.DataSize = 8195 + 4*8192
	m.DeltaSize = 3 + 8192 + MinIncrementSize + 2*(4+8192)
	return m
}

func TestValidateDelta(t *testing.T) {
	t.Parallel()
	full := validManifest("base_a", "1", 1, 0x3000028)
	if err := deltaManifest("base_b", full, 0x5000028).Validate(); err != nil {
		t.Fatalf("a valid delta: %v", err)
	}
	cases := map[string]func(m *Manifest){
		"no base":                func(m *Manifest) { m.DeltaFrom = nil },
		"based on itself":        func(m *Manifest) { s := m.Name; m.DeltaFrom = &s },
		"no block size":          func(m *Manifest) { m.BlockSize = 0 },
		"wrong delta size":       func(m *Manifest) { m.DeltaSize++ },
		"increment stored size":  func(m *Manifest) { m.Files[2].StoredSize++ },
		"increment too many":     func(m *Manifest) { m.Files[2].Blocks = 4; m.Files[2].StoredSize = MinIncrementSize + 4*(4+8192) },
		"increment in no part":   func(m *Manifest) { m.Files[2].Part = "" },
		"unchanged no source":    func(m *Manifest) { m.Files[3].Source = "" },
		"unchanged from itself":  func(m *Manifest) { m.Files[3].Source = m.Name },
		"unchanged with a part":  func(m *Manifest) { m.Files[3].Part = "part_00001.tar" },
		"whole from elsewhere":   func(m *Manifest) { m.Files[0].Source = "base_a" },
		"full with a delta size": func(m *Manifest) { m.Kind, m.DeltaFrom, m.DeltaRoot = KindFull, nil, nil },
		"increment of an absurd file": func(m *Manifest) {
			m.DataSize += 1<<62 - m.Files[2].Size
			m.Files[2].Size = 1 << 62
		},
		"unchanged absurd": func(m *Manifest) {
			m.DataSize += 1<<62 - m.Files[3].Size
			m.Files[3].Size = 1 << 62
		},
		"increment larger than its part": func(m *Manifest) { m.Parts[0].RawSize = 20000 },
	}
	for name, edit := range cases {
		m := deltaManifest("base_b", full, 0x5000028)
		edit(m)
		if err := m.Validate(); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: Validate = %v, want ErrInvalidManifest", name, err)
		}
	}
}

func TestReadChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	full := validManifest("base_a", "7", 1, 0x3000028)
	d1 := deltaManifest("base_b", full, 0x5000028)
	d2 := deltaManifest("base_c", d1, 0x7000028)
	for _, m := range []*Manifest{full, d1, d2} {
		if err := WriteManifest(ctx, st, m); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := ReadChain(ctx, st, d2)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range chain {
		names = append(names, m.Name)
	}
	if strings.Join(names, " ") != "base_c base_b base_a" {
		t.Fatalf("chain %v", names)
	}
	if chain, err := ReadChain(ctx, st, full); err != nil || len(chain) != 1 {
		t.Fatalf("chain of a full backup: %v %v", chain, err)
	}
	bs, _ := ListBackups(ctx, st)
	if len(bs) != 3 || *bs[2].DeltaRoot != "base_a" || *bs[2].DeltaFrom != "base_b" || bs[2].DeltaSize == 0 {
		t.Fatalf("listing: %+v", bs)
	}

	// Links that do not fit.
	for name, edit := range map[string]func(m *Manifest){
		"another system":          func(m *Manifest) { m.SystemIdentifier = "8" },
		"finished after it began": func(m *Manifest) { m.StartLSN = 0x4000000 },
		"another root":            func(m *Manifest) { s := "base_z"; m.DeltaRoot = &s },
		"another page size":       func(m *Manifest) { m.BlockSize = 16384 },
	} {
		m := deltaManifest("base_x", d1, 0x7000028)
		edit(m)
		if m.StartLSN == 0x4000000 {
			m.FinishLSN = 0x4000100
		}
		if _, err := ReadChain(ctx, st, m); !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), "base_b") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A missing link is named.
	st.Delete(ctx, repo.ManifestKey("base_b"))
	if _, err := ReadChain(ctx, st, d2); !errors.Is(err, ErrBrokenChain) || !errors.Is(err, ErrNoBackup) || !strings.Contains(err.Error(), "base_b") {
		t.Fatalf("missing link: %v", err)
	}
}
