package pg

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a WAL location (log sequence number): a byte position in the
// cluster's WAL stream, printed by PostgreSQL as two hex halves "X/Y".
type LSN uint64

// InvalidLSN is the zero LSN, which PostgreSQL never uses for a real record.
const InvalidLSN LSN = 0

// ParseLSN parses PostgreSQL's "X/Y" notation.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("parse LSN %q: want two hex numbers X/Y, e.g. 0/16B3748", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// String formats the LSN as PostgreSQL does ("16/B374D848").
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// MarshalText implements encoding.TextMarshaler, so LSNs appear in JSON as
// PostgreSQL prints them.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// TimelineID identifies a WAL timeline; the first timeline is 1.
type TimelineID uint32
