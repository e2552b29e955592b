package basebackup

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// TestWaitForWAL (TRAPS.md 14): a backup counts as complete only once
// every segment from its start to its stop, and on a timeline above 1 the
// timeline's history file, is in the repository itself. A segment that
// PostgreSQL reports archived but that never arrives fails the backup,
// naming the segment and what to do; one that arrives while backup-push
// waits lets it finish.
func TestWaitForWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const segSize = 16 << 20
	put := func(st storage.Store, name string) {
		t.Helper()
		if err := st.Put(ctx, repo.WALBase(name)+".lz4", bytes.NewReader([]byte("x")), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Start in segment 3, stop in segment 5 (0/5000100): 3, 4 and 5.
	start, stop := pg.LSN(0x3000028), pg.LSN(0x5000100)

	st := newMem()
	put(st, "000000010000000000000003")
	put(st, "000000010000000000000005")
	err := waitForWAL(ctx, st, ".lz4", 1, start, stop, segSize, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "WAL 000000010000000000000004") || !strings.Contains(err.Error(), "archive_command") {
		t.Fatalf("a segment between start and stop is missing: %v", err)
	}

	// It arrives while backup-push waits.
	go func() {
		time.Sleep(50 * time.Millisecond)
		put(st, "000000010000000000000004")
	}()
	if err := waitForWAL(ctx, st, ".lz4", 1, start, stop, segSize, 10*time.Second); err != nil {
		t.Fatalf("the segment arrived during the wait: %v", err)
	}

	// A stop exactly at a segment boundary needs nothing of the next one.
	if err := waitForWAL(ctx, st, ".lz4", 1, start, pg.LSN(0x6000000), segSize, 100*time.Millisecond); err != nil {
		t.Fatalf("stop at the start of segment 6: %v", err)
	}

	// On timeline 2 the history file is needed too, and the segments of
	// timeline 2 (those of timeline 1 do not count).
	st2 := newMem()
	for _, n := range []string{"000000020000000000000003", "000000020000000000000004", "000000020000000000000005", "000000010000000000000003"} {
		put(st2, n)
	}
	err = waitForWAL(ctx, st2, ".lz4", 2, start, stop, segSize, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "00000002.history") {
		t.Fatalf("timeline 2 without its history file: %v", err)
	}
	put(st2, "00000002.history")
	if err := waitForWAL(ctx, st2, ".lz4", 2, start, stop, segSize, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st3 := newMem()
	put(st3, "00000002.history")
	for _, n := range []string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005"} {
		put(st3, n)
	}
	if err := waitForWAL(ctx, st3, ".lz4", 2, start, stop, segSize, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "000000020000000000000003") {
		t.Fatalf("timeline 1's segments taken for timeline 2's: %v", err)
	}
}
