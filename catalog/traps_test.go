package catalog

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/mem"
)

// orderCase is one backup of TestListOrderIgnoresNamesAndTimes.
type orderCase struct {
	name  string
	sysid string
	tli   pg.TimelineID
	start pg.LSN
}

// TestListOrderIgnoresNamesAndTimes proves that ListBackups orders backups
// by (system identifier, timeline, start LSN, name) read from the
// manifests, and that LATEST resolves to the last of that order (TRAPS.md
// 24), when the names, the write order, the objects' modification times
// (recorded by mem at Put, and set with os.Chtimes on an fs store) and the
// manifests' start times each give another order and another newest
// backup. Timeline 2 and 3 start below timeline 1's newest start LSN, and
// timeline 3 below timeline 2: the higher timeline wins. Two backups with
// the same (system, timeline, start LSN) are ordered by name, against
// their write order. A backup of another system identifier, numerically
// greater but lexically smaller ("1000..." < "7300..."), sorts after every
// backup of the first system; in a repository without walrus.json it is
// what LATEST resolves to (the last in ListBackups order), although it
// has the lowest timeline and start LSN, was written first and has the
// oldest object time. Once walrus.json names the first system, or
// without that backup, LATEST is the timeline 3 backup.
func TestListOrderIgnoresNamesAndTimes(t *testing.T) {
	t.Parallel()
	const sysA = "7300000000000000042"
	const sysB = "10000000000000000000" // > sysA as a number, < as a string
	all := map[string]orderCase{
		"base_e": {"base_e", sysA, 1, 0x1000028},
		"base_c": {"base_c", sysA, 1, 0x5000028},
		"base_a": {"base_a", sysA, 2, 0x3000028},
		"base_f": {"base_f", sysA, 2, 0x3000028},
		"base_d": {"base_d", sysA, 3, 0x2000028},
		"base_b": {"base_b", sysB, 1, 0x1000028},
	}
	want := []string{"base_e", "base_c", "base_a", "base_f", "base_d", "base_b"}
	wantA := want[:5] // after base_b (system B) is removed
	writeOrder := []string{"base_b", "base_d", "base_f", "base_a", "base_c", "base_e"}
	mtimeOrder := []string{"base_b", "base_f", "base_d", "base_a", "base_e", "base_c"}
	// start_time in the manifests: the reverse of the wanted order.
	startTime := func(name string) time.Time {
		return epoch.Add(time.Duration(len(want)-slices.Index(want, name)) * time.Hour)
	}

	// The scenario must tell the orders apart, or the test could not fail.
	names := slices.Sorted(maps.Keys(all))
	byStart := slices.Clone(want)
	slices.SortFunc(byStart, func(a, b string) int { return startTime(a).Compare(startTime(b)) })
	lexSys := slices.Clone(want)
	slices.SortStableFunc(lexSys, func(a, b string) int { return strings.Compare(all[a].sysid, all[b].sysid) })
	for what, decoy := range map[string][]string{"names": names, "write order": writeOrder, "object times": mtimeOrder, "start_time": byStart, "lexical system identifiers": lexSys} {
		if slices.Equal(decoy, want) || decoy[len(decoy)-1] == want[len(want)-1] {
			t.Fatalf("bad scenario: ordering by %s gives %v, too close to %v", what, decoy, want)
		}
		var onlyA []string
		for _, n := range decoy {
			if all[n].sysid == sysA {
				onlyA = append(onlyA, n)
			}
		}
		if what != "lexical system identifiers" && (slices.Equal(onlyA, wantA) || onlyA[len(onlyA)-1] == wantA[len(wantA)-1]) {
			t.Fatalf("bad scenario: without system B, ordering by %s gives %v, too close to %v", what, onlyA, wantA)
		}
	}

	stores := map[string]func(t *testing.T) (storage.Store, func(name string, mod time.Time)){
		"mem": func(t *testing.T) (storage.Store, func(string, time.Time)) {
			return mem.New(), nil
		},
		"fs": func(t *testing.T) (storage.Store, func(string, time.Time)) {
			root := t.TempDir()
			st, err := fs.New(root)
			if err != nil {
				t.Fatal(err)
			}
			return st, func(name string, mod time.Time) {
				p := filepath.Join(root, filepath.FromSlash(repo.ManifestKey(name)))
				if err := os.Chtimes(p, mod, mod); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
	for storeName, open := range stores {
		t.Run(storeName, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st, chtimes := open(t)
			for _, n := range writeOrder {
				c := all[n]
				m := validManifest(c.name, c.sysid, c.tli, c.start)
				m.StartTime = startTime(n)
				m.FinishTime = m.StartTime.Add(time.Minute)
				if err := WriteManifest(ctx, st, m); err != nil {
					t.Fatal(err)
				}
			}
			expectTimes := writeOrder
			if chtimes != nil {
				for i, n := range mtimeOrder {
					chtimes(n, epoch.Add(time.Duration(i)*time.Hour))
				}
				expectTimes = mtimeOrder
			}
			// The store reports the object times the scenario relies on:
			// strictly increasing along expectTimes.
			mod := map[string]time.Time{}
			err := st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
				if n, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, repo.BackupsPrefix), manifestSuffix); ok {
					mod[n] = o.ModTime
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(expectTimes); i++ {
				if !mod[expectTimes[i-1]].Before(mod[expectTimes[i]]) {
					t.Fatalf("object times are not in the order %v: %v", expectTimes, mod)
				}
			}

			check := func(want []string) {
				t.Helper()
				bs, err := ListBackups(ctx, st)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, b := range bs {
					got = append(got, b.Name)
					c := all[b.Name]
					if b.SystemIdentifier != c.sysid || b.Timeline != c.tli || b.StartLSN != c.start {
						t.Fatalf("summary of %s: %+v, want %+v", b.Name, b, c)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("ListBackups order %v, want %v", got, want)
				}
				m, err := Resolve(ctx, st, Latest)
				if err != nil {
					t.Fatal(err)
				}
				if latest := want[len(want)-1]; m.Name != latest {
					t.Fatalf("LATEST = %s, want %s", m.Name, latest)
				}
			}
			check(want)
			// Once the repository says whose it is (walrus.json), LATEST is
			// the newest backup of that cluster: a manifest of another
			// cluster copied in is never taken for the newest.
			if _, err := repo.EnsureIdentity(ctx, st, 7300000000000000042, false); err != nil {
				t.Fatal(err)
			}
			if m, err := Resolve(ctx, st, Latest); err != nil || m.Name != "base_d" {
				t.Fatalf("LATEST with walrus.json of system %s: %v %v, want base_d", sysA, m, err)
			}
			// Without the other system's backup, LATEST is the backup of the
			// highest timeline, although it starts below timeline 1's newest.
			if err := st.Delete(ctx, repo.ManifestKey("base_b")); err != nil {
				t.Fatal(err)
			}
			check(wantA)
		})
	}
}

// TestVerifyPartLacksListedFile proves that backup verification reports a
// part whose tar stream simply omits a file the manifest places in it
// (TRAPS.md 11): every entry present is intact, so only ReadPart's final
// check ("part %s lacks %s") can tell. The problem names the backup, the
// part and the missing file (the first in path order, with a count of the
// others when more are missing), and it is the only problem: the part is
// otherwise read through. Omitting a file in the middle of the tar, at its
// end, or two files are each caught.
func TestVerifyPartLacksListedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ctl := controlImage()
	cases := []struct {
		name string
		// kept are in the tar; omitted are only in the manifest.
		kept, omitted []tarEntry
		wantMsg       string
	}{
		{
			name:    "middle",
			kept:    []tarEntry{{"PG_VERSION", []byte("15\n")}, {"global/pg_control", ctl}},
			omitted: []tarEntry{{"base/1/16386", []byte("a small relation file")}},
			wantMsg: "part part_00001.tar lacks base/1/16386, which the manifest places in it",
		},
		{
			name:    "last",
			kept:    []tarEntry{{"PG_VERSION", []byte("15\n")}, {"global/pg_control", ctl}},
			omitted: []tarEntry{{"global/pg_filenode.map", []byte("a map")}},
			wantMsg: "part part_00001.tar lacks global/pg_filenode.map, which the manifest places in it",
		},
		{
			name:    "two",
			kept:    []tarEntry{{"global/pg_control", ctl}},
			omitted: []tarEntry{{"base/1/16387", []byte("second")}, {"PG_VERSION", []byte("15\n")}},
			wantMsg: "part part_00001.tar lacks PG_VERSION (and 1 more), which the manifest places in it",
		},
	}
	for _, codec := range []string{"none", "lz4"} {
		for _, tc := range cases {
			st := mem.New()
			s := newSynth(t, st, codec, "lack1", 3)
			s.part(nil, tc.kept...)
			// The manifest lists the omitted files in the same part, with
			// sizes and checksums, as if the tar had held them.
			part := s.m.Parts[0]
			for _, e := range tc.omitted {
				s.m.Files = append(s.m.Files, File{Path: e.path, Kind: FileWhole, Size: int64(len(e.body)), Mode: 0o600, MTime: s.now, Part: part.Name, CRC32C: crcHex(e.body)})
				s.m.DataSize += int64(len(e.body))
			}
			s.write()
			if err := st.Put(ctx, repo.WALPrefix+seg(1, 3)+".lz4", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
				t.Fatal(err)
			}

			rep, err := VerifyBackups(ctx, VerifyOptions{Store: st, Decoder: &repo.Decoder{}, Concurrency: 1}, []string{"lack1"})
			if err != nil {
				t.Fatalf("%s/%s: verify: %v", codec, tc.name, err)
			}
			if rep.OK || len(rep.Backups) != 1 || rep.Backups[0].OK {
				t.Fatalf("%s/%s: a part lacking a listed file verifies: %+v", codec, tc.name, rep)
			}
			ps := rep.Backups[0].Problems
			if len(ps) != 1 {
				t.Fatalf("%s/%s: want exactly one problem, got:\n%s", codec, tc.name, problems(rep))
			}
			p := ps[0]
			if p.Backup != "lack1" || p.Part != part.Name || p.Object != part.Key || !strings.Contains(p.Message, tc.wantMsg) {
				t.Fatalf("%s/%s: problem %q, want backup lack1, part %s (%s), message containing %q", codec, tc.name, p.String(), part.Name, part.Key, tc.wantMsg)
			}
			if rep.Backups[0].Files != len(tc.kept) {
				t.Fatalf("%s/%s: %d files read, want the %d the tar holds", codec, tc.name, rep.Backups[0].Files, len(tc.kept))
			}
		}
	}

	// The same backup with the files in the tar verifies: the problem
	// comes from the omission alone.
	st := mem.New()
	s := newSynth(t, st, "lz4", "lack1", 3)
	s.part(nil, tarEntry{"PG_VERSION", []byte("15\n")}, tarEntry{"base/1/16386", []byte("a small relation file")}, tarEntry{"global/pg_control", ctl})
	s.write()
	if err := st.Put(ctx, repo.WALPrefix+seg(1, 3)+".lz4", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyBackups(ctx, VerifyOptions{Store: st, Decoder: &repo.Decoder{}, Concurrency: 1}, []string{"lack1"})
	if err != nil {
		t.Fatalf("intact control: %v", err)
	}
	if !rep.OK {
		t.Fatalf("intact control:\n%s", problems(rep))
	}
}
