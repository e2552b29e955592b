// Package delta implements page-delta backups of relation data files:
// choosing the pages of a file that changed since a base backup, the
// increment file that stores them, and applying a chain of increments to
// restore the file.
//
// # Words
//
//   - block: one page of a relation file, of the cluster's block size
//     (BLCKSZ, 8 KiB by default; always passed in, never assumed). Block
//     numbers here count from 0 in each segment file (TRAPS.md 19); the
//     checksum of a page uses the block number in the whole fork, segment ×
//     RELSEG_SIZE + block.
//   - threshold: the START LSN of the backup the new one is based on
//     (TRAPS.md 16). A page whose LSN is at or past it may have changed.
//   - selection: the blocks of one file an increment must hold, chosen by
//     SelectPages in one pass over the file.
//   - increment: the file's size plus the selected pages, in the format below.
//   - chain: a file's copies in a backup and the backups it is based on,
//     newest first, ending with a backup that stores the file whole.
//
// # Which pages are selected
//
// SelectPages includes a block when any of these holds, and leaves it out
// only when its page is sound and older than the threshold:
//
//   - its page LSN is >= the threshold, or 0 (a page written without WAL
//     has no LSN to compare; TRAPS.md 18);
//   - it is all zeroes, or new (pd_upper 0): a zero page is a real page
//     (TRAPS.md 18, 20);
//   - its header fails the sanity checks PostgreSQL applies on read
//     (pg.ValidatePageHeader), so its LSN cannot be trusted;
//   - its checksum fails (with VerifyChecksums);
//   - its LSN is past MaxLSN: impossible for this cluster, so the page is
//     included and also reported in Selection.Suspicious;
//   - it is the partial last block of a file whose size is not a multiple
//     of the block size (see below).
//
// Only main forks are selected page by page: fsm, vm and init forks are not
// fully WAL-logged and must be stored whole (TRAPS.md 18), and SelectPages
// refuses them. Deciding that a file is stored whole because it is new or
// shrank since the base is the caller's job.
//
// # Partial last block
//
// PostgreSQL extends relation files by whole blocks, but a backup can read a
// file while a block is being appended and see a size that is not a
// multiple of the block size. The safe choice is taken: the partial block is
// always selected, stored padded with zeroes to a whole block, and the file
// size recorded is the real size; a restore truncates the file to that size,
// so the bytes restored are exactly the bytes read. WAL replay completes the
// block as it does for a full backup.
//
// # Files that change while they are read
//
// A file is read while the server writes it. Bytes past the end of a file
// that shrank during the read are read as zeroes (what pg_basebackup does);
// the truncation is WAL-logged after the backup start and replay redoes it.
// Pages that change between SelectPages and WriteIncrement are written as
// re-read: replay from the backup's start repairs any page changed after it.
//
// # Checksum failures
//
// With VerifyChecksums, a page that fails PostgreSQL's read verification
// (bad checksum, insane header, or new but not zero) is read once more
// (TRAPS.md 22): it may have been read while the server was writing it. The
// second copy decides. A page that still fails is always included in the
// increment, so the backup holds exactly what is on disk, as a full backup
// would. It is reported in Selection.ChecksumFailures unless it is a sound
// header whose LSN is at or past SelectOptions.StartLSN (the start of the
// backup being taken; Threshold when StartLSN is 0): such a page was written
// after the backup started, may be torn in flight, and is restored by
// replay from a full-page image. The caller decides whether failures fail
// the backup.
//
// # Increment format, version 1
//
// All integers are big-endian.
//
//	offset      size   field
//	0           8      magic "WLRSINC1"
//	8           4      format version, 1
//	12          4      block size B: a power of two, 1024..32768
//	16          8      file size S: the file's size in this backup
//	24          4      block count N: 0 <= N <= ceil(S/B)
//	28          4*N    block numbers, strictly increasing, each < ceil(S/B)
//	28+4N       4      CRC-32C (Castagnoli) of bytes [0, 28+4N)
//	32+4N       B*N    the pages, in the order of the block numbers; the
//	                   partial last block is padded with zeroes
//	32+4N+B*N   4      CRC-32C of bytes [0, 32+4N+B*N)
//
// Nothing follows the trailing CRC. The header CRC lets a reader trust the
// block list before it writes any page; the trailing CRC is checked after
// the last page, so a consumer of Reader.Next must treat its pages as
// unconfirmed until Next returns io.EOF (a restore that fails midway is
// void as a whole). The writer streams: it needs the block list (from
// SelectPages, 4 bytes per block) before the pages, and re-reads the pages
// from the file, never holding more than one in memory.
//
// # Applying a chain
//
// A chain is applied newest first. Each block is written once, by the
// newest backup that holds it; a BlockSet, an explicit bitmap, records the
// blocks written, never "this page looks zero" (TRAPS.md 20): a zero page in
// a newer increment is a real page and hides older data. Older increments
// fill only blocks not yet written, and the whole copy at the root of the
// chain fills the rest. Blocks at or past the newest file size are never
// written, and the file is finally truncated to the newest size; blocks no
// backup holds read as zeroes. Restore does all of this for one file.
package delta
