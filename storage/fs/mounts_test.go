package fs

import (
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw,nosuid shared:2 - proc proc rw
40 22 8:17 / /srv/pg\040data rw,relatime shared:3 - ext4 /dev/sdb1 rw
41 22 8:33 / /mnt/mounted rw,relatime shared:4 - ext4 /dev/sdc1 rw
`

const testFstab = `# /etc/fstab: static file system information.
UUID=1111 /               ext4 errors=remount-ro 0 1
UUID=2222 /srv/pg\040data ext4 defaults 0 2
UUID=3333 /mnt/backup     nfs  defaults,noauto 0 0
UUID=4444 /mnt/backup/deep ext4 defaults 0 0
UUID=5555 /mnt/mounted    ext4 defaults 0 0
UUID=6666 none            swap sw 0 0
/swapfile swap swap defaults 0 0
tmpfs /tmp tmpfs defaults 0 0

`

func TestUnmountedMountPoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		repo, want string
	}{
		{"/mnt/backup/walrus", "/mnt/backup"},
		{"/mnt/backup", "/mnt/backup"},
		{"/mnt/backup/deep/walrus", "/mnt/backup/deep"},
		{"/mnt/backup2/walrus", ""}, // a sibling, not under /mnt/backup
		{"/mnt/mounted/walrus", ""},
		{"/srv/pg data/walrus", ""}, // escaped in both files, and mounted
		{"/var/lib/walrus", ""},     // under / only
		{"/tmp/walrus", ""},         // tmpfs: not checked
	} {
		got, err := unmountedMountPoint([]string{tc.repo}, strings.NewReader(testFstab), strings.NewReader(testMountinfo))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("repository %s: unmounted mount point %q, want %q", tc.repo, got, tc.want)
		}
	}
}

// TestOpenRefusesUnmountedMountPoint: a repository under a mount point of
// fstab that nothing is mounted on is refused with ErrNotMounted, naming the
// mount point and what to do, and nothing is created beneath it; once
// mountinfo lists the mount point, the same repository opens.
func TestOpenRefusesUnmountedMountPoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mp := filepath.Join(dir, "backup disk")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(mp, "walrus")
	escaped := strings.ReplaceAll(mp, " ", `\040`)
	fstab := filepath.Join(dir, "fstab")
	write(t, fstab, "UUID=1 / ext4 defaults 0 1\nUUID=2 "+escaped+" ext4 defaults,nofail 0 2\n")
	unmounted := filepath.Join(dir, "mountinfo-unmounted")
	write(t, unmounted, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
	mounted := filepath.Join(dir, "mountinfo-mounted")
	write(t, mounted, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 8:17 / "+escaped+" rw - ext4 /dev/sdb1 rw\n")

	_, err := open(root, fstab, unmounted)
	if !errors.Is(err, ErrNotMounted) {
		t.Fatalf("open under an unmounted mount point: %v, want ErrNotMounted", err)
	}
	for _, want := range []string{mp + " is a mount point", "mount it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(root); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("the refused open left %s behind (%v)", root, err)
	}
	// Through a symbolic link to the same place: refused as well.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(mp, link); err != nil {
		t.Fatal(err)
	}
	if _, err := open(filepath.Join(link, "walrus"), fstab, unmounted); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("open through a link into an unmounted mount point: %v, want ErrNotMounted", err)
	}

	st, err := open(root, fstab, mounted)
	if err != nil {
		t.Fatalf("open once mounted: %v", err)
	}
	if st.Root() != root {
		t.Fatalf("root %s, want %s", st.Root(), root)
	}
	// No fstab (a container): nothing to check.
	if _, err := open(root, filepath.Join(dir, "no-fstab"), unmounted); err != nil {
		t.Fatalf("open without an fstab: %v", err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
