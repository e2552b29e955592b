package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ApplicationName is the application_name walrus sessions report, unless
// the DSN or PGAPPNAME names another.
const ApplicationName = "walrus"

// TCP keepalive settings of walrus connections. A non-exclusive backup
// belongs to its session (TRAPS.md 9): keepalives keep an idle session
// through NATs and firewalls while files are copied, and detect a dead
// server within about a minute and a half.
const (
	keepAliveIdle     = 30 * time.Second
	keepAliveInterval = 10 * time.Second
	keepAliveCount    = 6
)

// sessionDefaults are session settings walrus sets unless the DSN or
// PGAPPNAME names them: a pg_backup_stop that waits for the archive must not
// be cancelled by a server-wide statement_timeout, and the backup session
// must not be ended for being idle while files are copied. (As startup
// parameters they also override the same settings in PGOPTIONS.)
var sessionDefaults = [...][2]string{
	{"application_name", ApplicationName},
	{"statement_timeout", "0"},
	{"idle_session_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
}

// ParseDSN builds a connection configuration as Connect uses it. dsn is a
// URL (postgres://user@host:port/db?sslmode=...) or keyword=value pairs; it
// may be empty. Settings the DSN leaves out come from the libpq environment
// variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE,
// PGSSLMODE, PGAPPNAME, PGCONNECT_TIMEOUT, ...) as pgx reads them, then
// from libpq's defaults. Errors never include the DSN, which may hold a
// password.
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %s (the string is not shown: it may hold a password)", parseErrorReason(err))
	}
	for _, kv := range sessionDefaults {
		if _, ok := cfg.RuntimeParams[kv[0]]; !ok {
			cfg.RuntimeParams[kv[0]] = kv[1]
		}
	}
	dialer := &net.Dialer{
		Timeout: cfg.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     keepAliveIdle,
			Interval: keepAliveInterval,
			Count:    keepAliveCount,
		},
	}
	cfg.DialFunc = dialer.DialContext
	return cfg, nil
}

// parseErrorReason returns pgx's description of why a connection string
// did not parse, without the connection string: pgx masks passwords in it
// only on a best-effort basis.
func parseErrorReason(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "invalid connection string"
	}
	// The text is "cannot parse `<redacted dsn>`: <reason>[ (<cause>)]".
	// Keep the reason only; the cause may quote pieces of the DSN.
	text := pe.Error()
	if inner := pe.Unwrap(); inner != nil {
		text = strings.TrimSuffix(text, " ("+inner.Error()+")")
	}
	i := strings.LastIndex(text, "`: ")
	if i < 0 {
		return "invalid connection string"
	}
	return text[i+len("`: "):]
}

// Connect opens one session to PostgreSQL with TCP keepalives on and the
// walrus session defaults (see ParseDSN for dsn and the environment). The
// caller closes the connection. A backup must run start to stop on one
// Connect session; if it breaks, the backup is void.
func Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		// pgx's ConnectError names host, port, user and database and the
		// server's or the network's reason; it does not print the password.
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}
