//go:build linux

package walpush

import (
	"os"
	"syscall"
)

// fileIDOf identifies the content of a file as the filesystem records it:
// device, inode, size, modification and change times. Every write changes
// the change time, which userspace cannot set back.
func fileIDOf(fi os.FileInfo) *fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return &fileID{
		Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: st.Size,
		MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano(),
	}
}
