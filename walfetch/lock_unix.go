//go:build unix

package walfetch

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lock is a held flock.
type lock struct{ f *os.File }

// tryLock takes an exclusive flock on path without waiting; ok is false
// when another process holds it.
func tryLock(path string) (*lock, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return &lock{f: f}, true, nil
}

func (l *lock) unlock() { l.f.Close() }
