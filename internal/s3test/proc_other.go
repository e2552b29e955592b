//go:build !linux

package s3test

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: a test binary that dies without its cleanups leaves the server
// running.
func dieWithParent(*exec.Cmd) {}
