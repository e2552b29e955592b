// Package retry is the one retry layer of walrus: a storage.Store that
// wraps any other and retries its calls that fail for a transient reason,
// with exponential backoff and jitter; plus Do and IsRetryable for callers
// that must retry a whole operation (re-reading a file, re-encoding a
// stream) because no store can replay their body.
//
// Words used here:
//   - attempt: one call of the inner store. An operation makes at most
//     Options.MaxAttempts attempts (5 by default).
//   - retryable error: a transient failure that another attempt may not
//     meet (timeouts, broken or refused connections, HTTP 5xx, S3 SlowDown
//     and throttling; see IsRetryable). Every other error is permanent and
//     returned at once: ErrNotFound, ErrExists, 403 AccessDenied, 400, an
//     invalid key, a cancelled context.
//   - backoff: the wait between attempts, Options.BaseDelay (100 ms)
//     doubling up to Options.MaxDelay (5 s), the upper half of it random.
//   - call timeout: Options.CallTimeout bounds one attempt of a call that
//     carries no body, so that a hung request is retried instead of waited
//     for: Stat, each batch of Delete, the wait for each next List entry,
//     opening a Get and each Read of its body. It never bounds Put (an
//     upload takes as long as its size needs; the command deadline and
//     the backend's transport bound it), nor the time a caller takes
//     between Reads or inside List's callback, so a long healthy download
//     or listing is never cut.
//
// # Invariants
//
// Put never stores a short or empty object by retrying (TRAPS.md 3): every
// attempt sends the whole body from its first byte. A body that implements
// Reopener is reopened for each further attempt; an io.Seeker (that can
// really seek) is rewound to where it started; any other body is retried
// only when the failed attempt consumed none of it. Once a byte of such a
// one-shot body was consumed, the error is returned, saying so, and the
// caller must retry the whole operation with Do (walrus streams most
// objects through pipes: see Do). A failure of the body itself is never
// retried.
//
// Put with IfNotExists that meets storage.ErrExists, when the body can be
// read again, compares the stored object with the body and its metadata:
// when they are identical it reports success, since the object is this
// Put's own, stored by an attempt whose answer was lost (here, or in the
// backend's own retries). Callers that use create-only puts for mutual
// exclusion must therefore make their bodies unique (a host, a process id,
// a time).
//
// Get retries its opening; a transfer that breaks later is resumed: the
// reader opens the rest of the object from the next byte it owes (a range
// read) and goes on, so the caller sees the whole object or an error, never
// a silent short read. Each failure in a row without a byte of progress
// counts as an attempt. Resuming assumes the object is not replaced while
// it is read; walrus never rewrites an object in place, and its readers
// check content against recorded checksums.
//
// List retries a broken listing and resumes after the last key it has
// given to the callback (keys come in lexical order), so the callback sees
// each key once. The callback's own error is returned as is.
//
// Delete is idempotent and retried in batches of 1000 keys.
//
// Cancelling the context stops retries at once: the wait between attempts
// ends with the context, and the error returned wraps the context's error.
package retry
