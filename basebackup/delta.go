package basebackup

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// clusterFacts are what the base of a delta must match: the cluster being
// backed up and the backup being taken.
type clusterFacts struct {
	sysID         uint64
	pgVersion     int // server_version_num
	dataChecksums bool
	blockSize     int
	timeline      pg.TimelineID // the new backup's
	startLSN      pg.LSN        // the new backup's
	walSuffix     string        // the suffix this walrus stores WAL with
}

// baseChoice is what chooseBase decided.
type baseChoice struct {
	// base is the backup the delta is based on; nil means a full backup.
	base *catalog.Manifest
	// root is the full backup at the root of base's chain.
	root string
	// steps is the number of deltas in the new backup's chain, itself
	// included.
	steps int
	// reason says why a full backup is taken when a delta could have been;
	// "" when a full backup was asked for.
	reason string
}

// full returns a choice of a full backup for reason.
func full(format string, args ...any) baseChoice {
	return baseChoice{reason: fmt.Sprintf(format, args...)}
}

// chooseBase decides whether the backup being taken is a delta, and on
// which base. Asked for (opts.DeltaFrom) or by default when
// opts.DeltaMaxSteps > 0, the base is the newest backup of the cluster, or
// the named one. A base is usable only if it belongs to the same system,
// the same PostgreSQL major version, page size and data_checksums state,
// its whole chain is in the repository, and its timeline is the new
// backup's or an ancestor of it that the lineage left after the base
// finished (TRAPS.md 21): after a point-in-time restore, LSNs on the new
// timeline repeat values of the abandoned one, so a base from another
// branch would make the delta skip changed pages. Otherwise the backup is
// full and reason says why. A base named but absent is an error; failures
// to read what the checks need (a history file, an encrypted one without
// an identity) make the backup full, never a guessed delta.
func chooseBase(ctx context.Context, st storage.Store, dec *repo.Decoder, opts Options, facts clusterFacts) (baseChoice, error) {
	if opts.Full {
		return baseChoice{}, nil
	}
	if opts.DeltaFrom == "" && opts.DeltaMaxSteps <= 0 {
		return full("delta_max_steps is 0"), nil
	}
	var m *catalog.Manifest
	sysID := strconv.FormatUint(facts.sysID, 10)
	if opts.DeltaFrom != "" && opts.DeltaFrom != catalog.Latest {
		var err error
		if m, err = catalog.ReadManifest(ctx, st, opts.DeltaFrom); err != nil {
			return baseChoice{}, fmt.Errorf("--delta-from: %w", err)
		}
	} else {
		bs, err := catalog.ListBackups(ctx, st)
		if err != nil {
			return baseChoice{}, err
		}
		var newest *catalog.Backup
		for i := range bs {
			if bs[i].SystemIdentifier == sysID {
				newest = &bs[i]
			}
		}
		if newest == nil {
			return full("the repository holds no backup of this cluster to base a delta on"), nil
		}
		if m, err = catalog.ReadManifest(ctx, st, newest.Name); err != nil {
			return baseChoice{}, err
		}
	}
	name := m.Name
	switch {
	case m.SystemIdentifier != sysID:
		return full("backup %s belongs to system %s, this cluster is %s", name, m.SystemIdentifier, sysID), nil
	case m.PGVersion/10000 != facts.pgVersion/10000:
		return full("backup %s is of PostgreSQL %d, the server runs %d", name, m.PGVersion/10000, facts.pgVersion/10000), nil
	case m.DataChecksums != facts.dataChecksums:
		return full("data_checksums was %v when backup %s was taken and is %v now: page LSNs cannot tell what changed", m.DataChecksums, name, facts.dataChecksums), nil
	case m.BlockSize != facts.blockSize:
		return full("backup %s records page size %d, the cluster's is %d", name, m.BlockSize, facts.blockSize), nil
	}
	if m.Timeline != facts.timeline {
		h, why := historyOf(ctx, st, dec, facts.timeline, facts.walSuffix)
		if why != "" {
			return full("backup %s is on timeline %d, the server on %d, and %s", name, m.Timeline, facts.timeline, why), nil
		}
		if !h.Contains(m.Timeline, m.FinishLSN) {
			return full("backup %s (timeline %d, finished at %s) is not on the history of timeline %d before it branched off: a restore forked the history since", name, m.Timeline, m.FinishLSN, facts.timeline), nil
		}
	}
	if m.FinishLSN > facts.startLSN {
		return full("backup %s finished at %s, after this backup starts at %s: it is of another history", name, m.FinishLSN, facts.startLSN), nil
	}
	chain, err := catalog.ReadChain(ctx, st, m)
	if err != nil {
		if ctx.Err() != nil {
			return baseChoice{}, ctx.Err()
		}
		return full("backup %s cannot be restored: %v", name, err), nil
	}
	steps := len(chain) // the deltas below the new backup, plus itself
	if opts.DeltaFrom == "" && steps > opts.DeltaMaxSteps {
		return full("the chain of backup %s already holds %d delta(s), and delta_max_steps is %d", name, steps-1, opts.DeltaMaxSteps), nil
	}
	return baseChoice{base: m, root: chain[len(chain)-1].Name, steps: steps}, nil
}

// historyOf reads the history of timeline tli from the repository. When it
// cannot, it returns why, in words for the operator.
func historyOf(ctx context.Context, st storage.Store, dec *repo.Decoder, tli pg.TimelineID, suffix string) (pg.History, string) {
	if tli <= 1 {
		return pg.History{TLI: tli}, ""
	}
	file := pg.HistoryFileName(tli)
	info, err := repo.FindObject(ctx, st, repo.WALBase(file), suffix)
	if errors.Is(err, storage.ErrNotFound) {
		return pg.History{}, fmt.Sprintf("the history file %s is not in the repository to tell whether that is an ancestor", file)
	}
	if err != nil {
		return pg.History{}, fmt.Sprintf("the history file %s could not be found: %v", file, err)
	}
	idx := &catalog.WALIndex{Histories: map[pg.TimelineID]string{tli: info.Key}}
	h, err := idx.History(ctx, st, dec, tli)
	if errors.Is(err, repo.ErrNoIdentity) {
		return pg.History{}, fmt.Sprintf("the history file %s is encrypted and this host has no identity to read it (set encryption.identity_file to take deltas across timelines)", file)
	}
	if err != nil {
		return pg.History{}, fmt.Sprintf("the history file %s could not be read: %v", file, err)
	}
	return h, ""
}

// deltaBase is the base of the delta being taken, as the upload needs it.
type deltaBase struct {
	m *catalog.Manifest
}

// file returns the base's entry of a regular file at path, or nil when the
// base has no file there.
func (d *deltaBase) file(path string) *catalog.File {
	f := d.m.File(path)
	if f == nil {
		return nil
	}
	switch f.Kind {
	case catalog.FileWhole, catalog.FileIncrement, catalog.FileUnchanged:
		return f
	}
	return nil
}

// source is the backup that holds data for the base's copy of f: the
// base, or for an unchanged file the base's own source.
func (d *deltaBase) source(f *catalog.File) string {
	if f.Kind == catalog.FileUnchanged {
		return f.Source
	}
	return d.m.Name
}
