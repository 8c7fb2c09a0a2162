/*
 * mapvfs — a SQLite VFS that reads a read-only main database through a
 * memory mapping whose resident part stays bounded.
 *
 * Why: SQLite's own mmap (PRAGMA mmap_size) maps the whole file and never
 * lets go of a page it touched, so a check that walks a 4 GB file leaves
 * 4 GB counted in the daemon's resident set. Reading by pread through the
 * page cache instead keeps memory flat but costs a system call and a copy
 * per page: integrity_check of the 600 MB bench collection took 0.44 s
 * that way and 0.16 s mapped. mapvfs keeps the mapped speed and SQLite's
 * whole mapping, but unmaps (MADV_DONTNEED) the 1 MiB chunks no page of
 * which is held once more than MAPVFS_RESIDENT bytes are resident, picking
 * the least recently fetched by a clock sweep. The data stays in the page
 * cache; a chunk touched again just faults back in.
 *
 * What must stay true:
 *  - Only for files nobody truncates while they are open (a sealed copy,
 *    written by us, 0400, never changed): an access past the end of a
 *    truncated file would raise SIGBUS. Every other file (journals, temp
 *    files, a main database opened read-write) goes to the default VFS
 *    untouched, and a fetch outside the file's size at open is refused
 *    (SQLite then reads it with xRead).
 *  - A chunk with a page still fetched (its count > 0) is never unmapped:
 *    SQLite reads those pages directly.
 *  - One connection, one thread at a time, as SQLite's pager already
 *    requires of a file: the per-file state has no lock.
 * Only speed depends on the mapping: every read it does not serve goes
 * through the default VFS.
 */
#ifndef SNAPFS_MAPVFS_H
#define SNAPFS_MAPVFS_H

#define MAPVFS_RESIDENT (16u << 20) /* bytes of the mapping kept resident, per open file */

/* Registers the VFS (once, thread-safe) and returns its name, or NULL if it could not be. */
const char *mapvfs_name(void);

#endif
