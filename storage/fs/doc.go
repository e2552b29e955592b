// Package fs is the filesystem storage.Store, the embedded default
// repository: the key "wal/000000010000000000000001.lz4" is the file
// <root>/wal/000000010000000000000001.lz4.
//
// Words used here:
//   - root: the absolute directory that holds the repository. New creates
//     it (mode 0700) when it is absent, but refuses (ErrNotMounted) a root
//     at or under a mount point of /etc/fstab, other than a memory file
//     system's, that /proc/self/mountinfo does not list: the files would
//     go to the disk beneath the missing mount (TRAPS.md 1).
//   - temp file: a file named ".walrus-tmp-*" in the directory of the key
//     being written. Valid keys never have a component starting with '.',
//     so a temp file can never be mistaken for an object, and List skips it.
//   - header: a prefix that carries an object's metadata inside its file
//     (see below).
//
// # Writing
//
// Put writes the body to a temp file in the target directory, fsyncs it and
// then publishes it in one step: a rename over the key, or, with
// IfNotExists, a hard link (link(2) fails with EEXIST atomically, so of two
// concurrent create-only writers exactly one wins) followed by removing the
// temp name. It then fsyncs the directory; directories it creates are
// fsynced into their parents. A failed, cancelled or size-mismatched Put
// removes its temp file and leaves any previous object untouched. Temp
// files that a crash left behind are removed by List once they are more
// than an hour old. A filesystem without hard links cannot take
// create-only puts; Put then fails with an error saying so rather than
// fall back to a check-then-rename race.
//
// When walrus runs as root, every directory and file it creates takes the
// owner and group of the directory it is created in, so that a repository
// shared by an operator (root) and PostgreSQL's archive_command (the
// server's user) stays writable by both.
//
// Files are created 0600 and directories 0700 (subject to the umask): a
// repository holds the whole database. Delete removes directories that it
// leaves empty, except the root.
//
// # Metadata
//
// Metadata lives in the object's own file, so it is published by the same
// rename or link as the data and can never belong to another version of
// the object (a sidecar file cannot promise that when two create-only
// writers race, and walrus decides whether a WAL segment is already
// archived from its metadata). A file that carries metadata starts with a
// header:
//
//	"\x00walrus-object-v1\n"   magic, 18 bytes
//	uint32, big endian          length N of the metadata block, at most 64 KiB
//	N bytes                     "key=value\n" lines, sorted by key
//	...                         the object's bytes
//
// A file has a header exactly when it starts with the magic. Put writes one
// when there is metadata, or when the object's own bytes happen to start
// with the magic (then with no lines), so every other object is stored as
// a plain file whose content is exactly the object: walrus.json or a
// manifest can be read with cat. Size, Get, GetRange and List account for
// the header; List reads the first bytes of every file of 18 bytes or more
// to find out whether it has one, and reports metadata when it does.
//
// # Listing
//
// List walks the directories under the prefix depth first, visiting the
// entries of each directory in the order of their keys (a directory "d"
// sorts as "d/"), which gives lexical key order without sorting the whole
// listing. Names starting with '.' and names that are not valid keys are
// skipped; a missing root or prefix directory lists nothing.
package fs
