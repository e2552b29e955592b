// Package walfetch restores archived WAL files: it is what restore_command
// runs.
//
// Exit semantics matter more here than anywhere (TRAPS.md 1): PostgreSQL
// treats exit 1 as "this file does not exist" and ends recovery. Fetch
// returns ErrNotFound only when the repository answered and holds no such
// file; every other failure (storage unreachable, wrong identity, corrupt
// object, checksum mismatch) is a different error, which the command maps
// to an exit status above 125 so that PostgreSQL stops recovery instead.
//
// The destination is written atomically: a temporary name beside it,
// fsync, rename, fsync of the directory. Nothing is left at the destination
// on failure.
package walfetch
