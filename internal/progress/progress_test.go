package progress

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLineShowsBytesUnitsRateAndETA(t *testing.T) {
	p := New(nil, "backup b1", "files")
	p.SetTotals(4<<30, 10)
	p.AddBytes(1 << 30)
	p.AddUnits(3)
	got := p.render(10 * time.Second)
	for _, want := range []string{"backup b1: 1.0 GiB of 4.0 GiB (25%)", "3/10 files", "102.4 MiB/s", "ETA 30s"} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
	p.SetPhase("waiting for WAL")
	if got := p.render(time.Second); !strings.HasSuffix(got, "— waiting for WAL") {
		t.Errorf("phase not shown: %q", got)
	}
	// Unknown totals: no percentage, no ETA.
	q := New(nil, "verify", "objects")
	q.AddBytes(2048)
	q.AddUnits(1)
	if got := q.render(time.Second); strings.Contains(got, "%") || strings.Contains(got, "ETA") || !strings.Contains(got, "verify: 2.0 KiB, 1 objects") {
		t.Errorf("line without totals: %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the drawing goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestRunDrawsTheLastLineOnce(t *testing.T) {
	var out syncBuffer
	p := New(&out, "restore x", "files")
	stop := p.Run(context.Background())
	p.AddBytes(5 << 20)
	p.AddUnits(2)
	stop()
	stop() // a second call is harmless
	s := out.b.String()
	if !strings.HasPrefix(s, "\r") || !strings.HasSuffix(s, "\x1b[K\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("output %q: want status lines redrawn with \\r and one final newline", s)
	}
	if !strings.Contains(s, "restore x: 5.0 MiB, 2 files") {
		t.Fatalf("final line lacks the counts: %q", s)
	}
	// A nil writer draws nothing and Run's stop is a no-op.
	New(nil, "quiet", "files").Run(context.Background())()
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
