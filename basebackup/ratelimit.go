package basebackup

import (
	"context"
	"sync"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
)

// rateLimiter spreads reads so that, over time, at most rate bytes per
// second pass, shared by every worker. A nil *rateLimiter does not limit.
type rateLimiter struct {
	mu   sync.Mutex
	rate float64 // bytes per second
	next time.Time
}

// newRateLimiter returns a limiter of bytesPerSecond, or nil (no limit)
// for 0 or less.
func newRateLimiter(bytesPerSecond int64) *rateLimiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(bytesPerSecond)}
}

// wait reserves n bytes and sleeps until they may pass, or ctx ends.
func (r *rateLimiter) wait(ctx context.Context, n int) error {
	if r == nil || n <= 0 {
		return nil
	}
	r.mu.Lock()
	now := time.Now()
	if r.next.Before(now) {
		r.next = now
	}
	at := r.next
	r.next = r.next.Add(time.Duration(float64(n) / r.rate * float64(time.Second)))
	r.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	return wait.Sleep(ctx, d)
}
