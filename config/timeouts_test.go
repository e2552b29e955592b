package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetryAndTimeoutKeys(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"WALRUS_REPO": "/r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Retry.MaxAttempts != DefaultRetryMaxAttempts || c.Retry.CallTimeout != DefaultRetryCallTimeout || c.CommandTimeout != 0 {
		t.Fatalf("defaults: retry %+v, command_timeout %v", c.Retry, c.CommandTimeout)
	}
	p := writeFile(t, "repo: /r\nretry:\n  max_attempts: 3\n  call_timeout: 45s\ncommand_timeout: 10m\n")
	c, err = Load(p, env(map[string]string{"WALRUS_RETRY_CALL_TIMEOUT": "2m30s"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Retry.MaxAttempts != 3 || c.Retry.CallTimeout != 150*time.Second || c.CommandTimeout != 10*time.Minute {
		t.Fatalf("from file and env: retry %+v, command_timeout %v", c.Retry, c.CommandTimeout)
	}
	shown := c.Redacted()
	for _, want := range []string{"retry.max_attempts:", "retry.call_timeout:", "2m30s", "command_timeout:", "WALRUS_COMMAND_TIMEOUT"} {
		if !strings.Contains(shown, want) {
			t.Errorf("config show lacks %q:\n%s", want, shown)
		}
	}
	for _, tc := range []struct {
		env  map[string]string
		file string
		key  string
	}{
		{env: map[string]string{"WALRUS_RETRY_MAX_ATTEMPTS": "0"}, key: "retry.max_attempts"},
		{env: map[string]string{"WALRUS_RETRY_MAX_ATTEMPTS": "many"}, key: "retry.max_attempts"},
		{env: map[string]string{"WALRUS_RETRY_CALL_TIMEOUT": "-1s"}, key: "retry.call_timeout"},
		{env: map[string]string{"WALRUS_COMMAND_TIMEOUT": "10"}, key: "command_timeout"},
		{file: "repo: /r\ncommand_timeout: -5m\n", key: "command_timeout"},
		{file: "repo: /r\nretry:\n  max_atempts: 3\n", key: "retry.max_atempts"},
	} {
		path := ""
		if tc.file != "" {
			path = writeFile(t, tc.file)
		}
		e := map[string]string{"WALRUS_REPO": "/r"}
		for k, v := range tc.env {
			e[k] = v
		}
		_, err := Load(path, env(e))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("Load(%v, %q) = %v, want an error naming %s", tc.env, tc.file, err, tc.key)
		}
		var ce *Error
		if tc.env != nil && !errors.As(err, &ce) {
			t.Errorf("Load(%v) = %v, want a *config.Error", tc.env, err)
		}
	}
}

// TestWALPushAsyncKeys: wal_push_async is off by default, set from the file
// or the environment, and bad values name the key.
func TestWALPushAsyncKeys(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"WALRUS_REPO": "/r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.WALPushAsync || c.WALPushAsyncIdle != time.Minute {
		t.Fatalf("defaults: async %t, idle %v", c.WALPushAsync, c.WALPushAsyncIdle)
	}
	p := writeFile(t, "repo: /r\nwal_push_async: true\nwal_push_async_idle: 5m\n")
	if c, err = Load(p, env(map[string]string{"WALRUS_WAL_PUSH_ASYNC_IDLE": "90s"})); err != nil {
		t.Fatal(err)
	}
	if !c.WALPushAsync || c.WALPushAsyncIdle != 90*time.Second {
		t.Fatalf("from file and env: async %t, idle %v", c.WALPushAsync, c.WALPushAsyncIdle)
	}
	if shown := c.Redacted(); !strings.Contains(shown, "WALRUS_WAL_PUSH_ASYNC") || !strings.Contains(shown, "1m30s") {
		t.Errorf("config show lacks wal_push_async:\n%s", shown)
	}
	for _, e := range []map[string]string{
		{"WALRUS_WAL_PUSH_ASYNC": "sometimes"},
		{"WALRUS_WAL_PUSH_ASYNC_IDLE": "10ms"},
		{"WALRUS_WAL_PUSH_ASYNC_IDLE": "forever"},
	} {
		e["WALRUS_REPO"] = "/r"
		if _, err := Load("", env(e)); err == nil || !strings.Contains(err.Error(), "wal_push_async") {
			t.Errorf("Load(%v) = %v, want an error naming wal_push_async", e, err)
		}
	}
}

// TestBackupWALTimeout: backup_wal_timeout defaults to 5m, is read from the
// file and the environment (which wins), and a value under a second is an
// error naming the key.
func TestBackupWALTimeout(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{"WALRUS_REPO": "/r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.BackupWALTimeout != DefaultBackupWALTimeout || DefaultBackupWALTimeout != 5*time.Minute {
		t.Fatalf("default backup_wal_timeout = %v, want 5m", c.BackupWALTimeout)
	}
	p := writeFile(t, "repo: /r\nbackup_wal_timeout: 20m\n")
	if c, err = Load(p, env(nil)); err != nil || c.BackupWALTimeout != 20*time.Minute {
		t.Fatalf("from the file: %v, %v; want 20m", c, err)
	}
	if c, err = Load(p, env(map[string]string{"WALRUS_BACKUP_WAL_TIMEOUT": "90s"})); err != nil || c.BackupWALTimeout != 90*time.Second {
		t.Fatalf("environment over the file: %v; want 1m30s", err)
	}
	for _, v := range []string{"0s", "-1m", "500ms", "five"} {
		_, err := Load("", env(map[string]string{"WALRUS_REPO": "/r", "WALRUS_BACKUP_WAL_TIMEOUT": v}))
		if err == nil || !strings.Contains(err.Error(), "backup_wal_timeout") {
			t.Errorf("WALRUS_BACKUP_WAL_TIMEOUT=%s: %v, want an error naming backup_wal_timeout", v, err)
		}
	}
}
