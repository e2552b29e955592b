// Package body guards the stream that a backend's Put consumes.
//
// Words used here:
//   - body: the io.Reader given to Store.Put.
//   - declared size: PutOptions.Size when it is positive (or zero for an
//     empty body); the body must then deliver exactly that many bytes.
//
// A Reader turns three conditions into read errors, so that a backend fails
// the Put and stores nothing: the context is done, the body fails, or the
// body delivers more or fewer bytes than declared. It records the body's own
// error so the backend can report it even when an SDK rewraps it.
package body
