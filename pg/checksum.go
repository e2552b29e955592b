package pg

import "encoding/binary"

// The data page checksum of PostgreSQL (storage/checksum_impl.h), written
// here from its description:
//
// The page is read as rows of checksumLanes little-endian uint32 words. Each
// lane (column) keeps its own FNV-1a-like hash, seeded from
// checksumBaseOffsets, and folds in its word of every row with
//
//	t := hash ^ word; hash = t*fnvPrime ^ t>>17
//
// then two more rounds with the word 0. The lanes are XORed together, the
// block number is XORed in (so a page copied to the wrong place fails), and
// the 32-bit result is reduced to 1..65535. pd_checksum itself counts as
// zero while hashing.

const (
	checksumLanes = 32
	fnvPrime      = 16777619
	// checksumRow is the bytes one round consumes: a word for every lane.
	checksumRow = checksumLanes * 4
	// checksumOffset is where pd_checksum sits in the page header.
	checksumOffset = 8
)

// checksumBaseOffsets seeds the lanes; the values are part of PostgreSQL's
// on-disk format.
var checksumBaseOffsets = [checksumLanes]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// PageChecksum computes PostgreSQL's data checksum of page as block number
// blockNo of its relation fork (pg_checksum_page). The whole page is hashed,
// so len(page) must be the cluster's block size; the block number counts
// from the start of the fork, across segment files (segment*RELSEG_SIZE +
// block in the segment). The stored pd_checksum is ignored and page is not
// modified. The result is never 0; 0 is returned when len(page) is not a
// positive multiple of 128 bytes, so a wrong-sized page never matches.
//
// PostgreSQL does not checksum new pages (PageIsNew); nor should callers.
func PageChecksum(page []byte, blockNo uint32) uint16 {
	if len(page) == 0 || len(page)%checksumRow != 0 {
		return 0
	}
	x := checksumFold(page) ^ blockNo
	return uint16(x%65535) + 1
}

// checksumGeneric hashes page (a positive multiple of checksumRow bytes) in
// pure Go and returns the XOR of the finished lanes, before the block number
// is mixed in. It is the reference the assembly versions must agree with.
func checksumGeneric(page []byte) uint32 {
	sums := checksumBaseOffsets
	for row := 0; row < len(page); row += checksumRow {
		words := page[row : row+checksumRow : row+checksumRow]
		for lane := range checksumLanes {
			v := binary.LittleEndian.Uint32(words[lane*4:])
			if row == 0 && lane*4 == checksumOffset {
				// pd_checksum is the low half of this word; hash it as zero.
				v &^= 0xFFFF
			}
			t := sums[lane] ^ v
			sums[lane] = t*fnvPrime ^ t>>17
		}
	}
	var x uint32
	for lane := range checksumLanes {
		s := sums[lane]
		for range 2 {
			t := s // ^ 0
			s = t*fnvPrime ^ t>>17
		}
		x ^= s
	}
	return x
}
