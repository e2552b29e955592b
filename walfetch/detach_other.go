//go:build !unix

package walfetch

import "errors"

var errNoPrefetch = errors.New("prefetching needs a Unix system")

type lock struct{}

func tryLock(string) (*lock, bool, error) { return nil, false, errNoPrefetch }

func (*lock) unlock() {}

// StartDetached is not available on this system.
func StartDetached([]string, string) error { return errNoPrefetch }
