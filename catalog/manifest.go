package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walrusdb/walrus/pg"
)

// FormatVersion is the manifest format this walrus writes and the newest
// it reads.
const FormatVersion = 2

// Backup kinds.
const (
	// KindFull is a backup that stores every file itself.
	KindFull = "full"
	// KindDelta is a backup based on another (DeltaFrom); its files may be
	// increments of, or unchanged from, the chain below it.
	KindDelta = "delta"
)

// File kinds: how a manifest entry is restored.
const (
	// FileDir is a directory (no data).
	FileDir = "dir"
	// FileSymlink is a tablespace link, pg_tblspc/<oid>, to Link. No other
	// path may be a symlink in a manifest.
	FileSymlink = "symlink"
	// FileWhole is a regular file stored whole in Part of this backup.
	FileWhole = "whole"
	// FileIncrement is a relation file stored in Part of this backup as a
	// page increment (package delta) over the same path in the backup this
	// one is based on.
	FileIncrement = "increment"
	// FileUnchanged is a relation file with no page changed since the
	// backup this one is based on, and the same size; it costs only its
	// manifest entry. Source names the nearest older backup of the chain
	// that stores data for it.
	FileUnchanged = "unchanged"
)

// Backup is the summary of one backup: the manifest without its file,
// part and tablespace lists. Its JSON keys are the manifest's, so a
// manifest decodes into it, and backup-list --json prints it.
type Backup struct {
	// FormatVersion is the manifest format (FormatVersion).
	FormatVersion int `json:"format_version"`
	// Name is the backup's name, also its directory under backups/.
	Name string `json:"name"`
	// Kind is KindFull or KindDelta.
	Kind string `json:"kind"`
	// DeltaFrom is the backup a delta is based on; nil for a full backup.
	DeltaFrom *string `json:"delta_from"`
	// DeltaRoot is the full backup at the root of a delta's chain; nil for
	// a full backup.
	DeltaRoot *string `json:"delta_root"`
	// SystemIdentifier is the cluster's system identifier, decimal (JSON
	// numbers lose precision above 2^53).
	SystemIdentifier string `json:"system_identifier"`
	// PGVersion is server_version_num, e.g. 150004.
	PGVersion int `json:"pg_version"`
	// Timeline is the timeline the backup started on.
	Timeline pg.TimelineID `json:"timeline"`
	// StartLSN is where replay must begin (pg_backup_start).
	StartLSN pg.LSN `json:"start_lsn"`
	// FinishLSN is where replay must reach for the backup to be consistent
	// (pg_backup_stop).
	FinishLSN pg.LSN `json:"finish_lsn"`
	// StartWALFile and FinishWALFile name the first and last WAL segments
	// a restore needs; both were in the repository when the backup
	// completed.
	StartWALFile  string `json:"start_wal_file"`
	FinishWALFile string `json:"finish_wal_file"`
	// StartTime and FinishTime are walrus's clock at pg_backup_start and
	// after pg_backup_stop, UTC.
	StartTime  time.Time `json:"start_time"`
	FinishTime time.Time `json:"finish_time"`
	// WALSegmentSize is the cluster's WAL segment size in bytes.
	WALSegmentSize uint64 `json:"wal_segment_size"`
	// DataChecksums is whether the cluster's pages carry checksums.
	DataChecksums bool `json:"data_checksums"`
	// BlockSize is the cluster's page size (BLCKSZ) in bytes; required for
	// a delta, whose increments are made of such pages. 0 in a full backup
	// means not recorded.
	BlockSize int `json:"block_size,omitempty"`
	// Codec is the compression codec of the parts (also visible in their
	// keys).
	Codec string `json:"codec"`
	// Encrypted is whether the parts are age-encrypted.
	Encrypted bool `json:"encrypted"`
	// DataSize is the sum of the sizes of the files the backup restores.
	DataSize int64 `json:"data_size"`
	// StoredSize is the sum of the stored (compressed, encrypted) sizes of
	// this backup's own parts.
	StoredSize int64 `json:"stored_size"`
	// DeltaSize is, for a delta, the plaintext bytes of file data it
	// stores itself: its whole files plus its increments (the rest of
	// DataSize comes from its chain). 0 for a full backup.
	DeltaSize int64 `json:"delta_size,omitempty"`
	// Permanent backups are never removed by retention.
	Permanent bool `json:"permanent"`
}

// IsFull reports whether the backup stores every file itself.
func (b *Backup) IsFull() bool { return b.Kind == KindFull }

// Manifest is a backup's manifest.json: everything a restore needs to plan,
// and the source of truth for what the backup holds (TRAPS.md 11).
type Manifest struct {
	Backup
	// BackupLabel is the backup_label file pg_backup_stop returned.
	BackupLabel string `json:"backup_label"`
	// TablespaceMap is the tablespace_map file pg_backup_stop returned
	// (empty without tablespaces).
	TablespaceMap string `json:"tablespace_map"`
	// Tablespaces are the user tablespaces, each backed up under
	// pg_tblspc/<oid>/.
	Tablespaces []Tablespace `json:"tablespaces"`
	// Files is every directory, tablespace link and file, ordered by path.
	Files []File `json:"files"`
	// Parts is every data object of this backup.
	Parts []Part `json:"parts"`
}

// Tablespace is a user tablespace.
type Tablespace struct {
	// OID names the link pg_tblspc/<oid>.
	OID uint32 `json:"oid"`
	// Name is spcname ("" when the tablespace was dropped during the
	// backup).
	Name string `json:"name"`
	// Location is the link's target when the backup was taken.
	Location string `json:"location"`
}

// File is one entry of the data directory.
type File struct {
	// Path is PGDATA-relative and slash-separated; tablespace contents are
	// under pg_tblspc/<oid>/.
	Path string `json:"path"`
	// Kind is FileDir, FileSymlink, FileWhole, FileIncrement or
	// FileUnchanged.
	Kind string `json:"kind"`
	// Size is the file's size in bytes once restored (what was read: a
	// file that shrank while it was read records the bytes read).
	Size int64 `json:"size,omitempty"`
	// Mode holds the permission bits.
	Mode Mode `json:"mode"`
	// MTime is the modification time.
	MTime time.Time `json:"mtime"`
	// Link is, for FileSymlink, the link's target; for a file or directory
	// reached through a symbolic link inside PGDATA (stored as what it
	// points to), the link's target, for the record.
	Link string `json:"link,omitempty"`
	// Source is, for FileUnchanged, the nearest older backup of the chain
	// that stores data for the file (whole or as an increment); "" for the
	// other kinds, whose data is in this backup.
	Source string `json:"source,omitempty"`
	// Part is the name of the part (Part.Name) whose tar stream holds the
	// file (FileWhole) or its increment (FileIncrement) under its Path.
	Part string `json:"part,omitempty"`
	// Offset is the byte offset of the file's tar header in the part's
	// plaintext tar stream.
	Offset int64 `json:"offset,omitempty"`
	// CRC32C is the CRC-32C (Castagnoli) of the bytes of the file's tar
	// entry, eight hex digits: for FileWhole the file's restored content,
	// for FileIncrement the increment.
	CRC32C string `json:"crc32c,omitempty"`
	// StoredSize is, for FileIncrement, the size of the increment (its tar
	// entry); Size is the size of the file it restores.
	StoredSize int64 `json:"stored_size,omitempty"`
	// Blocks is, for FileIncrement, the number of pages the increment
	// holds. When it holds every page of the file, a restore needs no
	// older copy.
	Blocks int64 `json:"blocks,omitempty"`
}

// MinIncrementSize is the size of an increment that holds no page (see
// package delta): its header, empty block list and two checksums.
const MinIncrementSize = 36

// File returns the entry of path, or nil.
func (m *Manifest) File(path string) *File {
	i, ok := slices.BinarySearchFunc(m.Files, path, func(f File, p string) int { return strings.Compare(f.Path, p) })
	if !ok {
		return nil
	}
	return &m.Files[i]
}

// Part is one data object: a tar stream, compressed, then encrypted.
type Part struct {
	// Name is the part's name, e.g. "part_00001.tar".
	Name string `json:"name"`
	// Key is the object's full key: backups/<backup>/parts/<name>.<codec>[.age].
	Key string `json:"key"`
	// RawSize is the size of the plaintext tar stream.
	RawSize int64 `json:"raw_size"`
	// StoredSize is the size of the stored object.
	StoredSize int64 `json:"stored_size"`
	// StoredSHA256 is the hex SHA-256 of the stored object (format 2).
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	// SHA256 is the hex SHA-256 of the plaintext tar stream: what format
	// 1 manifests recorded instead of StoredSHA256.
	SHA256 string `json:"sha256,omitempty"`
}

// Mode is a file's permission bits, written in JSON as an octal string
// ("0600").
type Mode uint32

// MarshalText writes the mode in octal.
func (m Mode) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%04o", uint32(m))), nil
}

// UnmarshalText reads an octal mode.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("bad file mode %q: want octal permission bits such as 0600", b)
	}
	*m = Mode(v)
	return nil
}

// ErrInvalidManifest is wrapped by every error Validate returns.
var ErrInvalidManifest = errors.New("invalid manifest")

// validName reports whether s may name a backup or a part: 1 to 128
// letters, digits, '_', '.' and '-', not starting with '.', '_' or '-'. It
// becomes a key component, so no '/', nothing a shell or a URL mangles.
// (Plain code rather than a regexp: package-level regexps are compiled at
// every process start, and wal-push starts once per segment.)
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// lowerHex reports whether s is n lower-case hex digits (a CRC-32C: 8, a
// SHA-256: 64).
func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidateName checks a backup name.
func ValidateName(name string) error {
	if !validName(name) || name == "LATEST" {
		return fmt.Errorf("invalid backup name %q: use letters, digits, '_', '.', '-' (walrus backup-list shows the names)", name)
	}
	return nil
}

// ValidatePath checks a manifest path: relative, slash-separated, clean,
// without "." or ".." components or NUL. A path that passes can be joined
// to a restore root without leaving it. (Any name a directory listing
// returns passes as a component.)
func ValidatePath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute", p)
	}
	if strings.Contains(p, "\x00") {
		return fmt.Errorf("path %q holds a NUL", p)
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "":
			return fmt.Errorf("path %q has an empty component", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q component", p, c)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path %q is not clean", p)
	}
	return nil
}

// Validate checks that the manifest is complete and self-consistent, and
// that no entry could make a restore write outside its target: every path
// is relative and clean, every parent is a directory of the manifest (or a
// tablespace link, whose contents a restore redirects itself), symbolic
// links appear only as pg_tblspc/<oid> of a listed tablespace, and every
// stored file names a part of this backup. Errors wrap ErrInvalidManifest
// and name the offending entry.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidManifest, m.Name, fmt.Sprintf(format, args...))
	}
	if m.FormatVersion < 1 || m.FormatVersion > FormatVersion {
		return bad("format version %d is not supported by this walrus (supports %d): upgrade walrus", m.FormatVersion, FormatVersion)
	}
	if err := ValidateName(m.Name); err != nil {
		return bad("%v", err)
	}
	if _, err := strconv.ParseUint(m.SystemIdentifier, 10, 64); err != nil {
		return bad("bad system_identifier %q", m.SystemIdentifier)
	}
	switch m.Kind {
	case KindFull:
		if m.DeltaFrom != nil || m.DeltaRoot != nil {
			return bad("a full backup has delta_from or delta_root")
		}
		if m.DeltaSize != 0 {
			return bad("a full backup has a delta_size")
		}
	case KindDelta:
		if m.DeltaFrom == nil || m.DeltaRoot == nil {
			return bad("a delta backup lacks delta_from or delta_root")
		}
		if err := ValidateName(*m.DeltaFrom); err != nil {
			return bad("delta_from: %v", err)
		}
		if err := ValidateName(*m.DeltaRoot); err != nil {
			return bad("delta_root: %v", err)
		}
		if *m.DeltaFrom == m.Name || *m.DeltaRoot == m.Name {
			return bad("a delta based on itself")
		}
		if !pg.ValidBlockSize(m.BlockSize) {
			return bad("a delta with block size %d", m.BlockSize)
		}
	default:
		return bad("unknown kind %q", m.Kind)
	}
	if m.Timeline == 0 || m.StartLSN == 0 || m.FinishLSN < m.StartLSN {
		return bad("timeline %d, start %s, finish %s are not a backup's", m.Timeline, m.StartLSN, m.FinishLSN)
	}
	if m.BackupLabel == "" {
		return bad("no backup_label")
	}
	spcs := make(map[uint32]bool, len(m.Tablespaces))
	for _, ts := range m.Tablespaces {
		if ts.OID == 0 || spcs[ts.OID] {
			return bad("tablespace oid %d is zero or listed twice", ts.OID)
		}
		if !strings.HasPrefix(ts.Location, "/") || strings.ContainsAny(ts.Location, "\x00\n\r") {
			return bad("tablespace %d location %q is not an absolute path", ts.OID, ts.Location)
		}
		spcs[ts.OID] = true
	}
	parts := make(map[string]bool, len(m.Parts))
	// room is what each part's tar stream has left for the entries listed
	// in it: no entry can be larger than the stream that holds it, so an
	// absurd size is refused here, before a restore writes anything.
	room := make(map[string]int64, len(m.Parts))
	prefix := "backups/" + m.Name + "/parts/"
	for _, p := range m.Parts {
		if !validName(p.Name) || parts[p.Name] {
			return bad("part name %q is invalid or listed twice", p.Name)
		}
		if !strings.HasPrefix(p.Key, prefix+p.Name+".") || strings.Contains(strings.TrimPrefix(p.Key, prefix), "/") {
			return bad("part %s has key %q outside %s", p.Name, p.Key, prefix)
		}
		if p.RawSize < 0 || p.StoredSize < 0 {
			return bad("part %s has bad sizes", p.Name)
		}
		switch {
		case m.FormatVersion == 1 && !lowerHex(p.SHA256, 64):
			return bad("part %s has a missing or malformed sha256 (format 1 records the SHA-256 of the plaintext)", p.Name)
		case m.FormatVersion > 1 && (!lowerHex(p.StoredSHA256, 64) || p.SHA256 != ""):
			return bad("part %s has a missing or malformed stored_sha256 (format %d records the SHA-256 of the stored object, and no sha256)", p.Name, m.FormatVersion)
		}
		parts[p.Name] = true
		room[p.Name] = p.RawSize
	}
	fits := func(f File, n int64) error {
		if n > room[f.Part] {
			return bad("%s is %d bytes, more than its part %s holds", f.Path, n, f.Part)
		}
		room[f.Part] -= n
		return nil
	}
	// A relation file holds at most 2^32 pages.
	maxRelFile := int64(1<<32) * int64(max(m.BlockSize, 1))
	if m.BlockSize != 0 && !pg.ValidBlockSize(m.BlockSize) {
		return bad("block size %d", m.BlockSize)
	}
	kinds := make(map[string]string, len(m.Files))
	var dataSize, deltaSize int64
	for i, f := range m.Files {
		if err := ValidatePath(f.Path); err != nil {
			return bad("file %d: %v", i, err)
		}
		if _, dup := kinds[f.Path]; dup {
			return bad("path %s is listed twice", f.Path)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return bad("files are not ordered by path at %s", f.Path)
		}
		// The parent must be a directory of the manifest, or a tablespace
		// link (whose contents a restore writes to the tablespace's own
		// directory, never through the link).
		if dir := path.Dir(f.Path); dir != "." {
			switch kinds[dir] {
			case FileDir:
			case FileSymlink:
				if _, ok := pg.TablespaceLinkOID(dir); !ok {
					return bad("%s is inside the symbolic link %s", f.Path, dir)
				}
			default:
				return bad("%s has no parent directory entry %s", f.Path, dir)
			}
		}
		if f.Mode > 0o777 {
			return bad("%s has mode %04o with bits beyond rwx", f.Path, f.Mode)
		}
		switch f.Kind {
		case FileDir:
		case FileSymlink:
			oid, ok := pg.TablespaceLinkOID(f.Path)
			if !ok || !spcs[oid] {
				return bad("symbolic link %s is not the link of a listed tablespace", f.Path)
			}
			if !strings.HasPrefix(f.Link, "/") {
				return bad("tablespace link %s points to %q, not an absolute path", f.Path, f.Link)
			}
		case FileWhole:
			if f.Size < 0 || !lowerHex(f.CRC32C, 8) {
				return bad("%s has a bad size or crc32c", f.Path)
			}
			if f.Source != "" || !parts[f.Part] {
				return bad("%s is stored in part %q of backup %q, not in a part this manifest lists", f.Path, f.Part, f.Source)
			}
			if err := fits(f, f.Size); err != nil {
				return err
			}
			dataSize += f.Size
			deltaSize += f.Size
		case FileIncrement:
			if m.Kind != KindDelta {
				return bad("%s is an increment in a full backup", f.Path)
			}
			if f.Size < 0 || !lowerHex(f.CRC32C, 8) || f.Blocks < 0 ||
				f.StoredSize != MinIncrementSize+f.Blocks*int64(4+m.BlockSize) ||
				f.Blocks > (f.Size+int64(m.BlockSize)-1)/int64(m.BlockSize) {
				return bad("%s is an increment with a bad size, block count, stored size or crc32c", f.Path)
			}
			if f.Source != "" || !parts[f.Part] {
				return bad("%s is stored in part %q of backup %q, not in a part this manifest lists", f.Path, f.Part, f.Source)
			}
			if f.Size > maxRelFile {
				return bad("%s is an increment of a %d-byte file, larger than a relation file can be", f.Path, f.Size)
			}
			if err := fits(f, f.StoredSize); err != nil {
				return err
			}
			dataSize += f.Size
			deltaSize += f.StoredSize
		case FileUnchanged:
			if m.Kind != KindDelta {
				return bad("%s is unchanged in a full backup", f.Path)
			}
			if f.Size < 0 || f.Part != "" || f.CRC32C != "" {
				return bad("%s is unchanged but has a bad size, a part or a crc32c", f.Path)
			}
			if err := ValidateName(f.Source); err != nil || f.Source == m.Name {
				return bad("%s is unchanged with source %q: it must name an older backup of the chain", f.Path, f.Source)
			}
			if f.Size > maxRelFile {
				return bad("%s is unchanged at %d bytes, larger than a relation file can be", f.Path, f.Size)
			}
			dataSize += f.Size
		default:
			return bad("%s has unknown kind %q", f.Path, f.Kind)
		}
		if dataSize < 0 {
			return bad("the file sizes add up to more than %d bytes", int64(math.MaxInt64))
		}
		kinds[f.Path] = f.Kind
	}
	for oid := range spcs {
		if kinds[fmt.Sprintf("pg_tblspc/%d", oid)] != FileSymlink {
			return bad("tablespace %d has no link entry pg_tblspc/%d", oid, oid)
		}
	}
	if kinds["global/pg_control"] == "" {
		return bad("no global/pg_control")
	}
	if dataSize != m.DataSize {
		return bad("data_size %d differs from the sum of file sizes %d", m.DataSize, dataSize)
	}
	if m.Kind == KindDelta && deltaSize != m.DeltaSize {
		return bad("delta_size %d differs from the sum of the whole files and increments %d", m.DeltaSize, deltaSize)
	}
	return nil
}

// Encode writes the manifest as JSON to w, one file or part per line,
// without building the whole document in memory.
func (m *Manifest) Encode(w io.Writer) error {
	head := *m
	head.Files, head.Parts = nil, nil
	b, err := json.MarshalIndent(struct {
		*Backup
		BackupLabel   string       `json:"backup_label"`
		TablespaceMap string       `json:"tablespace_map"`
		Tablespaces   []Tablespace `json:"tablespaces"`
	}{&head.Backup, head.BackupLabel, head.TablespaceMap, nonNil(head.Tablespaces)}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest %s: %w", m.Name, err)
	}
	// Reopen the object to append the two lists.
	b = append(b[:len(b)-2], []byte(",\n  \"files\": [")...)
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := encodeList(w, m.Files); err != nil {
		return err
	}
	if _, err := io.WriteString(w, ",\n  \"parts\": ["); err != nil {
		return err
	}
	if err := encodeList(w, m.Parts); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n}\n")
	return err
}

func nonNil(ts []Tablespace) []Tablespace {
	if ts == nil {
		return []Tablespace{}
	}
	return ts
}

func encodeList[T any](w io.Writer, items []T) error {
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return err
		}
		sep := ",\n    "
		if i == 0 {
			sep = "\n    "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	end := "]"
	if len(items) > 0 {
		end = "\n  ]"
	}
	_, err := io.WriteString(w, end)
	return err
}

// Decode reads a manifest from r and validates it.
func Decode(r io.Reader) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
