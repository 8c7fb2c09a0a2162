/*
 * vfs — the namespace snapfs presents, independent of FUSE.
 *
 *   /                       collections; mkdir/rmdir here only
 *   /.snapfs/{status,metrics}
 *   /NAME/{incoming/, snapshots/ID/{NAME.sqlite3,MANIFEST.json},
 *          latest -> snapshots/ID, rejected/, status}
 *
 * The FUSE adapter (fsops.c) turns kernel requests into these calls and
 * their results into replies; every decision is made here. Inode numbers
 * are handed out once and never reused while the process lives.
 *
 * Guarantees: only published (sealed) snapshot files are ever readable;
 * nothing outside incoming/ can be written (-EROFS); a delta is queued
 * when it is complete (last writer released under a non-dot name, or
 * renamed to a non-dot name with no writer); retention never removes
 * the files of a snapshot while any inode of it is known to the kernel
 * or open.
 *
 * Lock order: vfs->mu, then (inside compactor calls) compactor->mu.
 * vfs->mu is never held while calling the inval notifier.
 */
#ifndef SNAPFS_VFS_H
#define SNAPFS_VFS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "compactor.h"
#include "sbuf.h"
#include "store.h"

#define VFS_ROOT_INO 1

typedef struct vfs vfs;
typedef struct vfs_dir vfs_dir;
typedef struct vfs_file vfs_file;

/*
 * How sealed files are read (-o read_path). The kernel serves a sealed
 * file either from its own page cache (filled through the daemon) or by
 * passthrough, reading the backing file itself. Passthrough streams at the
 * backing disk's speed but marks the inode's atime stale after each read,
 * so the next fstat is a GETATTR round trip: SQLite makes one per read
 * transaction. AUTO serves opens with O_NOFOLLOW from the page cache (SQLite
 * opens every database file so; so do rsync and tar, which then read
 * through the daemon) and every other open by passthrough. The kernel does
 * not pass O_CLOEXEC on, so that cannot tell SQLite from rsync.
 */
enum vfs_read_path { VFS_READ_AUTO, VFS_READ_CACHE, VFS_READ_PASSTHROUGH };
/* "auto", "cache", "passthrough"; and back (-1 for anything else). */
const char *vfs_read_path_name(enum vfs_read_path p);
int vfs_read_path_parse(const char *s);

struct vfs_config {
	uint64_t max_delta_size; /* bytes; writes past it fail with EFBIG */
	enum vfs_read_path read_path;
	unsigned keep;              /* newest snapshots kept per collection */
	uint64_t stale_dotfiles_ms; /* dot-files in incoming/ older than this go (0: never) */
};

/* What lookup and friends return: inode, attributes, how long to cache them. */
struct vfs_entry {
	uint64_t ino; /* 0 with -ENOENT: a negative entry, cached entry_timeout */
	struct stat st;
	double entry_timeout;
	double attr_timeout;
};

/* How a file may be served. */
struct vfs_open_info {
	bool keep_cache; /* content never changes: keep the page cache */
	/*
	 * Generated content (size unknown in advance), and deltas being
	 * written into incoming/: their writes then reach the daemon straight
	 * from the writer's pages instead of being copied into the page cache
	 * first (cp of 600 MB: 0.68 s instead of 0.85 s here, 0.55 s for cp +
	 * fsync on the disk itself); shared mmap of them fails with ENODEV.
	 */
	bool direct_io;
	int sealed_fd;    /* sealed backing file the kernel may read directly, or -1 */
	bool passthrough; /* serve this open by passthrough from sealed_fd */
};

/* setattr fields, as bits of to_set. */
enum {
	VFS_SET_MODE = 1 << 0,
	VFS_SET_UID = 1 << 1,
	VFS_SET_GID = 1 << 2,
	VFS_SET_SIZE = 1 << 3,
	VFS_SET_ATIME = 1 << 4,
	VFS_SET_MTIME = 1 << 5,
	VFS_SET_ATIME_NOW = 1 << 6,
	VFS_SET_MTIME_NOW = 1 << 7,
};

/*
 * Extra status from other modules (the uploader): for a collection,
 * members to add to its status object status (after the compactor's;
 * metrics NULL); with coll NULL, members of the whole mount's status
 * object (metrics NULL), or lines to append to the Prometheus metrics
 * (status NULL). Called with the vfs's lock held: memory only.
 */
typedef void (*vfs_status_fn)(void *ctx, const char *coll, json_t *status, sbuf *metrics);

/*
 * Called (without vfs locks) when a cached name must be dropped by the
 * kernel; name NULL: directory parent's cached listing and attributes.
 */
typedef void (*vfs_inval_fn)(void *ctx, uint64_t parent, const char *name);

/*
 * A cluster member's mount (cluster.h): a delta made complete goes to
 * outbox/ and queued(ctx, coll) is called instead of kicking the
 * compactor; made(ctx, coll) after a mkdir; rmdir is refused with EPERM
 * (a collection belongs to every host of the cluster). Both are called
 * with the vfs's lock held: they must only take leaf locks.
 */
struct vfs_cluster {
	void *ctx;
	void (*queued)(void *ctx, const char *coll);
	void (*made)(void *ctx, const char *coll);
};

int vfs_create(const struct vfs_config *cfg, vfs **out);
/* Serves st: registers every collection with the compactor and applies retention. */
int vfs_start(vfs *v, store *st, compactor *c);
void vfs_set_notifier(vfs *v, vfs_inval_fn fn, void *ctx);
/* Whether the kernel agreed to passthrough (from the FUSE init, before any open). */
void vfs_set_passthrough(vfs *v, bool available);
/*
 * An open vfs_open meant for passthrough could not get it (the backing
 * file could not be registered): it is served from the page cache, and so
 * is every later open.
 */
void vfs_passthrough_failed(vfs *v, vfs_file *f);
/* Before vfs_start. */
void vfs_set_status_hook(vfs *v, vfs_status_fn fn, void *ctx);
void vfs_destroy(vfs *v);
/* Makes v a cluster member's mount (h is copied). Before serving requests. */
void vfs_set_cluster(vfs *v, const struct vfs_cluster *h);
/* Another host made collection name: it appears here (store, compactor, the root listing). */
int vfs_collection_appeared(vfs *v, const char *name);
/* The compactor's published() event: ctx is the vfs. */
void vfs_published(void *ctx, const char *coll, uint64_t id);
/*
 * Housekeeping of coll, called now and then from the compactor thread:
 * removes dot-files of incoming/ (temp files of killed rsyncs) that no
 * handle holds and that were not modified for cfg.stale_dotfiles_ms.
 */
void vfs_housekeeping(vfs *v, const char *coll);

int vfs_lookup(vfs *v, uint64_t parent, const char *name, struct vfs_entry *e);
/* Returns true when the inode is gone (the kernel may not name it again). */
bool vfs_forget(vfs *v, uint64_t ino, uint64_t nlookup);
int vfs_getattr(vfs *v, uint64_t ino, struct stat *st, double *timeout);
/* f: the handle the kernel names (ftruncate, fchmod...), or NULL: then the name is acted on. */
int vfs_setattr(vfs *v, uint64_t ino, vfs_file *f, int to_set, const struct stat *attr,
		struct stat *out, double *timeout);
int vfs_readlink(vfs *v, uint64_t ino, char *buf, size_t len);
int vfs_statfs(vfs *v, struct statvfs *out);

int vfs_mkdir(vfs *v, uint64_t parent, const char *name, struct vfs_entry *e);
int vfs_rmdir(vfs *v, uint64_t parent, const char *name);
int vfs_unlink(vfs *v, uint64_t parent, const char *name);
int vfs_rename(vfs *v, uint64_t parent, const char *name, uint64_t newparent, const char *newname,
	       unsigned flags);
/* Any other kind of creation (mknod, symlink, link) outside or inside incoming/. */
int vfs_refuse_create(vfs *v, uint64_t parent);

/* Directories: entries are fixed at opendir. */
int vfs_opendir(vfs *v, uint64_t ino, vfs_dir **d, bool *cache_readdir);
/*
 * Entry i of d (0-based, "." and ".." included). With plus, e is filled
 * as by lookup and the lookup count of the entry is raised. Returns 0,
 * or -ENOENT past the end.
 */
int vfs_readdir_entry(vfs *v, vfs_dir *d, size_t i, bool plus, const char **name,
		      struct vfs_entry *e);
void vfs_releasedir(vfs *v, vfs_dir *d);

int vfs_open(vfs *v, uint64_t ino, int flags, vfs_file **f, struct vfs_open_info *info);
int vfs_create_file(vfs *v, uint64_t parent, const char *name, mode_t mode, int flags,
		    struct vfs_entry *e, vfs_file **f, struct vfs_open_info *info);
/*
 * Where to read size bytes at off: either mem and len (generated content),
 * or *fd (a backing file to read or splice from, at off).
 */
int vfs_read(vfs *v, vfs_file *f, size_t size, off_t off, const char **mem, size_t *len, int *fd);
ssize_t vfs_write(vfs *v, vfs_file *f, const char *buf, size_t size, off_t off);
int vfs_flush(vfs *v, vfs_file *f);
int vfs_fsync(vfs *v, vfs_file *f, bool datasync);
void vfs_release(vfs *v, vfs_file *f);

#endif
