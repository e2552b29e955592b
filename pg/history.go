package pg

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// TimelineHistoryEntry is one line of a timeline history file: the lineage
// followed timeline Parent until SwitchLSN, where the next timeline of the
// lineage began.
type TimelineHistoryEntry struct {
	// Parent is an ancestor timeline.
	Parent TimelineID
	// SwitchLSN is where the lineage left Parent: WAL before it is shared
	// with Parent, WAL from it on belongs to the next timeline.
	SwitchLSN LSN
	// Reason is PostgreSQL's free-text reason, e.g. "no recovery target
	// specified" or "at restore point \"before_drop\"".
	Reason string
}

// maxHistoryLine bounds one line of a history file; real lines are short.
const maxHistoryLine = 64 << 10

// ParseHistory parses the content of a timeline history file
// (TLI.history): one "parentTLI<TAB>X/Y<TAB>reason" line per ancestor,
// oldest first; blank lines and lines starting with '#' are ignored, as
// PostgreSQL does. Timelines must increase strictly and switch points must
// not go backwards.
func ParseHistory(r io.Reader) ([]TimelineHistoryEntry, error) {
	var entries []TimelineHistoryEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxHistoryLine)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		fields := strings.SplitN(trimmed, "\t", 3)
		if len(fields) < 2 {
			return nil, fmt.Errorf("parse history line %d %q: want parentTLI<TAB>X/Y<TAB>reason", lineNo, line)
		}
		tli, err := strconv.ParseUint(strings.TrimSpace(fields[0]), 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("parse history line %d %q: bad timeline %q", lineNo, line, fields[0])
		}
		lsn, err := ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("parse history line %d: %w", lineNo, err)
		}
		e := TimelineHistoryEntry{Parent: TimelineID(tli), SwitchLSN: lsn}
		if len(fields) == 3 {
			e.Reason = strings.TrimSpace(fields[2])
		}
		if n := len(entries); n > 0 {
			prev := entries[n-1]
			if e.Parent <= prev.Parent {
				return nil, fmt.Errorf("parse history line %d: timeline %d does not follow timeline %d: timelines must increase", lineNo, e.Parent, prev.Parent)
			}
			if e.SwitchLSN < prev.SwitchLSN {
				return nil, fmt.Errorf("parse history line %d: switch point %s of timeline %d is before %s of timeline %d", lineNo, e.SwitchLSN, e.Parent, prev.SwitchLSN, prev.Parent)
			}
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return entries, nil
}

// History is the lineage of one timeline: its history file's entries
// (ancestors, oldest first) and the timeline itself. Timeline 1 has no
// history file; its History has no entries.
type History struct {
	// TLI is the timeline this history leads to.
	TLI TimelineID
	// Entries are TLI's ancestors with the points where the lineage left
	// them, oldest first.
	Entries []TimelineHistoryEntry
}

// ReadHistory parses the history file of timeline tli and checks that every
// ancestor is older than tli.
func ReadHistory(tli TimelineID, r io.Reader) (History, error) {
	entries, err := ParseHistory(r)
	if err != nil {
		return History{}, fmt.Errorf("read history of timeline %d: %w", tli, err)
	}
	h := History{TLI: tli, Entries: entries}
	if n := len(entries); n > 0 && entries[n-1].Parent >= tli {
		return History{}, fmt.Errorf("read history of timeline %d: ancestor timeline %d is not older than %d", tli, entries[n-1].Parent, tli)
	}
	return h, nil
}

// SwitchPoint reports whether ancestor is in h's lineage and where the
// lineage left it: WAL of ancestor before the returned LSN is also WAL of
// h.TLI. For h.TLI itself it returns (InvalidLSN, true): the lineage never
// left it (InvalidLSN stands for "no end", as in PostgreSQL).
func (h History) SwitchPoint(ancestor TimelineID) (LSN, bool) {
	if ancestor == h.TLI {
		return InvalidLSN, true
	}
	for _, e := range h.Entries {
		if e.Parent == ancestor {
			return e.SwitchLSN, true
		}
	}
	return InvalidLSN, false
}

// Contains reports whether the WAL position lsn of timeline tli is part of
// h's lineage: tli is h.TLI, or an ancestor that the lineage left after lsn.
// A base backup that started at lsn on tli can be continued by WAL of h.TLI
// only if Contains(tli, lsn).
func (h History) Contains(tli TimelineID, lsn LSN) bool {
	sw, ok := h.SwitchPoint(tli)
	if !ok {
		return false
	}
	return sw == InvalidLSN || lsn < sw
}

// TimelineAt returns the timeline of h's lineage that WAL position lsn
// belongs to (PostgreSQL's tliOfPointInHistory).
func (h History) TimelineAt(lsn LSN) TimelineID {
	for _, e := range h.Entries {
		if lsn < e.SwitchLSN {
			return e.Parent
		}
	}
	return h.TLI
}
