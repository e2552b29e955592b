package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultSessionCheck is how often WatchSession asks whether the session
// is still there when not told otherwise.
const DefaultSessionCheck = 5 * time.Second

// sessionPingTimeout bounds one check. A session that does not answer an
// empty query for this long is taken as lost; the timeout closes it.
const sessionPingTimeout = time.Minute

// ErrSessionEnded is the cause of the context of WatchSession when the
// session it watches stopped answering: the server terminated it (for
// instance pg_terminate_backend), restarted, or the connection broke.
var ErrSessionEnded = errors.New("the database session ended")

// WatchSession checks every interval (DefaultSessionCheck when 0) that
// the session of conn still answers, while the caller does long work that
// does not use conn, such as copying the files of a non-exclusive backup,
// which belongs to its session and is void once the session is gone
// (TRAPS.md 9). TCP keepalives alone do not notice a session the server
// closed cleanly.
//
// The returned context is ctx, cancelled with a cause wrapping
// ErrSessionEnded when a check fails. stop ends the watch and waits for a
// check in flight: the caller must call it before it uses conn again,
// since a pgx connection serves one caller at a time. stop never
// interrupts a check (cancelling a query would close the session); a
// check that does not answer within a minute closes it.
func WatchSession(ctx context.Context, conn *pgx.Conn, interval time.Duration) (watched context.Context, stop func()) {
	if interval <= 0 {
		interval = DefaultSessionCheck
	}
	watched, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-watched.Done():
				return
			case <-t.C:
			}
			// Not watched's context: stop or the work's own failure
			// must not cancel a check in flight.
			pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), sessionPingTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				cancel(fmt.Errorf("%w (%v)", ErrSessionEnded, err))
				return
			}
		}
	}()
	return watched, func() {
		close(quit)
		<-done
		cancel(context.Canceled)
	}
}
