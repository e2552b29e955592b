//go:build linux

package basebackup

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start writing the dirty
// pages of the range, without waiting for them.
const syncFileRangeWrite = 2

// startWriteback asks the kernel to start writing f's dirty pages from off
// (n bytes; 0 means to the end of the file) to disk, without waiting for
// them, so that the disk works while the restore goes on and the final
// fsync finds little left to do. It is a hint: errors are ignored, and
// only fsync makes the data durable.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, fd, uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
	})
}

// fallocKeepSize is FALLOC_FL_KEEP_SIZE: allocate without changing the
// file's size.
const fallocKeepSize = 1

// preallocate reserves size bytes of disk for f before it is written:
// ext4 and XFS then write into extents already allocated, which costs
// them a fraction of the CPU of allocating block by block. It is a hint:
// errors (a file system without fallocate) are ignored.
func preallocate(f *os.File, size int64) {
	if size <= 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.Fallocate(int(fd), fallocKeepSize, 0, size)
	})
}

// directAlign is the alignment of direct I/O: of buffers, offsets and
// lengths. 4096 serves devices of 512-byte and 4 KiB sectors; a device
// that wants more makes the write fail with EINVAL, and the file goes on
// without direct I/O.
const directAlign = 4096

// setDirect turns direct I/O (O_DIRECT) on or off for f and reports
// whether it is on: writes then go from the caller's buffer to the device,
// without a copy into the page cache. A file system without direct I/O
// refuses, and f stays as it was.
func setDirect(f *os.File, on bool) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if errno != 0 {
			return
		}
		if on {
			fl |= syscall.O_DIRECT
		} else {
			fl &^= syscall.O_DIRECT
		}
		_, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, fl)
		ok = errno == 0 && on
	})
	return ok
}
