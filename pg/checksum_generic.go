//go:build !amd64 || purego

package pg

// haveChecksumAVX2 is false: this build has no assembly checksum.
const haveChecksumAVX2 = false

// checksumAVX2 is never called in this build (haveChecksumAVX2 is false); it
// exists so tests and benchmarks compile everywhere.
func checksumAVX2(page []byte) uint32 {
	panic("pg: checksumAVX2 not available in this build")
}

// checksumFold returns the XOR of the finished lane hashes of page.
func checksumFold(page []byte) uint32 {
	return checksumGeneric(page)
}
