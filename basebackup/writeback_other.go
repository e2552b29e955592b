//go:build !linux

package basebackup

import "os"

// startWriteback does nothing here: only Linux has sync_file_range. The
// final fsync of each file makes it durable all the same.
func startWriteback(f *os.File, off, n int64) {}

// preallocate does nothing here.
func preallocate(f *os.File, size int64) {}

// directAlign is the alignment of direct I/O (not used here).
const directAlign = 4096

// setDirect reports false: writes go through the page cache here.
func setDirect(f *os.File, on bool) bool { return false }
