package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
	"github.com/walrusdb/walrus/storage"
)

// LocksPrefix is the key prefix of repository locks.
const LocksPrefix = "locks/"

// LockMode says what a repository lock excludes.
type LockMode string

const (
	// LockShared is held by commands that add to the repository or
	// rewrite a manifest (backup-push, backup-mark). Any number may be
	// held at once; none while an exclusive lock is held.
	LockShared LockMode = "shared"
	// LockExclusive is held by a delete: no other lock at once, so a
	// delete never removes the base of a delta being taken, nor a backup
	// being marked permanent.
	LockExclusive LockMode = "exclusive"
)

// Lock timing defaults.
const (
	// DefaultLockRefresh is how often a holder rewrites its lock.
	DefaultLockRefresh = 5 * time.Minute
	// DefaultLockStale is how long after its last refresh a lock is
	// stale: its holder is taken for dead and the lock is ignored. A
	// holder that could not refresh for half of it stops its work.
	DefaultLockStale = 30 * time.Minute
)

// ErrLocked means another command holds a lock that conflicts with the
// one asked for.
var ErrLocked = errors.New("the repository is locked by another command")

// ErrLockLost is the cause of a held lock's context when the lock was
// removed by someone else or could not be refreshed in time: the work
// must stop, as another command may now take a conflicting lock.
var ErrLockLost = errors.New("the repository lock was lost")

// LockInfo is the body of a lock object, locks/<mode>-<time>-<random>.json.
type LockInfo struct {
	// Mode is what the lock excludes.
	Mode LockMode `json:"mode"`
	// Command is the walrus command holding it, e.g. "backup-push".
	Command string `json:"command"`
	// Host and PID are where that command runs.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// PIDNamespace tells processes of containers that share a host name
	// apart (Linux: the link /proc/self/ns/pid; empty elsewhere).
	PIDNamespace string `json:"pid_namespace,omitempty"`
	// Started is when the lock was taken, Refreshed when its holder last
	// rewrote it (the holder's clock).
	Started   time.Time `json:"started"`
	Refreshed time.Time `json:"refreshed"`
	// Key is the lock object's key (not stored).
	Key string `json:"-"`
}

// String describes the holder for an error message.
func (i LockInfo) String() string {
	return fmt.Sprintf("%s (%s lock %s, host %s, pid %d, since %s, last refreshed %s)",
		i.Command, i.Mode, i.Key, i.Host, i.PID, i.Started.UTC().Format(time.RFC3339), i.Refreshed.UTC().Format(time.RFC3339))
}

// LockOptions modify AcquireLock. The zero value is the defaults.
type LockOptions struct {
	// Wait is how long to keep trying while a conflicting lock is held;
	// 0 fails at once.
	Wait time.Duration
	// Waiting is called once when the first try finds a conflict and
	// Wait is set, with the holder.
	Waiting func(holder LockInfo)
	// Refresh and Stale override DefaultLockRefresh and DefaultLockStale.
	Refresh, Stale time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Lock is a repository lock held by this process. Context returns a
// context that ends when the lock is lost; Release gives the lock up.
type Lock struct {
	st   storage.Store
	info LockInfo
	opts LockOptions
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}
}

// AcquireLock takes a lock of the given mode on the repository for
// command (e.g. "backup-push"), or returns an error wrapping ErrLocked
// that names the holder of the conflicting lock and what to do.
//
// Locks are objects under locks/. A command writes its own (create-only),
// then lists the others: a conflicting lock that is not stale makes it
// remove its own and fail (or wait). Two commands that start at once
// both write before they list, so at least one sees the other (S3 and the
// file system list what was written before); both may back off. A lock is
// stale when neither its recorded refresh time nor its object's
// modification time is younger than Stale, or when it was taken on this
// host by a process that no longer exists. The holder rewrites its lock
// every Refresh; the returned lock's Context ends (cause ErrLockLost)
// when the lock object disappears or cannot be refreshed for Stale/2.
func AcquireLock(ctx context.Context, st storage.Store, mode LockMode, command string, opts LockOptions) (*Lock, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultLockRefresh
	}
	if opts.Stale <= 0 {
		opts.Stale = DefaultLockStale
	}
	host, _ := os.Hostname()
	deadline := opts.Now().Add(opts.Wait)
	delay := 500 * time.Millisecond
	told := false
	for {
		l, holder, err := tryLock(ctx, st, mode, command, host, opts)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrLocked) || !opts.Now().Before(deadline) {
			return nil, err
		}
		if !told && opts.Waiting != nil {
			opts.Waiting(holder)
			told = true
		}
		if err := wait.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("%w (while waiting for %s)", err, holder)
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// tryLock makes one attempt; on a conflict it returns the holder.
func tryLock(ctx context.Context, st storage.Store, mode LockMode, command, host string, opts LockOptions) (*Lock, LockInfo, error) {
	now := opts.Now().UTC()
	info := LockInfo{Mode: mode, Command: command, Host: host, PID: os.Getpid(), PIDNamespace: pidNamespace(), Started: now, Refreshed: now}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	info.Key = LocksPrefix + string(mode) + "-" + now.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(rnd[:]) + ".json"
	body, _ := json.Marshal(info)
	// Registered before it is written: another goroutine of this process
	// that sees the object must take it for live, not for a leftover.
	heldHere.Store(info.Key, true)
	if err := st.Put(ctx, info.Key, bytes.NewReader(body), storage.PutOptions{IfNotExists: true, Size: int64(len(body))}); err != nil {
		heldHere.Delete(info.Key)
		return nil, LockInfo{}, fmt.Errorf("take a %s lock: write %s: %w; check that the repository is reachable and writable (walrus check)", mode, info.Key, err)
	}
	holder, stales, conflict, err := conflicting(ctx, st, info, opts)
	if err == nil && !conflict {
		if mode == LockExclusive && len(stales) > 0 {
			// The only command that runs alone cleans up after killed
			// ones, best effort.
			_ = st.Delete(ctx, stales...)
		}
		l := &Lock{st: st, info: info, opts: opts, done: make(chan struct{})}
		l.start(ctx)
		return l, LockInfo{}, nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	_ = st.Delete(dctx, info.Key)
	cancel()
	heldHere.Delete(info.Key)
	if err != nil {
		return nil, LockInfo{}, fmt.Errorf("take a %s lock: %w; check that the repository is reachable (walrus check) and run this again", mode, err)
	}
	return nil, holder, fmt.Errorf("%w: %s. Wait for it to finish and run this again; a lock whose command was killed expires %s after its last refresh (at once on the host that took it); if you are sure that command is gone, 'walrus unlock %s' removes its lock",
		ErrLocked, holder, opts.Stale, holder.Key)
}

// heldHere holds the keys of the locks this process holds: a lock object
// of this process that is not among them is left over (its Release
// failed to remove it) and stale.
var heldHere sync.Map

// conflicting lists the locks and returns the first live one that
// conflicts with mine, and the keys of the stale ones seen.
func conflicting(ctx context.Context, st storage.Store, mine LockInfo, opts LockOptions) (LockInfo, []string, bool, error) {
	locks, err := readLocks(ctx, st, mine.Host, opts, mine.Key)
	if err != nil {
		return LockInfo{}, nil, false, err
	}
	var stales []string
	for _, l := range locks {
		switch {
		case l.Stale:
			stales = append(stales, l.Key)
		case mine.Mode == LockExclusive || l.Mode == LockExclusive:
			return l.LockInfo, nil, true, nil
		}
	}
	return LockInfo{}, stales, false, nil
}

// readLocks reads every lock of the repository but the one under skip,
// with whether each is stale as seen from host.
func readLocks(ctx context.Context, st storage.Store, host string, opts LockOptions, skip string) ([]HeldLock, error) {
	var objs []storage.ObjectInfo
	if err := st.List(ctx, LocksPrefix, func(oi storage.ObjectInfo) error {
		if oi.Key != skip {
			objs = append(objs, oi)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", LocksPrefix, err)
	}
	var out []HeldLock
	for _, oi := range objs {
		l, err := readLock(ctx, st, oi)
		if errors.Is(err, storage.ErrNotFound) {
			continue // released since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, HeldLock{LockInfo: l, Stale: stale(l, oi.ModTime, host, opts)})
	}
	return out, nil
}

// readLock reads a lock object. One that cannot be decoded is taken as an
// exclusive lock of an unknown command (never ignored: it may be a newer
// walrus's), refreshed when the object was last written.
func readLock(ctx context.Context, st storage.Store, oi storage.ObjectInfo) (LockInfo, error) {
	rc, err := st.Get(ctx, oi.Key)
	if err != nil {
		return LockInfo{}, fmt.Errorf("read %s: %w", oi.Key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return LockInfo{}, fmt.Errorf("read %s: %w", oi.Key, err)
	}
	var info LockInfo
	if json.Unmarshal(b, &info) != nil || (info.Mode != LockShared && info.Mode != LockExclusive) {
		info = LockInfo{Mode: LockExclusive, Command: "an unknown command", Started: oi.ModTime, Refreshed: oi.ModTime}
	}
	info.Key = oi.Key
	return info, nil
}

// stale reports whether a lock's holder is taken for dead.
func stale(l LockInfo, modTime time.Time, host string, opts LockOptions) bool {
	if host != "" && l.Host == host && l.PIDNamespace == pidNamespace() && l.PID > 0 {
		if l.PID == os.Getpid() {
			_, held := heldHere.Load(l.Key)
			return !held
		}
		if ProcessGone(l.PID) {
			return true
		}
	}
	now := opts.Now()
	if now.Sub(l.Refreshed) < opts.Stale {
		return false
	}
	return modTime.IsZero() || now.Sub(modTime) >= opts.Stale
}

// Info returns what the lock object records.
func (l *Lock) Info() LockInfo { return l.info }

// Context returns a context derived from the one given to AcquireLock
// that ends, with cause ErrLockLost, when the lock is lost. Run the work
// the lock protects under it.
func (l *Lock) Context() context.Context { return l.ctx }

// start begins refreshing the lock.
func (l *Lock) start(parent context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	l.ctx = ctx
	stopRefresh := make(chan struct{})
	l.stop = func() { close(stopRefresh) }
	go func() {
		defer close(l.done)
		t := time.NewTicker(l.opts.Refresh)
		defer t.Stop()
		lastOK := l.opts.Now()
		for {
			select {
			case <-stopRefresh:
				cancel(nil)
				return
			case <-ctx.Done():
				cancel(nil)
				return
			case <-t.C:
			}
			err := l.refresh(ctx)
			switch {
			case err == nil:
				lastOK = l.opts.Now()
			case errors.Is(err, storage.ErrNotFound):
				cancel(fmt.Errorf("%w: %s was removed by someone else", ErrLockLost, l.info.Key))
				return
			case l.opts.Now().Sub(lastOK) >= l.opts.Stale/2:
				cancel(fmt.Errorf("%w: %s could not be refreshed since %s: %v", ErrLockLost, l.info.Key, lastOK.UTC().Format(time.RFC3339), err))
				return
			}
		}
	}()
}

// Check returns an error wrapping ErrLockLost when the lock object is no
// longer there (someone took it for stale and removed it), or when the
// lock's context ended: call it just before a step that must not happen
// without the lock, such as writing a backup's manifest.
func (l *Lock) Check(ctx context.Context) error {
	if cause := context.Cause(l.ctx); cause != nil {
		return cause
	}
	_, err := l.st.Stat(ctx, l.info.Key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s was removed by someone else", ErrLockLost, l.info.Key)
	case err != nil:
		return fmt.Errorf("check lock %s: %w", l.info.Key, err)
	}
	return nil
}

// refresh rewrites the lock with a new refresh time, unless it is gone.
// A removal between its Stat and its Put is undone by the Put; others
// remove a lock only once it is stale (no refresh for Stale), and its
// holder gives up after Stale/2 without one, so they never race.
func (l *Lock) refresh(ctx context.Context) error {
	if _, err := l.st.Stat(ctx, l.info.Key); err != nil {
		return err
	}
	l.info.Refreshed = l.opts.Now().UTC()
	body, _ := json.Marshal(l.info)
	return l.st.Put(ctx, l.info.Key, bytes.NewReader(body), storage.PutOptions{Size: int64(len(body))})
}

// Release stops refreshing the lock and removes it. It is safe to call
// more than once.
func (l *Lock) Release(ctx context.Context) error {
	if l == nil || l.stop == nil {
		return nil
	}
	l.stop()
	l.stop = nil
	<-l.done
	defer heldHere.Delete(l.info.Key)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := l.st.Delete(dctx, l.info.Key); err != nil {
		return fmt.Errorf("release lock %s: %w (it expires %s after its last refresh)", l.info.Key, err, l.opts.Stale)
	}
	return nil
}

// HeldLock is a lock found in the repository, and whether it is stale
// (see AcquireLock).
type HeldLock struct {
	LockInfo
	// Stale: its holder is taken for dead and the lock ignored.
	Stale bool
}

// ListLocks returns the locks in the repository, oldest key first.
func ListLocks(ctx context.Context, st storage.Store) ([]HeldLock, error) {
	host, _ := os.Hostname()
	return readLocks(ctx, st, host, LockOptions{Now: time.Now, Stale: DefaultLockStale}, "")
}

// LockKey returns the key of the lock object name: its key (locks/NAME)
// or its name under locks/. Anything else, which could name an object
// that is not a lock, is an error.
func LockKey(name string) (string, error) {
	base := strings.TrimPrefix(name, LocksPrefix)
	if base == "" || strings.ContainsAny(base, "/\\") || !strings.HasSuffix(base, ".json") || strings.HasPrefix(base, ".") {
		return "", fmt.Errorf("%q is not the name of a lock object (locks/<mode>-<time>-<random>.json): 'walrus locks' lists them", name)
	}
	return LocksPrefix + base, nil
}

// RemoveLock removes the lock object name (see LockKey) and returns what
// it recorded. A lock that is not stale (see AcquireLock) is removed only
// with force: its command may still be running, and removing its lock
// lets a conflicting command run beside it (the holder notices only when
// it next refreshes, or, for backup-push, before it writes its manifest).
// A name with no lock object is an error wrapping storage.ErrNotFound.
func RemoveLock(ctx context.Context, st storage.Store, name string, force bool) (HeldLock, error) {
	key, err := LockKey(name)
	if err != nil {
		return HeldLock{}, err
	}
	oi, err := st.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return HeldLock{}, fmt.Errorf("no lock %s: %w ('walrus locks' lists the locks there are)", key, err)
	}
	if err != nil {
		return HeldLock{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if oi.Key == "" {
		oi.Key = key
	}
	info, err := readLock(ctx, st, oi)
	if err != nil {
		return HeldLock{}, err
	}
	host, _ := os.Hostname()
	l := HeldLock{LockInfo: info, Stale: stale(info, oi.ModTime, host, LockOptions{Now: time.Now, Stale: DefaultLockStale})}
	if !l.Stale && !force {
		return l, fmt.Errorf("%w: %s is not stale, so its command may still be running. Check on host %s that pid %d is gone (or wait: a lock expires %s after its last refresh), then run this again with --force",
			ErrLocked, info, info.Host, info.PID, DefaultLockStale)
	}
	if err := st.Delete(ctx, key); err != nil {
		return l, fmt.Errorf("remove %s: %w", key, err)
	}
	return l, nil
}
