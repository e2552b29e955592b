//go:build unix

package repo

import (
	"errors"
	"os"
	"syscall"
)

// ProcessGone reports whether no process has the given pid on this host
// (a process of another user counts as there).
func ProcessGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// pidNamespace names this process's PID namespace on Linux ("" elsewhere).
func pidNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}
