// Package walfetch restores archived WAL files: it is what restore_command
// runs.
//
// Exit semantics matter more here than anywhere (TRAPS.md 1): PostgreSQL
// treats exit 1 as "this file does not exist" and ends recovery. Fetch
// returns ErrNotFound only when the repository answered, holds no such
// file, and has its identity file (walrus.json; without it the place
// configured is not the repository: an empty directory where a file
// system is not mounted, a wrong bucket or prefix: ErrNotARepository).
// Every other failure (storage unreachable, wrong identity, corrupt
// object, checksum mismatch) is a different error, which the command maps
// to an exit status above 125 so that PostgreSQL stops recovery instead.
//
// The destination is written atomically: a temporary name beside it,
// fsync, rename, fsync of the directory. Nothing is left at the destination
// on failure.
//
// A segment (or .partial file) fetched from the repository must start with
// the header of that very segment, written by the cluster walrus.json
// names (ErrWrongSegment otherwise): an object renamed, swapped or copied
// from another cluster's archive would make PostgreSQL read an invalid
// record and end recovery early, so it is refused before anything is
// written, with a status above 125.
//
// Prefetch. restore_command runs once per file and PostgreSQL waits for
// it, so fetching one segment at a time would bound recovery by the
// repository's latency. Words:
//   - prefetch directory: where segments wait for PostgreSQL's request; one
//     per repository and data directory (a hash of both names it), under
//     prefetch_dir or else under .walrus-prefetch beside the data
//     directory, never inside it (TRAPS.md 8).
//   - want file: the last segment wal-fetch restored and its segment size
//     (read from the segment's header, TRAPS.md 7).
//   - window: the Count segments after the wanted one. Their timeline is
//     chosen as PostgreSQL chooses with recovery_target_timeline = latest:
//     the newest timeline in the archive whose history passes through the
//     wanted segment, from the segment where it begins (TimelineFor).
//   - published file: NAME.DIGEST in the prefetch directory, where DIGEST
//     is the plaintext checksum recorded with the object. Downloads are
//     written as .dl-NAME-*, checked against that checksum and the recorded
//     size, fsynced, and only then renamed: a published file is complete
//     and verified.
//   - prefetcher: a detached process (walrus wal-prefetch) that wal-fetch
//     starts when no prefetcher holds the directory's lock; it serves each
//     new want and exits once the want file has not changed for its linger
//     (DefaultLinger) or the data directory has left recovery.
//
// Invariants:
//   - Prefetching never changes what wal-fetch restores or its exit
//     status: only whole segments are served from the prefetch directory
//     (never .history, .partial or .backup files, which must reflect the
//     repository at the moment PostgreSQL asks), only by exact name, and
//     only after wal-fetch has checked the file again (header names the
//     segment, size is the header's segment size, digest matches). A file
//     that fails is deleted and the segment is fetched from the
//     repository; any prefetch problem only logs.
//   - Disk use is bounded: at most Count published files plus the
//     downloads in flight. Files older than the requested segment, files
//     outside the current window, and files older than StaleAfter are
//     deleted.
//   - One prefetcher per directory at a time (flock on LockFile); no
//     goroutine outlives its call, and the detached process outlives
//     wal-fetch by design: by its linger after the last want, each
//     window's downloads bounded by PrefetchTimeout.
package walfetch
