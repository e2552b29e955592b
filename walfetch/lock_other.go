//go:build !unix

package walfetch

import "errors"

var errNoPrefetch = errors.New("prefetching needs a Unix system")

type lock struct{}

func tryLock(string) (*lock, bool, error) { return nil, false, errNoPrefetch }

func (*lock) unlock() {}
