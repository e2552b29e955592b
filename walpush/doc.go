// Package walpush archives WAL files: it is what archive_command runs.
//
// One push: read the file once to checksum it (SHA-256 of the plaintext),
// check the repository's identity (walrus.json: same cluster, same
// encryption setting), look for an object already stored under the file's
// name (any codec), then stream the file through compress → encrypt →
// Store.Put with create-only semantics, and confirm the stored size.
//
// Invariants (TRAPS.md 2-7):
//   - Push returns nil only when the object is durable in the repository.
//   - A name already stored with the same plaintext checksum is success
//     (PostgreSQL retries after crashes); with a different checksum it is
//     ErrConflict and the stored object is untouched. The comparison uses
//     the checksum recorded with the object, so no identity is needed.
//   - The system identifier comes from the segment's own header (or, for
//     .history and .backup files, from pg_control), and the segment size
//     from the header too; a segment whose file size differs is refused.
package walpush
