// Package progress draws the one-line status that long commands
// (backup-push, backup-fetch, backup-verify, delete) show on a terminal:
// bytes done of the total, files or objects done, rate and ETA, and what
// is happening while no bytes move. Off a terminal a command passes a nil
// writer and nothing is drawn, so output stays machine-readable.
package progress

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Interval is how often a Line is redrawn.
const Interval = time.Second

// IsTerminal reports whether f is a terminal (a character device), where a
// progress line is welcome.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Line counts bytes and units (files, objects) and, when its writer is not
// nil, redraws one status line on it every Interval while Run is active.
// Counting is safe from any goroutine; totals are set before Run.
type Line struct {
	w     io.Writer
	verb  string
	unit  string
	start time.Time

	totalBytes atomic.Int64
	totalUnits atomic.Int64
	bytes      atomic.Int64
	units      atomic.Int64
	phase      atomic.Pointer[string]

	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a Line that describes its work as verb ("backup X") and
// counts unit ("files", "objects"). w nil draws nothing.
func New(w io.Writer, verb, unit string) *Line {
	return &Line{w: w, verb: verb, unit: unit, start: time.Now()}
}

// SetTotals sets what 100% is; 0 means unknown (no percentage, no ETA; no
// unit total).
func (p *Line) SetTotals(bytes, units int64) {
	p.totalBytes.Store(bytes)
	p.totalUnits.Store(units)
}

// AddTotalBytes grows the byte total by n.
func (p *Line) AddTotalBytes(n int64) { p.totalBytes.Add(n) }

// SetPhase names what is happening when no bytes move (e.g. waiting for
// WAL archiving); "" clears it.
func (p *Line) SetPhase(s string) { p.phase.Store(&s) }

// AddBytes counts n bytes done.
func (p *Line) AddBytes(n int64) { p.bytes.Add(n) }

// AddUnits counts n units done.
func (p *Line) AddUnits(n int64) { p.units.Add(n) }

// Bytes returns the bytes counted.
func (p *Line) Bytes() int64 { return p.bytes.Load() }

// Units returns the units counted.
func (p *Line) Units() int64 { return p.units.Load() }

// Run starts redrawing. The returned function stops it, draws the last
// line and a newline, and returns once the redrawing goroutine has ended;
// it may be called more than once. With a nil writer Run does nothing.
func (p *Line) Run(ctx context.Context) (stop func()) {
	if p.w == nil {
		return func() {}
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(Interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-ctx.Done():
				return
			case <-p.stop:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(p.stop)
			p.wg.Wait()
			p.draw()
			fmt.Fprintln(p.w)
		})
	}
}

// String returns the status line as drawn now.
func (p *Line) String() string {
	return p.render(time.Since(p.start))
}

func (p *Line) render(elapsed time.Duration) string {
	done, total := p.bytes.Load(), p.totalBytes.Load()
	line := fmt.Sprintf("%s: %s", p.verb, HumanBytes(done))
	if total > 0 {
		line += fmt.Sprintf(" of %s (%d%%)", HumanBytes(total), min(100, done*100/total))
	}
	line += fmt.Sprintf(", %d", p.units.Load())
	if u := p.totalUnits.Load(); u > 0 {
		line += fmt.Sprintf("/%d", u)
	}
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	line += fmt.Sprintf(" %s, %s/s", p.unit, HumanBytes(int64(rate)))
	if total > done && rate > 0 {
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	if ph := p.phase.Load(); ph != nil && *ph != "" {
		line += " — " + *ph
	}
	return line
}

func (p *Line) draw() {
	// \r and clear to the end of the line: one status line, redrawn.
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.String())
}

// HumanBytes formats n bytes with a binary unit, e.g. "1.5 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
