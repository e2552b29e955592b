// Package walpush archives WAL files: it is what archive_command runs.
//
// One push: read the file once, digesting the plaintext (XXH64) while
// compressing and encrypting it into a memory buffer; meanwhile, check the
// repository's identity (walrus.json: same cluster, same encryption
// setting, once per process) and look for an object already stored under
// the file's name (any codec; on S3 one LIST). Only when both are
// answered: a foreign repository fails; a stored object is compared (the
// file's digest with the one recorded: XXH64, or SHA-256 for objects of
// older walrus versions, see repo/digest.go); else the buffer is stored
// with Store.Put (create-only, the digest as metadata, a body the retry
// layer can resend whole) and the stored size confirmed. The buffer is
// made of 1 MiB chunks taken as the encoder fills it, within a budget of
// 32 MiB per process (chunkPool), so it costs what the compressed object
// needs. Files above 32 MiB, or a push that finds no chunk left, are
// looked up first, then checksummed and streamed, and refused if the file
// changed in between.
//
// Parallel archiving (Archive): PostgreSQL runs archive_command for one
// file at a time and waits for it. When it asks for pg_wal/N, Archive also
// pushes, in parallel, up to Concurrency-1 other whole segments that
// PostgreSQL has marked ready (pg_wal/archive_status/*.ready, in name
// order) and records a marker for each. Words:
//   - ready segment: a segment PostgreSQL will ask to archive; its
//     archive_status file is NAME.ready until PostgreSQL renames it to
//     NAME.done after a successful archive_command.
//   - marker: pg_wal/archive_status/.walrus/NAME.SYSID, a small JSON
//     record of a segment pushed ahead: exact name, system identifier,
//     repository, encryption setting, object key, plaintext digest and
//     size, stored size.
//   - file identity: device, inode, size, modification and change time
//     of a file. Every write changes the change time, which userspace
//     cannot set back, so an equal identity means unchanged content.
//   - confirm: when PostgreSQL asks for a marked segment, check that the
//     file is the one pushed (its identity equals the marker's, else its
//     digest equals the marker's), Stat the object and compare its
//     recorded digest and sizes with the marker. Only then does the call
//     succeed without uploading; otherwise the marker is dropped and the
//     file is pushed normally (so an object deleted from the repository is
//     uploaded again).
//   - daemon: Serve, a resident process (walrus wal-push-daemon) listening
//     on pg_wal/archive_status/.walrus/push.sock. It pushes ready segments
//     ahead continuously (Concurrency-1 at a time) and answers each
//     wal-push (ViaDaemon) once the requested file is durable, by the same
//     confirm-or-push rule. A wal-push that finds no daemon, or whose
//     daemon fails, pushes for itself. With wal_push_async, wal-push
//     starts a daemon (cmd/walrus) with Options.IdleExit, which makes it
//     exit when idle or when asked by a client with other settings. A
//     daemon keeps a confirmed marker until its segment is no longer
//     ready, so that its pushes ahead do not take the segment PostgreSQL
//     is about to mark done for one still to push.
//
// Invariants (TRAPS.md 2-7):
//   - Push and Archive return nil only when the requested object is
//     durable in the repository; Archive's error is only ever the
//     requested file's, and a failed extra push is retried when PostgreSQL
//     asks for that file.
//   - A name already stored with the same plaintext checksum is success
//     (PostgreSQL retries after crashes); with a different checksum it is
//     ErrConflict and the stored object is untouched. The comparison uses
//     the checksum recorded with the object, so no identity is needed.
//   - Markers are keyed by the exact file name and the system identifier,
//     live with the cluster (never in a shared temporary directory), and
//     are never trusted without the repository's confirmation. .partial,
//     .history and .backup files are pushed only when PostgreSQL asks.
//   - walrus never renames .ready to .done: PostgreSQL does, when the
//     command exits 0.
//   - The system identifier comes from the segment's own header (or, for
//     .history and .backup files, from pg_control), and the segment size
//     from the header too; a segment whose file size differs is refused.
//   - At most Concurrency files are read, compressed and uploaded at once,
//     each as a stream: memory does not grow with the backlog.
package walpush
