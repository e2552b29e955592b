//go:build amd64 && !purego

package pg

import "golang.org/x/sys/cpu"

// haveChecksumAVX2 reports whether checksumAVX2 may run on this CPU (AVX2
// present and its YMM state enabled by the OS).
var haveChecksumAVX2 = cpu.X86.HasAVX2

// checksumAVX2 is checksumGeneric with the 32 lanes held in four YMM
// registers of eight uint32 each (checksum_amd64.s). len(page) must be a
// positive multiple of checksumRow; the caller checks.
//
//go:noescape
func checksumAVX2(page []byte) uint32

// checksumFold returns the XOR of the finished lane hashes of page, using
// AVX2 when the CPU has it.
func checksumFold(page []byte) uint32 {
	if haveChecksumAVX2 {
		return checksumAVX2(page)
	}
	return checksumGeneric(page)
}
