// Package pg holds what walrus knows about PostgreSQL: LSN and timeline
// types, WAL segment and history file names, the control file, the WAL page
// header, the data page header, relation file names, the connection and the
// non-exclusive backup functions, and what a base backup must skip.
//
// Words used here:
//   - LSN: a byte position in the WAL stream ("X/Y").
//   - timeline: a branch of WAL history; a recovery that ends before the end
//     of WAL starts a new timeline, described by a TLI.history file.
//   - segment: one file of WAL, WALSegSize bytes (16 MiB by default, but read
//     it from the cluster: TRAPS.md 7), named TTTTTTTTXXXXXXXXYYYYYYYY.
//   - page: an 8 KiB block of a relation file; its header starts with the LSN
//     of the last WAL record that changed it.
//   - segment number (SegNo): the index of a segment in the WAL stream,
//     LSN / WALSegSize. A name's XXXXXXXX part counts 4 GiB "logs" and its
//     YYYYYYYY part the segment within the log, so the same SegNo has
//     different names for different segment sizes.
//   - history file: TLI.history, one line per ancestor timeline with the
//     switch point where the lineage left it. A timeline's lineage is its
//     ancestors plus itself; WAL of an ancestor before the switch point is
//     shared.
//   - backup label file: TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup, written to
//     the archive by pg_backup_stop; also backup_label, the file of the same
//     content a base backup must contain, which tells recovery where to start.
//   - partial segment: a .partial file, the incomplete last segment of a
//     timeline abandoned by a promotion.
//   - control file: global/pg_control, the cluster's identity (system
//     identifier), its fixed sizes and its latest checkpoint. Its data is
//     protected by a CRC-32C; a read can be torn while PostgreSQL rewrites it.
//
// A backup session (BackupStart ... BackupStop) belongs to its connection:
// both must run on the one *pgx.Conn that Connect returned, and if that
// session ends in between, the backup is void.
//
// Physical constants (segment size, block size) are read from the cluster
// and passed as values; nothing here is a mutable global.
package pg
