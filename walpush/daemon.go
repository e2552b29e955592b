package walpush

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walrusdb/walrus/pg"
)

// SocketName is the wal-push daemon's Unix socket, in the marker
// directory.
const SocketName = "push.sock"

// daemonLockName is the file a daemon holds locked while it serves; it
// holds the daemon's process ID.
const daemonLockName = "daemon.lock"

// DaemonLogName is the log, in the marker directory, of a daemon that
// wal-push started (wal_push_async).
const DaemonLogName = "daemon.log"

// maxSocketPath is the longest Unix socket path Linux accepts.
const maxSocketPath = 107

// SocketPath returns the daemon socket of the pg_wal directory walDir:
// pg_wal/archive_status/.walrus/push.sock, reachable only by the cluster's
// OS user (the directory is mode 0700).
func SocketPath(walDir string) string {
	return filepath.Join(walDir, "archive_status", MarkerDirName, SocketName)
}

// request is what a wal-push client sends to the daemon: one JSON line.
type request struct {
	// Path is the absolute path of the file PostgreSQL asks to archive.
	Path string `json:"path"`
	// Repository and Encrypted are the client's settings; the daemon
	// serves only a client configured as it is.
	Repository string `json:"repository"`
	Encrypted  bool   `json:"encrypted"`
}

// response is the daemon's answer: one JSON line.
type response struct {
	Name          string `json:"name"`
	Key           string `json:"key,omitempty"`
	AlreadyStored bool   `json:"already_stored,omitempty"`
	Confirmed     bool   `json:"confirmed,omitempty"`
	RawSize       int64  `json:"raw_size,omitempty"`
	StoredSize    int64  `json:"stored_size,omitempty"`
	Digest        string `json:"digest,omitempty"`
	// Error is set when the file is not durable; Conflict when a
	// different file is stored under its name.
	Error    string `json:"error,omitempty"`
	Conflict bool   `json:"conflict,omitempty"`
}

// conflictError is a daemon's ErrConflict, with its message.
type conflictError string

func (e conflictError) Error() string { return string(e) }
func (e conflictError) Unwrap() error { return ErrConflict }

// ErrDaemon wraps every failure of a wal-push daemon to answer: the
// client pushes the file itself instead.
var ErrDaemon = errors.New("wal-push daemon")

// ViaDaemon asks the daemon serving path's pg_wal to archive the file.
// used is false when no daemon listens there (the caller pushes itself).
// An error that wraps ErrConflict is final; any other error means the
// daemon did not make the file durable, and the caller should push it
// itself.
func ViaDaemon(ctx context.Context, path, repository string, encrypted bool) (res Result, used bool, err error) {
	name := filepath.Base(path)
	sock := SocketPath(filepath.Dir(path))
	if len(sock) > maxSocketPath {
		return Result{}, false, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return Result{}, false, nil
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	abs, err := filepath.Abs(path)
	if err != nil {
		return Result{}, true, fmt.Errorf("wal-push %s: %w", name, err)
	}
	b, _ := json.Marshal(request{Path: abs, Repository: repository, Encrypted: encrypted})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return Result{}, true, fmt.Errorf("wal-push %s: %w: send: %w", name, ErrDaemon, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return Result{}, true, fmt.Errorf("wal-push %s: %w: no answer: %w", name, ErrDaemon, err)
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		return Result{}, true, fmt.Errorf("wal-push %s: %w: bad answer: %w", name, ErrDaemon, err)
	}
	switch {
	case r.Conflict:
		return Result{}, true, conflictError(r.Error)
	case r.Error != "":
		return Result{}, true, fmt.Errorf("%w: %s", ErrDaemon, r.Error)
	case r.Name != name || r.Key == "":
		return Result{}, true, fmt.Errorf("wal-push %s: %w: answered for %q", name, ErrDaemon, r.Name)
	}
	return Result{Name: r.Name, Key: r.Key, AlreadyStored: r.AlreadyStored, Confirmed: r.Confirmed,
		RawSize: r.RawSize, StoredSize: r.StoredSize, Digest: r.Digest}, true, nil
}

// Serve is the wal-push daemon of the cluster whose pg_wal is walDir. It
// listens on SocketPath(walDir) and, while it runs, keeps up to
// opts.Concurrency-1 ready segments being pushed ahead in the background,
// in name order, recording a marker for each as Archive does. A client's
// request for a file is answered once that file is durable: confirmed
// from its marker (waiting for its push if it is in flight), or pushed
// right away. Serve returns when ctx ends, after every push in flight has
// finished; the socket is removed. Only one daemon serves a pg_wal at a
// time. Logf, if set, receives a line per request.
func Serve(ctx context.Context, walDir string, opts Options) error {
	statusDir := filepath.Join(walDir, "archive_status")
	if fi, err := os.Stat(statusDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("wal-push-daemon: %s is not a pg_wal directory (no archive_status): set pgdata to the cluster's data directory", walDir)
	}
	marks := &markers{dir: filepath.Join(statusDir, MarkerDirName), repository: opts.Repository, encrypted: opts.Encoder.Encrypted(), keepConfirmed: true}
	if err := os.Mkdir(marks.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("wal-push-daemon: %w", err)
	}
	lockf, err := os.OpenFile(filepath.Join(marks.dir, daemonLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("wal-push-daemon: %w", err)
	}
	defer lockf.Close()
	if err := syscall.Flock(int(lockf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("wal-push-daemon: another wal-push-daemon serves %s: stop it first", walDir)
	}
	// The lock file names the daemon's process, for operators (and
	// benchmarks) looking for it; a stale number means nothing, the
	// lock is what counts.
	if err := lockf.Truncate(0); err == nil {
		lockf.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	sock := SocketPath(walDir)
	if len(sock) > maxSocketPath {
		return fmt.Errorf("wal-push-daemon: socket path %s is longer than %d bytes: run the daemon from the data directory", sock, maxSocketPath)
	}
	os.Remove(sock) // a previous daemon's; we hold the lock
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("wal-push-daemon: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{p: newPusher(opts), walDir: walDir, statusDir: statusDir, marks: marks,
		inflight: map[string]chan struct{}{}, failed: map[string]aheadFailure{}, kick: make(chan struct{}, 1), slots: max(0, opts.Concurrency-1),
		stop: cancel}
	d.touch()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	wg.Go(func() { d.pushAhead(ctx) })
	if opts.IdleExit > 0 {
		wg.Go(func() { d.exitWhenIdle(ctx, opts.IdleExit) })
	}
	var acceptErr error
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("wal-push-daemon: %w", err)
			}
			break
		}
		wg.Go(func() { d.serveConn(ctx, conn) })
	}
	stop()
	l.Close()
	os.Remove(sock)
	cancel() // an Accept failure stops the pushes ahead too
	wg.Wait()
	return acceptErr
}

// daemon is the state of one Serve call.
type daemon struct {
	p         *pusher
	walDir    string
	statusDir string
	marks     *markers
	slots     int // background pushes at once

	mu       sync.Mutex
	inflight map[string]chan struct{} // closed when the push ends
	ahead    int                      // background pushes in flight
	kick     chan struct{}
	failed   map[string]aheadFailure // segments whose push ahead failed, until one succeeds

	stop     context.CancelFunc // ends Serve
	lastSeen atomic.Int64       // when a client last connected or was answered (UnixNano)
	serving  atomic.Int64       // clients being answered

	exitAfterAnswer atomic.Bool // set by handle: stop once the answer is sent
}

// touch records activity now.
func (d *daemon) touch() { d.lastSeen.Store(time.Now().UnixNano()) }

// exitWhenIdle ends Serve once no client has been seen for idle and
// nothing is being pushed or answered.
func (d *daemon) exitWhenIdle(ctx context.Context, idle time.Duration) {
	tick := time.NewTicker(min(idle/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		busy := len(d.inflight) > 0
		d.mu.Unlock()
		if !busy && d.serving.Load() == 0 && time.Since(time.Unix(0, d.lastSeen.Load())) >= idle {
			d.p.logf("wal-push-daemon: no request for %v: exiting (the next wal-push starts another)", idle)
			d.stop()
			return
		}
	}
}

// claim registers a push of name. ok is false, with the channel closed
// when it ends, when a push of name is already in flight.
func (d *daemon) claim(name string, background bool) (done chan struct{}, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, busy := d.inflight[name]; busy {
		return c, false
	}
	if background {
		if d.ahead >= d.slots {
			return nil, false
		}
		d.ahead++
	}
	c := make(chan struct{})
	d.inflight[name] = c
	return c, true
}

// release ends a push registered by claim.
func (d *daemon) release(name string, background bool) {
	d.mu.Lock()
	c := d.inflight[name]
	delete(d.inflight, name)
	if background {
		d.ahead--
	}
	d.mu.Unlock()
	close(c)
	d.poke()
}

// The wait before a segment whose push ahead failed is pushed ahead
// again: aheadBackoffFirst, doubling with each failure up to
// aheadBackoffMax. Without it a repository outage would have the daemon
// read, compress and send the same segments in a loop, and fill its log
// (in pg_wal with wal_push_async) a line a try. PostgreSQL's own requests
// are never held back.
const (
	aheadBackoffFirst = time.Second
	aheadBackoffMax   = time.Minute
)

// aheadFailure counts the failed pushes ahead of a segment.
type aheadFailure struct {
	n       int
	retryAt time.Time
}

// backingOff reports whether name's push ahead failed and may not be
// tried again before now.
func (d *daemon) backingOff(name string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.failed[name]
	return ok && now.Before(f.retryAt)
}

// pushedAhead records the outcome of a push of name: a failure of a push
// ahead puts it off (aheadBackoffFirst, doubling), any success forgets
// its failures.
func (d *daemon) pushedAhead(name string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.failed, name)
		return
	}
	f := d.failed[name]
	f.retryAt = time.Now().Add(min(aheadBackoffFirst<<min(f.n, 6), aheadBackoffMax))
	f.n++
	d.failed[name] = f
}

// poke asks the background pusher to look for ready segments.
func (d *daemon) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// pushAhead keeps up to d.slots ready segments being pushed, until ctx
// ends; it returns once its pushes have finished.
func (d *daemon) pushAhead(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if d.slots == 0 {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-tick.C:
		}
		d.mu.Lock()
		free := d.slots - d.ahead
		d.mu.Unlock()
		if free <= 0 {
			continue
		}
		names, err := d.marks.pick(d.statusDir, "", free+d.slots)
		if err != nil {
			d.p.logf("wal-push-daemon: %v", err)
			continue
		}
		now := time.Now()
		for _, name := range names {
			if d.backingOff(name, now) {
				continue
			}
			if _, ok := d.claim(name, true); !ok {
				continue
			}
			wg.Go(func() {
				defer d.release(name, true)
				res, err := d.p.push(ctx, filepath.Join(d.walDir, name), nil)
				if err == nil {
					err = d.marks.write(res)
				}
				d.pushedAhead(name, err)
				if err != nil {
					d.p.logf("wal-push-daemon: pushing %s ahead failed (it is pushed when PostgreSQL asks for it): %v", name, err)
				}
			})
		}
	}
}

// serveConn answers one client.
func (d *daemon) serveConn(ctx context.Context, conn net.Conn) {
	d.serving.Add(1)
	d.touch()
	defer func() {
		d.touch()
		d.serving.Add(-1)
	}()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var r response
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	res, err := d.handle(ctx, line, &req)
	r.Name = filepath.Base(req.Path)
	if err != nil {
		r.Error, r.Conflict = err.Error(), errors.Is(err, ErrConflict)
	} else {
		r.Key, r.AlreadyStored, r.Confirmed = res.Key, res.AlreadyStored, res.Confirmed
		r.RawSize, r.StoredSize, r.Digest = res.RawSize, res.StoredSize, res.Digest
	}
	b, _ := json.Marshal(r)
	conn.Write(append(b, '\n'))
	if d.exitAfterAnswer.Load() {
		d.p.logf("wal-push-daemon: a wal-push with other settings asked: exiting")
		d.stop()
	}
	if err == nil {
		d.p.logf("wal-push-daemon: %s durable as %s (confirmed %t)", r.Name, r.Key, r.Confirmed)
	} else {
		d.p.logf("wal-push-daemon: %v", err)
	}
}

// handle archives the requested file.
func (d *daemon) handle(ctx context.Context, line []byte, req *request) (Result, error) {
	if err := json.Unmarshal(line, req); err != nil {
		return Result{}, fmt.Errorf("bad request: %w", err)
	}
	name := filepath.Base(req.Path)
	if req.Repository != d.p.opts.Repository || req.Encrypted != d.p.opts.Encoder.Encrypted() {
		if d.p.opts.IdleExit > 0 {
			// Started by wal-push with settings since changed: make
			// way for a daemon with the new ones, once answered.
			d.exitAfterAnswer.Store(true)
			return Result{}, fmt.Errorf("wal-push %s: the daemon archives to another repository or with another encryption setting than this wal-push (it exits now, so that the next wal-push starts one with the new settings)", name)
		}
		return Result{}, fmt.Errorf("wal-push %s: the daemon archives to another repository or with another encryption setting than this wal-push", name)
	}
	walAbs, err := filepath.Abs(d.walDir)
	if err != nil {
		return Result{}, err
	}
	if !filepath.IsAbs(req.Path) || filepath.Dir(req.Path) != walAbs {
		return Result{}, fmt.Errorf("wal-push %s: %s is not in the pg_wal this daemon serves (%s)", name, req.Path, walAbs)
	}
	wf, err := pg.ParseWALFileName(name, pg.MinWALSegSize)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: not a WAL file name: %w", name, err)
	}
	d.poke()
	var marks *markers
	if wf.Kind == pg.SegmentFile {
		marks = d.marks
	}
	// One push of a name at a time: a push ahead in flight is waited
	// for, then its marker confirmed like any other.
	for {
		done, ok := d.claim(name, false)
		if ok {
			break
		}
		select {
		case <-done:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	defer d.release(name, false)
	res, err := d.p.push(ctx, filepath.Join(d.walDir, name), marks)
	if err == nil {
		d.pushedAhead(name, nil)
	}
	return res, err
}
