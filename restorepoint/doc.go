// Package restorepoint creates named restore points, keeps their catalog
// under restore-points/ in the repository, and resolves a recovery target
// (a restore point, a time, an LSN, immediate, latest) to the backup a
// restore must start from.
//
// Words:
//   - restore point: a named WAL record written by pg_create_restore_point;
//     recovery can stop exactly there. backup-fetch stops by the LSN
//     recorded for it (the end of its record; recovery_target_lsn,
//     exclusive) on its timeline, not by its name, since a second record
//     of the name may precede it in WAL.
//   - target: where recovery stops. The backup to restore is the newest one
//     that became consistent (its finish LSN, or finish time) at or before
//     the target, on the target's timeline lineage (TRAPS.md 26).
//
// Invariants:
//   - A restore point record exists in the repository only once the WAL
//     segment holding the restore point is archived there; its name is
//     unique in the repository (TRAPS.md 27: PostgreSQL stops at the first
//     match it replays).
//   - Only backups and restore points of the cluster walrus.json names
//     are restored or chosen; one copied from another cluster's repository
//     is refused (ErrForeign).
//   - Resolving a target checks that every WAL file from the chosen
//     backup's start to the target is in the repository before anything is
//     written.
package restorepoint
