package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/storage"
)

// WALPrefix is the key prefix of archived WAL files.
const WALPrefix = "wal/"

// BackupsPrefix is the key prefix of base backups.
const BackupsPrefix = "backups/"

// RestorePointsPrefix is the key prefix of restore point records.
const RestorePointsPrefix = "restore-points/"

// WALBase returns the base key (without suffix) of a WAL file.
func WALBase(name string) string { return WALPrefix + name }

// ManifestKey returns the manifest key of a backup.
func ManifestKey(backup string) string { return BackupsPrefix + backup + "/manifest.json" }

// ClaimKey returns the key of the object, written create-only before
// anything else of the backup, that reserves its name: two backup-push
// runs that choose the same name cannot both write it, so the parts of
// one never meet those of the other.
func ClaimKey(backup string) string { return BackupsPrefix + backup + "/claim.json" }

// PartsPrefix returns the prefix of a backup's data parts.
func PartsPrefix(backup string) string { return BackupsPrefix + backup + "/parts/" }

// RestorePointKey returns the key of a restore point record.
func RestorePointKey(name string) string { return RestorePointsPrefix + name + ".json" }

// FindObject finds the object stored for base under any codec and
// encryption suffix. It tries preferred (base+preferred suffix) with one
// Stat first, then lists (on a local store, it Stats every suffix walrus
// writes instead: listing would read the whole directory, every archived
// segment, for each call). It returns storage.ErrNotFound (wrapped) only
// when the listing succeeded and holds no such object.
func FindObject(ctx context.Context, st storage.Store, base, preferred string) (storage.ObjectInfo, error) {
	if preferred != "" {
		info, err := st.Stat(ctx, base+preferred)
		if err == nil {
			if info.Key == "" {
				info.Key = base + preferred
			}
			return info, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", base+preferred, err)
		}
	}
	if !storage.IsLocal(st) {
		return findListed(ctx, st, base)
	}
	var found []string
	for _, suffix := range Suffixes() {
		if suffix == preferred {
			continue
		}
		_, err := st.Stat(ctx, base+suffix)
		switch {
		case err == nil:
			found = append(found, base+suffix)
		case !errors.Is(err, storage.ErrNotFound):
			return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", base+suffix, err)
		}
	}
	return statOne(ctx, st, base, found)
}

// findListed finds the object stored for base by listing base's prefix.
func findListed(ctx context.Context, st storage.Store, base string) (storage.ObjectInfo, error) {
	var found []string
	err := st.List(ctx, base+".", func(o storage.ObjectInfo) error {
		if b, _, _, err := ParseKey(o.Key); err == nil && b == base {
			found = append(found, o.Key)
		}
		return nil
	})
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("list %s: %w", base, err)
	}
	return statOne(ctx, st, base, found)
}

// statOne returns the ObjectInfo of the one key found for base:
// storage.ErrNotFound (wrapped) when there is none, an error naming them
// when there are several.
func statOne(ctx context.Context, st storage.Store, base string, found []string) (storage.ObjectInfo, error) {
	switch len(found) {
	case 0:
		return storage.ObjectInfo{}, fmt.Errorf("%s: %w", base, storage.ErrNotFound)
	case 1:
		info, err := st.Stat(ctx, found[0])
		if err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", found[0], err)
		}
		if info.Key == "" {
			info.Key = found[0]
		}
		return info, nil
	default:
		return storage.ObjectInfo{}, fmt.Errorf("%s is stored more than once (%s): remove all but one", base, strings.Join(found, ", "))
	}
}

// FindAnyObject is FindObject for a caller that expects no object yet
// (wal-push of a new segment). On a remote store it lists base's suffixes
// at once, one request (and a Stat of what it finds), instead of first a
// Stat of the preferred name that misses and, on S3, a check that the
// bucket exists. On a local store it is FindObject.
func FindAnyObject(ctx context.Context, st storage.Store, base, preferred string) (storage.ObjectInfo, error) {
	if storage.IsLocal(st) {
		return FindObject(ctx, st, base, preferred)
	}
	return findListed(ctx, st, base)
}

// Suffixes returns every suffix walrus gives an object after its base: a
// codec's extension, and the same followed by the encryption extension,
// each with its leading dot. ParseKey accepts exactly these.
func Suffixes() []string {
	var out []string
	for _, name := range compress.Names() {
		c, _ := compress.ByName(name)
		out = append(out, "."+c.Ext(), "."+c.Ext()+"."+EncryptedExt)
	}
	return out
}
