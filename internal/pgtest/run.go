package pgtest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// DefaultBinDir is where Debian's PostgreSQL 15 packages install the server
// binaries.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// BinDir returns the directory of the PostgreSQL binaries: $PG_BINDIR, or
// DefaultBinDir.
func BinDir() string {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d
	}
	return DefaultBinDir
}

// osUser is who PostgreSQL runs as.
type osUser struct {
	uid, gid uint32
	home     string
}

var (
	pgUserOnce sync.Once
	pgUser     osUser
	pgUserErr  error
)

// asRoot reports whether the tests run as root, in which case PostgreSQL
// and everything it runs must run as the postgres OS user.
func asRoot() bool { return os.Geteuid() == 0 }

// postgresUser returns the postgres OS user when running as root, or the
// current user otherwise.
func postgresUser() (osUser, error) {
	pgUserOnce.Do(func() {
		name := "postgres"
		if !asRoot() {
			u, err := user.Current()
			if err != nil {
				pgUserErr = fmt.Errorf("look up current user: %w", err)
				return
			}
			name = u.Username
		}
		u, err := user.Lookup(name)
		if err != nil {
			pgUserErr = fmt.Errorf("look up OS user %q (PostgreSQL refuses to run as root, so tests run as root need it): %w", name, err)
			return
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			pgUserErr = fmt.Errorf("look up OS user %q: uid %q gid %q are not numbers", name, u.Uid, u.Gid)
			return
		}
		pgUser = osUser{uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	})
	return pgUser, pgUserErr
}

// mustPostgresUser is postgresUser for tests.
func mustPostgresUser(t testing.TB) osUser {
	t.Helper()
	u, err := postgresUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// droppedEnvPrefixes are environment variables of the test process that
// never reach PostgreSQL or the commands run as postgres: libpq settings
// would redirect pg_ctl, psql and pgbench, and walrus or AWS settings of a
// developer's shell would let a test's archive_command write to a real
// repository. Pass what a test needs explicitly (Options.Env, Env).
var droppedEnvPrefixes = []string{"PG", "WALRUS_", "AWS_"}

// Env returns the environment for a process run as the postgres user: the
// test process's environment without PG*, WALRUS_* and AWS_* variables,
// with HOME set to the postgres user's home, then extra ("KEY=value"
// entries; later entries win).
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		drop := key == "HOME"
		for _, p := range droppedEnvPrefixes {
			if strings.HasPrefix(key, p) {
				drop = true
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	if u, err := postgresUser(); err == nil && u.home != "" {
		env = append(env, "HOME="+u.home)
	}
	return append(env, extra...)
}

// resolveCommand finds name: a path is used as is, a bare name is looked
// up in BinDir first and then in PATH.
func resolveCommand(name string) string {
	if strings.ContainsRune(name, '/') {
		return name
	}
	if p := filepath.Join(BinDir(), name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Command returns a command that runs name (a path, or a bare name looked
// up in BinDir, then PATH) as the postgres OS user when the tests run as
// root, and as the current user otherwise. Its environment is Env(); the
// caller may change Env, Dir, Stdin and the outputs before running it. The
// binary and its working directory must be reachable by the postgres user.
func Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	u, err := postgresUser()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, resolveCommand(name), args...)
	cmd.Env = Env()
	cmd.Dir = os.TempDir()
	if asRoot() {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid},
		}
	}
	return cmd, nil
}

// RunAsPostgres runs name (see Command) with args as the postgres user and
// returns its combined output. The environment is Env().
func RunAsPostgres(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	return RunAsPostgresEnv(t, nil, name, args...)
}

// RunAsPostgresEnv is RunAsPostgres with extra environment entries
// ("KEY=value") added to Env(), e.g. the WALRUS_* settings of a walrus
// command.
func RunAsPostgresEnv(t testing.TB, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	return runAsPostgres(testContext(t), env, name, args...)
}

func runAsPostgres(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd, err := Command(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

// ChownPostgres gives path, and everything under it, to the postgres user
// (when running as root; otherwise it does nothing). Symbolic links are
// changed themselves, not followed.
func ChownPostgres(t testing.TB, path string) {
	t.Helper()
	if err := chownTree(path); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

func chownTree(path string) error {
	if !asRoot() {
		return nil
	}
	u, err := postgresUser()
	if err != nil {
		return err
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		if err := os.Lchown(p, int(u.uid), int(u.gid)); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

// makeTempDir creates a fresh directory under the system temporary
// directory, mode 0755 and owned by the postgres user, that Cleanup
// removes (unless PGTEST_KEEP is set, for debugging).
func makeTempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("pgtest: create temp dir: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("PGTEST_KEEP") != "" {
			t.Logf("pgtest: PGTEST_KEEP is set: keeping %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("pgtest: chmod %s: %v", dir, err)
	}
	if err := checkReachable(filepath.Dir(dir)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ChownPostgres(t, dir)
	return dir
}

// SharedDir returns a fresh temporary directory that the postgres user
// owns and can write (for repositories written by archive_command, for
// tablespaces, for restore targets), readable by everyone and removed when
// the test ends.
func SharedDir(t testing.TB) string {
	t.Helper()
	return makeTempDir(t, "walrus-shared-")
}

// checkReachable fails unless the postgres user can traverse dir and
// every directory above it.
func checkReachable(dir string) error {
	if !asRoot() {
		return nil
	}
	u, err := postgresUser()
	if err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check %s: %w", d, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case mode&0o001 != 0:
		case ok && st.Uid == u.uid && mode&0o100 != 0:
		case ok && st.Gid == u.gid && mode&0o010 != 0:
		default:
			return fmt.Errorf("directory %s (mode %v) is not traversable by the postgres user; put clusters and shared files under a pgtest.SharedDir", d, mode)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// testContext is the test's context while the test runs, and a background
// context once it is done, so that helpers also work inside t.Cleanup
// functions (testing cancels t.Context() before it runs them).
func testContext(t testing.TB) context.Context {
	if ctx := t.Context(); ctx.Err() == nil {
		return ctx
	}
	return context.Background()
}
