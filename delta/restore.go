package delta

import (
	"context"
	"fmt"
	"io"

	"github.com/walrusdb/walrus/pg"
)

// Kind says how one backup stores one file.
type Kind int

const (
	// KindWhole is the file's bytes as they are.
	KindWhole Kind = iota + 1
	// KindIncrement is an increment in the format of this package.
	KindIncrement
	// KindUnchanged stores nothing: the file is as in the backup this one
	// is based on.
	KindUnchanged
)

// String returns "whole", "increment" or "unchanged".
func (k Kind) String() string {
	switch k {
	case KindWhole:
		return "whole"
	case KindIncrement:
		return "increment"
	case KindUnchanged:
		return "unchanged"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Source is one backup's copy of a file, as a restore reads it.
type Source struct {
	// Kind is how the backup stores the file.
	Kind Kind
	// Name identifies the copy in errors, e.g. "base/5/16384 in backup X".
	Name string
	// Open returns the copy's plaintext bytes (decrypted, decompressed);
	// Close must report a checksum mismatch found at the end of the
	// stream. Not called for KindUnchanged.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// File is what Restore writes; *os.File implements it.
type File interface {
	io.WriterAt
	// Truncate changes the file's size, zero-filling when it grows.
	Truncate(size int64) error
}

// Plan returns the part of chain (a file's copies, newest backup first) that
// a restore reads: every copy up to and including the first whole one. It
// fails if no copy is whole, or a copy has an unknown kind or no Open.
func Plan(chain []Source) ([]Source, error) {
	for i, s := range chain {
		switch s.Kind {
		case KindWhole, KindIncrement:
			if s.Open == nil {
				return nil, fmt.Errorf("plan restore of %s: no way to open it", s.Name)
			}
			if s.Kind == KindWhole {
				return chain[:i+1], nil
			}
		case KindUnchanged:
		default:
			return nil, fmt.Errorf("plan restore of %s: unknown kind %v", s.Name, s.Kind)
		}
	}
	name := "file"
	if len(chain) > 0 {
		name = chain[0].Name
	}
	return nil, fmt.Errorf("plan restore of %s: no backup in its chain of %d stores it whole", name, len(chain))
}

// Restore writes one file of size bytes (its size in the newest backup)
// from chain, its copies newest first, into dst: it empties dst, applies
// each increment newest first with a BlockSet so that every block comes
// from the newest copy that holds it, fills the remaining blocks from the
// whole copy, and truncates dst to size. Blocks no copy holds read as
// zeroes. Copies older than needed are not opened once every block is
// written. blockSize is the cluster's block size; every increment must use
// it. An error leaves dst void.
func Restore(ctx context.Context, dst File, size int64, blockSize int, chain []Source) error {
	plan, err := Plan(chain)
	if err != nil {
		return err
	}
	name := plan[0].Name
	switch {
	case !pg.ValidBlockSize(blockSize):
		return fmt.Errorf("restore %s: invalid block size %d", name, blockSize)
	case size < 0:
		return fmt.Errorf("restore %s: negative size %d", name, size)
	}
	nblocks := blockCount(size, blockSize)
	if nblocks > maxBlockNumber+1 {
		return fmt.Errorf("restore %s: size %d is too large for %d-byte blocks", name, size, blockSize)
	}
	if err := dst.Truncate(0); err != nil {
		return fmt.Errorf("restore %s: empty the file: %w", name, err)
	}
	var done BlockSet
	newest := true
	for _, src := range plan {
		if src.Kind == KindUnchanged {
			continue
		}
		if int64(done.Len()) >= nblocks {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restore %s: %w", src.Name, err)
		}
		if err := applySource(ctx, dst, src, size, blockSize, &done, newest); err != nil {
			return err
		}
		newest = false
	}
	if err := dst.Truncate(size); err != nil {
		return fmt.Errorf("restore %s: truncate to %d: %w", name, size, err)
	}
	return nil
}

// applySource opens one copy and applies it.
func applySource(ctx context.Context, dst File, src Source, size int64, blockSize int, done *BlockSet, newest bool) (err error) {
	rc, err := src.Open(ctx)
	if err != nil {
		return fmt.Errorf("restore %s: open: %w", src.Name, err)
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("restore %s: close: %w", src.Name, cerr)
		}
	}()
	if src.Kind == KindWhole {
		_, err = ApplyWhole(dst, rc, src.Name, blockSize, done, size)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		return nil
	}
	rd, err := NewReader(rc, src.Name)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	h := rd.Header()
	if h.BlockSize != blockSize {
		return fmt.Errorf("restore %s: increment of %d-byte blocks, cluster has %d", src.Name, h.BlockSize, blockSize)
	}
	if newest && h.FileSize != size {
		return fmt.Errorf("restore %s: newest increment records size %d, want %d", src.Name, h.FileSize, size)
	}
	if _, err := ApplyIncrement(dst, rd, done, size); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
