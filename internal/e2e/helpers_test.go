package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/internal/testbin"
)

// result is one run of the walrus binary.
type result struct {
	stdout, stderr string
	code           int
}

// run runs walrus with args and env (added to a minimal environment).
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(testbin.Walrus(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run walrus %v: %v", args, err)
	}
	return result{so.String(), se.String(), code}
}

// mustRun runs walrus and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("walrus %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// storageKind is a repository backend under test.
type storageKind struct {
	name string
	// setup returns the environment lines that point walrus at a fresh
	// repository, and, for fs, the repository's directory.
	setup func(t *testing.T) (env []string, dir string)
}

var storages = []storageKind{
	{"fs", func(t *testing.T) ([]string, string) {
		dir := filepath.Join(pgtest.SharedDir(t), "repo")
		return []string{"WALRUS_REPO=file://" + dir}, dir
	}},
	{"s3", func(t *testing.T) ([]string, string) {
		srv := s3test.Start(t)
		return srv.Env(srv.NewBucket(t)), ""
	}},
}

// writeShared writes a file readable by the postgres user.
func writeShared(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// envFile writes env lines as a YAML-free shell of environment for
// archive_command: walrus reads a config file, so turn WALRUS_*/AWS_*
// lines into an env prefix for the command string.
func envPrefix(env []string) string {
	var b strings.Builder
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		b.WriteString(k + "='" + v + "' ")
	}
	return b.String()
}
