// Package storage defines the Store interface that every repository backend
// implements, and the rules keys must follow.
//
// Words used here:
//   - key: a '/'-separated object name relative to the repository root, e.g.
//     "wal/000000010000000000000001.lz4.age". Keys never start with '/', never
//     contain empty, "." or ".." components, and no component starts with '.'
//     (backends use such names for their own temporary files).
//   - object: the bytes stored under a key, plus small string metadata.
//
// Invariants every backend keeps (checked by the conformance suite in
// storage/storagetest):
//   - Put is atomic to readers: an object is either absent or whole, never
//     partial, whatever happens to the writer.
//   - Put returns nil only once the object is durable.
//   - Put with IfNotExists fails with ErrExists when the key is present and
//     leaves the stored object untouched.
//   - Get, Stat and a missing key give an error that satisfies
//     errors.Is(err, ErrNotFound).
//   - Delete of a missing key is not an error.
//
// Storage knows nothing of compression, encryption or PostgreSQL.
package storage
