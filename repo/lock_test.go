package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/mem"
)

func lockKeys(t *testing.T, st storage.Store) []string {
	t.Helper()
	var keys []string
	if err := st.List(t.Context(), repo.LocksPrefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestLockModes: shared locks coexist; an exclusive lock excludes every
// other, and the refused command names the holder, leaves no lock object
// of its own behind, and gets in once the holder releases.
func TestLockModes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, store := range []struct {
		name string
		st   storage.Store
	}{{"mem", mem.New()}, {"fs", mustFS(t)}} {
		t.Run(store.name, func(t *testing.T) {
			st := store.st
			a, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-push", repo.LockOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-mark", repo.LockOptions{})
			if err != nil {
				t.Fatalf("second shared lock: %v", err)
			}
			_, err = repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{})
			if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "backup-") || !strings.Contains(err.Error(), "Wait for it to finish") {
				t.Fatalf("exclusive lock beside shared ones: %v", err)
			}
			if n := len(lockKeys(t, st)); n != 2 {
				t.Fatalf("%d lock objects, want the 2 held", n)
			}
			held, err := repo.ListLocks(ctx, st)
			if err != nil || len(held) != 2 || held[0].Stale || held[1].Stale || held[0].Command+held[1].Command != "backup-pushbackup-mark" && held[0].Command+held[1].Command != "backup-markbackup-push" {
				t.Fatalf("ListLocks: %+v %v", held, err)
			}
			for _, l := range []*repo.Lock{a, b} {
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			d, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{})
			if err != nil {
				t.Fatalf("exclusive lock after release: %v", err)
			}
			_, err = repo.AcquireLock(ctx, st, repo.LockShared, "backup-push", repo.LockOptions{})
			if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "delete") {
				t.Fatalf("shared lock beside an exclusive one: %v", err)
			}
			if err := d.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if keys := lockKeys(t, st); len(keys) != 0 {
				t.Fatalf("lock objects left: %v", keys)
			}
		})
	}
}

func mustFS(t *testing.T) storage.Store {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLockRace: commands that start at the same moment never both hold
// conflicting locks.
func TestLockRace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for round := range 20 {
		st := mem.New()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			held []*repo.Lock
		)
		modes := []repo.LockMode{repo.LockExclusive, repo.LockShared, repo.LockShared, repo.LockExclusive}
		for _, m := range modes {
			wg.Go(func() {
				l, err := repo.AcquireLock(ctx, st, m, "cmd", repo.LockOptions{})
				if err == nil {
					mu.Lock()
					held = append(held, l)
					mu.Unlock()
				} else if !errors.Is(err, repo.ErrLocked) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		exclusive := 0
		for _, l := range held {
			if l.Info().Mode == repo.LockExclusive {
				exclusive++
			}
		}
		if exclusive > 1 || (exclusive == 1 && len(held) > 1) {
			t.Fatalf("round %d: %d locks held at once, %d exclusive", round, len(held), exclusive)
		}
		for _, l := range held {
			_ = l.Release(ctx)
		}
	}
}

// TestLockStale: a lock not refreshed for the stale time, or taken on
// this host by a process that is gone, is ignored; a live one is not, and
// a lock object walrus cannot read counts as exclusive.
func TestLockStale(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	host, _ := os.Hostname()
	put := func(st storage.Store, key string, info repo.LockInfo) {
		b, _ := json.Marshal(info)
		if err := st.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	later := func() time.Time { return time.Now().Add(31 * time.Minute) }

	// Another host's lock, an hour old by its own clock and, 31 minutes
	// from now, by the object's time too: stale then, live now.
	st := mem.New()
	put(st, repo.LocksPrefix+"shared-x.json", repo.LockInfo{Mode: repo.LockShared, Command: "backup-push", Host: "elsewhere", PID: 1, Started: old, Refreshed: old})
	if _, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{}); !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("a lock written just now was ignored: %v", err)
	}
	l, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{Now: later})
	if err != nil {
		t.Fatalf("a stale lock was not ignored: %v", err)
	}
	if keys := lockKeys(t, st); len(keys) != 1 || keys[0] != l.Info().Key {
		t.Fatalf("the exclusive lock's command did not remove the stale lock: %v", keys)
	}
	_ = l.Release(ctx)

	// This host's lock of a process that exited: stale at once.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	st = mem.New()
	now := time.Now()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	// In another PID namespace (a container with the same host name) the
	// pid says nothing: the lock holds.
	put(st, repo.LocksPrefix+"shared-w.json", repo.LockInfo{Mode: repo.LockShared, Command: "backup-push", Host: host, PID: cmd.Process.Pid, PIDNamespace: ns + "-other", Started: now, Refreshed: now})
	if _, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{}); !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("a lock of another PID namespace was taken for stale: %v", err)
	}
	if err := st.Delete(ctx, repo.LocksPrefix+"shared-w.json"); err != nil {
		t.Fatal(err)
	}
	put(st, repo.LocksPrefix+"shared-y.json", repo.LockInfo{Mode: repo.LockShared, Command: "backup-push", Host: host, PID: cmd.Process.Pid, PIDNamespace: ns, Started: now, Refreshed: now})
	l, err = repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{})
	if err != nil {
		t.Fatalf("the lock of a process gone from this host was not ignored: %v", err)
	}
	_ = l.Release(ctx)

	// This host's lock of a live process (this one's parent) holds.
	put(st, repo.LocksPrefix+"shared-z.json", repo.LockInfo{Mode: repo.LockShared, Command: "backup-push", Host: host, PID: os.Getppid(), PIDNamespace: ns, Started: now, Refreshed: now})
	if _, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{}); !errors.Is(err, repo.ErrLocked) {
		t.Fatalf("a live process's lock was ignored: %v", err)
	}

	// An unreadable lock object blocks even a shared lock.
	st = mem.New()
	if err := st.Put(ctx, repo.LocksPrefix+"future.json", strings.NewReader("{not json"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-push", repo.LockOptions{}); !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "future.json") {
		t.Fatalf("an unreadable lock was ignored: %v", err)
	}
}

// TestLockWaits: a command told to wait gets the lock once the holder
// releases it, and is told who it waits for.
func TestLockWaits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := mem.New()
	d, err := repo.AcquireLock(ctx, st, repo.LockExclusive, "delete", repo.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = d.Release(ctx)
	}()
	var waitedFor string
	l, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-push", repo.LockOptions{
		Wait:    time.Minute,
		Waiting: func(h repo.LockInfo) { waitedFor = h.Command },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if waitedFor != "delete" {
		t.Fatalf("waited for %q", waitedFor)
	}
}

// TestLockRefreshAndLoss: a held lock is rewritten with a newer refresh
// time; when its object is removed by someone else, the lock's context
// ends with ErrLockLost.
func TestLockRefreshAndLoss(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := mem.New()
	l, err := repo.AcquireLock(ctx, st, repo.LockShared, "backup-push", repo.LockOptions{Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	first := l.Info().Refreshed
	deadline := time.Now().Add(10 * time.Second)
	for {
		var info repo.LockInfo
		rc, err := st.Get(ctx, l.Info().Key)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(rc).Decode(&info)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if info.Refreshed.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was never refreshed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A refresh between its Stat and its Put can write the lock back
	// (others remove a lock only once it is stale, long after its holder
	// gave up); remove it until the holder notices.
	deadline = time.Now().Add(10 * time.Second)
	for l.Context().Err() == nil {
		if err := st.Delete(ctx, l.Info().Key); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("losing the lock did not end its context")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cause := context.Cause(l.Context()); !errors.Is(cause, repo.ErrLockLost) {
		t.Fatalf("cause %v", cause)
	}
	if err := l.Check(ctx); !errors.Is(err, repo.ErrLockLost) {
		t.Fatalf("Check of a lost lock: %v", err)
	}
}

// TestRemoveLock: walrus unlock removes a stale lock, refuses a live one
// without force (naming its holder and --force) and removes it with
// force, and never removes anything but a lock object.
func TestRemoveLock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := mem.New()
	host, _ := os.Hostname()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	put := func(key string, info repo.LockInfo) {
		b, _ := json.Marshal(info)
		if err := st.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(key string) bool {
		_, err := st.Stat(ctx, key)
		return err == nil
	}
	now := time.Now()
	live := repo.LocksPrefix + "exclusive-live.json"
	put(live, repo.LockInfo{Mode: repo.LockExclusive, Command: "delete", Host: "elsewhere", PID: 77, Started: now, Refreshed: now})
	_, err := repo.RemoveLock(ctx, st, live, false)
	if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "host elsewhere") {
		t.Fatalf("a live lock: %v", err)
	}
	if !exists(live) {
		t.Fatal("a live lock was removed without --force")
	}
	l, err := repo.RemoveLock(ctx, st, "exclusive-live.json", true) // the name without locks/ works too
	if err != nil || l.Command != "delete" || l.Stale {
		t.Fatalf("forced: %+v %v", l, err)
	}
	if exists(live) {
		t.Fatal("a forced unlock left the lock")
	}

	// A lock of a process of this host that is gone is stale: no force.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := repo.LocksPrefix + "shared-dead.json"
	put(dead, repo.LockInfo{Mode: repo.LockShared, Command: "backup-push", Host: host, PID: cmd.Process.Pid, PIDNamespace: ns, Started: now, Refreshed: now})
	if l, err := repo.RemoveLock(ctx, st, dead, false); err != nil || !l.Stale {
		t.Fatalf("stale lock: %+v %v", l, err)
	}
	if exists(dead) {
		t.Fatal("stale lock left")
	}

	if _, err := repo.RemoveLock(ctx, st, dead, false); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no such lock: %v", err)
	}
	manifest := "backups/b/manifest.json"
	put(manifest, repo.LockInfo{Mode: repo.LockShared})
	for _, bad := range []string{"locks/../backups/b/manifest.json", "../backups/b/manifest.json", manifest, "locks/", "", "locks/x", "locks/a/b.json", "locks/.hidden.json"} {
		if _, err := repo.RemoveLock(ctx, st, bad, true); err == nil || !strings.Contains(err.Error(), "walrus locks") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if !exists(manifest) {
		t.Fatal("unlock removed an object that is not a lock")
	}
}
