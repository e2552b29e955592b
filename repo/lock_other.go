//go:build !unix

package repo

// ProcessGone cannot tell here: it reports false (a lock of a dead
// process on this host expires like any other).
func ProcessGone(int) bool { return false }

func pidNamespace() string { return "" }
