//go:build linux

package detach

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStart: the child runs in its own session with the extra
// environment, its stderr is appended to the log, and Start does not wait
// for it.
func TestStart(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "child.log")
	os.WriteFile(logPath, []byte("earlier line\n"), 0o600)
	done, goOn := filepath.Join(dir, "done"), filepath.Join(dir, "go")
	// The child waits for a file the test writes only after Start has
	// returned: a Start that waited for its child would never return.
	script := `while [ ! -e ` + goOn + ` ]; do sleep 0.01; done
echo "value=$DETACH_TEST sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$" >&2; touch ` + done
	if err := Start([]string{"/bin/sh", "-c", script}, []string{"DETACH_TEST=passed"}, logPath); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(goOn, nil, 0o600)
	for i := 0; ; i++ {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("the child never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	body, _ := os.ReadFile(logPath)
	log := string(body)
	if !strings.HasPrefix(log, "earlier line\n") || !strings.Contains(log, "value=passed") {
		t.Fatalf("log:\n%s", log)
	}
	// Its own session: the session ID is its own process ID.
	var sid, pid string
	for _, f := range strings.Fields(log) {
		if v, ok := strings.CutPrefix(f, "sid="); ok {
			sid = v
		}
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			pid = v
		}
	}
	if sid == "" || sid != pid {
		t.Fatalf("child not in a session of its own (sid %q, pid %q):\n%s", sid, pid, log)
	}
}
