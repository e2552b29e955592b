package s3test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestStartNotFooledByAnotherServer starts a second server on the port of
// a running one, as happens when a test beside this one takes the port
// between freePort and the start: the second server cannot bind and
// exits, and run must say so instead of taking the first server's
// answers for its own (whose credentials then fail every request).
func TestStartNotFooledByAnotherServer(t *testing.T) {
	first := Start(t)
	bin, err := findBinary()
	if err != nil {
		t.Fatal(err)
	}
	second := &Server{Region: first.Region, AccessKey: "walrus" + randomHex(8), SecretKey: randomHex(20), Endpoint: first.Endpoint}
	second.client = second.newClient()
	addr := strings.TrimPrefix(first.Endpoint, "http://")
	args := []string{"--access", second.AccessKey, "--secret", second.SecretKey, "--region", second.Region,
		"--port", addr, "--quiet", "posix", t.TempDir()}
	stop, err := run(bin, args, filepath.Join(t.TempDir(), "versitygw.log"), second.answers)
	if err == nil {
		_ = stop()
		t.Fatalf("run took the server already on %s for the one it started", addr)
	}
	if !strings.Contains(err.Error(), "exited before answering") {
		t.Fatalf("run: %v, want the second server's exit", err)
	}
}
