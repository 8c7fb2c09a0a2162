/*
 * sqlvfs — snapfs's SQLite VFS: a shim over the default one that does two
 * things for speed and nothing that changes what SQLite reads or writes.
 *
 * 1. Mapped reads with bounded residency, for a main database opened
 *    read-only (a delta being checked, a sealed copy).
 *    SQLite's own mmap (PRAGMA mmap_size) maps the whole file and never
 *    lets go of a page it touched, so a check that walks a 4 GB file
 *    leaves 4 GB counted in the daemon's resident set. Reading by pread
 *    through the page cache keeps memory flat but costs a system call and
 *    a copy per page: integrity_check of the 600 MB bench collection took
 *    0.44 s that way and 0.16 s mapped. sqlvfs maps the file itself and
 *    unmaps (MADV_DONTNEED) the 1 MiB chunks no page of which is held once
 *    more than SQLVFS_RESIDENT bytes are resident, picking the least
 *    recently fetched by a clock sweep. The data stays in the page cache;
 *    a chunk touched again just faults back in.
 * 2. Writeback started early, for a main database opened read-write (the
 *    live database): every SQLVFS_WRITEBACK bytes written, the kernel is
 *    told to start writing them (sync_file_range), so that the disk works
 *    while the merge still computes and the fsync at COMMIT waits only for
 *    the tail. A hint: durability is still SQLite's fsyncs, in SQLite's
 *    order (the kernel may write a dirty page back at any time anyway).
 *
 * What must stay true:
 *  - Mapped reads only for files nobody truncates while they are open: an
 *    access past the end of a truncated file would raise SIGBUS. A fetch
 *    outside the file's size at open is refused (SQLite then reads it
 *    with xRead), and SQLite fetches only when the connection's mmap_size
 *    is above 0 (sqlh_open_mapped sets it).
 *  - A chunk with a page still fetched (its count > 0) is never unmapped:
 *    SQLite reads those pages directly.
 *  - One connection, one thread at a time, as SQLite's pager already
 *    requires of a file: the per-file state has no lock.
 * Every other file (journals, temp files) goes to the default VFS as is.
 */
#ifndef SNAPFS_SQLVFS_H
#define SNAPFS_SQLVFS_H

#define SQLVFS_RESIDENT (16u << 20) /* bytes of a mapping kept resident, per open file */
#define SQLVFS_WRITEBACK (8u << 20) /* bytes written between two writeback starts */

/* Registers the VFS (once, thread-safe) and returns its name, or NULL if it could not be. */
const char *sqlvfs_name(void);

#endif
