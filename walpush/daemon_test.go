package walpush

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/storage/mem"
)

// startDaemon runs Serve on a fresh pg_wal until the test ends, and
// checks that it then returns nil and removes its socket.
func startDaemon(t *testing.T, opts Options) cluster {
	t.Helper()
	c, done, stop := startDaemonUntil(t, opts)
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(SocketPath(c.walDir)); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	return c
}

// TestDaemon: requests are answered once durable, segments are pushed
// ahead and confirmed, refusals and conflicts reach the client.
func TestDaemon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &countingStore{Store: mem.New()}
	opts := testOptions(st)
	c := startDaemon(t, opts)
	segs := map[string][]byte{}
	for i := 1; i <= 8; i++ {
		segs[segName(i)] = segmentBytes(t, segName(i), testSysID, byte(i))
		c.ready(t, segName(i), segs[segName(i)])
	}
	confirmed := 0
	for i := 1; i <= 8; i++ {
		res, used, err := ViaDaemon(ctx, filepath.Join(c.walDir, segName(i)), opts.Repository, false)
		if !used || err != nil {
			t.Fatalf("%s: used %t, %v", segName(i), used, err)
		}
		if res.Name != segName(i) || res.Key != "wal/"+segName(i)+".lz4" {
			t.Fatalf("%+v", res)
		}
		if !bytes.Equal(fetchPlain(t, st, segName(i)), segs[segName(i)]) {
			t.Fatalf("%s stored wrong", segName(i))
		}
		if res.Confirmed {
			confirmed++
			// The daemon keeps a confirmed marker until PostgreSQL marks
			// the segment done: without it, its pushes ahead would take
			// the still-ready segment for one to push and read it again.
			m := &markers{dir: filepath.Join(c.walDir, "archive_status", MarkerDirName), repository: opts.Repository}
			if !exists(c.marker(segName(i))) {
				t.Fatalf("%s: confirmed marker removed while the segment is still ready", segName(i))
			}
			if names, err := m.pick(filepath.Join(c.walDir, "archive_status"), "", 20); err != nil || slices.Contains(names, segName(i)) {
				t.Fatalf("%s: confirmed but still ready, picked for pushing again: %v %v", segName(i), names, err)
			}
		}
		c.done(t, segName(i))
	}
	if got := st.puts.Load(); got != 8 {
		t.Fatalf("%d uploads for 8 segments", got)
	}
	t.Logf("%d of 8 confirmed from markers", confirmed)

	// Another repository setting: refused, the client pushes itself.
	c.ready(t, segName(9), segmentBytes(t, segName(9), testSysID, 9))
	_, used, err := ViaDaemon(ctx, filepath.Join(c.walDir, segName(9)), "mem://other", false)
	if !used || err == nil || errors.Is(err, ErrConflict) || !errors.Is(err, ErrDaemon) {
		t.Fatalf("other repository: used %t, %v", used, err)
	}
	// A different file under an archived name: a conflict, final.
	p := filepath.Join(c.walDir, segName(3))
	os.WriteFile(p, segmentBytes(t, segName(3), testSysID, 33), 0o600)
	os.WriteFile(filepath.Join(c.walDir, "archive_status", segName(3)+".ready"), nil, 0o600)
	if _, _, err := ViaDaemon(ctx, p, opts.Repository, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	// A file outside the daemon's pg_wal is refused.
	other := writeTemp(t, segName(10), segmentBytes(t, segName(10), testSysID, 10))
	os.MkdirAll(filepath.Join(filepath.Dir(other), "archive_status", MarkerDirName), 0o700)
	os.Symlink(SocketPath(c.walDir), SocketPath(filepath.Dir(other)))
	if _, used, err := ViaDaemon(ctx, other, opts.Repository, false); !used || err == nil {
		t.Fatalf("file outside pg_wal: used %t, %v", used, err)
	}
}

// TestViaDaemonWithoutDaemon: no socket, no daemon: the caller pushes.
func TestViaDaemonWithoutDaemon(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	p := c.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	if _, used, err := ViaDaemon(context.Background(), p, "x", false); used || err != nil {
		t.Fatalf("used %t, %v", used, err)
	}
}

// TestDaemonOneAtATime: a second daemon for the same pg_wal is refused.
func TestDaemonOneAtATime(t *testing.T) {
	t.Parallel()
	opts := testOptions(mem.New())
	c := startDaemon(t, opts)
	err := Serve(context.Background(), c.walDir, opts)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("another wal-push-daemon")) {
		t.Fatalf("second daemon: %v", err)
	}
}

// TestDaemonIdleExit: a daemon with IdleExit (one wal-push started) serves,
// then returns by itself once no request came for that long, removing its
// socket; the lock file names its process.
func TestDaemonIdleExit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	opts := testOptions(st)
	opts.IdleExit = 300 * time.Millisecond
	c, done, _ := startDaemonUntil(t, opts)
	p := c.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	if _, used, err := ViaDaemon(ctx, p, opts.Repository, false); !used || err != nil {
		t.Fatalf("used %t, %v", used, err)
	}
	if !bytes.Equal(fetchPlain(t, st, segName(1)), segmentBytes(t, segName(1), testSysID, 1)) {
		t.Fatal("stored wrong")
	}
	pid, _ := os.ReadFile(filepath.Join(c.walDir, "archive_status", MarkerDirName, daemonLockName))
	if strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this process's ID", pid)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit when idle")
	}
	if _, err := os.Stat(SocketPath(c.walDir)); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	// With nothing serving, the client is told so and pushes itself.
	if _, used, err := ViaDaemon(ctx, p, opts.Repository, false); used || err != nil {
		t.Fatalf("after exit: used %t, %v", used, err)
	}
}

// TestDaemonExitsForOtherSettings: a daemon that wal-push started answers
// a client with other settings with a refusal, then exits, so that the
// client's next call can start one with its settings; a hand-started one
// (no IdleExit) refuses and stays.
func TestDaemonExitsForOtherSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testOptions(mem.New())
	opts.IdleExit = time.Hour
	c, done, _ := startDaemonUntil(t, opts)
	p := c.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	_, used, err := ViaDaemon(ctx, p, "mem://other", false)
	if !used || !errors.Is(err, ErrDaemon) || !strings.Contains(err.Error(), "exits now") {
		t.Fatalf("other settings: used %t, %v", used, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit after a client with other settings")
	}

	hand := startDaemon(t, testOptions(mem.New()))
	p = hand.ready(t, segName(1), segmentBytes(t, segName(1), testSysID, 1))
	if _, used, err := ViaDaemon(ctx, p, "mem://other", false); !used || err == nil || strings.Contains(err.Error(), "exits now") {
		t.Fatalf("hand-started daemon, other settings: used %t, %v", used, err)
	}
	if _, err := os.Stat(SocketPath(hand.walDir)); err != nil {
		t.Fatalf("a hand-started daemon stopped serving: %v", err)
	}
}

// startDaemonUntil runs Serve on a fresh pg_wal; done receives Serve's
// result when it returns, by itself or after stop (the test's end stops
// it too).
func startDaemonUntil(t *testing.T, opts Options) (c cluster, done chan error, stop context.CancelFunc) {
	t.Helper()
	root, err := os.MkdirTemp("", "wpd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	c = cluster{walDir: filepath.Join(root, "pg_wal")}
	os.MkdirAll(filepath.Join(c.walDir, "archive_status"), 0o700)
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- Serve(ctx, c.walDir, opts) }()
	t.Cleanup(cancel)
	for i := 0; ; i++ {
		if _, err := os.Stat(SocketPath(c.walDir)); err == nil {
			return c, done, cancel
		}
		if i > 500 {
			t.Fatal("daemon socket never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
