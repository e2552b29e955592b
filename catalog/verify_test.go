package catalog

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/delta"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

// controlImage returns a valid pg_control of system sysID.
func controlImage() []byte {
	b := make([]byte, pg.ControlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 7300000000000000042)
	le.PutUint32(b[8:], pg.PGControlVersion)
	le.PutUint32(b[12:], 202209061)
	le.PutUint32(b[16:], uint32(pg.DBInProduction))
	le.PutUint32(b[48:], 1)
	le.PutUint64(b[208:], math.Float64bits(1234567.0))
	le.PutUint32(b[216:], 8192)
	le.PutUint32(b[220:], 131072)
	le.PutUint32(b[224:], 8192)
	le.PutUint32(b[228:], 16<<20)
	le.PutUint32(b[288:], crc32.Checksum(b[:288], castagnoli))
	return b
}

// tarEntry is one file of a synthetic part.
type tarEntry struct {
	path string
	body []byte
}

// synthBackup builds manifests and parts of synthetic backups.
type synthBackup struct {
	t   *testing.T
	st  *mem.Store
	enc *repo.Encoder
	m   *Manifest
	now time.Time
	// format1 records parts as walrus format 1 did: the SHA-256 of the
	// plaintext instead of the stored bytes'.
	format1 bool
}

func newSynth(t *testing.T, st *mem.Store, codec, name string, segNo uint64) *synthBackup {
	c, err := compress.ByName(codec)
	if err != nil {
		t.Fatal(err)
	}
	now := epoch.Add(time.Duration(segNo) * time.Hour)
	m := &Manifest{}
	m.FormatVersion = FormatVersion
	m.Name, m.Kind = name, KindFull
	m.SystemIdentifier, m.PGVersion, m.Timeline = sysID, 150004, 1
	m.StartLSN, m.FinishLSN = segLSN(segNo), segLSN(segNo)+0x100
	m.StartWALFile, m.FinishWALFile = seg(1, segNo), seg(1, segNo)
	m.StartTime, m.FinishTime = now, now.Add(time.Minute)
	m.WALSegmentSize, m.BlockSize, m.Codec = seg16M, 8192, codec
	m.BackupLabel = "START WAL LOCATION: ...\n"
	m.Files = []File{
		{Path: "base", Kind: FileDir, Mode: 0o700, MTime: now},
		{Path: "base/1", Kind: FileDir, Mode: 0o700, MTime: now},
		{Path: "global", Kind: FileDir, Mode: 0o700, MTime: now},
	}
	return &synthBackup{t: t, st: st, enc: &repo.Encoder{Codec: c}, m: m, now: now}
}

// part stores entries as one tar part and lists them; kinds and extra
// fields come from files (by path).
func (s *synthBackup) part(files map[string]File, entries ...tarEntry) {
	s.t.Helper()
	name := "part_0000" + string(rune('1'+len(s.m.Parts))) + ".tar"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.path, Size: int64(len(e.body)), Mode: 0o600}); err != nil {
			s.t.Fatal(err)
		}
		tw.Write(e.body)
		f := files[e.path]
		f.Path, f.Part, f.Mode, f.MTime = e.path, name, 0o600, s.now
		f.CRC32C = crcHex(e.body)
		if f.Kind == "" {
			f.Kind, f.Size = FileWhole, int64(len(e.body))
			s.m.DataSize += f.Size
			if s.m.Kind == KindDelta {
				s.m.DeltaSize += f.Size
			}
		} else {
			f.StoredSize = int64(len(e.body))
			s.m.DataSize += f.Size
			s.m.DeltaSize += f.StoredSize
		}
		s.m.Files = append(s.m.Files, f)
	}
	tw.Close()
	w, err := s.enc.Put(context.Background(), s.st, repo.PartsPrefix(s.m.Name)+name, bytes.NewReader(buf.Bytes()), storage.PutOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	p := Part{Name: name, Key: w.Key, RawSize: int64(buf.Len()), StoredSize: w.StoredSize, StoredSHA256: w.StoredSHA256}
	if s.format1 {
		sum := sha256.Sum256(buf.Bytes())
		s.m.FormatVersion, p.StoredSHA256, p.SHA256 = 1, "", hex.EncodeToString(sum[:])
	}
	s.m.Parts = append(s.m.Parts, p)
	s.m.StoredSize += w.StoredSize
}

func (s *synthBackup) write() *Manifest {
	s.t.Helper()
	sortFiles(s.m.Files)
	if err := WriteManifest(context.Background(), s.st, s.m); err != nil {
		s.t.Fatal(err)
	}
	return s.m
}

func sortFiles(fs []File) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j-1].Path > fs[j].Path; j-- {
			fs[j-1], fs[j] = fs[j], fs[j-1]
		}
	}
}

func crcHex(b []byte) string {
	return hex.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, castagnoli)))
}

func pages(seed uint64, n int) []byte {
	b := make([]byte, n*8192)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// verifyRepo holds a full backup (two parts) and a delta of it: an
// increment of one page, a file unchanged, and WAL for both.
type verifyRepo struct {
	st          *mem.Store
	full, delta *Manifest
	increment   []byte
}

func buildVerifyRepo(t *testing.T, codec string) *verifyRepo {
	t.Helper()
	st := mem.New()
	rel := pages(1, 3)
	other := pages(2, 1)
	ctl := controlImage()
	f := newSynth(t, st, codec, "vf1", 3)
	f.part(nil, tarEntry{"PG_VERSION", []byte("15\n")}, tarEntry{"base/1/16384", rel})
	f.part(nil, tarEntry{"base/1/16385", other}, tarEntry{"global/pg_control", ctl})
	full := f.write()

	changed := bytes.Clone(rel)
	copy(changed[8192:], pages(3, 1))
	var inc bytes.Buffer
	if _, err := delta.WriteIncrement(&inc, bytes.NewReader(changed), delta.Selection{Name: "base/1/16384", FileSize: int64(len(changed)), Blocks: []uint32{1}}, 8192); err != nil {
		t.Fatal(err)
	}
	d := newSynth(t, st, codec, "vd1", 5)
	from, root := "vf1", "vf1"
	d.m.Kind, d.m.DeltaFrom, d.m.DeltaRoot = KindDelta, &from, &root
	d.m.Files = append(d.m.Files, File{Path: "base/1/16385", Kind: FileUnchanged, Size: 8192, Mode: 0o600, MTime: d.now, Source: "vf1"})
	d.m.DataSize += 8192
	d.part(map[string]File{"base/1/16384": {Kind: FileIncrement, Size: int64(len(changed)), Blocks: 1}},
		tarEntry{"PG_VERSION", []byte("15\n")}, tarEntry{"base/1/16384", inc.Bytes()}, tarEntry{"global/pg_control", ctl})
	dm := d.write()
	for s := uint64(3); s <= 6; s++ {
		if err := st.Put(context.Background(), repo.WALPrefix+seg(1, s)+".lz4", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return &verifyRepo{st: st, full: full, delta: dm, increment: inc.Bytes()}
}

func (v *verifyRepo) verify(t *testing.T, names ...string) *VerifyReport {
	t.Helper()
	rep, err := VerifyBackups(context.Background(), VerifyOptions{Store: v.st, Decoder: &repo.Decoder{}, Concurrency: 2}, names)
	if err != nil {
		t.Fatalf("verify %v: %v", names, err)
	}
	for _, b := range rep.Backups {
		if b.OK != (len(b.Problems) == 0) {
			t.Fatalf("backup %s: ok %v with problems %v", b.Name, b.OK, b.Problems)
		}
	}
	return rep
}

// hasProblem reports whether the report names backup, part and file
// (those that are not "") in one problem.
func hasProblem(rep *VerifyReport, backup, part, file string) bool {
	for _, b := range rep.Backups {
		for _, p := range b.Problems {
			if (backup == "" || p.Backup == backup) && (part == "" || p.Part == part) && (file == "" || p.File == file) {
				return true
			}
		}
	}
	return false
}

func problems(rep *VerifyReport) string {
	var s []string
	for _, b := range rep.Backups {
		for _, p := range b.Problems {
			s = append(s, p.String())
		}
	}
	return strings.Join(s, "\n")
}

func TestVerifyIntact(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"none", "lz4", "zstd"} {
		v := buildVerifyRepo(t, codec)
		rep := v.verify(t)
		if !rep.OK || len(rep.Backups) != 2 {
			t.Fatalf("%s: intact backups: %+v\n%s", codec, rep, problems(rep))
		}
		d := rep.Backups[1]
		if d.Name != "vd1" || !reflect.DeepEqual(d.Chain, []string{"vd1", "vf1"}) || d.Parts != 3 || d.Files != 7 ||
			d.FirstWAL != seg(1, 5) || d.LastWAL != seg(1, 5) || d.Bytes <= 4*8192 {
			t.Fatalf("%s: delta check %+v", codec, d)
		}
		if rep := v.verify(t, Latest); len(rep.Backups) != 1 || rep.Backups[0].Name != "vd1" || !rep.OK {
			t.Fatalf("LATEST: %+v", rep)
		}
	}
	if _, err := VerifyBackups(context.Background(), VerifyOptions{Store: mem.New(), Decoder: &repo.Decoder{}}, nil); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("verify all on an empty repository: %v", err)
	}
	v := buildVerifyRepo(t, "none")
	if _, err := VerifyBackups(context.Background(), VerifyOptions{Store: v.st, Decoder: &repo.Decoder{}}, []string{"nope"}); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("verify a missing backup: %v", err)
	}
}

// TestVerifyFlippedByte flips each byte of every part in turn: verifying
// the delta (which reads the full backup too) names the part every time.
func TestVerifyFlippedByte(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, codec := range []string{"none", "lz4"} {
		v := buildVerifyRepo(t, codec)
		for _, m := range []*Manifest{v.full, v.delta} {
			for _, p := range m.Parts {
				rc, _ := v.st.Get(ctx, p.Key)
				orig, _ := io.ReadAll(rc)
				rc.Close()
				step := max(1, len(orig)/300)
				for off := 0; off < len(orig); off += step {
					b := bytes.Clone(orig)
					b[off] ^= 0x10
					v.st.Put(ctx, p.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
					rep := v.verify(t, "vd1")
					if rep.OK || !hasProblem(rep, m.Name, p.Name, "") {
						t.Fatalf("%s: byte %d of %s flipped: %s", codec, off, p.Key, problems(rep))
					}
				}
				v.st.Put(ctx, p.Key, bytes.NewReader(orig), storage.PutOptions{Size: int64(len(orig))})
			}
		}
		if rep := v.verify(t); !rep.OK {
			t.Fatalf("restored: %s", problems(rep))
		}
	}
	// In plaintext a flipped byte in a file is named with the file.
	v := buildVerifyRepo(t, "none")
	p := v.full.Parts[1]
	rc, _ := v.st.Get(ctx, p.Key)
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[512+100] ^= 1 // inside base/1/16385, the part's first file
	v.st.Put(ctx, p.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	rep := v.verify(t)
	if !hasProblem(rep, "vf1", p.Name, "base/1/16385") || !hasProblem(rep, "vf1", p.Name, "") {
		t.Fatalf("flipped byte in base/1/16385: %s", problems(rep))
	}
	if !strings.Contains(problems(rep), "crc32c") || !strings.Contains(problems(rep), "sha256") {
		t.Fatalf("problems do not say what is wrong: %s", problems(rep))
	}
}

// TestVerifyFormat1 reads a backup of walrus's manifest format 1, whose
// parts carry the SHA-256 of their plaintext: intact, it verifies; with a
// byte flipped anywhere in a part, the part is named.
func TestVerifyFormat1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	f := newSynth(t, st, "none", "old1", 3)
	f.format1 = true
	f.part(nil, tarEntry{"PG_VERSION", []byte("15\n")}, tarEntry{"base/1/16384", pages(1, 2)}, tarEntry{"global/pg_control", controlImage()})
	m := f.write()
	if m.FormatVersion != 1 || m.Parts[0].SHA256 == "" || m.Parts[0].StoredSHA256 != "" {
		t.Fatalf("not a format 1 manifest: %+v", m.Parts[0])
	}
	st.Put(ctx, repo.WALPrefix+seg(1, 3)+".lz4", strings.NewReader("x"), storage.PutOptions{Size: 1})
	v := &verifyRepo{st: st, full: m}
	if rep := v.verify(t); !rep.OK {
		t.Fatalf("intact format 1 backup: %s", problems(rep))
	}
	p := m.Parts[0]
	rc, _ := st.Get(ctx, p.Key)
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[100] ^= 1 // in the first tar header: no file's CRC sees it
	st.Put(ctx, p.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	if rep := v.verify(t); rep.OK || !hasProblem(rep, "old1", p.Name, "") {
		t.Fatalf("flipped byte in a format 1 part: %s", problems(rep))
	}
}

func TestVerifyMissingPartAndWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := buildVerifyRepo(t, "lz4")
	victim := v.full.Parts[0]
	v.st.Delete(ctx, victim.Key)
	v.st.Delete(ctx, repo.WALPrefix+seg(1, 5)+".lz4")
	rep := v.verify(t)
	if rep.OK || rep.Backups[0].OK || rep.Backups[1].OK {
		t.Fatalf("missing part: %+v", rep)
	}
	if !hasProblem(rep, "vf1", victim.Name, "") || !strings.Contains(problems(rep), "missing") {
		t.Fatalf("missing part not named: %s", problems(rep))
	}
	d := rep.Backups[1]
	found := false
	for _, p := range d.Problems {
		found = found || p.WALFile == seg(1, 5)
	}
	if !found {
		t.Fatalf("missing WAL not named for vd1: %s", problems(rep))
	}
	for _, p := range rep.Backups[0].Problems {
		if p.WALFile != "" {
			t.Fatalf("vf1 needs no WAL of vd1: %v", p)
		}
	}

	// A part cut short.
	v = buildVerifyRepo(t, "lz4")
	p := v.delta.Parts[0]
	rc, _ := v.st.Get(ctx, p.Key)
	b, _ := io.ReadAll(rc)
	rc.Close()
	v.st.Put(ctx, p.Key, bytes.NewReader(b[:len(b)-10]), storage.PutOptions{Size: int64(len(b) - 10)})
	if rep := v.verify(t, "vd1"); rep.OK || !hasProblem(rep, "vd1", p.Name, "") {
		t.Fatalf("truncated part: %s", problems(rep))
	}
}

func TestVerifyChainAndManifest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The base's manifest is gone: the delta's chain is broken, and its
	// own parts are still read.
	v := buildVerifyRepo(t, "none")
	v.st.Delete(ctx, repo.ManifestKey("vf1"))
	rep := v.verify(t, "vd1")
	if rep.OK || !strings.Contains(problems(rep), "vf1") || rep.Backups[0].Parts != 1 {
		t.Fatalf("broken chain: %+v\n%s", rep, problems(rep))
	}

	// A manifest that places a file in a part that lacks it.
	v = buildVerifyRepo(t, "none")
	m := v.full
	for i := range m.Files {
		if m.Files[i].Path == "PG_VERSION" {
			m.Files[i].Part = m.Parts[1].Name
		}
	}
	v.st.Delete(ctx, repo.ManifestKey("vf1"))
	if err := WriteManifest(ctx, v.st, m); err != nil {
		t.Fatal(err)
	}
	rep = v.verify(t, "vf1")
	if rep.OK || !strings.Contains(problems(rep), "refusing tar entry \"PG_VERSION\"") {
		t.Fatalf("misplaced file: %s", problems(rep))
	}

	// An increment whose page is damaged, its checksums recomputed around
	// it so that only the increment's own checksum can tell.
	v = buildVerifyRepo(t, "none")
	inc := bytes.Clone(v.increment)
	inc[len(inc)-100] ^= 1
	d := newSynth(t, v.st, "none", "vd2", 6)
	from, root := "vf1", "vf1"
	d.m.Kind, d.m.DeltaFrom, d.m.DeltaRoot = KindDelta, &from, &root
	d.m.Files = append(d.m.Files, File{Path: "base/1/16385", Kind: FileUnchanged, Size: 8192, Mode: 0o600, MTime: d.now, Source: "vf1"})
	d.m.DataSize += 8192
	d.part(map[string]File{"base/1/16384": {Kind: FileIncrement, Size: 3 * 8192, Blocks: 1}},
		tarEntry{"PG_VERSION", []byte("15\n")}, tarEntry{"base/1/16384", inc}, tarEntry{"global/pg_control", controlImage()})
	d.write()
	rep = v.verify(t, "vd2")
	if rep.OK || !hasProblem(rep, "vd2", "part_00001.tar", "base/1/16384") || !strings.Contains(problems(rep), "trailing checksum") {
		t.Fatalf("damaged increment: %s", problems(rep))
	}
}
