package restorepoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// CreateOptions configure Create.
type CreateOptions struct {
	// Store is the repository.
	Store storage.Store
	// Suffix is the current encoder's object suffix, tried first when
	// looking for the archived segment.
	Suffix string
	// DSN connects to the running cluster ("" for the PG* environment).
	DSN string
	// Timeout bounds the wait for the segment to reach the repository.
	Timeout time.Duration
	// Poll is how often the repository is checked (default 500ms).
	Poll time.Duration
}

// Create makes a restore point on the running cluster, forces its WAL
// segment out with pg_switch_wal, waits until that segment is in the
// repository and only then records it.
func Create(ctx context.Context, name string, opts CreateOptions) (Record, error) {
	if err := ValidateName(name); err != nil {
		return Record{}, err
	}
	key := repo.RestorePointKey(name)
	if _, err := opts.Store.Stat(ctx, key); err == nil {
		return Record{}, fmt.Errorf("restore point %q: %w in the repository: PostgreSQL would stop at the first of two equal names, so choose another name", name, ErrExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return Record{}, fmt.Errorf("check %s: %w", key, err)
	}
	id, err := repo.ReadIdentity(ctx, opts.Store)
	if err != nil {
		return Record{}, fmt.Errorf("create restore point %q: %w (is archive_command pushing to this repository?)", name, err)
	}
	conn, err := pg.Connect(ctx, opts.DSN)
	if err != nil {
		return Record{}, fmt.Errorf("create restore point %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	info, err := pg.ServerInfo(ctx, conn)
	if err != nil {
		return Record{}, fmt.Errorf("create restore point %q: %w", name, err)
	}
	if info.InRecovery {
		return Record{}, fmt.Errorf("create restore point %q: the server is in recovery; run it on the primary", name)
	}
	if id.SystemIdentifier != strconv.FormatUint(info.SystemIdentifier, 10) {
		return Record{}, fmt.Errorf("create restore point %q: %w: repository is for system identifier %s, the server is %d", name, repo.ErrForeignCluster, id.SystemIdentifier, info.SystemIdentifier)
	}
	lsn, err := pg.CreateRestorePoint(ctx, conn, name)
	if err != nil {
		return Record{}, fmt.Errorf("create restore point %q: %w", name, err)
	}
	now := time.Now().UTC()
	walFile, err := pg.WALFileName(ctx, conn, lsn)
	if err != nil {
		return Record{}, fmt.Errorf("create restore point %q: %w", name, err)
	}
	if _, _, err := pg.SwitchWAL(ctx, conn); err != nil {
		return Record{}, fmt.Errorf("create restore point %q: switch WAL: %w", name, err)
	}
	if err := waitArchived(ctx, opts, walFile); err != nil {
		return Record{}, fmt.Errorf("create restore point %q at %s: %w", name, lsn, err)
	}
	rec := Record{Name: name, LSN: lsn, Timeline: info.Timeline, Time: now, SystemIdentifier: id.SystemIdentifier, WALFile: walFile}
	if f, err := pg.ParseWALFileName(walFile, info.WALSegSize); err == nil {
		rec.Timeline = f.Timeline
	}
	if err := write(ctx, opts.Store, rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

func waitArchived(ctx context.Context, opts CreateOptions, walFile string) error {
	timeout, poll := opts.Timeout, opts.Poll
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		_, err := repo.FindObject(ctx, opts.Store, repo.WALBase(walFile), opts.Suffix)
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("check WAL %s: %w", walFile, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("WAL segment %s did not reach the repository within %v: check archive_command and pg_stat_archiver; the restore point exists in WAL but was not recorded, so create another name once archiving works", walFile, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
