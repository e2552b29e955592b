package fs

import (
	"os"
	"syscall"
)

// inheritOwner gives path the owner and group of the directory parent when
// this process runs as root. A repository is commonly written both by
// PostgreSQL's archive_command (as the server's user) and by an operator
// running walrus as root; without this, a directory that root created first
// (mode 0700) would lock the server's archive_command out and make WAL
// archiving fail. It is a no-op for other users and where the owner cannot
// be read.
func inheritOwner(path, parent string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(parent)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return os.Lchown(path, int(st.Uid), int(st.Gid))
}
