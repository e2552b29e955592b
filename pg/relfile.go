package pg

import (
	"strconv"
	"strings"
)

// Tablespace OIDs that PostgreSQL fixes at initdb.
const (
	// DefaultTablespaceOID is pg_default, stored under base/.
	DefaultTablespaceOID = 1663
	// GlobalTablespaceOID is pg_global, the shared catalogs under global/.
	GlobalTablespaceOID = 1664
)

// Relation fork names as they appear after the relfilenode in file names
// ("16384_fsm").
const (
	// ForkMain is the main fork, the relation's data; its files have no
	// suffix.
	ForkMain = ""
	// ForkFSM is the free space map.
	ForkFSM = "fsm"
	// ForkVM is the visibility map.
	ForkVM = "vm"
	// ForkInit is the init fork of an unlogged relation.
	ForkInit = "init"
)

// tablespaceVersionPrefix starts the per-version directory inside a
// tablespace: PG_<major>_<catalog version>.
const tablespaceVersionPrefix = "PG_15_"

// RelFile identifies one segment file of one fork of a permanent relation.
type RelFile struct {
	// DBOID is the database OID; 0 for shared catalogs in global/.
	DBOID uint32
	// TablespaceOID is the tablespace OID: DefaultTablespaceOID for base/,
	// GlobalTablespaceOID for global/, else the pg_tblspc/ link name.
	TablespaceOID uint32
	// RelNode is the relfilenode, the file's base name.
	RelNode uint32
	// Fork is ForkMain (""), ForkFSM, ForkVM or ForkInit.
	Fork string
	// Segment is the segment number: 0 for the first file, N for ".N".
	// Block numbers restart at 0 in every segment file.
	Segment int
	// Path is the PGDATA-relative, slash-separated path it was parsed from,
	// for messages.
	Path string
}

// ParseRelFilePath recognises a relation data file by its exact
// PGDATA-relative, slash-separated path:
//
//	base/<dboid>/<relnode>[_<fork>][.<segment>]
//	global/<relnode>[_<fork>][.<segment>]
//	pg_tblspc/<spcoid>/PG_15_<catversion>/<dboid>/<relnode>[_<fork>][.<segment>]
//
// OIDs are decimal without leading zeros and not 0, the fork is fsm, vm or
// init, and the segment is a decimal from 1. Anything else is not a relation
// file and gives false: pg_filenode.map, PG_VERSION, pg_internal.init,
// temporary relations (t<backend>_<relnode>), paths with a leading "/",
// "./", empty or "." components, or a different PGDATA layout. Deciding by
// the whole path, never by a base name or substring, keeps a data directory
// whose own path contains "base" or a stray file named like a relation
// elsewhere from being misclassified (TRAPS.md 13).
func ParseRelFilePath(rel string) (RelFile, bool) {
	parts := strings.Split(rel, "/")
	var (
		r    RelFile
		name string
		ok   bool
	)
	switch {
	case len(parts) == 3 && parts[0] == "base":
		r.TablespaceOID = DefaultTablespaceOID
		if r.DBOID, ok = parseOID(parts[1]); !ok {
			return RelFile{}, false
		}
		name = parts[2]
	case len(parts) == 2 && parts[0] == "global":
		r.TablespaceOID = GlobalTablespaceOID
		name = parts[1]
	case len(parts) == 5 && parts[0] == "pg_tblspc":
		if r.TablespaceOID, ok = parseOID(parts[1]); !ok {
			return RelFile{}, false
		}
		cat, found := strings.CutPrefix(parts[2], tablespaceVersionPrefix)
		if !found || !allDigits(cat) {
			return RelFile{}, false
		}
		if r.DBOID, ok = parseOID(parts[3]); !ok {
			return RelFile{}, false
		}
		name = parts[4]
	default:
		return RelFile{}, false
	}
	name, seg, hasSeg := strings.Cut(name, ".")
	if hasSeg {
		n, ok := parseOID(seg)
		if !ok || n > 1<<30 {
			return RelFile{}, false
		}
		r.Segment = int(n)
	}
	node, fork, hasFork := strings.Cut(name, "_")
	if hasFork {
		switch fork {
		case ForkFSM, ForkVM, ForkInit:
			r.Fork = fork
		default:
			return RelFile{}, false
		}
	}
	if r.RelNode, ok = parseOID(node); !ok {
		return RelFile{}, false
	}
	r.Path = rel
	return r, true
}

// IsDataFork reports whether the file is of the main fork, the only fork
// whose every change is WAL-logged with the page LSN, and so the only one a
// page-delta backup may store as an increment. The fsm, vm and init forks
// are copied whole (TRAPS.md 18).
func (r RelFile) IsDataFork() bool { return r.Fork == ForkMain }

// parseOID parses a positive decimal uint32 written as PostgreSQL prints it
// (%u): digits only, no sign, no leading zero.
func parseOID(s string) (uint32, bool) {
	if s == "" || s[0] == '0' || !allDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
