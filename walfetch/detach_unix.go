//go:build unix

package walfetch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
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

// maxLogSize is the size at which the prefetcher's log is started afresh.
const maxLogSize = 1 << 20

// StartDetached starts argv as a process of its own session that outlives
// the caller, in the caller's working directory: stdin and stdout are
// /dev/null, stderr is appended to
// logPath, and no other descriptor of the caller is inherited (PostgreSQL
// passes restore_command some of its own). The caller does not wait.
func StartDetached(argv []string, logPath string) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > maxLogSize {
		flags |= os.O_TRUNC
	}
	logf, err := os.OpenFile(logPath, flags, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	defer logf.Close()
	closeInheritedFDs()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	return cmd.Process.Release()
}

// closeInheritedFDs marks every descriptor above stderr close-on-exec, so
// that descriptors this process inherited without that flag do not reach
// the detached child.
func closeInheritedFDs() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
