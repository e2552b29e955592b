package setup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walrusdb/walrus/pg"
)

// Methods of configuring PostgreSQL.
const (
	// MethodAlterSystem: the server runs; settings are changed with ALTER
	// SYSTEM and the configuration reloaded.
	MethodAlterSystem = "ALTER SYSTEM"
	// MethodAutoConf: the server is stopped; postgresql.auto.conf is
	// edited.
	MethodAutoConf = AutoConfName
)

// Change is one setting changed.
type Change struct {
	// Name is the parameter, e.g. "archive_mode".
	Name string
	// Old is the value configured before ("" when none was).
	Old string
	// New is the value written.
	New string
	// Restart is true when the parameter takes effect only when the
	// server starts (archive_mode, wal_level).
	Restart bool
}

// PostgresResult says what ConfigurePostgres did.
type PostgresResult struct {
	// Method is MethodAlterSystem or MethodAutoConf.
	Method string
	// Changes are the settings written, in a fixed order.
	Changes []Change
	// Reloaded is true when pg_reload_conf() was called.
	Reloaded bool
	// RestartNeeded lists the parameters whose configured value the
	// running server does not use yet: it must be restarted.
	RestartNeeded []string
	// Notes are warnings for the operator.
	Notes []string
}

// restartParams take effect only at server start.
var restartParams = map[string]bool{"archive_mode": true, "wal_level": true}

// settingOrder is the order settings are examined and written in.
var settingOrder = []string{"archive_mode", "wal_level", "archive_command", "restore_command"}

// configured is what the configuration files say a parameter is (ok:
// whether they say anything).
type configured func(name string) (value string, ok bool)

// wanted returns the settings to write: archive_mode on unless on or
// always; wal_level replica when set to anything but replica or logical
// (unset, it is PostgreSQL 15's default, replica); archive_command and
// restore_command as given.
func wanted(cur configured, archiveCmd, restoreCmd string) []setting {
	var out []setting
	if v, _ := cur("archive_mode"); normBool(v) != "on" && strings.ToLower(v) != "always" {
		out = append(out, setting{"archive_mode", "on"})
	}
	if v, ok := cur("wal_level"); ok {
		if l := normWALLevel(v); l != "replica" && l != "logical" {
			out = append(out, setting{"wal_level", "replica"})
		}
	}
	if v, _ := cur("archive_command"); v != archiveCmd {
		out = append(out, setting{"archive_command", archiveCmd})
	}
	if v, _ := cur("restore_command"); v != restoreCmd {
		out = append(out, setting{"restore_command", restoreCmd})
	}
	return out
}

// normBool maps PostgreSQL's boolean spellings to "on" or "off" (other
// values are returned lower-cased).
func normBool(v string) string {
	switch l := strings.ToLower(strings.TrimSpace(v)); l {
	case "on", "true", "yes", "1", "t", "y", "tr", "tru", "ye":
		return "on"
	case "off", "false", "no", "0", "f", "n", "of", "fa", "fal", "fals":
		return "off"
	default:
		return l
	}
}

// normWALLevel maps wal_level's old aliases to their PostgreSQL 15 names.
func normWALLevel(v string) string {
	switch l := strings.ToLower(strings.TrimSpace(v)); l {
	case "archive", "hot_standby":
		return "replica"
	default:
		return l
	}
}

// serverState says whether a server runs in the data directory.
type serverState struct {
	running bool
	pid     int
	note    string
}

// probeServer reads postmaster.pid: a server runs when the file names a
// live process. A file naming no live process is stale (a crash).
func probeServer(pgdata string) (serverState, error) {
	path := filepath.Join(pgdata, "postmaster.pid")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return serverState{}, nil
	}
	if err != nil {
		return serverState{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return serverState{note: fmt.Sprintf("%s is empty: treating the server as stopped", path)}, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 {
		return serverState{}, fmt.Errorf("read %s: first line %q is not a process ID: is a server starting? Try again", path, sc.Text())
	}
	if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
		return serverState{running: true, pid: pid}, nil
	}
	return serverState{pid: pid, note: fmt.Sprintf("%s names process %d, which does not exist (a crash left it): treating the server as stopped", path, pid)}, nil
}

// configureRunning changes the settings with ALTER SYSTEM and reloads.
func configureRunning(ctx context.Context, conn *pgx.Conn, pgdata, archiveCmd, restoreCmd string) (*PostgresResult, error) {
	res := &PostgresResult{Method: MethodAlterSystem}
	var dataDir string
	if err := conn.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
		return nil, fmt.Errorf("read data_directory: %w", err)
	}
	if !sameDir(dataDir, pgdata) {
		return nil, fmt.Errorf("the server walrus connected to runs the data directory %s, not %s: set postgres.dsn (WALRUS_POSTGRES_DSN) or PGHOST/PGPORT so that walrus reaches the server of %s", dataDir, pgdata, pgdata)
	}
	running, fileVals, err := readServerSettings(ctx, conn)
	if err != nil {
		return nil, err
	}
	for _, name := range settingOrder {
		if s := running[name]; s.source == "command line" || s.source == "environment variable" {
			res.Notes = append(res.Notes, fmt.Sprintf("%s is set on the server's %s, which ALTER SYSTEM cannot override: remove it there", name, s.source))
		}
	}
	cur := func(name string) (string, bool) {
		if v, ok := fileVals[name]; ok {
			return v, true
		}
		s, ok := running[name]
		return s.setting, ok
	}
	for _, s := range wanted(cur, archiveCmd, restoreCmd) {
		old, _ := cur(s.name)
		var stmt string
		if err := conn.QueryRow(ctx, `SELECT format('ALTER SYSTEM SET %I = %L', $1::text, $2::text)`, s.name, s.value).Scan(&stmt); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.name, err)
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("set %s: %s: %w (setup needs a superuser, or a role granted ALTER SYSTEM on it)", s.name, stmt, err)
		}
		res.Changes = append(res.Changes, Change{Name: s.name, Old: old, New: s.value, Restart: restartParams[s.name]})
	}
	// What the running server uses, against what it will use.
	needReload := false
	for _, c := range res.Changes {
		needReload = needReload || !c.Restart
	}
	for _, name := range settingOrder {
		want, _ := cur(name)
		for _, c := range res.Changes {
			if c.Name == name {
				want = c.New
			}
		}
		have := running[name].setting
		if satisfied(name, have, want) {
			continue
		}
		if restartParams[name] {
			res.RestartNeeded = append(res.RestartNeeded, name)
		} else {
			needReload = true
		}
	}
	if needReload {
		if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
			return nil, fmt.Errorf("reload the configuration: %w", err)
		}
		res.Reloaded = true
	}
	return res, nil
}

// satisfied reports whether the running value have of a parameter serves
// as well as the configured value want.
func satisfied(name, have, want string) bool {
	switch name {
	case "archive_mode":
		return normBool(have) == normBool(want) || strings.EqualFold(have, want)
	case "wal_level":
		return normWALLevel(have) == normWALLevel(want)
	}
	return have == want
}

// serverSetting is one row of pg_settings.
type serverSetting struct {
	setting, source string
	pendingRestart  bool
}

// readServerSettings returns what the server runs with (pg_settings) and
// what its configuration files say now (pg_file_settings, which reads the
// files when queried: the last line of each parameter wins; rows with an
// error count too, since "setting could not be applied" is what a
// parameter changed in the file but waiting for a restart shows).
func readServerSettings(ctx context.Context, conn *pgx.Conn) (map[string]serverSetting, map[string]string, error) {
	running := map[string]serverSetting{}
	// archive_command shows as "(disabled)" while archive_mode is off;
	// reset_val holds its value then.
	const q = `SELECT name, CASE WHEN setting = '(disabled)' THEN reset_val ELSE setting END, source, pending_restart
FROM pg_settings WHERE name = ANY($1)`
	rows, err := conn.Query(ctx, q, settingOrder)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_settings: %w", err)
	}
	for rows.Next() {
		var name string
		var s serverSetting
		if err := rows.Scan(&name, &s.setting, &s.source, &s.pendingRestart); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read pg_settings: %w", err)
		}
		running[name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read pg_settings: %w", err)
	}
	fileVals := map[string]string{}
	rows, err = conn.Query(ctx, `SELECT name, setting FROM pg_file_settings WHERE name = ANY($1) ORDER BY seqno`, settingOrder)
	if err != nil {
		return nil, nil, fmt.Errorf("read pg_file_settings: %w", err)
	}
	for rows.Next() {
		var name string
		var v *string
		if err := rows.Scan(&name, &v); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read pg_file_settings: %w", err)
		}
		if v != nil {
			fileVals[name] = *v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read pg_file_settings: %w", err)
	}
	return running, fileVals, nil
}

// configureStopped edits postgresql.auto.conf of a stopped cluster.
func configureStopped(pgdata, archiveCmd, restoreCmd string) (*PostgresResult, error) {
	res := &PostgresResult{Method: MethodAutoConf}
	cs, hasMain, err := readConfFiles(pgdata)
	if err != nil {
		return nil, err
	}
	for _, u := range cs.unread {
		res.Notes = append(res.Notes, fmt.Sprintf("could not read the included %s: settings there were not considered", u))
	}
	cur := func(name string) (string, bool) {
		v, ok := cs.values[name]
		return v, ok
	}
	_, walLevelKnown := cur("wal_level")
	if !hasMain && !walLevelKnown {
		res.Notes = append(res.Notes, fmt.Sprintf("%s has no postgresql.conf (is it kept elsewhere, as on Debian?): wal_level was left alone; it must be replica or logical (walrus check verifies it once the server runs)", pgdata))
	}
	set := wanted(cur, archiveCmd, restoreCmd)
	if len(set) == 0 {
		return res, nil
	}
	if err := editAutoConf(pgdata, set); err != nil {
		return nil, err
	}
	for _, s := range set {
		old, _ := cur(s.name)
		res.Changes = append(res.Changes, Change{Name: s.name, Old: old, New: s.value, Restart: restartParams[s.name]})
	}
	return res, nil
}

// connectTimeout bounds connecting to the server.
const connectTimeout = 30 * time.Second

// connect opens a session for setup and check.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pg.Connect(cctx, dsn)
}

// sameDir reports whether two paths name the same directory.
func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	if ra == rb {
		return true
	}
	fa, err1 := os.Stat(ra)
	fb, err2 := os.Stat(rb)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
