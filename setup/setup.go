package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/pg"
)

// Options configure Run.
type Options struct {
	// PGData is the cluster's data directory (required).
	PGData string
	// ConfigPath is the walrus configuration file; "" means
	// DefaultConfigPath(PGData).
	ConfigPath string
	// Binary is the walrus binary that archive_command and
	// restore_command run: an absolute path, symbolic links resolved.
	Binary string
	// Repo, Compression, Recipients and IdentityFile fill a new
	// configuration file (they override the WALRUS_* environment, which
	// fills in the rest). They are ignored, with a note, when the file
	// exists.
	Repo        string
	Compression string
	Recipients  []string
	// IdentityFile is an existing age identity for encryption.identity_file.
	IdentityFile string
	// Encrypt asks for encryption; without recipients or an identity file
	// Run generates an identity next to the configuration file.
	Encrypt bool
	// Lookup reads the environment (os.LookupEnv when nil).
	Lookup config.LookupFunc
}

func (o *Options) lookup(k string) (string, bool) {
	if o.Lookup == nil {
		return os.LookupEnv(k)
	}
	return o.Lookup(k)
}

// Result says what Run did.
type Result struct {
	// Config is what happened to the walrus configuration.
	Config *ConfigResult
	// Postgres is what happened to PostgreSQL's configuration.
	Postgres *PostgresResult
	// PGData is the data directory, absolute.
	PGData string
	// ServerNote is set when a stale postmaster.pid was found.
	ServerNote string
}

// Changed reports whether Run changed anything.
func (r *Result) Changed() bool {
	return r.Config.Created || r.Config.RepoDirCreated != "" || len(r.Postgres.Changes) > 0 || r.Postgres.Reloaded
}

// UsageError is an error in what the operator asked for (a missing flag),
// as opposed to a failure while doing it.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// Run writes the walrus configuration file if none exists, then configures
// the PostgreSQL cluster in o.PGData for archiving through walrus: with
// ALTER SYSTEM and pg_reload_conf() when its server runs (postmaster.pid
// names a live process; walrus must then be able to connect, with
// postgres.dsn or the PG* variables, to the server of that very data
// directory), or by editing postgresql.auto.conf when it is stopped. It
// asks nothing. Running it again changes nothing.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.PGData == "" {
		return nil, usageErrorf("setup: no data directory: pass --pgdata DIR")
	}
	pgdata, err := filepath.Abs(o.PGData)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	o.PGData = filepath.Clean(pgdata)
	if _, err := os.Stat(filepath.Join(o.PGData, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("setup: %s is not a PostgreSQL data directory (%v): pass the directory initdb created with --pgdata", o.PGData, err)
	}
	if !filepath.IsAbs(o.Binary) {
		return nil, fmt.Errorf("setup: the walrus binary %q is not an absolute path", o.Binary)
	}
	if o.ConfigPath == "" {
		o.ConfigPath = DefaultConfigPath(o.PGData)
	}
	if o.ConfigPath, err = filepath.Abs(o.ConfigPath); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	pgOwner, err := ownerOf(o.PGData)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	state, err := probeServer(o.PGData)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}

	res := &Result{PGData: o.PGData, ServerNote: state.note}
	res.Config, err = writeConfig(&o, pgOwner)
	if err != nil {
		var ue UsageError
		if errors.As(err, &ue) {
			return nil, UsageError{fmt.Errorf("setup: %w", ue.Err)}
		}
		return nil, fmt.Errorf("setup: %w", err)
	}
	if !mayAccess(pgOwner, o.Binary, permRead|permExec) {
		res.Config.Notes = append(res.Config.Notes, fmt.Sprintf("%s may not be able to run %s, and archive_command runs as %s: install walrus where that user can run it (e.g. /usr/local/bin) and run setup from there", pgOwner.name(), o.Binary, pgOwner.name()))
	}

	archiveCmd := ArchiveCommand(o.Binary, o.ConfigPath)
	restoreCmd := RestoreCommand(o.Binary, o.ConfigPath)
	if state.running {
		conn, err := connect(ctx, res.Config.Config.Postgres.DSN)
		if err != nil {
			return nil, fmt.Errorf("setup: PostgreSQL runs in %s (postmaster.pid names process %d) but walrus cannot connect: %w: set postgres.dsn (WALRUS_POSTGRES_DSN) or the PG* variables, or stop the server to have setup edit %s instead",
				o.PGData, state.pid, err, AutoConfName)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		res.Postgres, err = configureRunning(ctx, conn, o.PGData, archiveCmd, restoreCmd)
	} else {
		res.Postgres, err = configureStopped(o.PGData, archiveCmd, restoreCmd)
	}
	if err != nil {
		return nil, fmt.Errorf("setup: configure PostgreSQL: %w", err)
	}
	return res, nil
}

// Print writes what Run did for the operator: the configuration file, each
// setting changed (old → new), what needs a reload or a restart, and the
// notes.
func (r *Result) Print(w io.Writer) {
	c := r.Config
	if c.Created {
		owner := ""
		if c.Owner != "" {
			owner = ", owner " + c.Owner
		}
		fmt.Fprintf(w, "wrote the walrus configuration %s (mode 0600%s)\n", c.Path, owner)
	} else {
		fmt.Fprintf(w, "walrus configuration %s exists: left as it is\n", c.Path)
	}
	if c.IdentityFile != "" {
		fmt.Fprintf(w, "generated the age identity %s (recipient %s)\n", c.IdentityFile, c.Recipient)
		fmt.Fprintf(w, "  COPY %s SOMEWHERE SAFE, off this host: without it no backup of this repository can ever be restored\n", c.IdentityFile)
	}
	if c.RepoDirCreated != "" {
		fmt.Fprintf(w, "created the repository directory %s\n", c.RepoDirCreated)
	}
	if r.ServerNote != "" {
		fmt.Fprintln(w, "note: "+r.ServerNote)
	}
	p := r.Postgres
	how := "PostgreSQL is running: settings changed with ALTER SYSTEM"
	if p.Method == MethodAutoConf {
		how = "PostgreSQL is not running: settings written to " + filepath.Join(r.PGData, AutoConfName)
	}
	if len(p.Changes) == 0 {
		fmt.Fprintf(w, "PostgreSQL settings: nothing to change (archive_mode, wal_level, archive_command and restore_command are already set for walrus)\n")
	} else {
		fmt.Fprintln(w, how+":")
		for _, ch := range p.Changes {
			old := "(not set)"
			if ch.Old != "" {
				old = pg.QuoteConf(ch.Old)
			}
			when := "reload"
			if ch.Restart {
				when = "restart"
			}
			if p.Method == MethodAutoConf {
				when = "at start"
			}
			fmt.Fprintf(w, "  %s: %s → %s (%s)\n", ch.Name, old, pg.QuoteConf(ch.New), when)
		}
	}
	if p.Reloaded {
		fmt.Fprintln(w, "reloaded the configuration (pg_reload_conf)")
	}
	switch {
	case len(p.RestartNeeded) > 0:
		fmt.Fprintf(w, "RESTART NEEDED: the server still runs with the old %s: restart PostgreSQL (e.g. pg_ctl restart -D %s)\n", strings.Join(p.RestartNeeded, " and "), r.PGData)
	case p.Method == MethodAutoConf && len(p.Changes) > 0:
		fmt.Fprintln(w, "the settings take effect when PostgreSQL starts")
	}
	for _, n := range append(append([]string(nil), c.Notes...), p.Notes...) {
		fmt.Fprintln(w, "note: "+n)
	}
	if !r.Changed() {
		fmt.Fprintln(w, "nothing to change")
	}
	fmt.Fprintln(w, "next: walrus --config "+c.Path+" check   (verifies that archiving works end to end)")
}
