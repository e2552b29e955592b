//go:build !unix

package repo

// processGone cannot tell here: a lock of a dead process on this host
// expires like any other.
func processGone(int) bool { return false }

func pidNamespace() string { return "" }
