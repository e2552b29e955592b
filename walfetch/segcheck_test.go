package walfetch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/walrusdb/walrus/pg"
)

// segmentImage returns the first bytes of WAL segment segNo of system
// sysid, 16 MiB segments.
func segmentImage(segNo, sysid uint64) []byte {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint16(b[0:], pg.WALPageMagic)
	le.PutUint16(b[2:], pg.WALLongHeaderFlag)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], segNo*16<<20)
	le.PutUint64(b[24:], sysid)
	le.PutUint32(b[32:], 16<<20)
	le.PutUint32(b[36:], 8192)
	return b
}

func TestCheckSegment(t *testing.T) {
	t.Parallel()
	const sysid = 7300000000000000042
	wf, err := pg.ParseWALFileName("000000010000000000000005", pg.MinWALSegSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		sysid  uint64
		wantOK bool
	}{
		{"the segment", segmentImage(5, sysid), sysid, true},
		{"system not known", segmentImage(5, sysid+1), 0, true},
		{"another segment", segmentImage(6, sysid), sysid, false},
		{"another cluster", segmentImage(5, sysid+1), sysid, false},
		{"not a segment", bytes.Repeat([]byte("x"), 8192), sysid, false},
		{"too short", segmentImage(5, sysid)[:20], sysid, false},
		{"empty", nil, sysid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time: the header arrives in pieces.
			got, err := io.ReadAll(checkSegment(&oneByte{bytes.NewReader(tc.data)}, wf, tc.sysid))
			if tc.wantOK {
				if err != nil || !bytes.Equal(got, tc.data) {
					t.Fatalf("err = %v, %d of %d bytes", err, len(got), len(tc.data))
				}
				return
			}
			if !errors.Is(err, ErrWrongSegment) {
				t.Fatalf("err = %v, want ErrWrongSegment", err)
			}
		})
	}
}

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }
