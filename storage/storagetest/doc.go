// Package storagetest is the conformance suite that every storage.Store
// backend passes. It lives in a non-test file so that each backend's tests,
// and the tests of layers that wrap a Store, can run it:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			st := mem.New()
//			t.Cleanup(func() { st.Close() })
//			return st
//		})
//	}
//
// Every subtest asks newStore for a fresh, empty store and runs in parallel
// with the others. The suite never closes a store; newStore should register
// the Close with t.Cleanup.
//
// Beyond the contract written in package storage, the suite checks two
// rules that walrus's backends keep: a Put whose body delivers a different
// number of bytes than a positive PutOptions.Size fails and stores nothing,
// and an invalid key is an error that never satisfies
// errors.Is(err, storage.ErrNotFound) (an invalid name is not an absent
// object). A RangeGetter must cut a range that runs past the end of the
// object short, down to empty when it starts at or past the end.
package storagetest
