package pg_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// TestWatchSession: while a session lives, the watch leaves the work's
// context alone and stop gives the connection back usable; when the server
// terminates the session, the work's context is cancelled with
// ErrSessionEnded as its cause.
func TestWatchSession(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	ctx := t.Context()

	conn, err := pg.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	watched, stop := pg.WatchSession(ctx, conn, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // several checks
	if err := watched.Err(); err != nil {
		t.Fatalf("the watch of a live session cancelled the work: %v", context.Cause(watched))
	}
	stop()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the connection after stop: %v", err)
	}

	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	watched, stop = pg.WatchSession(ctx, conn, 20*time.Millisecond)
	defer stop()
	if got := c.QueryRow(t, "SELECT pg_terminate_backend("+strconv.Itoa(pid)+")"); got != "t" {
		t.Fatalf("pg_terminate_backend returned %s", got)
	}
	select {
	case <-watched.Done():
	case <-time.After(2 * time.Minute): // a hang, not a speed limit
		t.Fatal("the watch did not notice the terminated session")
	}
	if cause := context.Cause(watched); !errors.Is(cause, pg.ErrSessionEnded) {
		t.Fatalf("cause %v, want ErrSessionEnded", cause)
	}
	if ctx.Err() != nil {
		t.Fatal("the watch cancelled its parent context")
	}
}
