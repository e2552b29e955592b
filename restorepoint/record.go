package restorepoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// Record is a restore point as stored in restore-points/<name>.json.
type Record struct {
	Name     string        `json:"name"`
	LSN      pg.LSN        `json:"lsn"`
	Timeline pg.TimelineID `json:"timeline"`
	Time     time.Time     `json:"time"`
	// SystemIdentifier is the cluster's, decimal.
	SystemIdentifier string `json:"system_identifier"`
	// WALFile is the segment holding the restore point record.
	WALFile string `json:"wal_file"`
}

// MaxNameLen is the longest restore point name PostgreSQL keeps
// (MAXFNAMELEN - 1).
const MaxNameLen = 63

// ValidateName checks a restore point name before anything happens: 1 to
// 63 characters of letters, digits, '-', '_' and '.', not starting with '.'
// or '-'.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("restore point name is empty: give a name such as before-migration-42")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("restore point name %q is %d characters; PostgreSQL keeps at most %d", name, len(name), MaxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("restore point name %q must not start with %q", name, name[0])
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("restore point name %q has the character %q: use letters, digits, '-', '_' and '.'", name, r)
		}
	}
	return nil
}

// ErrNotFound means no restore point of that name is recorded.
var ErrNotFound = errors.New("no such restore point")

// ErrExists means a restore point of that name is already recorded.
var ErrExists = errors.New("restore point already exists")

// Read reads one restore point record.
func Read(ctx context.Context, st storage.Store, name string) (Record, error) {
	if err := ValidateName(name); err != nil {
		return Record{}, err
	}
	key := repo.RestorePointKey(name)
	rc, err := st.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return Record{}, fmt.Errorf("restore point %q: %w (walrus restore-point-list shows the recorded ones)", name, ErrNotFound)
	}
	if err != nil {
		return Record{}, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	return decode(rc, key)
}

func decode(r io.Reader, key string) (Record, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return Record{}, fmt.Errorf("read %s: %w", key, err)
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rec); err != nil {
		return Record{}, fmt.Errorf("parse %s: %w: the record is damaged", key, err)
	}
	if err := ValidateName(rec.Name); err != nil {
		return Record{}, fmt.Errorf("%s: %w", key, err)
	}
	if key != "" && !strings.HasSuffix(key, "/"+rec.Name+".json") {
		return Record{}, fmt.Errorf("%s: records the name %q, which does not match its key", key, rec.Name)
	}
	if rec.LSN == pg.InvalidLSN || rec.Timeline == 0 {
		return Record{}, fmt.Errorf("%s: missing lsn or timeline", key)
	}
	return rec, nil
}

// List returns every recorded restore point, ordered by (timeline, LSN).
func List(ctx context.Context, st storage.Store) ([]Record, error) {
	var keys []string
	if err := st.List(ctx, repo.RestorePointsPrefix, func(o storage.ObjectInfo) error {
		if strings.HasSuffix(o.Key, ".json") {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list restore points: %w", err)
	}
	var out []Record
	for _, k := range keys {
		name := strings.TrimSuffix(strings.TrimPrefix(k, repo.RestorePointsPrefix), ".json")
		rec, err := Read(ctx, st, name)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Timeline != out[j].Timeline {
			return out[i].Timeline < out[j].Timeline
		}
		return out[i].LSN < out[j].LSN
	})
	return out, nil
}

// write stores rec create-only.
func write(ctx context.Context, st storage.Store, rec Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	key := repo.RestorePointKey(rec.Name)
	err = st.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{IfNotExists: true, Size: int64(len(b))})
	if errors.Is(err, storage.ErrExists) {
		// Create checked the name first: another create-restore-point of
		// it ran at the same time and recorded its point first.
		return fmt.Errorf("restore point %q: %w: another create-restore-point of this name recorded its point first, while this one's restore point at %s was already in WAL; restores by this name reach the recorded one (by its LSN), never this one: choose another name and create it again", rec.Name, ErrExists, rec.LSN)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}
