// Package basebackup takes base backups of a running PostgreSQL cluster
// into the repository (Push, behind backup-push) and restores them into a
// new data directory (Fetch, behind backup-fetch). The manifest format is
// documented in package catalog.
//
// Words used here:
//   - data directory (PGDATA): the cluster's files; tablespaces live
//     elsewhere, reached through the links pg_tblspc/<oid>.
//   - part: one object of a backup, a tar stream of whole files cut at
//     about part_size bytes of plaintext, compressed, then encrypted,
//     stored under backups/<name>/parts/part_NNNNN.tar.<codec>[.age].
//   - manifest: backups/<name>/manifest.json (package catalog).
//   - backup session: the one PostgreSQL connection that runs
//     pg_backup_start and pg_backup_stop; the backup belongs to it.
//
// # Push, step by step
//
//  1. Connect (pgx, TCP keepalives) and keep that one session to the end
//     (TRAPS.md 9). Refuse a server that is not PostgreSQL 15, has
//     archive_mode off, or whose data directory is not PGDATA.
//  2. Check the repository identity (system identifier, encryption).
//  3. Take the cluster's backup lock: a session-level advisory lock on the
//     backup session (TRAPS.md 15). A second backup-push of the cluster
//     fails at once and names the session holding the lock; a killed
//     backup-push never leaves a stale lock, because PostgreSQL releases
//     it with the session. client_connection_check_interval is set so the
//     server notices a dead client even during pg_backup_stop.
//  4. pg_backup_start (immediate checkpoint unless SpreadCheckpoint). The
//     name is base_<UTC start time>_<start WAL segment>, with _2, _3... if
//     anything is stored under it already; parts and manifest are
//     create-only, so no backup can overwrite another (TRAPS.md 10).
//  5. Walk PGDATA and every tablespace, applying pg.BackupRule by exact
//     path (TRAPS.md 13): excluded contents, kept empty directories,
//     tablespace links recorded with their targets, other symbolic links
//     followed and their targets recorded.
//  6. Upload: Concurrency workers each fill a tar part with whole files and
//     stream it through compress → encrypt → Store.Put as it is produced;
//     a part is cut once it reaches PartSize. Each file's CRC-32C is
//     computed as it is read. A file that vanished is left out; one that
//     shrank is stored as read (its tar entry zero-padded, the manifest
//     recording the bytes read); any other read error fails the backup.
//  7. Read global/pg_control last, with a CRC check and retries of a torn
//     read (TRAPS.md 12), into a part of its own.
//  8. pg_backup_stop(wait_for_archive => true); its backup_label and
//     tablespace_map go into the manifest.
//  9. Check that every WAL segment from the start to the stop segment (and
//     the timeline's history file) is in the repository (TRAPS.md 14).
//  10. Write the manifest, create-only. Only now does the backup exist.
//
// On any failure or cancellation before step 10 there is no manifest, so
// no backup; closing the session aborts the server's backup; the parts
// already stored are deleted, best effort (they are invisible anyway).
//
// # Fetch, step by step
//
//  1. Resolve the backup (a name or LATEST) and read its manifest, which
//     catalog validates: clean relative paths, parents that are
//     directories, symbolic links only as tablespace links.
//  2. Plan the targets: Dest, and each tablespace's directory (its
//     original location, or a new one from the tablespace map, by OID or
//     location). Each must be absent or empty, none inside another;
//     otherwise nothing is touched.
//  3. Stat every part of the manifest; a missing part is an error naming
//     it, before anything is written (TRAPS.md 11).
//  4. Create the directories and tablespace links; download parts in
//     parallel; every tar entry must be a regular file that the manifest
//     places in that part (anything else is refused); each file is
//     written with O_EXCL|O_NOFOLLOW, checked against its size and
//     CRC-32C, chmod-ed, fsynced; each part's SHA-256 is checked.
//  5. Write backup_label, tablespace_map (with the restored locations),
//     walrus-restore.yaml when needed, and the recovery settings appended
//     to postgresql.auto.conf; fsync directories, deepest first.
//  6. Last, each fsynced with its directory: recovery.signal, PG_VERSION,
//     global/pg_control (TRAPS.md 28). A restore that fails before removes
//     those that exist and says the directory is incomplete, so PostgreSQL
//     never starts a half-restored directory.
//
// Memory stays bounded whatever the database size: a fixed number of parts
// in flight, each with fixed buffers; only the manifest (one entry per
// file) grows with the number of files.
package basebackup
