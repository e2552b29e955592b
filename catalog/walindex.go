package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// WALIndex is one listing of the repository's wal/ prefix: which segments
// exist on which timeline, and the timeline history files.
type WALIndex struct {
	// SegSize is the WAL segment size the names were parsed with.
	SegSize uint64
	// Segments maps a timeline to the segment numbers stored for it.
	Segments map[pg.TimelineID]map[uint64]string
	// Histories maps a timeline to the key of its .history object.
	Histories map[pg.TimelineID]string
	// Keys maps every WAL file name to its object key.
	Keys map[string]string
	// Duplicates maps a WAL file name stored under more than one key (two
	// codecs, or with and without encryption) to all of its keys. A
	// restore cannot tell which one to fetch and refuses the name.
	Duplicates map[string][]string
}

// LoadWALIndex lists wal/ once. Objects whose names are not WAL files are
// ignored.
func LoadWALIndex(ctx context.Context, st storage.Store, segSize uint64) (*WALIndex, error) {
	if !pg.ValidWALSegSize(segSize) {
		return nil, fmt.Errorf("load WAL index: invalid WAL segment size %d", segSize)
	}
	w := &WALIndex{SegSize: segSize, Segments: map[pg.TimelineID]map[uint64]string{}, Histories: map[pg.TimelineID]string{}, Keys: map[string]string{}, Duplicates: map[string][]string{}}
	err := st.List(ctx, repo.WALPrefix, func(o storage.ObjectInfo) error {
		base, _, _, err := repo.ParseKey(o.Key)
		if err != nil {
			return nil
		}
		name := base[len(repo.WALPrefix):]
		f, err := pg.ParseWALFileName(name, segSize)
		if err != nil {
			return nil
		}
		if prev, dup := w.Keys[name]; dup {
			if len(w.Duplicates[name]) == 0 {
				w.Duplicates[name] = []string{prev}
			}
			w.Duplicates[name] = append(w.Duplicates[name], o.Key)
		}
		w.Keys[name] = o.Key
		switch f.Kind {
		case pg.SegmentFile:
			if w.Segments[f.Timeline] == nil {
				w.Segments[f.Timeline] = map[uint64]string{}
			}
			w.Segments[f.Timeline][f.SegNo] = o.Key
		case pg.HistoryFile:
			w.Histories[f.Timeline] = o.Key
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list WAL: %w", err)
	}
	return w, nil
}

// Newest returns the highest timeline and, on it, the highest segment
// number stored; ok is false when there is no segment at all.
func (w *WALIndex) Newest() (tli pg.TimelineID, segNo uint64, ok bool) {
	for t, segs := range w.Segments {
		for s := range segs {
			if !ok || t > tli || (t == tli && s > segNo) {
				tli, segNo, ok = t, s, true
			}
		}
	}
	return
}

// History reads the history of timeline tli (timeline 1 has none). dec
// decodes the .history object.
func (w *WALIndex) History(ctx context.Context, st storage.Store, dec *repo.Decoder, tli pg.TimelineID) (pg.History, error) {
	if tli <= 1 {
		return pg.History{TLI: tli}, nil
	}
	key, ok := w.Histories[tli]
	if !ok {
		return pg.History{}, fmt.Errorf("timeline %d: history file %s is not in the repository", tli, pg.HistoryFileName(tli))
	}
	rc, err := dec.Open(ctx, st, key)
	if err != nil {
		return pg.History{}, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	h, err := pg.ReadHistory(tli, io.LimitReader(rc, 16<<20))
	if err != nil {
		return pg.History{}, fmt.Errorf("parse %s: %w", key, err)
	}
	return h, nil
}

// ErrWALMissing is wrapped by MissingError.
var ErrWALMissing = errors.New("WAL missing from the archive")

// MissingError lists WAL files a replay needs that the repository lacks.
type MissingError struct {
	// Names are the missing WAL file names, in replay order.
	Names []string
}

func (e *MissingError) Error() string {
	s := fmt.Sprintf("%d WAL file(s) missing from the archive: ", len(e.Names))
	for i, n := range e.Names {
		if i == 8 {
			s += fmt.Sprintf(", ... (%d more)", len(e.Names)-8)
			break
		}
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// Unwrap makes errors.Is(err, ErrWALMissing) true.
func (e *MissingError) Unwrap() error { return ErrWALMissing }

// Missing reports the WAL files that replay from (fromTLI, from) to
// (to) along the lineage of timeline h.TLI needs and the repository lacks:
// every segment from the one holding from to the one holding to, each on
// the timeline the lineage had at that segment (PostgreSQL also accepts a
// copy on an older timeline of the lineage, for segments before a switch),
// and the history files of every timeline above fromTLI. It returns nil
// when nothing is missing.
func (w *WALIndex) Missing(h pg.History, fromTLI pg.TimelineID, from, to pg.LSN) error {
	var missing []string
	lineage := []pg.TimelineID{h.TLI}
	for _, e := range h.Entries {
		lineage = append(lineage, e.Parent)
	}
	sort.Slice(lineage, func(i, j int) bool { return lineage[i] > lineage[j] })
	for _, t := range lineage {
		if t > fromTLI && t > 1 {
			if _, ok := w.Histories[t]; !ok {
				missing = append(missing, pg.HistoryFileName(t))
			}
		}
	}
	if to < from {
		to = from
	}
	first := pg.SegmentForLSN(from, w.SegSize)
	last := pg.SegmentForLSN(to, w.SegSize)
	for seg := first; seg <= last; seg++ {
		end := pg.SegmentStartLSN(seg+1, w.SegSize) - 1
		if end > to {
			end = to
		}
		want := h.TimelineAt(end)
		if want == 0 {
			want = h.TLI
		}
		found := false
		for _, t := range lineage {
			if t > want || t < fromTLI {
				continue
			}
			if _, ok := w.Segments[t][seg]; ok {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, pg.SegmentName(want, seg, w.SegSize))
		}
	}
	if len(missing) > 0 {
		return &MissingError{Names: missing}
	}
	return nil
}
