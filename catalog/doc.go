// Package catalog reads the repository: backup manifests, the list of
// backups, resolving a backup by name or as LATEST, and the chain of a
// delta backup (ReadChain); the continuity of the WAL archive (VerifyWAL);
// reading a backup back and checking it against its manifest
// (VerifyBackups, sharing ReadPart and FileSources with restores);
// retention: planning and executing a delete (PlanDeletion,
// DeletionPlan.Execute) and the permanent mark (SetPermanent).
//
// Words used here:
//   - backup: a copy of a cluster's data directory taken between
//     pg_backup_start and pg_backup_stop. It is consistent only after WAL
//     replay from its start LSN to at least its finish LSN.
//   - full backup: every file is stored in the backup's own parts.
//   - delta backup: based on an older backup (delta_from); relation files
//     are stored as increments (the changed pages) or marked unchanged, so
//     a restore needs the chain down to its root full backup (delta_root).
//   - part: one object of a backup's data, backups/<name>/parts/<part>.<codec>[.age]:
//     a tar stream of whole files, compressed, then encrypted.
//   - manifest: backups/<name>/manifest.json, the source of truth for what a
//     backup holds (TRAPS.md 11): a restore is planned from it, never from a
//     listing of the parts.
//
// # Manifest format (format_version 1)
//
// manifest.json is plaintext JSON (so that listing and delta planning need
// no decryption key). It holds paths, sizes, modes and checksums, never
// file contents; on an encrypted repository it is authenticated by an
// encrypted copy of its SHA-256 beside it (auth.go). Top-level keys:
//
//	format_version     1
//	name               the backup's name, e.g. base_20261121T193012Z_000000010000000000000004
//	kind               "full" or "delta"
//	delta_from         null for a full backup; the base backup's name for a delta
//	delta_root         null for a full backup; the chain's root full backup
//	system_identifier  the cluster's system identifier, as a decimal string
//	pg_version         server_version_num, e.g. 150004
//	timeline           the timeline the backup started on
//	start_lsn          "X/Y": replay starts here (pg_backup_start)
//	finish_lsn         "X/Y": replay must reach here (pg_backup_stop)
//	start_wal_file     first WAL segment needed
//	finish_wal_file    last WAL segment needed; both were in the repository
//	                   before the manifest was written (TRAPS.md 14)
//	start_time         RFC 3339, UTC, when pg_backup_start returned
//	finish_time        RFC 3339, UTC, when the WAL was confirmed archived
//	wal_segment_size   bytes
//	data_checksums     whether pages carry checksums
//	block_size         the cluster's page size; required in a delta
//	codec              compression codec name of the parts
//	encrypted          whether the parts are age-encrypted
//	data_size          sum of the restored sizes of all files
//	stored_size        sum of the stored sizes of this backup's parts
//	delta_size         a delta's own data: sum of its whole files' sizes
//	                   and of its increments' stored_size (absent in a
//	                   full backup)
//	permanent          retention never removes a permanent backup
//	backup_label       the backup_label text pg_backup_stop returned
//	tablespace_map     the tablespace_map text ("" without tablespaces)
//	tablespaces        [{oid, name, location}] user tablespaces
//	files              one object per directory, tablespace link and file,
//	                   ordered by path
//	parts              one object per data object
//
// A files entry:
//
//	path    PGDATA-relative, slash-separated, clean; tablespace contents
//	        are under pg_tblspc/<oid>/PG_15_<catversion>/...
//	kind    "dir", "symlink" (only pg_tblspc/<oid>, to link),
//	        "whole" (stored in part), "increment" (a relation file's
//	        changed pages, stored in part in the format of package delta,
//	        over the same path in delta_from) or "unchanged" (no data:
//	        the same path in delta_from, same size, no page changed);
//	        the last two only in a delta
//	size    bytes once restored (a file that shrank while being read
//	        records what was read; its tar entry is zero-padded to the
//	        size announced in the tar header, and the padding is not
//	        restored)
//	mode    permission bits, octal string ("0600")
//	mtime   modification time, RFC 3339
//	link    for "symlink" the target; for an entry reached through a
//	        symbolic link inside PGDATA (stored as what it points to), the
//	        link's target, for the record
//	source  for "unchanged": the nearest older backup of the chain that
//	        stores data for the path (whole or increment)
//	part    the part whose tar stream holds the file or increment, under
//	        its path
//	offset  offset of the file's tar header in the part's plaintext
//	crc32c  CRC-32C (Castagnoli) of the tar entry's bytes, 8 hex digits:
//	        the restored content for "whole", the increment for
//	        "increment"
//	stored_size  for "increment": its size in bytes (36 + blocks ×
//	        (4 + block_size))
//	blocks  for "increment": the number of pages it holds
//
// A parts entry: name ("part_00001.tar"), key (the full object key),
// raw_size (plaintext tar bytes), stored_size (object bytes),
// stored_sha256 (hex SHA-256 of the stored object's bytes). Format 1
// manifests recorded sha256 (hex SHA-256 of the plaintext tar stream)
// instead; they are still read and verified. Hashing the stored bytes
// costs a tenth of hashing the plaintext with lz4 and binds the object as
// firmly; every file keeps its CRC-32C of plaintext.
//
// # Invariants
//
//   - A manifest is written once, create-only, after every part is stored
//     and the WAL from start_wal_file to finish_wal_file is in the
//     repository. Its presence is what makes a backup exist.
//   - Every file of a restore is listed, with its size and checksum; every
//     part with its sizes and checksum. A restore checks all of them.
//   - Validate refuses any manifest that could make a restore write outside
//     its target: absolute paths, "." or ".." components, entries under a
//     symbolic link other than a tablespace link, symbolic links anywhere
//     but pg_tblspc/<oid>. Nor absurd sizes: the files and increments a
//     part holds fit in its raw_size, a relation file (increment or
//     unchanged) holds at most 2^32 pages, the sizes add up without
//     overflow; so a restore refuses them before it writes anything.
//   - Backups are ordered by (system identifier, timeline, start LSN) read
//     from the manifests, never by names or object times (TRAPS.md 24).
//   - A delta's chain (delta_from, then its delta_from, ...) ends at the
//     full backup delta_root; every link is of the same system, finished
//     before the backup based on it started, and has the same block size.
//     A restore of a delta is planned from the chain's manifests alone:
//     following a path down the chain, each "unchanged" entry leads to the
//     backup its source names, each "increment" to the next link, until a
//     "whole" entry or an increment that holds every page of the file.
//   - permanent: a backup whose manifest says "permanent": true. Retention
//     never deletes it, nor the backups of its chain, nor the WAL each of
//     them needs from its start to its finish. SetPermanent is the only
//     rewrite of a manifest: the same bytes but for that value, replaced
//     atomically.
//
// # Retention
//
// A delete removes, in this order, so that it can stop at any point and
// leave only backups that can be restored (TRAPS.md 23): for each backup,
// newest first, a tombstone backups/<name>/deleting then the manifest
// (from then on the backup is not listed); then the backups' data, each
// tombstone last; then WAL, oldest first; then restore points. A backup
// directory without a manifest is deleted by any later delete when it
// holds a tombstone, and otherwise only once nothing was written to it for
// a day (it may be a backup in progress, whose manifest comes last).
// Running the same delete again after an interruption finishes it: the
// kept backups, and so the WAL and restore points to delete, are planned
// from the manifests, which are the same. WAL is never expired in a
// repository without a backup (TRAPS.md 25); .history files are never
// deleted.
package catalog
