package walfetch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestFetchRemovesLeftoversOfKilledFetches: a wal-fetch killed between
// writing its temporary file beside pg_wal/RECOVERYXLOG and renaming it
// (SIGKILL, a crash) leaves a segment-sized file inside pg_wal that nothing
// else removes. A wal-fetch of a .history file (PostgreSQL asks for them
// when recovery starts and when it promotes), found or absent, removes
// those of processes that are gone, and leaves alone those of a live
// process (a wal-fetch running beside it) and every other file. The
// segment that the killed wal-fetch was writing is fetched whole.
func TestFetchRemovesLeftoversOfKilledFetches(t *testing.T) {
	t.Parallel()
	a := newArchive()
	a.segments(t, 1, 1, 1)
	history := []byte("1\t0/3000000\tno recovery target specified\n")
	a.put(t, "00000002.history", history)
	walDir := t.TempDir()

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
		".RECOVERYHISTORY.walrus-" + dead + "-1":       true,
		".RECOVERYXLOG.walrus-" + live + "-123456":     false, // a live wal-fetch's
		".RECOVERYXLOG.walrus-notapid-1":               false, // not a name of ours
		".walrus-" + dead + "-1":                       false, // not a name of ours
		"000000010000000000000007":                     false, // a segment
		"RECOVERYXLOG.walrus-" + dead + "-1":           false, // no leading dot
	}
	plant := func() {
		for f := range files {
			if err := os.WriteFile(filepath.Join(walDir, f), []byte("leftover"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(when string) {
		t.Helper()
		for f, removed := range files {
			_, err := os.Stat(filepath.Join(walDir, f))
			switch {
			case removed && err == nil:
				t.Errorf("%s: %s, left by a process that is gone, was not removed", when, f)
			case !removed && err != nil:
				t.Errorf("%s: %s was removed: %v", when, f, err)
			}
		}
	}
	opts := a.fetchOpts(filepath.Join(t.TempDir(), "prefetch"), 0)

	plant()
	dest := filepath.Join(walDir, "RECOVERYHISTORY")
	if _, err := Fetch(context.Background(), "00000002.history", dest, opts); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, history) {
		t.Fatalf("wal-fetch of 00000002.history wrote %q (%v)", got, err)
	}
	check("after a found .history")

	plant()
	if _, err := Fetch(context.Background(), "00000003.history", dest, opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wal-fetch of an absent 00000003.history: %v, want ErrNotFound", err)
	}
	check("after an absent .history")

	seg := filepath.Join(walDir, "RECOVERYXLOG")
	if _, err := Fetch(context.Background(), seg1(1), seg, opts); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(seg); err != nil || !bytes.Equal(got, a.segs[seg1(1)]) {
		t.Fatalf("wal-fetch wrote %d bytes (%v), want the archived segment", len(got), err)
	}
}
