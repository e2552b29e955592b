package pgtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pollInterval is how often the Wait helpers ask the server.
const pollInterval = 100 * time.Millisecond

// connect opens a session to database db as postgres.
func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSNFor(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.DSNFor(db), err)
	}
	return conn, nil
}

// Conn opens a session to the postgres database as postgres, closed when
// the test ends. A *pgx.Conn is for one goroutine at a time.
func (c *Cluster) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	return c.ConnTo(t, "postgres")
}

// ConnTo is Conn for database db.
func (c *Cluster) ConnTo(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	conn, err := c.connect(testContext(t), db)
	if err != nil {
		t.Fatalf("pgtest: %v\n--- server log (last 20 lines) ---\n%s", err, c.LogTail(20))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// Exec runs sql (with $1... args, or several statements without args) in
// the postgres database, on a session of its own, and fails the test on an
// error.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := testContext(t)
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// Query runs sql in the postgres database and returns every row as the
// text PostgreSQL prints for each column; NULL is "".
func (c *Cluster) Query(t testing.TB, sql string, args ...any) [][]string {
	t.Helper()
	rows, err := c.query(testContext(t), "postgres", sql, args...)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return rows
}

// QueryRow runs sql in the postgres database and returns the first column
// of its only row as text (NULL is ""). It fails the test unless there is
// exactly one row.
func (c *Cluster) QueryRow(t testing.TB, sql string, args ...any) string {
	t.Helper()
	rows := c.Query(t, sql, args...)
	if len(rows) != 1 || len(rows[0]) == 0 {
		t.Fatalf("pgtest: query %q: got %d rows, want 1", sql, len(rows))
	}
	return rows[0][0]
}

// query runs sql with the simple protocol, so that every value comes back
// as PostgreSQL's text.
func (c *Cluster) query(ctx context.Context, db, sql string, args ...any) ([][]string, error) {
	conn, err := c.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	return queryText(ctx, conn, sql, args...)
}

func queryText(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([][]string, error) {
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", sql, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %q: %w", sql, err)
	}
	return out, nil
}

// WaitPromoted waits until the server accepts connections and
// pg_is_in_recovery() is false. It fails the test with the tail of the
// server log if that takes longer than timeout or if the server exits.
func (c *Cluster) WaitPromoted(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		rows, err := c.query(testContext(t), "postgres", "SELECT pg_is_in_recovery()")
		if err == nil && len(rows) == 1 && rows[0][0] == "f" {
			return
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("still in recovery")
		}
		if !fileExists(filepath.Join(c.dataDir, "postmaster.pid")) {
			t.Fatalf("pgtest: wait for promotion: the server exited (%v)\n--- server log (last 40 lines) ---\n%s", last, c.LogTail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: wait for promotion: not promoted after %v (%v)\n--- server log (last 40 lines) ---\n%s", timeout, last, c.LogTail(40))
		}
		sleep(t, pollInterval)
	}
}

// WaitArchived waits until pg_stat_archiver reports walName, or a file
// that sorts after it, as archived. It fails the test with the tail of the
// server log as soon as the archiver reports a failure more recent than
// its last success, or after timeout.
func (c *Cluster) WaitArchived(t testing.TB, walName string, timeout time.Duration) {
	t.Helper()
	const q = `SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''),
       coalesce(last_failed_time > last_archived_time, last_failed_time IS NOT NULL)
FROM pg_stat_archiver`
	deadline := time.Now().Add(timeout)
	for {
		rows, err := c.query(testContext(t), "postgres", q)
		if err != nil {
			t.Fatalf("pgtest: wait for %s to be archived: %v\n--- server log (last 40 lines) ---\n%s", walName, err, c.LogTail(40))
		}
		archived, failed, failing := rows[0][0], rows[0][1], rows[0][2] == "t"
		if archivedAtLeast(archived, walName) {
			return
		}
		if failing {
			t.Fatalf("pgtest: wait for %s to be archived: archiving %s failed (last archived: %q)\n--- server log (last 40 lines) ---\n%s",
				walName, failed, archived, c.LogTail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: wait for %s to be archived: not archived after %v (last archived: %q)\n--- server log (last 40 lines) ---\n%s",
				walName, timeout, archived, c.LogTail(40))
		}
		sleep(t, pollInterval)
	}
}

// archivedAtLeast reports whether the archiver's last archived file
// archived is want or a later one. Names compare as strings, which orders
// segments by timeline and position; when want is a segment, only a
// segment, backup label or partial file (24 hex digits first) can satisfy
// it, not a history file.
func archivedAtLeast(archived, want string) bool {
	const segLen = 24
	if len(want) == segLen {
		return len(archived) >= segLen && archived[:segLen] >= want
	}
	return archived >= want
}

// sleep waits d, or less if the test's context ends.
func sleep(t testing.TB, d time.Duration) {
	select {
	case <-time.After(d):
	case <-testContext(t).Done():
	}
}

// digestQuery is the digest of a table: its row count and the md5 of its
// rows' text, one per line, in C-collation order. The alias is unusual so
// that it cannot name a column.
const digestQuery = `SELECT count(*)::text || ':' || coalesce(md5(string_agg(pgtest_row::text, E'\n' ORDER BY pgtest_row::text COLLATE "C")), '')
FROM %s AS pgtest_row`

// TableDigest returns a digest of the content of table (an SQL name as
// written in a query, e.g. "t" or "myschema.\"T\"") in the postgres
// database: "rows:md5". Equal content gives equal digests whatever the
// physical order.
func (c *Cluster) TableDigest(t testing.TB, table string) string {
	t.Helper()
	return c.QueryRow(t, fmt.Sprintf(digestQuery, table))
}

// AllTableDigests returns TableDigest of every permanent user table and
// populated materialized view of database db, keyed by "schema.table"
// (quoted where SQL needs it). Unlogged and temporary tables are left out:
// a restore legitimately empties them.
func (c *Cluster) AllTableDigests(t testing.TB, db string) map[string]string {
	t.Helper()
	ctx := testContext(t)
	conn, err := c.connect(ctx, db)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(context.Background())
	tables, err := queryText(ctx, conn, `
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' AND c.relispopulated
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY 1`)
	if err != nil {
		t.Fatalf("pgtest: list tables of %s: %v", db, err)
	}
	digests := make(map[string]string, len(tables))
	for _, row := range tables {
		d, err := queryText(ctx, conn, fmt.Sprintf(digestQuery, row[0]))
		if err != nil {
			t.Fatalf("pgtest: digest %s.%s: %v", db, row[0], err)
		}
		digests[row[0]] = d[0][0]
	}
	return digests
}

// Pgbench runs pgbench as the postgres user against the postgres database
// of c (e.g. Pgbench(t, c, "-i", "-s", "1") or Pgbench(t, c, "-t", "100"))
// and returns its output; it fails the test if pgbench fails. args are
// options only: Pgbench adds host, port, user and the database name.
func Pgbench(t testing.TB, c *Cluster, args ...string) string {
	t.Helper()
	full := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port()), "-U", "postgres"}, args...)
	full = append(full, "postgres")
	out, err := RunAsPostgres(t, "pgbench", full...)
	if err != nil {
		t.Fatalf("pgtest: pgbench: %v\n%s", err, out)
	}
	return string(out)
}
