package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/wal-g/tracelog"
)

// Exit statuses.
const (
	exitOK = 0
	// exitFailure is every ordinary failure, and wal-fetch's "not in the
	// archive".
	exitFailure = 1
	// exitUsage is a command-line mistake.
	exitUsage = 2
	// exitRecoveryAbort is what wal-fetch returns for any failure other
	// than a verified absence: above 125, so PostgreSQL stops recovery
	// instead of ending it early (TRAPS.md 1).
	exitRecoveryAbort = 128
)

// exitError carries an exit status chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks a mistake in arguments or flags.
type usageError struct{ error }

// exitCode prints err (once) and maps it to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	tracelog.ErrorLogger.Println(err.Error())
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "Run 'walrus --help' for usage.")
		return exitUsage
	}
	return exitFailure
}
