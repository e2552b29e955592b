// Package compress provides walrus's compression codecs, found by name (in
// configuration) or by file extension (in object names).
//
// Words used here:
//   - codec: one compressed format, with a name and an extension: lz4 (.lz4),
//     zstd (.zst), brotli (.br), lzma (.xz, the xz container) and none
//     (.none, data stored as it is).
//   - level: how hard a codec tries. 0 always means the codec's default;
//     ValidateLevel gives each codec's range.
//   - stream: one object's worth of data, compressed by one writer and read
//     back by one reader. Streams never hold an object in memory: a writer
//     or reader holds bounded buffers (a block, the codec's window and
//     tables), whatever the object's size.
//
// Invariants:
//   - A writer's output is complete only once Close returned nil; Close never
//     closes the destination. An error is sticky: every later Write and Close
//     returns it.
//   - A reader never ends early with io.EOF: truncated input (including an
//     empty one), damaged framing and trailing data are errors, and
//     truncation wraps io.ErrUnexpectedEOF. An error of the source itself is
//     returned wrapped as it is, so a network failure is not mistaken for a
//     damaged object.
//   - lz4, zstd and lzma carry checksums of the content (lz4 also of every
//     block), so damage anywhere is an error. brotli has no checksum, and
//     none cannot even see truncation: with them a damaged object can decode
//     to wrong bytes, and walrus relies on the plaintext checksum it records
//     for every object (and on encryption, which authenticates every chunk).
//   - Every codec is safe for concurrent use; each stream runs on the
//     caller's goroutine, since callers run many streams in parallel. A
//     caller with few large streams (a base backup's parts) asks
//     WithConcurrency for writers that compress several blocks of a
//     stream at once (lz4, zstd), in the same format.
//
// Defaults, measured on 16 MiB of WAL-like data (8 KiB pages, a quarter of
// them zero) on one core of a shared 2-CPU machine; see BenchmarkCompress,
// BenchmarkDecompress and BenchmarkCompressLevel:
//   - lz4 (the default codec): the fast mode, ~550 MB/s, ratio ~3.7;
//     decompression ~2.4 GB/s. 1 MiB blocks keep a stream at ~2 MiB of
//     buffers; levels 1..9 are the high-compression modes (~20 MB/s, ~4.9).
//   - zstd: level 3 (the library's SpeedDefault, zstd's own default),
//     ~250-320 MB/s, ratio ~5.1, versus ~370 MB/s and ~4.8 for level 1
//     (SpeedFastest); decompression ~1.5 GB/s either way. WAL archiving
//     pushes a segment per stream, several in parallel, each bounded by
//     its upload rather than by 250 MB/s of one core, and WAL is the bulk of
//     what a repository stores, so ~7% less output is worth more than the
//     speed; whoever wants speed has lz4, the default, or zstd level 1.
//     Encoders and decoders run with concurrency 1 and are pooled across
//     streams.
//   - brotli: quality 3, ~65-100 MB/s, ratio ~4.8. Quality 4 compresses ~5%
//     better on text but is ~1.4x slower and churns ~10 times more memory
//     per stream.
//   - lzma: xz's default preset 6 (8 MiB dictionary), ~5-10 MB/s, ratio
//     ~5.2, decompression ~35 MB/s; a writer needs ~65 MiB and a reader
//     about its dictionary. Meant for archives where size is all that
//     matters, not for WAL at a high rate.
//
// Two libraries need help, documented where it is given: the xz reader can
// take a truncated stream for a whole one (lzma.go verifies the index and
// footer itself), and the brotli reader can reject a good stream when its
// source splits the last bytes (brotli.go holds the tail back).
package compress
