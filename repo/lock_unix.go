//go:build unix

package repo

import (
	"errors"
	"os"
	"syscall"
)

// processGone reports whether no process has the given pid on this host.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// pidNamespace names this process's PID namespace on Linux ("" elsewhere).
func pidNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}
