// Package faulty is a test harness: a storage.Store that wraps another and
// injects scripted faults into its calls, so that the layers above storage
// (retries, wal-push, backups, restores) can be tested against the
// failures real object stores produce.
//
// Words used here:
//   - rule: one scripted fault (Rule): which methods and keys it applies
//     to, when it fires (on given call numbers, at a seeded rate, at most
//     Max times, or always), and what it does (Kind).
//   - fail: the call returns an error without reaching the inner store.
//   - fail after: the call reaches the inner store and takes effect, then
//     returns an error, as when an answer is lost on the way back.
//   - broken body: a Get body that stops with io.ErrUnexpectedEOF after N
//     bytes (a short read), or a Put body that fails after the inner store
//     has read N bytes of it (a connection that breaks mid-upload), or a
//     listing that fails after N entries.
//   - delay: latency added before the call.
//
// The injected errors, ErrTransient and ErrPermanent unless a rule names
// its own, carry a RetryableError method that storage/retry understands.
// Counters (Calls, Faults, FaultsOf) say how many calls arrived and how
// many faults were injected, so a test can show that its faults happened.
//
// The same seed and the same order of calls give the same faults; calls
// made concurrently reach the rules in whatever order they arrive.
package faulty
