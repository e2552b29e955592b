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
//   - delta: a backup based on an older one (its base); its relation
//     files are stored as increments (package delta) or as unchanged.
//   - chain: a delta, its base, that backup's base, ... down to the full
//     backup at the root. A restore of a delta reads the whole chain.
//   - relation file: a segment file of a relation fork, recognised by its
//     exact path (pg.ParseRelFilePath): base/, global/, tablespaces.
//
// # Push, step by step
//
//  1. Connect (pgx, TCP keepalives) and keep that one session to the end
//     (TRAPS.md 9). While the files are copied, pg.WatchSession checks it
//     every SessionCheck (5 s) and a lost session fails the backup at
//     once instead of after the copy. Refuse a server that is not PostgreSQL 15, has
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
//  5. Full or delta (chooseBase): unless Full, the backup is a delta of
//     the newest backup of the cluster (or of DeltaFrom) when that base is
//     usable: same system, major version, page size and data_checksums
//     state; its chain complete in the repository; its timeline the
//     current one, or an ancestor that the current lineage left after the
//     base finished, per the .history file in the repository (TRAPS.md
//     21); and, unless DeltaFrom is given, its chain shorter than
//     DeltaMaxSteps deltas. Otherwise the backup is full and Infof says
//     why.
//  6. Walk PGDATA and every tablespace, applying pg.BackupRule by exact
//     path (TRAPS.md 13): excluded contents, kept empty directories,
//     tablespace links recorded with their targets, other symbolic links
//     followed and their targets recorded.
//  7. Upload: Concurrency workers each fill a tar part with files and
//     stream it through compress → encrypt → Store.Put as it is produced;
//     a part is cut once it reaches PartSize, and started only when a file
//     needs one. Reading (and checking pages), checksumming the part,
//     compressing and storing run on goroutines of their own, and each
//     part compresses several blocks at once (compress.WithConcurrency),
//     so that one large file (a 1 GiB relation segment is one tar entry)
//     uses every core. Each file's CRC-32C is computed as it is read. A file
//     that vanished is left out; one that shrank is stored as read (its
//     tar entry zero-padded, the manifest recording the bytes read); any
//     other read error fails the backup. In a delta, a main-fork relation
//     file that the base holds with a size no larger is read by
//     delta.SelectPages (threshold: the base's START LSN, TRAPS.md 16) and
//     stored as an increment of the selected pages, or, when none is
//     selected and the size is the base's, as an "unchanged" manifest
//     entry only. The file is read once: the pages SelectPages may select
//     are kept for delta.WriteIncrement (up to 16 MiB for the whole
//     backup; beyond, they are read again). Everything else is stored whole: other files, the fsm,
//     vm and init forks, relation files absent from the base or shorter
//     than there (TRAPS.md 17, 18). The pages of every relation file are
//     verified as they are read when the cluster has data checksums: a
//     page failing twice (not explained as torn by a concurrent write,
//     TRAPS.md 22) fails the backup after the upload, naming file and
//     block, unless IgnoreChecksumErrors.
//  8. Read global/pg_control last, with a CRC check and retries of a torn
//     read (TRAPS.md 12), into a part of its own.
//  9. pg_backup_stop(wait_for_archive => true); its backup_label and
//     tablespace_map go into the manifest. A page read with an LSN past the
//     LSN pg_backup_stop returns is impossible for this cluster: it was
//     stored as read and is reported in Result.Warnings.
//  10. Check that every WAL segment from the start to the stop segment (and
//     the timeline's history file) is in the repository (TRAPS.md 14).
//  11. Write the manifest, create-only. Only now does the backup exist.
//
// On any failure or cancellation before step 10 there is no manifest, so
// no backup; closing the session aborts the server's backup; the parts
// already stored are deleted, best effort (they are invisible anyway).
//
// # Fetch, step by step
//
//  1. Resolve the backup (a name or LATEST) and read its manifest, which
//     catalog validates: clean relative paths, parents that are
//     directories, symbolic links only as tablespace links. For a delta,
//     read the manifests of its whole chain (catalog.ReadChain) and plan,
//     from them alone, which copy of which file is read (planChain, see
//     chain.go); a missing or inconsistent link is an error naming it.
//  2. Plan the targets: Dest, and each tablespace's directory (its
//     original location, or a new one from the tablespace map, by OID or
//     location). Each must be absent or empty, none inside another;
//     otherwise nothing is touched.
//  3. Stat every part of every manifest of the chain; a missing part is an
//     error naming it and its backup, before anything is written
//     (TRAPS.md 11).
//  4. Create the directories and tablespace links (the newest manifest is
//     the list: files deleted between backups do not appear); download
//     parts in parallel, the backup restored first, then the parts of
//     older links that hold a copy still needed; every tar entry must be
//     a regular file that its manifest places in that part (anything else
//     is refused); each file is created with O_EXCL|O_NOFOLLOW and its
//     size preallocated, its increments applied newest first with a
//     delta.BlockSet so that every page is written once, from the newest
//     backup holding it (TRAPS.md 20), adjacent pages in one write,
//     truncated to its size in the backup restored, chmod-ed; each tar
//     entry is checked against its size and CRC-32C, each increment
//     against its own checksums, each part against its SHA-256. A part's
//     files are written by a goroutine of their own (writeBehind) while
//     the part is decoded, and the kernel is asked to start writing them
//     back as they are written. Once every part is restored, every file
//     is fsynced, once, 16 at a time.
//  5. Write backup_label, tablespace_map (with the restored locations),
//     walrus-restore.yaml when needed, and the recovery settings appended
//     to postgresql.auto.conf; fsync directories, deepest first.
//  6. Last, each fsynced with its directory: recovery.signal, PG_VERSION,
//     global/pg_control (TRAPS.md 28). A restore that fails before removes
//     those that exist and says the directory is incomplete, so PostgreSQL
//     never starts a half-restored directory.
//
// Memory stays bounded whatever the database size: a fixed number of parts
// in flight, each with fixed buffers (a push: a few compression blocks per
// part, and the pages a delta keeps, at most 16 MiB; a restore: four
// 256 KiB write buffers per part); only the manifests (one entry per file)
// grow with the number of files, and, while a delta chain is restored,
// one bit per page of each file restored from several copies, and the
// list of files to fsync.
package basebackup
