//go:build unix

// Package detach starts background processes that outlive the command
// that starts them: wal-fetch's prefetcher and the wal-push-daemon that
// wal-push starts (wal_push_async).
package detach

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// maxLogSize is the size at which a detached process's log is started
// afresh.
const maxLogSize = 1 << 20

// Start starts argv as a process of its own session that outlives the
// caller, in the caller's working directory, with the caller's
// environment plus env: stdin and stdout are /dev/null, stderr is
// appended to logPath (started afresh above 1 MiB), and no other
// descriptor of the caller is inherited (PostgreSQL passes
// archive_command and restore_command some of its own). The caller does
// not wait.
func Start(argv, env []string, logPath string) error {
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
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
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
