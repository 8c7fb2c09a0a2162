/*
 * passthrough — FUSE passthrough for sealed files, on libfuse 3.14.
 *
 * Sealed snapshot files never change, so the kernel may read them from
 * their backing files directly (Linux >= 6.9, FUSE_PASSTHROUGH): reads
 * then cost what reads of the backing file cost, page cache included,
 * and never reach the daemon. libfuse 3.14 (Debian 12) has no API for
 * it, so this module adds the two protocol fields it needs on the way
 * out through libfuse's custom-I/O hook:
 *   - in the INIT reply: the FUSE_PASSTHROUGH flag and max_stack_depth,
 *     only if the kernel's INIT request offered FUSE_PASSTHROUGH;
 *   - in an OPEN reply: FOPEN_PASSTHROUGH and the backing id of a file
 *     registered with FUSE_DEV_IOC_BACKING_OPEN.
 * Both replies are written synchronously by the thread that asked for
 * them (fuse_reply_open, and the INIT reply right after the init
 * callback), which is how the hook knows which reply it is looking at:
 * a thread-local mark set just before and cleared just after.
 *
 * One backing id per inode, shared by every open of it (the kernel binds
 * an inode to one backing file), closed when the kernel forgets the
 * inode. Anything unavailable (old kernel, no CAP_SYS_ADMIN) falls back
 * to ordinary cached reads through the daemon.
 *
 * Opt-in (-o passthrough): on Linux 6.18 each passthrough read marks the
 * inode's atime stale whatever the mount's atime policy, so every fstat
 * (SQLite makes one per read transaction) becomes a GETATTR round trip.
 */
#ifndef SNAPFS_PASSTHROUGH_H
#define SNAPFS_PASSTHROUGH_H

#include <stdbool.h>
#include <stdint.h>

struct fuse_session;

/* Installs the I/O hook on se; before the session loop starts. */
int pt_attach(struct fuse_session *se);
/* From the init callback: the INIT reply this thread writes next may enable passthrough. */
void pt_init_reply_next(void);
/* Whether the kernel agreed to passthrough. */
bool pt_enabled(void);
/*
 * From the init callback: whether the INIT reply will enable passthrough
 * (the hook is attached and the kernel offered it).
 */
bool pt_offered(void);
/*
 * The backing id for inode ino whose sealed content is readable at fd
 * (registered on first use), or -1 when passthrough cannot be used.
 */
int pt_backing_id(uint64_t ino, int fd);
/* Marks the OPEN reply this thread writes next with backing id (or clears the mark with -1). */
void pt_open_reply_next(int backing_id);
/* The kernel forgot ino: its backing id, if any, is closed. */
void pt_forget(uint64_t ino);
/* After the session is gone: frees what is left. */
void pt_detach(void);

#endif
