// Package restorepoint creates named restore points, keeps their catalog
// under restore-points/ in the repository, and resolves a recovery target
// (a restore point, a time, an LSN, immediate, latest) to the backup a
// restore must start from.
//
// Words:
//   - restore point: a named WAL record written by pg_create_restore_point;
//     recovery can stop exactly there (recovery_target_name).
//   - target: where recovery stops. The backup to restore is the newest one
//     that became consistent (its finish LSN, or finish time) at or before
//     the target, on the target's timeline lineage (TRAPS.md 26).
//
// Invariants:
//   - A restore point record exists in the repository only once the WAL
//     segment holding the restore point is archived there; its name is
//     unique in the repository (TRAPS.md 27: PostgreSQL stops at the first
//     match it replays).
//   - Resolving a target checks that every WAL file from the chosen
//     backup's start to the target is in the repository before anything is
//     written.
package restorepoint
