package basebackup

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// backupLockKey is the session-level advisory lock that one backup-push
// holds on the cluster for its whole run ("walrus" and 'B' in ASCII).
const backupLockKey int64 = 0x77616c7275730042

// lockCluster takes the cluster's backup lock on conn, the backup's own
// session, or says who holds it (TRAPS.md 15). PostgreSQL allows several
// non-exclusive backups at once, so walrus guards itself. The lock is a
// session-level advisory lock: it lives exactly as long as the backup's
// session, so a backup-push that was killed never leaves a stale lock
// (PostgreSQL releases it when the session ends), and another walrus never
// needs to break or kill anything.
func lockCluster(ctx context.Context, conn *pgx.Conn) error {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", backupLockKey).Scan(&ok); err != nil {
		return fmt.Errorf("take the backup lock: %w", err)
	}
	if ok {
		return nil
	}
	var (
		pid   int32
		app   string
		since time.Time
		from  string
	)
	err := conn.QueryRow(ctx, `
SELECT a.pid, a.application_name, a.backend_start, coalesce(host(a.client_addr), 'local socket')
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
LIMIT 1`, backupLockKey).Scan(&pid, &app, &since, &from)
	if err != nil {
		return fmt.Errorf("another backup of this cluster is running (its session could not be identified: %v): wait for it to finish", err)
	}
	return fmt.Errorf("another backup of this cluster is running (PostgreSQL session pid %d, application %q, from %s, since %s): wait for it to finish; walrus never stops another backup. If that backup's process is gone and its session lingers, end it with SELECT pg_terminate_backend(%d)",
		pid, app, from, since.UTC().Format(time.RFC3339), pid)
}

// clientCheckInterval makes the server notice within seconds that the
// backup's client died, even while it runs pg_backup_stop, so that the
// backup is aborted and the lock released promptly.
const clientCheckInterval = "5s"

// watchClient sets client_connection_check_interval on the session, best
// effort (the setting exists from PostgreSQL 14, on Linux).
func watchClient(ctx context.Context, conn *pgx.Conn) {
	_, _ = conn.Exec(ctx, "SET client_connection_check_interval = '"+clientCheckInterval+"'")
}
