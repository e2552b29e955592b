package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// hungServer accepts connections and never answers.
func hungServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestCommandTimeoutStopsAHungCommand: a repository that never answers,
// no per-call timeout: command_timeout ends wal-fetch, which exits 128
// (not "not found") with an error naming the setting.
func TestCommandTimeoutStopsAHungCommand(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "walrus.yaml")
	body := fmt.Sprintf(`repo: s3://bucket/prefix
s3:
  endpoint: http://%s
  region: us-east-1
  force_path_style: true
  access_key_id: test
  secret_access_key: test-secret
retry:
  call_timeout: 0s
command_timeout: 300ms
`, hungServer(t))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout, &stderr)
	root.SetArgs([]string{"--config", cfg, "wal-fetch", "000000010000000000000001", filepath.Join(t.TempDir(), "seg")})
	err := root.ExecuteContext(t.Context())
	if err == nil {
		t.Fatal("wal-fetch from a server that never answers succeeded")
	}
	if !strings.Contains(err.Error(), "command_timeout") {
		t.Errorf("error %q does not name command_timeout", err)
	}
	if code := exitCode(err); code != exitRecoveryAbort {
		t.Errorf("exit status %d, want %d: a timeout must not read as \"not found\"", code, exitRecoveryAbort)
	}
}
