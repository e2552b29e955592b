package pg

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Info describes a running server, as ServerInfo reads it.
type Info struct {
	// VersionNum is server_version_num, e.g. 150004.
	VersionNum int
	// SystemIdentifier identifies the cluster (pg_control_system()).
	SystemIdentifier uint64
	// DataDirectory is the data_directory setting.
	DataDirectory string
	// WALSegSize is the WAL segment size in bytes, from pg_control.
	WALSegSize uint64
	// DataChecksums is whether data pages carry checksums.
	DataChecksums bool
	// InRecovery is pg_is_in_recovery(): the server is a standby or is
	// replaying archived WAL.
	InRecovery bool
	// Timeline is the timeline WAL is written on; during recovery, the
	// timeline of the last restartpoint (PostgreSQL 15 has no SQL function
	// for the timeline being replayed).
	Timeline TimelineID
	// CurrentLSN is pg_current_wal_insert_lsn(), or during recovery
	// pg_last_wal_replay_lsn().
	CurrentLSN LSN
}

// ServerInfo reads what walrus needs to know about the server conn is
// connected to. It needs a superuser, or a role that may read
// data_directory (pg_read_all_settings) and run the pg_control_*
// functions.
func ServerInfo(ctx context.Context, conn *pgx.Conn) (Info, error) {
	const q = `
SELECT current_setting('server_version_num')::int,
       s.system_identifier,
       current_setting('data_directory'),
       i.bytes_per_wal_segment::bigint,
       i.data_page_checksum_version,
       pg_is_in_recovery(),
       c.timeline_id::bigint,
       CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_insert_lsn()) END,
       coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END, '0/0')::text
FROM pg_control_system() s, pg_control_init() i, pg_control_checkpoint() c`
	var (
		info                Info
		sysID, segSize, tli int64
		checksumVersion     int32
		walFile, lsn        string
	)
	err := conn.QueryRow(ctx, q).Scan(&info.VersionNum, &sysID, &info.DataDirectory, &segSize,
		&checksumVersion, &info.InRecovery, &tli, &walFile, &lsn)
	if err != nil {
		return Info{}, fmt.Errorf("read server info: %w", err)
	}
	info.SystemIdentifier = uint64(sysID)
	info.WALSegSize = uint64(segSize)
	if !ValidWALSegSize(info.WALSegSize) {
		return Info{}, fmt.Errorf("read server info: invalid WAL segment size %d", segSize)
	}
	info.DataChecksums = checksumVersion != 0
	info.Timeline = TimelineID(tli)
	if walFile != "" {
		if info.Timeline, err = timelineOfWALFile(walFile); err != nil {
			return Info{}, fmt.Errorf("read server info: %w", err)
		}
	}
	if info.CurrentLSN, err = ParseLSN(lsn); err != nil {
		return Info{}, fmt.Errorf("read server info: %w", err)
	}
	return info, nil
}

// timelineOfWALFile returns the timeline in a segment name that
// pg_walfile_name returned.
func timelineOfWALFile(name string) (TimelineID, error) {
	if len(name) < 8 {
		return 0, fmt.Errorf("parse WAL file name %q: too short", name)
	}
	tli, ok := parseUpperHex32(name[:8])
	if !ok || tli == 0 {
		return 0, fmt.Errorf("parse WAL file name %q: bad timeline", name)
	}
	return TimelineID(tli), nil
}

// BackupStart starts a non-exclusive base backup on conn
// (pg_backup_start). fast asks for an immediate checkpoint instead of a
// spread one. It returns the backup's start LSN and timeline. The backup
// belongs to this session: call BackupStop on the same conn, and if the
// session ends first the backup is void. The label must be one line.
func BackupStart(ctx context.Context, conn *pgx.Conn, label string, fast bool) (LSN, TimelineID, error) {
	if strings.ContainsAny(label, "\r\n") {
		return 0, 0, fmt.Errorf("start backup %q: the label must be one line", label)
	}
	var lsnText string
	if err := conn.QueryRow(ctx, `SELECT pg_backup_start($1, $2)::text`, label, fast).Scan(&lsnText); err != nil {
		return 0, 0, fmt.Errorf("start backup %q: %w", label, err)
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return 0, 0, fmt.Errorf("start backup %q: %w", label, err)
	}
	// On a primary the start timeline is the insert timeline; on a standby
	// pg_walfile_name is not available and the backup starts at the last
	// restartpoint, whose timeline pg_control holds.
	var walFile string
	var tli int64
	const q = `
SELECT CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name($1::text::pg_lsn) END,
       (pg_control_checkpoint()).timeline_id::bigint`
	if err := conn.QueryRow(ctx, q, lsn.String()).Scan(&walFile, &tli); err != nil {
		return 0, 0, fmt.Errorf("start backup %q: read timeline: %w", label, err)
	}
	timeline := TimelineID(tli)
	if walFile != "" {
		if timeline, err = timelineOfWALFile(walFile); err != nil {
			return 0, 0, fmt.Errorf("start backup %q: %w", label, err)
		}
	}
	return lsn, timeline, nil
}

// StopResult is what pg_backup_stop returns.
type StopResult struct {
	// LSN is the backup's stop LSN: replay must reach it for the backup to
	// be consistent.
	LSN LSN
	// Label is the content of the backup_label file the backup must contain.
	Label string
	// TablespaceMap is the content of the tablespace_map file, empty when
	// the cluster has no tablespaces.
	TablespaceMap string
}

// BackupStop ends the non-exclusive backup started on conn
// (pg_backup_stop). With waitForArchive it returns only when PostgreSQL has
// archived every WAL segment the backup needs (with archive_mode on; it may
// wait as long as archiving fails, until ctx ends).
func BackupStop(ctx context.Context, conn *pgx.Conn, waitForArchive bool) (StopResult, error) {
	var (
		lsnText, label string
		spcmap         *string
	)
	err := conn.QueryRow(ctx, `SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop($1)`, waitForArchive).
		Scan(&lsnText, &label, &spcmap)
	if err != nil {
		return StopResult{}, fmt.Errorf("stop backup: %w", err)
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return StopResult{}, fmt.Errorf("stop backup: %w", err)
	}
	r := StopResult{LSN: lsn, Label: label}
	if spcmap != nil {
		r.TablespaceMap = *spcmap
	}
	return r, nil
}

// BackupLabel is the parsed content of a backup_label file.
type BackupLabel struct {
	// StartLSN is the START WAL LOCATION: where replay begins.
	StartLSN LSN
	// StartWALFile is the segment that holds StartLSN.
	StartWALFile string
	// CheckpointLSN is the CHECKPOINT LOCATION.
	CheckpointLSN LSN
	// Method is the BACKUP METHOD ("streamed").
	Method string
	// From is BACKUP FROM: "primary" or "standby".
	From string
	// StartTime is START TIME as PostgreSQL printed it.
	StartTime string
	// Label is the label given to pg_backup_start.
	Label string
	// StartTimeline is the START TIMELINE.
	StartTimeline TimelineID
}

// ParseBackupLabel parses a backup_label file as pg_backup_stop returns
// it. START WAL LOCATION, CHECKPOINT LOCATION and START TIMELINE are
// required; unknown lines are ignored.
func ParseBackupLabel(text string) (BackupLabel, error) {
	var (
		l                                BackupLabel
		haveStart, haveCheckpoint, haveT bool
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "START WAL LOCATION":
			// "0/2000028 (file 000000010000000000000002)"
			lsn, rest, _ := strings.Cut(value, " ")
			if l.StartLSN, err = ParseLSN(lsn); err != nil {
				return BackupLabel{}, fmt.Errorf("parse backup label: %w", err)
			}
			rest = strings.TrimSuffix(strings.TrimPrefix(rest, "(file "), ")")
			l.StartWALFile = rest
			haveStart = true
		case "CHECKPOINT LOCATION":
			if l.CheckpointLSN, err = ParseLSN(value); err != nil {
				return BackupLabel{}, fmt.Errorf("parse backup label: %w", err)
			}
			haveCheckpoint = true
		case "BACKUP METHOD":
			l.Method = value
		case "BACKUP FROM":
			l.From = value
		case "START TIME":
			l.StartTime = value
		case "LABEL":
			l.Label = value
		case "START TIMELINE":
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil || n == 0 {
				return BackupLabel{}, fmt.Errorf("parse backup label: bad START TIMELINE %q", value)
			}
			l.StartTimeline = TimelineID(n)
			haveT = true
		}
	}
	if !haveStart || !haveCheckpoint || !haveT {
		return BackupLabel{}, fmt.Errorf("parse backup label: missing START WAL LOCATION, CHECKPOINT LOCATION or START TIMELINE")
	}
	return l, nil
}

// Tablespace is a user tablespace of the cluster.
type Tablespace struct {
	// OID names the tablespace's link in PGDATA/pg_tblspc.
	OID uint32
	// Name is spcname.
	Name string
	// Location is pg_tablespace_location(): the link's target, or a path
	// relative to PGDATA for an in-place tablespace.
	Location string
}

// Tablespaces lists the user tablespaces (not pg_default and pg_global),
// ordered by OID.
func Tablespaces(ctx context.Context, conn *pgx.Conn) ([]Tablespace, error) {
	rows, err := conn.Query(ctx, `
SELECT oid, spcname::text, pg_tablespace_location(oid)
FROM pg_tablespace
WHERE spcname NOT IN ('pg_default', 'pg_global')
ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tablespace, error) {
		var t Tablespace
		err := row.Scan(&t.OID, &t.Name, &t.Location)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return ts, nil
}

// SwitchWAL forces a switch to a new WAL segment (pg_switch_wal), so that
// the current one can be archived. It returns the LSN PostgreSQL returns
// (the end of the switch record, or the current position if nothing was
// written since the last switch) and pg_walfile_name of it: the segment the
// switch completed.
func SwitchWAL(ctx context.Context, conn *pgx.Conn) (LSN, string, error) {
	var lsnText, name string
	err := conn.QueryRow(ctx, `SELECT lsn::text, pg_walfile_name(lsn) FROM pg_switch_wal() AS lsn`).Scan(&lsnText, &name)
	if err != nil {
		return 0, "", fmt.Errorf("switch WAL: %w", err)
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return 0, "", fmt.Errorf("switch WAL: %w", err)
	}
	return lsn, name, nil
}

// CreateRestorePoint writes a named restore point into WAL
// (pg_create_restore_point) and returns its LSN.
func CreateRestorePoint(ctx context.Context, conn *pgx.Conn, name string) (LSN, error) {
	var lsnText string
	if err := conn.QueryRow(ctx, `SELECT pg_create_restore_point($1)::text`, name).Scan(&lsnText); err != nil {
		return 0, fmt.Errorf("create restore point %q: %w", name, err)
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return 0, fmt.Errorf("create restore point %q: %w", name, err)
	}
	return lsn, nil
}

// WALFileName returns pg_walfile_name(lsn): the segment holding lsn on the
// server's current timeline, or at an exact segment boundary the segment
// that ends there. It fails on a server in recovery.
func WALFileName(ctx context.Context, conn *pgx.Conn, lsn LSN) (string, error) {
	var name string
	if err := conn.QueryRow(ctx, `SELECT pg_walfile_name($1::text::pg_lsn)`, lsn.String()).Scan(&name); err != nil {
		return "", fmt.Errorf("get WAL file name of %s: %w", lsn, err)
	}
	return name, nil
}

// ArchiverFailure describes the archiver's most recent failure, if it is
// newer than its last success, as a sentence to append to an error ("" when
// the archiver is not failing or cannot be asked).
func ArchiverFailure(ctx context.Context, conn *pgx.Conn) string {
	var failed int64
	var wal string
	var at *time.Time
	err := conn.QueryRow(ctx, `SELECT failed_count, coalesce(last_failed_wal, ''), last_failed_time
		FROM pg_stat_archiver
		WHERE last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)`).Scan(&failed, &wal, &at)
	if err != nil || at == nil {
		return ""
	}
	return fmt.Sprintf("; PostgreSQL's archive_command is failing (%d failures, last for %s at %s): see the server log, and check that archive_command can write to the repository", failed, wal, at.UTC().Format(time.RFC3339))
}
