package basebackup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/storage"
)

// finalFiles are the files that make a restored directory startable, in
// the order Fetch writes them (writeFinal), pg_control last (TRAPS.md 28).
func finalFiles() []string {
	return []string{"recovery.signal", versionFilePath, controlFilePath}
}

// syncEvent is one fsync reported by FetchOptions.onSync, with what the
// path was at that moment.
type syncEvent struct {
	kind, path string
	size       int64
	mode       fs.FileMode
	mtime      time.Time
}

func (e syncEvent) String() string { return e.kind + " " + e.path }

// syncRecorder records the fsyncs of one Fetch. While it runs, it checks
// that none of the files that make the directory startable exists before
// its own fsync is reported: a file written earlier than writeFinal, or
// written and fsynced later, shows up here.
type syncRecorder struct {
	t    *testing.T
	dest string
	// inject, when not nil, runs after an event is recorded, and the check
	// above is off (inject may put things in the way).
	inject func(kind, path string)

	mu       sync.Mutex
	events   []syncEvent
	returned bool
}

func newSyncRecorder(t *testing.T, dest string) *syncRecorder {
	return &syncRecorder{t: t, dest: dest}
}

// hook is the FetchOptions.onSync of the restore.
func (r *syncRecorder) hook(kind, path string) {
	e := syncEvent{kind: kind, path: path}
	if fi, err := os.Lstat(path); err == nil {
		e.size, e.mode, e.mtime = fi.Size(), fi.Mode(), fi.ModTime()
	}
	r.mu.Lock()
	if r.returned {
		r.t.Errorf("fsync of %s (%s) reported after Fetch returned", path, kind)
	}
	if r.inject == nil {
		for _, rel := range finalFiles() {
			p := filepath.Join(r.dest, filepath.FromSlash(rel))
			if kind == syncedFinal && path == p {
				continue
			}
			published := slices.ContainsFunc(r.events, func(x syncEvent) bool { return x.kind == syncedFinal && x.path == p })
			if _, err := os.Lstat(p); err == nil && !published {
				r.t.Errorf("%s exists, not yet fsynced as a final file, when %s is fsynced (%s): it must be written last", rel, path, kind)
			}
		}
	}
	r.events = append(r.events, e)
	r.mu.Unlock()
	if r.inject != nil {
		r.inject(kind, path)
	}
}

// fetch runs Fetch with the recorder as its onSync hook.
func (r *syncRecorder) fetch(opts FetchOptions) (FetchResult, error) {
	opts.onSync = r.hook
	res, err := Fetch(context.Background(), opts)
	r.mu.Lock()
	r.returned = true
	r.mu.Unlock()
	return res, err
}

// list returns the events recorded.
func (r *syncRecorder) list() []syncEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// restoredTree lists the regular files and directories under roots (the
// roots included), not following symbolic links; any other kind of file is
// an error.
func restoredTree(t *testing.T, roots ...string) (files, dirs []string) {
	t.Helper()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				dirs = append(dirs, p)
			case d.Type().IsRegular():
				files = append(files, p)
			case d.Type()&fs.ModeSymlink != 0 && filepath.Dir(p) == filepath.Join(roots[0], "pg_tblspc"):
				// A tablespace link: pg_tblspc's fsync makes it durable.
			default:
				t.Errorf("%s: unexpected %v in the restored tree", p, d.Type())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files, dirs
}

// checkSyncs checks the fsyncs of a successful restore of m into dest and
// the tablespace directories spcs:
//
//   - every regular file of the restored tree was fsynced before Fetch
//     returned: each file restored from the backup exactly once by
//     syncFiles, each file the restore writes itself once, with nothing
//     written to it after its fsync;
//   - every directory (dest and the tablespace directories included) was
//     fsynced, after every file and directory in it, deepest first, and
//     the parents of dest and of the tablespace directories after them;
//   - the phases are in the documented order: restored files, then the
//     files the restore adds, then directories, then recovery.signal,
//     PG_VERSION and global/pg_control, each with its directory;
//   - global/pg_control and its directory are the last two fsyncs.
func checkSyncs(t *testing.T, m *catalog.Manifest, events []syncEvent, dest string, spcs ...string) {
	t.Helper()
	files, dirs := restoredTree(t, append([]string{dest}, spcs...)...)
	at := func(rel string) string { return filepath.Join(dest, filepath.FromSlash(rel)) }
	added := map[string]bool{at("backup_label"): true, at("tablespace_map"): true, at(pg.RestoreConfigFile): true, at("postgresql.auto.conf"): true}
	final := map[string]bool{}
	for _, rel := range finalFiles() {
		final[at(rel)] = true
	}
	type kindPath struct{ kind, path string }
	count := map[kindPath]int{}
	last := map[string]syncEvent{}
	for _, e := range events {
		count[kindPath{e.kind, e.path}]++
		last[e.path] = e
	}
	isFile := map[string]bool{}
	for _, p := range files {
		isFile[p] = true
		n := func(kind string) int { return count[kindPath{kind, p}] }
		wantFile, wantAdded, wantFinal := 1, 0, 0
		switch {
		case final[p]:
			wantFile, wantFinal = 0, 1
		case p == at("postgresql.auto.conf"):
			// Restored (when the backup has it) and fsynced, then appended
			// to and fsynced again.
			wantAdded = 1
			if m.File("postgresql.auto.conf") == nil {
				wantFile = 0
			}
		case added[p]:
			wantFile, wantAdded = 0, 1
		}
		if n(syncedFile) != wantFile || n(syncedAdded) != wantAdded || n(syncedFinal) != wantFinal {
			t.Errorf("%s fsynced %d times as a restored file, %d as an added one, %d as a final one; want %d, %d, %d",
				p, n(syncedFile), n(syncedAdded), n(syncedFinal), wantFile, wantAdded, wantFinal)
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		e := last[p]
		if e.size != fi.Size() || e.mode != fi.Mode() {
			t.Errorf("%s changed after its last fsync (%s): %d bytes, mode %v then; %d bytes, mode %v now", p, e.kind, e.size, e.mode, fi.Size(), fi.Mode())
		}
		// Every file is complete, time included, when it is fsynced.
		if !e.mtime.Equal(fi.ModTime()) {
			t.Errorf("%s changed after its last fsync (%s): modified %v then, %v now", p, e.kind, e.mtime, fi.ModTime())
		}
	}
	isDir := map[string]bool{}
	for _, d := range dirs {
		isDir[d] = true
	}
	// The parents of dest and of the tablespace directories hold the
	// entries of directories the restore may have created.
	parentOf := map[string]string{}
	for _, d := range append([]string{dest}, spcs...) {
		parentOf[d] = filepath.Dir(d)
	}
	isParent := map[string]bool{}
	for _, p := range parentOf {
		isParent[p] = true
	}
	for _, e := range events {
		if e.kind == syncedDir && !isDir[e.path] && !isParent[e.path] || e.kind != syncedDir && !isFile[e.path] {
			t.Errorf("fsync %s: not a %s of the restored tree", e, map[bool]string{true: "directory", false: "regular file"}[e.kind == syncedDir])
		}
	}

	// Every directory is fsynced after what it holds: each file's parent
	// after the file's fsync, each directory's parent (within the tree)
	// after the directory's first fsync, dest and the tablespace
	// directories at least once.
	lastDirSync := map[string]int{}
	firstDirSync := map[string]int{}
	for i, e := range events {
		if e.kind == syncedDir {
			lastDirSync[e.path] = i
			if _, ok := firstDirSync[e.path]; !ok {
				firstDirSync[e.path] = i
			}
		}
	}
	for _, d := range dirs {
		first, ok := firstDirSync[d]
		if !ok {
			t.Errorf("directory %s was never fsynced", d)
			continue
		}
		if parent := filepath.Dir(d); isDir[parent] && lastDirSync[parent] < first {
			t.Errorf("directory %s fsynced (event %d) after its last fsync of its parent %s (event %d)", d, first, parent, lastDirSync[parent])
		}
	}
	for d, parent := range parentOf {
		if j, ok := lastDirSync[parent]; !ok || j < firstDirSync[d] {
			t.Errorf("the parent %s of %s was not fsynced after it (events %d and %d)", parent, d, j, firstDirSync[d])
		}
	}
	for i, e := range events {
		if e.kind == syncedDir {
			continue
		}
		if j, ok := lastDirSync[filepath.Dir(e.path)]; !ok || j < i {
			t.Errorf("%s fsynced (event %d) after the last fsync of its directory (event %d)", e.path, i, j)
		}
	}

	// The documented order of the phases, and pg_control last.
	var kinds strings.Builder
	for _, e := range events {
		kinds.WriteString(e.kind + " ")
	}
	phases := regexp.MustCompile(`^(file )+(added )+(dir )+(final dir ){3}$`)
	if !phases.MatchString(kinds.String()) {
		t.Errorf("fsyncs in the order %s, want restored files, added files, directories, then each final file with its directory", compactKinds(events))
	}
	var finals []string
	for i, e := range events {
		if e.kind == syncedFinal {
			finals = append(finals, e.path)
			if i+1 >= len(events) || events[i+1].kind != syncedDir || events[i+1].path != filepath.Dir(e.path) {
				t.Errorf("%s is not followed by the fsync of its directory", e.path)
			}
		}
	}
	var want []string
	for _, rel := range finalFiles() {
		want = append(want, at(rel))
	}
	if !slices.Equal(finals, want) {
		t.Errorf("final files fsynced in the order %v, want %v", finals, want)
	}
	if n := len(events); n < 2 || events[n-2].kind != syncedFinal || events[n-2].path != at(controlFilePath) ||
		events[n-1].kind != syncedDir || events[n-1].path != filepath.Dir(at(controlFilePath)) {
		t.Errorf("the last fsyncs are %v, want global/pg_control then its directory", events[max(0, len(events)-2):])
	}
	if b, err := os.ReadFile(at(controlFilePath)); err != nil || !bytes.Equal(b, controlImage()) {
		t.Errorf("pg_control not restored (%v)", err)
	}
}

// compactKinds abbreviates the kinds of events for an error message:
// "file×12 added×3 ...".
func compactKinds(events []syncEvent) string {
	var out []string
	for i := 0; i < len(events); {
		j := i
		for j < len(events) && events[j].kind == events[i].kind {
			j++
		}
		out = append(out, fmt.Sprintf("%s×%d", events[i].kind, j-i))
		i = j
	}
	return strings.Join(out, " ")
}

// TestFetchFsyncs: a full restore (files in several parts, a tablespace, a
// restore configuration) fsyncs every file once, then every directory after
// what it holds, and writes pg_control last (TRAPS.md 28).
func TestFetchFsyncs(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	m := pushSynthetic(t, st, s, "base_test", 1<<20)
	root := t.TempDir()
	dest, spc := filepath.Join(root, "restored"), filepath.Join(root, "spc")
	opts := fetchOptions(st, dest)
	opts.TablespaceMap = map[string]string{"16400": spc}
	opts.Concurrency = 2
	opts.Recovery.ConfigFile = []byte("# frozen configuration\n")
	rec := newSyncRecorder(t, dest)
	if _, err := rec.fetch(opts); err != nil {
		t.Fatal(err)
	}
	events := rec.list()
	checkSyncs(t, m, events, dest, spc)
	// The tree holds what the test means to cover.
	for _, p := range []string{"base/1/big", "pg_commit_ts", pg.RestoreConfigFile, "tablespace_map"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); err != nil {
			t.Errorf("test setup: %v", err)
		}
	}
	if !slices.ContainsFunc(events, func(e syncEvent) bool {
		return e.kind == syncedFile && strings.HasPrefix(e.path, spc+string(filepath.Separator))
	}) {
		t.Error("test setup: no tablespace file restored")
	}
}

// TestFetchDeltaFsyncs: a restore of a delta chain (files written from
// increments over several links, unchanged files from older links) fsyncs
// as a full restore does.
func TestFetchDeltaFsyncs(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000)
	d.rel("base/5/16384", old, old, old, old)
	d.rel("base/5/16384.1", old, old)
	d.rel("base/5/16385", old, old)
	d.rel("global/1262", old)
	d.rel("pg_tblspc/16400/PG_15_202209061/5/16500", old, old)
	writeFile(t, filepath.Join(d.pgdata, "postgresql.auto.conf"), "# auto\n")
	full := mustPush(t, st, d, "base_full", nil, fullStart)
	d.setPage("base/5/16384", 2, 0x4000000, 1)
	d.setPage("pg_tblspc/16400/PG_15_202209061/5/16500", 1, 0x4000000, 2)
	d.rel("base/5/16391", 0x4000000)
	d1 := mustPush(t, st, d, "base_d1", full, delta1Start)
	d.setPage("base/5/16384", 0, 0x6000000, 3)
	d2 := mustPush(t, st, d, "base_d2", d1, delta2Start)
	want := map[string]string{
		"base/5/16384":   "increment:1",
		"base/5/16385":   "unchanged@base_full",
		"base/5/16391":   "unchanged@base_d1",
		"base/5/16384.1": "unchanged@base_full",
		"pg_tblspc/16400/PG_15_202209061/5/16500": "unchanged@base_d1",
	}
	got := kinds(d2)
	for p, k := range want {
		if got[p] != k {
			t.Fatalf("test setup: delta 2 stores %s as %s, want %s", p, got[p], k)
		}
	}

	root := t.TempDir()
	dest, spc := filepath.Join(root, "restored"), filepath.Join(root, "spc")
	opts := fetchOptions(st, dest)
	opts.Backup = "base_d2"
	opts.TablespaceMap = map[string]string{"16400": spc}
	opts.Concurrency = 2
	rec := newSyncRecorder(t, dest)
	if _, err := rec.fetch(opts); err != nil {
		t.Fatal(err)
	}
	checkSyncs(t, d2, rec.list(), dest, spc)
}

// TestFetchFailureNeverPublishesControl: a restore that fails, early or
// late, never fsyncs pg_control as a final file and leaves none of the
// files that make the directory startable.
func TestFetchFailureNeverPublishesControl(t *testing.T) {
	t.Parallel()
	s := newSynthetic(t)
	st := newMem()
	m := pushSynthetic(t, st, s, "base_test", 1<<20)
	ctx := context.Background()

	// check runs Fetch of backup from store into a new directory and
	// checks that it failed without publishing pg_control.
	check := func(t *testing.T, store storage.Store, backup string, inject func(dest string) func(kind, path string)) []syncEvent {
		t.Helper()
		root := t.TempDir()
		dest := filepath.Join(root, "restored")
		opts := fetchOptions(store, dest)
		opts.Backup = backup
		opts.TablespaceMap = map[string]string{"16400": filepath.Join(root, "spc")}
		rec := newSyncRecorder(t, dest)
		if inject != nil {
			rec.inject = inject(dest)
		}
		_, err := rec.fetch(opts)
		if err == nil {
			t.Fatal("the restore succeeded")
		}
		events := rec.list()
		for _, e := range events {
			if e.kind == syncedFinal && e.path == filepath.Join(dest, filepath.FromSlash(controlFilePath)) {
				t.Errorf("pg_control was published by a restore that failed: %v", err)
			}
		}
		for _, rel := range finalFiles() {
			if _, serr := os.Lstat(filepath.Join(dest, filepath.FromSlash(rel))); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("%s is there after a failed restore (%v)", rel, err)
			}
		}
		return events
	}

	t.Run("missing part", func(t *testing.T) {
		t.Parallel()
		cp := copyStore(t, st)
		if err := cp.Delete(ctx, m.Parts[1].Key); err != nil {
			t.Fatal(err)
		}
		if events := check(t, cp, m.Name, nil); len(events) != 0 {
			t.Errorf("a restore refused before writing fsynced %v", events)
		}
	})
	t.Run("corrupt part", func(t *testing.T) {
		t.Parallel()
		cp := copyStore(t, st)
		corruptPart(t, cp, m.Parts[0])
		if events := check(t, cp, m.Name, nil); slices.ContainsFunc(events, func(e syncEvent) bool { return e.kind == syncedFinal }) {
			t.Errorf("a restore that failed fsynced final files: %v", events)
		}
	})
	t.Run("pg_control cannot be written", func(t *testing.T) {
		t.Parallel()
		// Everything else is restored and published; then something is in
		// pg_control's way. The restore fails, and removes PG_VERSION and
		// recovery.signal, already fsynced.
		var published []string
		events := check(t, st, m.Name, func(dest string) func(kind, path string) {
			return func(kind, path string) {
				if kind == syncedFinal && path == filepath.Join(dest, versionFilePath) {
					if err := os.Mkdir(filepath.Join(dest, filepath.FromSlash(controlFilePath)), 0o700); err != nil {
						t.Error(err)
					}
				}
			}
		})
		for _, e := range events {
			if e.kind == syncedFinal {
				published = append(published, filepath.Base(e.path))
			}
		}
		if !slices.Equal(published, []string{"recovery.signal", versionFilePath}) {
			t.Errorf("test setup: final files fsynced before the failure: %v", published)
		}
	})
	t.Run("corrupt part of a delta's base", func(t *testing.T) {
		t.Parallel()
		st := newMem()
		d := newRelDir(t)
		d.rel("base/5/16384", 0x2000000, 0x2000000)
		d.rel("base/5/16385", 0x2000000)
		full := mustPush(t, st, d, "base_full", nil, fullStart)
		d.setPage("base/5/16384", 1, 0x4000000, 1)
		d1 := mustPush(t, st, d, "base_d1", full, delta1Start)
		if k := kinds(d1)["base/5/16384"]; k != "increment:1" {
			t.Fatalf("test setup: delta stores 16384 as %s", k)
		}
		for _, p := range full.Parts {
			if p.Name == full.File("base/5/16384").Part {
				corruptPart(t, st, p)
			}
		}
		if events := check(t, st, d1.Name, nil); slices.ContainsFunc(events, func(e syncEvent) bool { return e.kind == syncedFinal }) {
			t.Errorf("a restore that failed fsynced final files: %v", events)
		}
	})
}

// copyStore returns a new memory store holding every object of st.
func copyStore(t *testing.T, st storage.Store) storage.Store {
	t.Helper()
	ctx := context.Background()
	cp := newMem()
	err := st.List(ctx, "", func(info storage.ObjectInfo) error {
		b, err := readRaw(st, info.Key)
		if err != nil {
			return err
		}
		return cp.Put(ctx, info.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// corruptPart flips a bit in the middle of part's stored bytes.
func corruptPart(t *testing.T, st storage.Store, part catalog.Part) {
	t.Helper()
	ctx := context.Background()
	rc, err := st.Get(ctx, part.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := st.Delete(ctx, part.Key); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, part.Key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
}
