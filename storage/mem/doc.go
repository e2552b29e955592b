// Package mem is an in-memory storage.Store for unit tests.
//
// It keeps whole objects in memory, so it is meant for tests and small
// fixtures only. It follows the Store contract exactly like the real
// backends do: keys are validated, Put is atomic (the body is read in full
// before the object becomes visible, and a failed or cancelled body stores
// nothing), IfNotExists is checked and applied under one lock, metadata is
// kept, every method honours its context, and it implements
// storage.RangeGetter.
package mem
