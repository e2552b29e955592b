package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The files that say where file systems belong and where they are.
const (
	fstabPath     = "/etc/fstab"
	mountinfoPath = "/proc/self/mountinfo"
)

// ErrNotMounted is returned by New when the repository directory lies
// under a mount point of /etc/fstab with nothing mounted on it: its files
// would go to the disk beneath, out of the real repository's sight
// (TRAPS.md 1).
var ErrNotMounted = errors.New("not mounted")

// checkMounted fails with ErrNotMounted when root, or the directory it
// resolves to through symbolic links, is at or under a mount point that
// the file fstabPath (/etc/fstab) lists and mountinfoPath
// (/proc/self/mountinfo) does not. Without either file (not Linux, a
// container without fstab) there is nothing to check.
func checkMounted(root, fstabPath, mountinfoPath string) error {
	fstab, err := os.Open(fstabPath)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", fstabPath, err)
	}
	defer fstab.Close()
	info, err := os.Open(mountinfoPath)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", mountinfoPath, err)
	}
	defer info.Close()
	paths := []string{root}
	if r := resolveExisting(root); r != root {
		paths = append(paths, r)
	}
	mp, err := unmountedMountPoint(paths, fstab, info)
	if err != nil {
		return fmt.Errorf("%s or %s: %w", fstabPath, mountinfoPath, err)
	}
	if mp != "" {
		return fmt.Errorf("%s is a mount point in %s, but nothing is mounted there: %w; mount it (mount %s) and run the command again, since walrus would otherwise write the repository onto the disk beneath it", mp, fstabPath, ErrNotMounted, mp)
	}
	return nil
}

// resolveExisting returns p with symbolic links resolved in its longest
// existing leading part.
func resolveExisting(p string) string {
	rest := ""
	for dir := p; ; {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return p
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// unmountedMountPoint returns the deepest mount point of fstab, other than
// "/" and those of memory file systems (memoryFS), that is one of paths or
// an ancestor of one and is not a mount point in mountinfo (the format of
// /proc/<pid>/mountinfo); "" when there is none.
func unmountedMountPoint(paths []string, fstab, mountinfo io.Reader) (string, error) {
	mounted := map[string]bool{}
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mount-point options ...
		f := strings.Fields(sc.Text())
		if len(f) >= 5 {
			mounted[filepath.Clean(unescapeMount(f[4]))] = true
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	deepest := ""
	sc = bufio.NewScanner(fstab)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// device mount-point type options dump pass
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := unescapeMount(f[1])
		if !filepath.IsAbs(mp) { // swap, none
			continue
		}
		if len(f) >= 3 && memoryFS[f[2]] {
			// Nothing that must last lives there, and a stale line
			// (tmpfs on /tmp in a container image) must not refuse
			// every repository beneath.
			continue
		}
		mp = filepath.Clean(mp)
		if mp == "/" || mounted[mp] || len(mp) <= len(deepest) {
			continue
		}
		if r, err := filepath.EvalSymlinks(mp); err == nil && mounted[r] {
			continue // listed through a symbolic link
		}
		for _, p := range paths {
			if p == mp || strings.HasPrefix(p, mp+"/") {
				deepest = mp
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return deepest, nil
}

// memoryFS are the file system types of fstab whose mount points are not
// checked.
var memoryFS = map[string]bool{"tmpfs": true, "ramfs": true, "proc": true, "sysfs": true, "devpts": true, "devtmpfs": true, "swap": true}

// unescapeMount undoes the octal escapes (\040 for a space, \011, \012,
// \134) of fstab and mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
