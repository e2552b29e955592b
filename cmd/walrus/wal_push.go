package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/internal/detach"
	"github.com/walrusdb/walrus/internal/wait"
	"github.com/walrusdb/walrus/walpush"
)

func newWALPushCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-push PATH",
		Short: "Archive one WAL file (archive_command)",
		Long: `wal-push compresses, encrypts (when recipients are configured) and stores
one WAL segment, .history or .backup file under wal/ in the repository. It
exits 0 only once the object is durable. A file already archived with the
same content exits 0; different content under the same name is refused and
the stored object is left untouched.

When PATH is pg_wal/NAME, wal-push also pushes, in parallel, up to
wal_push_concurrency-1 other whole segments that PostgreSQL has marked ready
(pg_wal/archive_status/*.ready) and records a marker for each in
pg_wal/archive_status/.walrus. When PostgreSQL then asks for such a segment,
wal-push checks that the file is the one pushed (same inode and times, else
same digest) and that the repository holds the recorded object with the
recorded checksum and sizes (one Stat), and exits 0 without uploading; if
the object is missing or differs, it pushes the file as usual. Failures of those extra pushes never fail the requested one.
PostgreSQL alone marks files done.

When a wal-push-daemon serves the cluster (its socket
pg_wal/archive_status/.walrus/push.sock answers), wal-push only asks it and
waits for its answer; if the daemon fails, wal-push pushes the file itself.
With wal_push_async set, a wal-push that finds no daemon starts one
(detached; it exits after wal_push_async_idle without a request) and asks
it: a backlog is then compressed on every core without pause, as
pgBackRest's archive-async does.`,
		Example: `  # postgresql.conf
  archive_mode = on
  archive_command = 'walrus --config /etc/walrus.yaml wal-push %p'

  # push up to 8 segments at once when PostgreSQL falls behind
  WALRUS_WAL_PUSH_CONCURRENCY=8 walrus wal-push pg_wal/000000010000000000000042

  # let wal-push start and use a resident wal-push-daemon
  WALRUS_WAL_PUSH_ASYNC=true walrus wal-push pg_wal/000000010000000000000042`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := filepath.Base(args[0])
			cfg, err := g.load()
			if err != nil {
				return err
			}
			dres, used, err := walpush.ViaDaemon(ctx, args[0], repositoryID(cfg), cfg.Encryption.Enabled())
			if !used && cfg.WALPushAsync {
				if serr := g.startPushDaemon(ctx, cfg, args[0]); serr != nil {
					tracelog.WarningLogger.Printf("wal-push %s: no wal-push-daemon (%v); pushing it from this process", name, serr)
				} else {
					dres, used, err = walpush.ViaDaemon(ctx, args[0], repositoryID(cfg), cfg.Encryption.Enabled())
				}
			}
			switch {
			case used && err == nil:
				tracelog.InfoLogger.Printf("wal-push %s: durable as %s (via wal-push-daemon)", name, dres.Key)
				return nil
			case used && errors.Is(err, walpush.ErrConflict):
				return err
			case used:
				tracelog.WarningLogger.Printf("wal-push %s: %v; pushing it from this process", name, err)
			}
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := walpush.Archive(ctx, args[0], walpush.Options{
				Store: r.Store, Encoder: r.Encoder, PGData: cfg.PGData,
				Concurrency: cfg.WALPushConcurrency, Repository: repositoryID(cfg),
				Logf: tracelog.WarningLogger.Printf,
			})
			for _, x := range res.Extras {
				if x.Err != nil {
					tracelog.WarningLogger.Printf("wal-push %s: pushing %s ahead failed (it is pushed when PostgreSQL asks for it): %v", name, x.Name, x.Err)
				} else {
					tracelog.InfoLogger.Printf("wal-push %s: pushed %s ahead as %s", name, x.Name, x.Result.Key)
				}
			}
			if err != nil {
				return err
			}
			switch {
			case res.Confirmed:
				tracelog.InfoLogger.Printf("wal-push %s: pushed ahead earlier; confirmed %s in the repository", res.Name, res.Key)
			case res.AlreadyStored:
				tracelog.InfoLogger.Printf("wal-push %s: already archived as %s with identical content", res.Name, res.Key)
			default:
				tracelog.InfoLogger.Printf("wal-push %s: stored %s (%d bytes, %d stored)", res.Name, res.Key, res.RawSize, res.StoredSize)
			}
			return nil
		},
	}
}

// daemonStartWait bounds how long wal-push waits for a daemon it started
// to listen; after that it pushes the file itself.
const daemonStartWait = 3 * time.Second

// startPushDaemon starts, detached, a wal-push-daemon for the cluster
// whose pg_wal holds path, with --idle-exit wal_push_async_idle, logging
// to pg_wal/archive_status/.walrus/daemon.log, and waits until its socket
// appears. Another wal-push starting one at the same time is harmless:
// the daemon lock lets one serve, and both clients find its socket.
func (g *globals) startPushDaemon(ctx context.Context, cfg *config.Config, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	walDir := filepath.Dir(abs)
	markerDir := filepath.Join(walDir, "archive_status", walpush.MarkerDirName)
	if fi, err := os.Stat(filepath.Join(walDir, "archive_status")); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not in a pg_wal directory (no archive_status)", path)
	}
	if err := os.Mkdir(markerDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	argv, err := g.selfArgv("wal-push-daemon", "--idle-exit", cfg.WALPushAsyncIdle.String())
	if err != nil {
		return err
	}
	// The daemon serves pgdata/pg_wal: the data directory is the one
	// above the pg_wal PostgreSQL named (a symlinked pg_wal included).
	env := []string{"WALRUS_PGDATA=" + filepath.Dir(walDir)}
	logPath := filepath.Join(markerDir, walpush.DaemonLogName)
	if err := detach.Start(argv, env, logPath); err != nil {
		return err
	}
	sock := walpush.SocketPath(walDir)
	deadline := time.Now().Add(daemonStartWait)
	for {
		if _, err := os.Stat(sock); err == nil {
			tracelog.InfoLogger.Printf("wal-push: started a wal-push-daemon (log %s)", logPath)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the wal-push-daemon it started did not listen within %v: see %s", daemonStartWait, logPath)
		}
		if err := wait.Sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

// selfArgv is the command line that runs this walrus binary, with this
// call's --config and --verbose, for args: for the background processes
// wal-fetch and wal-push start.
func (g *globals) selfArgv(args ...string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := []string{exe}
	if g.configPath != "" {
		argv = append(argv, "--config", g.configPath)
	}
	if g.verbose {
		argv = append(argv, "--verbose")
	}
	return append(argv, args...), nil
}

// repositoryID names the repository for wal-push markers and the
// prefetch directory: two repositories never share it.
func repositoryID(cfg *config.Config) string {
	return cfg.Repo + "\n" + cfg.S3.Endpoint
}
