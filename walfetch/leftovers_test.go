package walfetch

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestFetchRemovesLeftoversOfKilledFetches: a wal-fetch killed between
// writing its temporary file beside pg_wal/RECOVERYXLOG and renaming it
// (SIGKILL, a crash) leaves a segment-sized file inside pg_wal that nothing
// else removes. The next wal-fetch removes those of processes that are
// gone, and leaves alone those of a live process (a wal-fetch running
// beside it) and every other file.
func TestFetchRemovesLeftoversOfKilledFetches(t *testing.T) {
	t.Parallel()
	a := newArchive()
	name := seg1(1)
	a.segments(t, 1, 1, 1)
	walDir := t.TempDir()
	dest := filepath.Join(walDir, "RECOVERYXLOG")

	// A process that has exited: its PID names no process now.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := strconv.Itoa(gone.ProcessState.Pid())
	live := strconv.Itoa(os.Getppid())
	files := map[string]bool{ // name → removed
		".RECOVERYXLOG.walrus-" + dead + "-123456":     true,
		".RECOVERYXLOG.walrus-" + dead + "-prefetched": true,
		".RECOVERYXLOG.walrus-" + live + "-123456":     false, // a live wal-fetch's
		".RECOVERYHISTORY.walrus-" + dead + "-1":       false, // another destination
		".RECOVERYXLOG.walrus-notapid-1":               false, // not a name of ours
		"000000010000000000000007":                     false, // a segment
		"RECOVERYXLOG.walrus-" + dead + "-1":           false, // no leading dot
	}
	for f := range files {
		if err := os.WriteFile(filepath.Join(walDir, f), []byte("leftover"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts := a.fetchOpts(filepath.Join(t.TempDir(), "prefetch"), 0)
	if _, err := Fetch(context.Background(), name, dest, opts); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, a.segs[name]) {
		t.Fatalf("wal-fetch wrote %d bytes (%v), want the archived segment", len(got), err)
	}
	for f, removed := range files {
		_, err := os.Stat(filepath.Join(walDir, f))
		switch {
		case removed && err == nil:
			t.Errorf("%s, left by a process that is gone, was not removed", f)
		case !removed && err != nil:
			t.Errorf("%s was removed: %v", f, err)
		}
	}
}
