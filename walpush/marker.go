package walpush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
)

// MarkerDirName is the directory, inside pg_wal/archive_status, that holds
// the markers of segments pushed ahead of PostgreSQL's request. PostgreSQL
// looks only at *.ready and *.done names there, base backups copy none of
// archive_status, and the directory belongs to the cluster's OS user.
const MarkerDirName = ".walrus"

// markerVersion is the format of a marker file.
const markerVersion = 2

// staleTemp is how old an unfinished marker temporary file must be before
// a later call removes it.
const staleTemp = 10 * time.Minute

// marker records a segment pushed ahead of PostgreSQL's request. It is a
// hint, never proof: the following push of the segment confirms the stored
// object against the file before it trusts it.
type marker struct {
	Version int `json:"version"`
	// Name is the exact WAL file name.
	Name string `json:"name"`
	// SystemIdentifier is the cluster's, as a decimal string.
	SystemIdentifier string `json:"system_identifier"`
	// Repository names the repository the object was stored in.
	Repository string `json:"repository"`
	// Encrypted records the encryption setting of the push.
	Encrypted bool `json:"encrypted"`
	// Key is the stored object's key.
	Key string `json:"key"`
	// Digest and Size describe the plaintext (format 1 recorded a
	// SHA-256 instead; such markers are not used).
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// StoredSize is the object's size in the repository.
	StoredSize int64 `json:"stored_size"`
	// File identifies the file that was read (device, inode, size,
	// modification and change times); nil where unknown.
	File *fileID `json:"file,omitempty"`
	// PushedAt is when the object was confirmed stored.
	PushedAt time.Time `json:"pushed_at"`
}

// markers is the marker directory of one pg_wal, for one repository and
// encryption setting.
type markers struct {
	dir        string
	repository string
	encrypted  bool
	// keepConfirmed keeps a confirmed marker until its segment is no
	// longer ready (pick removes it then), instead of removing it at
	// once. A daemon sets it: its pushes ahead run while PostgreSQL is
	// between a confirmed call's exit and marking the segment done, and
	// without the marker would take that segment for one still to push.
	keepConfirmed bool
}

// path is the marker file of name for cluster sysid: keyed by the exact
// file name and the system identifier (TRAPS.md 4).
func (m *markers) path(name string, sysid uint64) string {
	return filepath.Join(m.dir, name+"."+strconv.FormatUint(sysid, 10))
}

// confirmMarker looks for a marker of name and, if there is one, confirms
// it: the marker was written for this cluster, repository, encryption
// setting and content, and the repository holds an object under the
// recorded key whose recorded plaintext digest, plaintext size and stored
// size match. The content check is the file's identity (device, inode,
// size, modification and change times, see fileIDOf) when it equals the
// one recorded, else the file's digest, which is then returned as sum. ok
// is true only when everything matches. The marker is removed either way
// (it is used once), except that a confirmed one stays when
// m.keepConfirmed is set.
func (p *pusher) confirmMarker(ctx context.Context, m *markers, name string, sysid uint64, f *os.File, size int64, id *fileID) (res Result, ok bool, sum string) {
	path := m.path(name, sysid)
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.logf("wal-push %s: marker %s unreadable (%v): pushing normally", name, path, err)
		}
		return Result{}, false, ""
	}
	confirmed := false
	defer func() {
		if !confirmed || !m.keepConfirmed {
			os.Remove(path)
		}
	}()
	var mk marker
	if err := json.Unmarshal(b, &mk); err != nil {
		p.logf("wal-push %s: marker %s is damaged (%v): pushing normally", name, path, err)
		return Result{}, false, ""
	}
	why := ""
	base, _, _, kerr := repo.ParseKey(mk.Key)
	switch {
	case mk.Version != markerVersion:
		why = fmt.Sprintf("format %d", mk.Version)
	case mk.Name != name || kerr != nil || base != repo.WALBase(name):
		why = fmt.Sprintf("it names %s (%s)", mk.Name, mk.Key)
	case mk.SystemIdentifier != strconv.FormatUint(sysid, 10):
		why = "it is for system identifier " + mk.SystemIdentifier
	case mk.Repository != m.repository || mk.Encrypted != m.encrypted:
		why = "it was written for another repository or encryption setting"
	case mk.Size != size:
		why = "the file's size differs from what was pushed"
	}
	if why == "" && (id == nil || mk.File == nil || *id != *mk.File) {
		if sum, err = digestFile(f, ""); err != nil {
			why = fmt.Sprintf("cannot read the file: %v", err)
		} else if !repo.SameDigest(sum, mk.Digest) {
			why = "the file's content differs from what was pushed"
		}
	}
	if why != "" {
		p.logf("wal-push %s: marker not used: %s; pushing normally", name, why)
		return Result{}, false, sum
	}
	info, err := p.opts.Store.Stat(ctx, mk.Key)
	if err != nil {
		p.logf("wal-push %s: marker not confirmed (%v); pushing normally", name, err)
		return Result{}, false, sum
	}
	if stored, _ := repo.ObjectDigest(info.Metadata); !repo.SameDigest(stored, mk.Digest) || info.Metadata[repo.MetaSize] != strconv.FormatInt(size, 10) || info.Size != mk.StoredSize {
		p.logf("wal-push %s: marker not confirmed: %s does not hold what was pushed; pushing normally", name, mk.Key)
		return Result{}, false, sum
	}
	confirmed = true
	return Result{Name: name, Key: mk.Key, AlreadyStored: true, Confirmed: true, RawSize: size, StoredSize: info.Size, Digest: mk.Digest, SystemIdentifier: sysid}, true, sum
}

// write records that res was pushed. The file appears whole or not at all
// (temporary name, rename); it is not fsynced, since a lost marker only
// means a full push later.
func (m *markers) write(res Result) error {
	mk := marker{
		Version: markerVersion, Name: res.Name, SystemIdentifier: strconv.FormatUint(res.SystemIdentifier, 10),
		Repository: m.repository, Encrypted: m.encrypted, Key: res.Key, Digest: res.Digest,
		Size: res.RawSize, StoredSize: res.StoredSize, File: res.file, PushedAt: time.Now().UTC(),
	}
	b, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	if err := os.Mkdir(m.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create marker directory: %w", err)
	}
	tmp, err := os.CreateTemp(m.dir, ".tmp-"+res.Name+"-*")
	if err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), m.path(res.Name, res.SystemIdentifier))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write marker: %w", err)
	}
	return nil
}

// pick returns up to n ready segments other than requested, in name order,
// that have no marker yet. Only whole segments are picked: .partial,
// .history and .backup files are pushed only when PostgreSQL asks. On the
// way it removes markers of segments that are no longer ready (PostgreSQL
// has marked them done) and stale temporary files.
func (m *markers) pick(statusDir, requested string, n int) ([]string, error) {
	entries, err := os.ReadDir(statusDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", statusDir, err)
	}
	ready := map[string]bool{}
	var cands []string
	for _, e := range entries {
		seg, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if wf, err := pg.ParseWALFileName(seg, pg.MinWALSegSize); err != nil || wf.Kind != pg.SegmentFile {
			continue
		}
		ready[seg] = true
		if seg != requested {
			cands = append(cands, seg)
		}
	}
	marked := map[string]bool{}
	mentries, err := os.ReadDir(m.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %w", m.dir, err)
	}
	for _, e := range mentries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				os.Remove(filepath.Join(m.dir, e.Name()))
			}
			continue
		}
		seg, sysid, _ := strings.Cut(e.Name(), ".")
		if _, err := strconv.ParseUint(sysid, 10, 64); err != nil || !e.Type().IsRegular() {
			continue // not a marker: the daemon's socket and lock
		}
		if wf, err := pg.ParseWALFileName(seg, pg.MinWALSegSize); err != nil || wf.Kind != pg.SegmentFile {
			continue
		}
		if !ready[seg] && seg != requested {
			os.Remove(filepath.Join(m.dir, e.Name()))
			continue
		}
		marked[seg] = true
	}
	sort.Strings(cands)
	var out []string
	for _, c := range cands {
		if len(out) == n {
			break
		}
		if !marked[c] {
			out = append(out, c)
		}
	}
	return out, nil
}
