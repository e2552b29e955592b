package basebackup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// waitForWAL looks again for a missing segment after walPollFirst, then
// after twice as long each time, up to walPollMax: the last segment is
// normally archived a few milliseconds after pg_backup_stop switched it,
// and a backup should not wait seconds for it.
const (
	walPollFirst = 10 * time.Millisecond
	walPollMax   = 2 * time.Second
)

// waitForWAL returns once every WAL segment from the one holding start to
// the one holding the last byte before stop, on timeline tli, is in the
// repository, and for a timeline above 1 its history file too (TRAPS.md
// 14). It checks the repository itself, which is what a restore will read,
// and waits up to timeout for the archiver.
func waitForWAL(ctx context.Context, st storage.Store, suffix string, tli pg.TimelineID, start, stop pg.LSN, segSize uint64, timeout time.Duration) error {
	var need []string
	if tli > 1 {
		need = append(need, pg.HistoryFileName(tli))
	}
	first := pg.SegmentForLSN(start, segSize)
	last := pg.SegmentForLSN(max(stop, start+1)-1, segSize)
	for seg := first; seg <= last; seg++ {
		need = append(need, pg.SegmentName(tli, seg, segSize))
	}
	deadline := time.Now().Add(timeout)
	pause := walPollFirst
	for _, name := range need {
		for {
			_, err := repo.FindObject(ctx, st, repo.WALBase(name), suffix)
			if err == nil {
				break
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("check WAL %s in the repository: %w", name, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("WAL %s, needed to restore this backup, is not in the repository after %v (backup_wal_timeout): make archive_command push to this repository (walrus wal-push with the same configuration), or raise backup_wal_timeout if the archiver is only behind", name, timeout)
			}
			if err := wait.Sleep(ctx, pause); err != nil {
				return fmt.Errorf("wait for WAL %s: %w", name, err)
			}
			pause = min(2*pause, walPollMax)
		}
	}
	return nil
}
