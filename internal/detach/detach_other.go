//go:build !unix

package detach

import "errors"

// Start is not available on this system.
func Start([]string, []string, string) error {
	return errors.New("background processes need a Unix system")
}
