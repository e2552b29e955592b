package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// Latest is the name that Resolve reads as "the newest backup".
const Latest = "LATEST"

// ErrNoBackup means the repository holds no backup, or none of the name.
var ErrNoBackup = errors.New("no such backup")

// manifestSuffix ends every manifest key.
const manifestSuffix = "/manifest.json"

// ListBackups reads the manifest of every backup in the repository and
// returns their summaries ordered by (system identifier, timeline, start
// LSN), name last; never by names or object times (TRAPS.md 24). A backup
// exists exactly when its manifest does. A manifest that cannot be read or
// is invalid fails the listing with an error naming it, rather than
// silently hiding a backup.
func ListBackups(ctx context.Context, st storage.Store) ([]Backup, error) {
	var names []string
	err := st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, repo.BackupsPrefix)
		name, ok := strings.CutSuffix(rest, manifestSuffix)
		if ok && !strings.Contains(name, "/") {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	out := make([]Backup, 0, len(names))
	for _, name := range names {
		b, err := readSummary(ctx, st, name)
		if err != nil {
			return nil, fmt.Errorf("list backups: %w (inspect backups/%s/; a backup whose manifest is damaged cannot be restored)", err, name)
		}
		out = append(out, b)
	}
	SortBackups(out)
	return out, nil
}

// SortBackups orders backups by (system identifier, timeline, start LSN,
// name).
func SortBackups(bs []Backup) {
	slices.SortStableFunc(bs, func(a, b Backup) int {
		sa, _ := strconv.ParseUint(a.SystemIdentifier, 10, 64)
		sb, _ := strconv.ParseUint(b.SystemIdentifier, 10, 64)
		switch {
		case sa != sb:
			return cmp(sa, sb)
		case a.Timeline != b.Timeline:
			return cmp(a.Timeline, b.Timeline)
		case a.StartLSN != b.StartLSN:
			return cmp(a.StartLSN, b.StartLSN)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func cmp[T ~uint32 | ~uint64](a, b T) int {
	if a < b {
		return -1
	}
	return 1
}

// readSummary reads the header of a manifest. The whole manifest is read
// and validated: a listed backup must be restorable as far as its manifest
// can tell.
func readSummary(ctx context.Context, st storage.Store, name string) (Backup, error) {
	m, err := ReadManifest(ctx, st, name)
	if err != nil {
		return Backup{}, err
	}
	return m.Backup, nil
}

// ReadManifest reads and validates the manifest of backup name. A missing
// manifest gives an error wrapping ErrNoBackup.
func ReadManifest(ctx context.Context, st storage.Store, name string) (*Manifest, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	key := repo.ManifestKey(name)
	rc, err := st.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("backup %s: %w (walrus backup-list shows the backups)", name, ErrNoBackup)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	m, err := Decode(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("read %s: %w: it names itself %q", key, ErrInvalidManifest, m.Name)
	}
	return m, nil
}

// Resolve returns the manifest of the backup called name, or of the newest
// backup for Latest: the last in ListBackups order among the backups of
// the repository's cluster (walrus.json; all backups when it has none), so
// that a manifest of another cluster copied into the repository is never
// taken for the newest.
func Resolve(ctx context.Context, st storage.Store, name string) (*Manifest, error) {
	if name != Latest {
		return ReadManifest(ctx, st, name)
	}
	bs, err := ListBackups(ctx, st)
	if err != nil {
		return nil, err
	}
	id, err := repo.ReadIdentity(ctx, st)
	switch {
	case err == nil:
		own := bs[:0:0]
		for _, b := range bs {
			if b.SystemIdentifier == id.SystemIdentifier {
				own = append(own, b)
			}
		}
		if len(own) == 0 && len(bs) > 0 {
			return nil, fmt.Errorf("%s: %w of this repository's cluster (system %s) in the repository, only of others: take one with walrus backup-push, or name the backup", Latest, ErrNoBackup, id.SystemIdentifier)
		}
		bs = own
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("%s: %w", Latest, err)
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("%s: %w in the repository: take one with walrus backup-push", Latest, ErrNoBackup)
	}
	return ReadManifest(ctx, st, bs[len(bs)-1].Name)
}

// WriteManifest stores the manifest of a backup, create-only: a backup
// that exists is never overwritten (TRAPS.md 10). It is the last write of
// a backup; its presence is what makes the backup exist. The manifest is
// plaintext JSON so that listing and delta planning need no identity; it
// holds paths and sizes, never data.
func WriteManifest(ctx context.Context, st storage.Store, m *Manifest) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	key := repo.ManifestKey(m.Name)
	body := &manifestBody{m: m}
	body.begin()
	err := st.Put(ctx, key, body, storage.PutOptions{IfNotExists: true, Size: -1})
	// Unblock the encoder if Put returned without reading everything; it
	// then ends at once.
	body.end()
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// errManifestUploadEnded unblocks a manifest's encoder once its upload
// returned.
var errManifestUploadEnded = errors.New("manifest upload ended")

// manifestBody is the body of a manifest upload: the manifest encoded
// into a pipe, without building the document in memory. The encoding is
// deterministic, so another attempt encodes it again (retry.Reopener):
// the retry layer can resend it whole after a failure midway, and tell
// that a create-only upload whose answer was lost stored this very
// manifest.
type manifestBody struct {
	m    *Manifest
	pr   *io.PipeReader
	done chan struct{}
}

// begin starts an encoding.
func (b *manifestBody) begin() {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	b.pr, b.done = pr, done
	go func() {
		defer close(done)
		pw.CloseWithError(b.m.Encode(pw))
	}()
}

// end stops the current encoding and waits for it.
func (b *manifestBody) end() {
	b.pr.CloseWithError(errManifestUploadEnded)
	<-b.done
}

// Read reads the current encoding.
func (b *manifestBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

// Reopen starts the encoding again from the first byte.
func (b *manifestBody) Reopen() (io.Reader, error) {
	b.end()
	b.begin()
	return b, nil
}

// MaxChainLength bounds the links ReadChain follows, so that a loop of
// delta_from names in damaged manifests ends.
const MaxChainLength = 1000

// ErrBrokenChain is wrapped by the errors of ReadChain that mean the chain
// of a delta backup cannot be restored: a link missing, damaged, or not
// fitting the backup based on it.
var ErrBrokenChain = errors.New("broken delta chain")

// ReadChain returns the manifests a restore of m needs, newest first: m,
// the backup it is based on, and so on down to its root full backup. Each
// link must exist, be valid, belong to the same cluster, start before the
// backup based on it and agree on the chain's root and block size.
// Errors wrap ErrBrokenChain (and ErrNoBackup for a missing link) and name
// the link and the backup that needs it. Nothing but manifests is read.
func ReadChain(ctx context.Context, st storage.Store, m *Manifest) ([]*Manifest, error) {
	chain := []*Manifest{m}
	seen := map[string]bool{m.Name: true}
	for cur := m; !cur.IsFull(); {
		if len(chain) > MaxChainLength {
			return nil, fmt.Errorf("%w: backup %s: more than %d links", ErrBrokenChain, m.Name, MaxChainLength)
		}
		name := *cur.DeltaFrom
		if seen[name] {
			return nil, fmt.Errorf("%w: backup %s: the chain comes back to %s", ErrBrokenChain, m.Name, name)
		}
		seen[name] = true
		base, err := ReadManifest(ctx, st, name)
		if err != nil {
			return nil, fmt.Errorf("%w: backup %s is based on %s, which cannot be read: %w", ErrBrokenChain, cur.Name, name, err)
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: backup %s is based on %s, which %s", ErrBrokenChain, cur.Name, name, fmt.Sprintf(format, args...))
		}
		switch {
		case base.SystemIdentifier != cur.SystemIdentifier:
			return nil, bad("belongs to system %s, not %s", base.SystemIdentifier, cur.SystemIdentifier)
		case base.FinishLSN > cur.StartLSN:
			return nil, bad("finished at %s, after %s started at %s", base.FinishLSN, cur.Name, cur.StartLSN)
		case base.IsFull() && base.Name != *cur.DeltaRoot:
			return nil, bad("is a full backup, but the chain's root is recorded as %s", *cur.DeltaRoot)
		case !base.IsFull() && *base.DeltaRoot != *cur.DeltaRoot:
			return nil, bad("has root %s, but %s records root %s", *base.DeltaRoot, cur.Name, *cur.DeltaRoot)
		case base.BlockSize != 0 && base.BlockSize != cur.BlockSize:
			return nil, bad("has %d-byte pages, not %d", base.BlockSize, cur.BlockSize)
		}
		chain = append(chain, base)
		cur = base
	}
	return chain, nil
}
