package basebackup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
)

// controlFilePath is where pg_control lives, PGDATA-relative. It is read
// last (TRAPS.md 12) and restored last (TRAPS.md 28).
const controlFilePath = "global/pg_control"

// versionFilePath is the top-level PG_VERSION, which a restore writes only
// at the end so that a half-restored directory is not a data directory.
const versionFilePath = "PG_VERSION"

// entry is one thing the walk found.
type entry struct {
	rel   string // manifest path
	src   string // path to read (may pass through symbolic links)
	kind  string // catalog.FileDir, FileSymlink or FileWhole
	mode  fs.FileMode
	mtime time.Time
	size  int64  // at walk time, for progress
	link  string // symbolic link target, when the entry was reached through one
}

// walkResult is what walkDataDir found.
type walkResult struct {
	entries     []entry
	tablespaces []catalog.Tablespace // links in pg_tblspc, by OID; names not set
	bytes       int64                // sum of file sizes at walk time
	files       int64
	warnings    []string
}

// dirID identifies a directory, to catch symbolic link loops.
type dirID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (dirID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirID{}, false
	}
	return dirID{uint64(st.Dev), uint64(st.Ino)}, true
}

// walkDataDir lists everything a base backup of pgdata stores: directories,
// tablespace links and files, depth first, applying pg.BackupRule by exact path. Tablespace links
// (pg_tblspc/<oid>) are recorded with their targets and their contents are
// walked under pg_tblspc/<oid>/. Any other symbolic link is followed and
// stored as what it points to, its target recorded (TRAPS.md 13); a link
// loop is an error. Entries that vanish during the walk are left out;
// special files (sockets, FIFOs, devices) are left out with a warning. The
// walk reads only directories and metadata.
func walkDataDir(pgdata string) (*walkResult, error) {
	root, err := os.Stat(pgdata)
	if err != nil {
		return nil, fmt.Errorf("walk data directory: %w", err)
	}
	if !root.IsDir() {
		return nil, fmt.Errorf("walk data directory: %s is not a directory", pgdata)
	}
	w := &walkResult{}
	rootID, _ := idOf(root)
	if err := w.walk(pgdata, "", []dirID{rootID}); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *walkResult) walk(absDir, rel string, ancestors []dirID) error {
	des, err := os.ReadDir(absDir)
	if err != nil {
		if rel != "" && errors.Is(err, fs.ErrNotExist) {
			return nil // dropped while we walked
		}
		return fmt.Errorf("walk data directory: read directory %s: %w", absDir, err)
	}
	siblings := make(map[string]bool, len(des))
	for _, de := range des {
		siblings[de.Name()] = true
	}
	for _, de := range des {
		name := de.Name()
		abs := filepath.Join(absDir, name)
		childRel := name
		if rel != "" {
			childRel = rel + "/" + name
		}
		fi, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("walk data directory: %w", err)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(abs); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("walk data directory: %w", err)
			}
			if oid, ok := pg.TablespaceLinkOID(childRel); ok {
				if err := w.tablespace(abs, childRel, oid, link, fi, ancestors); err != nil {
					return err
				}
				continue
			}
			target, err := os.Stat(abs)
			if errors.Is(err, fs.ErrNotExist) {
				w.warnings = append(w.warnings, fmt.Sprintf("skipped %s: a symbolic link to %s, which does not exist", childRel, link))
				continue
			}
			if err != nil {
				return fmt.Errorf("walk data directory: follow %s: %w", abs, err)
			}
			fi = target
		}
		action := pg.BackupRule(rel, name, fi.IsDir(), siblings)
		if action == pg.BackupSkip {
			continue
		}
		switch {
		case fi.IsDir():
			w.entries = append(w.entries, entry{rel: childRel, src: abs, kind: catalog.FileDir, mode: fi.Mode().Perm(), mtime: fi.ModTime(), link: link})
			if action == pg.BackupEmptyDir {
				continue
			}
			id, ok := idOf(fi)
			if ok && containsID(ancestors, id) {
				return fmt.Errorf("walk data directory: %s leads back to one of its parent directories (symbolic link loop): remove the link", abs)
			}
			if err := w.walk(abs, childRel, append(ancestors, id)); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			w.entries = append(w.entries, entry{rel: childRel, src: abs, kind: catalog.FileWhole, mode: fi.Mode().Perm(), mtime: fi.ModTime(), size: fi.Size(), link: link})
			w.bytes += fi.Size()
			w.files++
		default:
			w.warnings = append(w.warnings, fmt.Sprintf("skipped %s: not a regular file or directory (%s)", childRel, fi.Mode().Type()))
		}
	}
	return nil
}

// tablespace records the link pg_tblspc/<oid> and walks its target.
func (w *walkResult) tablespace(abs, rel string, oid uint32, link string, lfi fs.FileInfo, ancestors []dirID) error {
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // dropped while we walked
	}
	if err != nil {
		return fmt.Errorf("walk data directory: tablespace %d: %w", oid, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("walk data directory: tablespace link %s points to %s, which is not a directory", rel, link)
	}
	location := link
	if !filepath.IsAbs(location) {
		location = filepath.Join(filepath.Dir(abs), location)
	}
	w.entries = append(w.entries, entry{rel: rel, src: abs, kind: catalog.FileSymlink, mode: fi.Mode().Perm(), mtime: lfi.ModTime(), link: location})
	w.tablespaces = append(w.tablespaces, catalog.Tablespace{OID: oid, Location: location})
	id, _ := idOf(fi)
	return w.walk(abs, rel, append(ancestors, id))
}

func containsID(ids []dirID, id dirID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
