package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
)

// archivingCluster starts a cluster whose archive_command is walrus with
// env, through a wrapper script the postgres user can run.
func archivingCluster(t *testing.T, env []string) (*pgtest.Cluster, string) {
	t.Helper()
	return archivingClusterWith(t, env, "")
}

// archivingClusterWith is archivingCluster whose wrapper script runs the
// shell lines preamble before walrus ($2 is the WAL file's path).
func archivingClusterWith(t *testing.T, env []string, preamble string) (*pgtest.Cluster, string) {
	t.Helper()
	dir := pgtest.SharedDir(t)
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&script, "export %s='%s'\n", k, v)
	}
	script.WriteString(preamble)
	fmt.Fprintf(&script, "exec %s \"$@\"\n", testbin.Walrus(t))
	wrapper := filepath.Join(dir, "walrus.sh")
	if err := os.WriteFile(wrapper, []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	c := pgtest.New(t, pgtest.Options{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", wrapper),
		"wal_keep_size = '1GB'",
	}})
	c.Start(t)
	return c, wrapper
}

var segmentName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// TestWALArchive is issue 2's journey: archive through walrus from a real
// cluster, fetch every segment back byte-identical, and check the refusals
// and exit codes PostgreSQL relies on. Run against fs and S3, encrypted.
func TestWALArchive(t *testing.T) {
	for _, sk := range storages {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			testWALArchive(t, sk)
		})
	}
}

func testWALArchive(t *testing.T, sk storageKind) {
	repoEnv, repoDir := sk.setup(t)
	keys := pgtest.SharedDir(t)
	identity := filepath.Join(keys, "age.key")
	recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
	if !strings.HasPrefix(recipient, "age1") {
		t.Fatalf("keygen printed %q", recipient)
	}
	pushEnv := append(append([]string{}, repoEnv...), "WALRUS_AGE_RECIPIENTS="+recipient, "WALRUS_COMPRESSION=zstd")
	fetchEnv := append(append([]string{}, repoEnv...), "WALRUS_AGE_IDENTITY_FILE="+identity)

	c, _ := archivingCluster(t, pushEnv)
	marker := "walrus-plaintext-marker-7f3a9c"
	c.Exec(t, "CREATE TABLE secrets(id int, v text)")
	c.Exec(t, fmt.Sprintf("INSERT INTO secrets SELECT g, '%s-' || g FROM generate_series(1, 20000) g", marker))
	c.Exec(t, "SELECT pg_switch_wal()")
	c.Exec(t, "INSERT INTO secrets VALUES (0, 'after switch')")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 60*time.Second)
	if failed := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("pg_stat_archiver.failed_count = %s\n%s", failed, c.LogTail(30))
	}

	// Every archived segment comes back byte-identical.
	walDir := filepath.Join(c.DataDir(), "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	fetched := 0
	for _, e := range entries {
		if !segmentName.MatchString(e.Name()) || e.Name() > last {
			continue
		}
		dest := filepath.Join(out, e.Name())
		mustRun(t, fetchEnv, "wal-fetch", e.Name(), dest)
		want, _ := os.ReadFile(filepath.Join(walDir, e.Name()))
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(want, got) {
			t.Fatalf("segment %s: fetched copy differs (err %v)", e.Name(), err)
		}
		fetched++
	}
	if fetched < 2 {
		t.Fatalf("only %d segments fetched", fetched)
	}
	firstSeg := filepath.Join(walDir, last)

	t.Run("all codecs on a real segment", func(t *testing.T) {
		seg, err := os.ReadFile(firstSeg)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range compress.Names() {
			codec, _ := compress.ByName(name)
			var buf bytes.Buffer
			w, err := codec.NewWriter(&buf, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(seg)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := codec.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			var back bytes.Buffer
			if _, err := back.ReadFrom(r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(back.Bytes(), seg) {
				t.Fatalf("%s: round trip of a real 16 MiB segment differs", name)
			}
		}
	})

	if repoDir != "" {
		t.Run("encrypted objects hold no plaintext", func(t *testing.T) {
			n := 0
			st, err := fs.New(repoDir)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			st.List(ctx, "wal/", func(o storage.ObjectInfo) error {
				p := o.Key
				rc, err := st.Get(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				raw, _ := os.ReadFile(filepath.Join(repoDir, p))
				if bytes.Contains(raw, []byte(marker)) {
					t.Errorf("file %s contains row plaintext", p)
				}
				if !strings.HasSuffix(p, ".zst.age") {
					t.Errorf("object %s is not named as zstd+age", p)
				}
				if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
					t.Errorf("object %s is not an age file", p)
				}
				if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("plaintext-marker")) {
					t.Errorf("object %s contains row plaintext", p)
				}
				n++
				return nil
			})
			if n == 0 {
				t.Fatal("no objects found in the repository")
			}
		})
	}

	t.Run("missing file exits 1 and writes nothing", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		r := run(t, fetchEnv, "wal-fetch", "0000000100000000000000FE", dest)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("destination was written")
		}
	})

	// An empty directory where an unmounted file system should be, or a
	// prefix walrus never archived to, holds no WAL either: "not found"
	// there would end recovery early, at the wrong point (TRAPS.md 1).
	t.Run("a place that is not the repository exits above 125", func(t *testing.T) {
		var env []string
		for _, kv := range fetchEnv {
			if v, ok := strings.CutPrefix(kv, "WALRUS_REPO="); ok {
				kv = "WALRUS_REPO=" + v + "-not-mounted"
			}
			env = append(env, kv)
		}
		for _, name := range []string{"0000000100000000000000FE", "00000002.history"} {
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			r := run(t, env, "wal-fetch", name, dest)
			if r.code <= 125 {
				t.Fatalf("%s: exit %d, want > 125\n%s", name, r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "has no walrus.json") || !strings.Contains(r.stderr, "walrus check") {
				t.Errorf("%s: the error does not say what is wrong and what to do: %s", name, r.stderr)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatal("destination was written")
			}
		}
	})

	t.Run("wrong identity exits above 125", func(t *testing.T) {
		dir := t.TempDir()
		other := filepath.Join(dir, "other.key")
		mustRun(t, nil, "keygen", "--output", other)
		dest := filepath.Join(dir, "RECOVERYXLOG")
		env := append(append([]string{}, repoEnv...), "WALRUS_AGE_IDENTITY_FILE="+other)
		r := run(t, env, "wal-fetch", last, dest)
		if r.code <= 125 {
			t.Fatalf("exit %d, want > 125\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "identity") {
			t.Errorf("error does not point at the identity: %s", r.stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("destination was written")
		}
	})

	t.Run("no identity for an encrypted repository exits above 125", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		r := run(t, repoEnv, "wal-fetch", last, dest)
		if r.code <= 125 {
			t.Fatalf("exit %d, want > 125\n%s", r.code, r.stderr)
		}
	})

	t.Run("re-push of identical content succeeds", func(t *testing.T) {
		r := mustRun(t, pushEnv, "wal-push", firstSeg)
		if !strings.Contains(r.stderr, "already archived") {
			t.Errorf("stderr: %s", r.stderr)
		}
		// Even with another codec configured, the stored object is found.
		env := append(append([]string{}, pushEnv...), "WALRUS_COMPRESSION=lz4")
		mustRun(t, env, "wal-push", firstSeg)
	})

	t.Run("different content under an existing name is refused", func(t *testing.T) {
		b, _ := os.ReadFile(firstSeg)
		b[len(b)-100] ^= 0xff
		evil := filepath.Join(t.TempDir(), filepath.Base(firstSeg))
		os.WriteFile(evil, b, 0o600)
		r := run(t, pushEnv, "wal-push", evil)
		if r.code == 0 || !strings.Contains(r.stderr, "different file is already archived") {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
		dest := filepath.Join(t.TempDir(), "seg")
		mustRun(t, fetchEnv, "wal-fetch", filepath.Base(firstSeg), dest)
		got, _ := os.ReadFile(dest)
		want, _ := os.ReadFile(firstSeg)
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Fatal("the stored object was changed")
		}
	})

	t.Run("plaintext push into an encrypted repository is refused", func(t *testing.T) {
		r := run(t, repoEnv, "wal-push", firstSeg)
		if r.code == 0 || !strings.Contains(r.stderr, "encrypted") {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
	})

	t.Run("another cluster is refused", func(t *testing.T) {
		other := pgtest.New(t, pgtest.Options{})
		other.Start(t)
		seg := other.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
		other.Stop(t)
		r := run(t, pushEnv, "wal-push", filepath.Join(other.DataDir(), "pg_wal", seg))
		if r.code == 0 || !strings.Contains(r.stderr, "another cluster") {
			t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
		}
	})

	if repoDir != "" {
		t.Run("tampered object exits above 125", func(t *testing.T) {
			var victim string
			filepath.Walk(filepath.Join(repoDir, "wal"), func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && strings.Contains(fi.Name(), filepath.Base(firstSeg)) && !strings.HasPrefix(fi.Name(), ".") {
					victim = p
				}
				return nil
			})
			if victim == "" {
				t.Fatal("stored object not found")
			}
			b, _ := os.ReadFile(victim)
			orig := append([]byte(nil), b...)
			b[len(b)/2] ^= 0x01
			os.WriteFile(victim, b, 0o600)
			defer os.WriteFile(victim, orig, 0o600)
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			r := run(t, fetchEnv, "wal-fetch", filepath.Base(firstSeg), dest)
			if r.code <= 125 {
				t.Fatalf("exit %d, want > 125\n%s", r.code, r.stderr)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatal("destination was written")
			}
		})
	}
}

// TestWALFetchUnreachableRepository: an S3 endpoint that refuses
// connections must not look like "not found".
func TestWALFetchUnreachableRepository(t *testing.T) {
	t.Parallel()
	env := []string{
		"WALRUS_REPO=s3://bucket/prefix", "WALRUS_S3_ENDPOINT=http://127.0.0.1:1",
		"WALRUS_S3_FORCE_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_REGION=us-east-1",
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	r := run(t, env, "wal-fetch", "000000010000000000000001", dest)
	if r.code <= 125 {
		t.Fatalf("exit %d, want > 125\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("destination was written")
	}
}
