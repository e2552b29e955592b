// Package repo is the walrus repository as the commands see it: the layout
// of keys in the bucket, the encoding of every object (compress, then
// encrypt), and the repository identity file walrus.json.
//
// Layout (see ARCHITECTURE.md):
//
//	walrus.json                          Identity: format version, system identifier, encrypted or not
//	wal/<WAL file name>.<codec ext>[.age] WAL segments, .history, .backup files
//	backups/<name>/parts/...             backup data
//	backups/<name>/manifest-auth.*.age   manifest's SHA-256, encrypted (catalog/auth.go)
//	backups/<name>/manifest.json         written last; makes the backup exist
//	restore-points/<name>.json           named restore points
//	locks/<mode>-<time>-<random>.json    locks of running commands (lock.go)
//
// Encoding: an object's codec and encryption are visible in its name, so a
// change of the compression setting never makes older objects unreadable.
// Push: plaintext → compress → encrypt (age) → Store.Put. Fetch: Store.Get →
// decrypt → decompress. The plaintext's digest (digest.go: XXH64, written
// "xxh64-<hex>") travels as object metadata ("walrus-digest") where a
// command must compare contents without holding the identity (wal-push
// idempotence) and is checked on every read; objects of older walrus
// versions carry a SHA-256 under "walrus-sha256", which is still read. A
// backup's manifest binds each part with the SHA-256 of its stored bytes.
//
// Invariants:
//   - A repository is encrypted or not for its whole life (walrus.json says
//     which); a missing recipients setting never silently stores plaintext.
//   - A repository belongs to one cluster (system identifier).
package repo
