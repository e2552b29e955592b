package walfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// ErrWrongSegment means an archived object does not hold the WAL segment
// its name promises: its header names another segment, or another
// cluster. Restoring it would make PostgreSQL read an invalid record and
// end recovery early, at the wrong point (TRAPS.md 1).
var ErrWrongSegment = errors.New("the archived object is not this segment")

// repositorySystem returns the system identifier walrus.json records, or
// 0 when the repository has none.
func repositorySystem(ctx context.Context, st storage.Store) (uint64, error) {
	id, err := repo.ReadIdentity(ctx, st)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(id.SystemIdentifier, 10, 64)
}

// checkSegment wraps r, the plaintext of the archived segment (or .partial
// file) wf, so that reading fails, before the caller publishes anything,
// unless it starts with the long page header of that very segment, written
// by cluster sysid (0: not checked). The timeline is not compared: the
// first segment of a new timeline starts with its parent's pages.
func checkSegment(r io.Reader, wf pg.WALFile, sysid uint64) io.Reader {
	return &segmentCheck{r: r, wf: wf, sysid: sysid}
}

type segmentCheck struct {
	r     io.Reader
	wf    pg.WALFile
	sysid uint64
	hdr   []byte
	done  bool
}

func (s *segmentCheck) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.done {
		return n, err
	}
	s.hdr = append(s.hdr, p[:min(n, pg.SegmentHeaderSize-len(s.hdr))]...)
	if len(s.hdr) == pg.SegmentHeaderSize {
		s.done = true
		if cerr := s.check(); cerr != nil {
			return 0, cerr
		}
	} else if errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%w: %d bytes, shorter than a segment header", ErrWrongSegment, len(s.hdr))
	}
	return n, err
}

func (s *segmentCheck) check() error {
	h, err := pg.ParseSegmentHeader(s.hdr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrWrongSegment, err)
	}
	wf, err := pg.ParseWALFileName(s.wf.Name, uint64(h.SegSize))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrWrongSegment, err)
	}
	if h.SegNo() != wf.SegNo {
		return fmt.Errorf("%w: its header starts segment %s (page address %s): objects of the archive were renamed or swapped; find the real %s",
			ErrWrongSegment, pg.SegmentName(wf.Timeline, h.SegNo(), uint64(h.SegSize)), h.PageAddr, s.wf.Name)
	}
	if s.sysid != 0 && h.SystemIdentifier != s.sysid {
		return fmt.Errorf("%w: it was written by system %d, the repository belongs to system %d (walrus.json): it comes from another cluster's archive; find the real %s",
			ErrWrongSegment, h.SystemIdentifier, s.sysid, s.wf.Name)
	}
	return nil
}
