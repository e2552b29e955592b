package basebackup

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walrusdb/walrus/catalog"
)

// IsTerminal reports whether f is a terminal (a character device), where a
// progress line is welcome.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressInterval is how often the progress line is redrawn.
const progressInterval = time.Second

// progress counts bytes and files and, when w is not nil, redraws one
// status line on w every progressInterval. Counting is safe from any
// goroutine.
type progress struct {
	w          io.Writer
	verb       string
	totalBytes int64
	totalFiles int64
	bytes      atomic.Int64
	files      atomic.Int64
	phase      atomic.Pointer[string]
	start      time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, verb string) *progress {
	return &progress{w: w, verb: verb, start: time.Now()}
}

// setTotals sets what 100% is.
func (p *progress) setTotals(bytes, files int64) {
	p.totalBytes, p.totalFiles = bytes, files
}

// setPhase names what is happening when no bytes move (e.g. waiting for
// WAL archiving).
func (p *progress) setPhase(s string) { p.phase.Store(&s) }

func (p *progress) addBytes(n int64) { p.bytes.Add(n) }
func (p *progress) addFile()         { p.files.Add(1) }

// run starts redrawing. The returned function stops it, draws the last
// line, and returns once the redrawing goroutine has ended.
func (p *progress) run(ctx context.Context) func() {
	if p.w == nil {
		return func() {}
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(progressInterval)
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

func (p *progress) draw() {
	done := p.bytes.Load()
	elapsed := time.Since(p.start)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	line := fmt.Sprintf("%s: %s", p.verb, humanBytes(done))
	if p.totalBytes > 0 {
		line += fmt.Sprintf(" of %s (%d%%)", humanBytes(p.totalBytes), min(100, done*100/p.totalBytes))
	}
	line += fmt.Sprintf(", %d", p.files.Load())
	if p.totalFiles > 0 {
		line += fmt.Sprintf("/%d", p.totalFiles)
	}
	line += fmt.Sprintf(" files, %s/s", humanBytes(int64(rate)))
	if p.totalBytes > done && rate > 0 {
		eta := time.Duration(float64(p.totalBytes-done) / rate * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	if ph := p.phase.Load(); ph != nil && *ph != "" {
		line += " — " + *ph
	}
	// \r and clear to the end of the line: one status line, redrawn.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
}

// humanBytes formats n with a binary unit (catalog.HumanBytes).
func humanBytes(n int64) string { return catalog.HumanBytes(n) }
