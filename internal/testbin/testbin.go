// Package testbin builds the walrus binary for integration tests, once per
// test process, into a directory that the postgres OS user can read and
// execute (an archive_command runs as postgres).
package testbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// WalrusPackage is the import path, relative to the module root, of the
// walrus command.
const WalrusPackage = "./cmd/walrus"

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
	dirs   []string
)

// Walrus builds ./cmd/walrus once per test process and returns the path of
// the binary. A build failure fails the test with the compiler's output.
func Walrus(t testing.TB) string {
	t.Helper()
	return Build(t, WalrusPackage)
}

// Build builds the main package pkg (a path relative to the module root,
// like "./cmd/walrus") once per test process into a fresh directory of
// mode 0755 under the system temporary directory, and returns the path of
// the binary. Later calls, from any test, return the same path, or fail
// with the same error.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	b, ok := builds[pkg]
	if !ok {
		b = &build{}
		builds[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.path, b.err = buildPackage(pkg) })
	if b.err != nil {
		t.Fatalf("testbin: %v", b.err)
	}
	return b.path
}

// Cleanup removes every binary built so far. Call it from TestMain after
// m.Run; without it each test process leaves one small directory behind.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
	dirs = nil
	builds = map[string]*build{}
}

// ModuleRoot returns the directory of the go.mod of the module the tests
// run in (go env GOMOD).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

func buildPackage(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	dir, err := os.MkdirTemp("", "walrus-bin-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	mu.Lock()
	dirs = append(dirs, dir)
	mu.Unlock()
	// MkdirTemp makes the directory 0700; the postgres user must reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	bin := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s in %s: %w\n%s", pkg, root, err, out.String())
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return bin, nil
}
