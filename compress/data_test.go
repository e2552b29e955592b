package compress

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// words is a vocabulary for text-like data.
var words = []string{
	"select", "insert", "update", "delete", "from", "where", "order", "customer",
	"invoice", "amount", "status", "shipped", "pending", "2024-05-17", "Berlin",
	"Lisbon", "walrus", "postgres", "relation", "tuple", "NULL", "true", "false",
}

// mixedData returns n bytes of text, zero runs and random bytes, the same
// for the same seed.
func mixedData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch rng.IntN(4) {
		case 0, 1: // text
			for range 1 + rng.IntN(40) {
				b = append(b, words[rng.IntN(len(words))]...)
				b = append(b, ' ')
			}
		case 2: // zero run
			b = append(b, make([]byte, 1+rng.IntN(600))...)
		case 3: // random
			for range 1 + rng.IntN(300) {
				b = append(b, byte(rng.Uint32()))
			}
		}
	}
	return b[:n]
}

// randomData returns n incompressible bytes.
func randomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// walLikeData returns n bytes (a multiple of 8 KiB) shaped like a WAL
// segment: 8 KiB pages, each with a page header, records of tuple-like data
// (ids, timestamps, text, some random bytes for CRCs and full-page images),
// and a zero tail; the last quarter of the segment is zero pages, as after
// a segment switch.
func walLikeData(n int, seed uint64) []byte {
	const page = 8192
	rng := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	lsn := uint64(0x16_0000_0000)
	id := uint64(1_000_000)
	used := n - n/4
	for off := 0; off+page <= used; off += page {
		p := b[off : off+page]
		binary.LittleEndian.PutUint16(p[0:], 0xD116) // magic
		binary.LittleEndian.PutUint16(p[2:], 0x0005) // info
		binary.LittleEndian.PutUint32(p[4:], 1)      // timeline
		binary.LittleEndian.PutUint64(p[8:], lsn+uint64(off))
		binary.LittleEndian.PutUint32(p[16:], uint32(rng.IntN(200)))
		pos := 24
		fill := page/2 + rng.IntN(page/2) // bytes of records on this page
		for pos+64 < fill {
			// record header: total length, xid, prev pointer, info, rmgr, crc
			rec := p[pos:]
			tot := 48 + rng.IntN(300)
			if pos+tot > fill {
				tot = fill - pos
			}
			binary.LittleEndian.PutUint32(rec[0:], uint32(tot))
			binary.LittleEndian.PutUint32(rec[4:], uint32(700+id/50))
			binary.LittleEndian.PutUint64(rec[8:], lsn+uint64(off+pos-80))
			rec[16] = 0x10
			rec[17] = byte(rng.IntN(3))
			binary.LittleEndian.PutUint32(rec[20:], rng.Uint32()) // crc
			body := rec[24:tot:tot]
			if rng.IntN(10) == 0 {
				// full-page image fragment: incompressible
				for i := range body {
					body[i] = byte(rng.Uint32())
				}
			} else {
				t := body[:0]
				t = binary.LittleEndian.AppendUint64(t, id)
				t = append(t, strconv.FormatUint(id*7919%100000, 10)...)
				t = append(t, "|2024-05-17 12:"...)
				t = append(t, strconv.Itoa(10+rng.IntN(50))...)
				for len(t) < len(body) {
					t = append(t, words[rng.IntN(len(words))]...)
				}
				copy(body, t)
			}
			id++
			pos += tot
		}
	}
	return b
}
