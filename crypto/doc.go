// Package crypto encrypts and decrypts walrus objects as streams with age
// (https://age-encryption.org): an Encryptor holds recipients (public keys)
// and encrypts, a Decryptor holds identities (secret keys) and decrypts.
//
// Words used here:
//   - identity: an age secret key, "AGE-SECRET-KEY-1..." (X25519), kept in an
//     identity file (mode 0600) and needed only to restore.
//   - recipient: the public key of an identity, "age1...". Recipients are
//     public; pushing backups and WAL needs only them, so the machine that
//     archives need not hold the key that reads the archive.
//   - age file: the format of an encrypted object: a text header ("age-
//     encryption.org/v1", one stanza per recipient wrapping a random file
//     key, a MAC), then the payload in 64 KiB chunks, each sealed with
//     ChaCha20-Poly1305; the last chunk is marked.
//
// Invariants:
//   - Secret key material never appears in an error, a String or GoString,
//     or a log line made from them. Errors about recipients quote them,
//     except text that looks like a secret key.
//   - A Decryptor never returns unauthenticated plaintext: a damaged,
//     reordered, tampered or truncated object fails with ErrCorrupt (or,
//     for damage to a recipient stanza, ErrWrongKey) before any byte of the
//     damaged chunk is returned. An object encrypted for other keys fails
//     with ErrWrongKey and a hint. Errors of the underlying source are
//     passed through as themselves, so callers can retry them.
//   - An Encryptor's stream is complete only once Close returned nil.
//
// Encryption comes after compression (plaintext → compress → encrypt →
// store), since ciphertext does not compress. Whether an object is
// encrypted shows in its name (".age"); IsEncrypted checks the bytes too.
//
// X25519 keys are what walrus generates. Post-quantum hybrid keys
// ("age1pq1...", "AGE-SECRET-KEY-PQ-1...") made with age-keygen -pq are
// accepted as well, but not mixed with X25519 recipients.
package crypto
