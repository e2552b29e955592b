package setup

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// owner is an OS user and group, as found on a file.
type owner struct {
	uid, gid uint32
}

// name returns the owner's user name, or its number.
func (o owner) name() string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(o.uid), 10)); err == nil {
		return u.Username
	}
	return "uid " + strconv.FormatUint(uint64(o.uid), 10)
}

// ownerOf returns the owner of path.
func ownerOf(path string) (owner, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return owner{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{}, fmt.Errorf("stat %s: no owner information", path)
	}
	return owner{uid: st.Uid, gid: st.Gid}, nil
}

// asRoot reports whether walrus runs as root (and so may give files away,
// and must, to the server's OS user).
func asRoot() bool { return os.Geteuid() == 0 }

// permission bits by class.
const (
	permRead  = 4
	permWrite = 2
	permExec  = 1
)

// mayAccess reports whether o can, by the permission bits (supplementary
// groups and ACLs are not looked at, so false means "perhaps not"), reach
// path through its directories and access it with want (a mix of
// permRead, permWrite, permExec).
func mayAccess(o owner, path string, want uint32) bool {
	if o.uid == 0 {
		return true
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if !allowed(o, abs, want) {
		return false
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if !allowed(o, d, permExec) {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func allowed(o owner, path string, want uint32) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := uint32(fi.Mode().Perm())
	var bits uint32
	switch {
	case st.Uid == o.uid:
		bits = perm >> 6 & 7
	case st.Gid == o.gid:
		bits = perm >> 3 & 7
	default:
		bits = perm & 7
	}
	return bits&want == want
}
