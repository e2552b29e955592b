// Package wait holds the context-aware sleep that retries, polls and rate
// limits share.
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, whichever comes first. It returns nil
// after d, or ctx.Err() when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
