/*
 * vfs_i.h — what the files of the vfs module share (not an interface;
 * vfs.h is):
 *
 *   vfs.c         life cycle, lookups and attributes
 *   vfs_node.c    nodes, attributes, name resolution
 *   vfs_retire.c  shown snapshots, retention, retirement of snapshots in use
 *   vfs_ns.c      mkdir, rmdir, unlink, rename, queueing deltas
 *   vfs_dir.c     directory handles
 *   vfs_file.c    file handles
 *   vfs_status.c  status and metrics
 *
 * Nodes: every name the kernel has looked up (or that has open handles)
 * has a struct node, found by inode number and by key (kind, collection,
 * snapshot id, name). A node lives while the kernel's lookup count or an
 * open handle holds it; inode numbers are never reused.
 *
 * Locking: vfs->mu protects nodes, collections and their id lists. It is
 * held across store calls that must not interleave with namespace
 * changes (queueing a delta, creating a collection); it is never held
 * while calling the inval notifier. Lock order: vfs->mu, compactor->mu.
 */
#ifndef SNAPFS_VFS_I_H
#define SNAPFS_VFS_I_H

#include <stdbool.h>
#include <stdint.h>

#include "trailhash.h"
#include "vfs.h"

#define VFS_WRITEBACK_BYTES (8u << 20) /* a delta being written: writeback started this often */
#define VFS_WRITE_BLKSIZE (1 << 20)    /* st_blksize of files in incoming/: libfuse's max_write */
#define T_LONG 86400.0                 /* for what never changes: sealed snapshots, fixed names */
#define NBUCKETS 4096

enum nkind {
	N_ROOT = 1,
	N_META,
	N_META_STATUS,
	N_META_METRICS,
	N_COLL,
	N_COLL_STATUS,
	N_INCOMING,
	N_INFILE,
	N_SNAPS,
	N_SNAPDIR,
	N_SNAPDB,
	N_MANIFEST,
	N_LATEST,
	N_REJECTED,
	N_REJFILE,
};

struct node {
	uint64_t ino;
	enum nkind kind;
	char coll[STORE_NAME_MAX + 1];
	uint64_t id; /* N_SNAPDIR, N_SNAPDB, N_MANIFEST */
	char *name;  /* N_INFILE, N_REJFILE */
	char *key;   /* NULL once the name is gone (unlinked, renamed over, queued) */
	uint64_t nlookup;
	unsigned opens;   /* open handles, files and directories */
	unsigned writers; /* open handles with write access (N_INFILE) */
	int write_error; /* N_INFILE: errno of a failed write or flush since the file was last truncated */
	/*
	 * Sealed files: open handles served by passthrough and from the page
	 * cache. The kernel refuses an open in one way while the inode is open
	 * in the other, and it drops its count at close, before the RELEASE
	 * reaches us: so while either count here is non-zero, new opens go the
	 * same way (vfs_file.c, read_via_passthrough).
	 */
	unsigned pt_opens, cache_opens;
	/*
	 * N_INFILE: the file's SHA-256 taken as it is written (trailhash.h),
	 * or NULL. Set only at create, on an empty file with no other writer,
	 * so that every handle that can write it reports to it (file_new
	 * gives each writer a reference); handed to the compactor when the
	 * file is queued. Under v->mu.
	 */
	trailhash *hash;
	struct node *next_ino, *next_key;
};

struct vcoll {
	char name[STORE_NAME_MAX + 1];
	uint64_t *ids; /* shown snapshots, ascending */
	size_t nids, capids;
	uint64_t *retired; /* retired but in use */
	size_t nretired, capretired;
	bool removing; /* rmdir is removing it: no new file in incoming/ */
	struct vcoll *next;
};

/* I/O decided under v->mu and done once it is dropped (vfs_defer, vfs_unlock). */
enum vfs_work_kind {
	VFS_WORK_REMOVE_SNAPSHOT, /* store_snapshot_remove(coll, id) */
	VFS_WORK_QUEUE_SYNC,      /* store_queue_sync(coll): a delta was queued */
	VFS_WORK_SYNC_INCOMING,   /* fsync incoming/ of coll: a rename there */
	VFS_WORK_INVAL_DIR,       /* the kernel drops its cached listing of directory inode id */
};

struct vfs_work {
	enum vfs_work_kind kind;
	char coll[STORE_NAME_MAX + 1];
	uint64_t id;
	struct vfs_work *next;
};

struct vfs {
	store *st;
	compactor *comp;
	struct vfs_config cfg;
	time_t started;
	uid_t uid;
	gid_t gid;
	vfs_inval_fn inval;
	void *inval_ctx;
	vfs_status_fn status_hook;
	void *status_ctx;
	struct vfs_cluster cluster; /* queued NULL: not a cluster member; fixed once serving */
	bool passthrough;           /* the kernel serves passthrough opens; protected by mu */
	pthread_mutex_t mu;
	uint64_t next_ino;             /* protected by mu */
	struct node *by_ino[NBUCKETS]; /* protected by mu */
	struct node *by_key[NBUCKETS]; /* protected by mu */
	struct vcoll *colls;           /* protected by mu */
	/*
	 * Open handles, protected by mu. An unmount can overtake RELEASEs
	 * still on their way, so vfs_destroy frees what is left here.
	 */
	struct vfs_file *files;
	struct vfs_dir *dirs;
	/*
	 * Slow filesystem work (fsyncs, deleting retired snapshots) decided
	 * under mu, run by vfs_unlock after mu is dropped, so that no reader
	 * of the mount waits behind it. Protected by mu.
	 */
	struct vfs_work *work;
};

struct vfs_dentry {
	char *name;
	enum nkind kind;
	uint64_t id;
};

struct vfs_dir {
	struct node *node;
	struct vfs_dir *prev, *next; /* in vfs->dirs */
	struct vfs_dentry *ents;
	size_t n, cap;
};

struct vfs_file {
	struct node *node;
	struct vfs_file *prev, *next; /* in vfs->files */
	int fd;                       /* backing file, or -1 for generated content */
	bool writable;
	bool passthrough;  /* a sealed file served by passthrough (else from the page cache) */
	uint64_t unsynced; /* bytes written since the disk was last told to start writing */
	trailhash *hash;   /* a writer's reference to node->hash (NULL: none); set at open */
	char *mem;         /* generated content (status, metrics) */
	size_t memlen;
};

/* Intrusive doubly linked lists of open handles (vfs->files, vfs->dirs). */
#define LIST_PUSH(head, x)                                                                         \
	do {                                                                                       \
		(x)->prev = NULL;                                                                  \
		(x)->next = (head);                                                                \
		if (head)                                                                          \
			(head)->prev = (x);                                                        \
		(head) = (x);                                                                      \
	} while (0)
#define LIST_UNLINK(head, x)                                                                       \
	do {                                                                                       \
		if ((x)->prev)                                                                     \
			(x)->prev->next = (x)->next;                                               \
		else                                                                               \
			(head) = (x)->next;                                                        \
		if ((x)->next)                                                                     \
			(x)->next->prev = (x)->prev;                                               \
	} while (0)

/* A name the kernel should forget: entry name in directory parent. */
struct inval {
	uint64_t parent;
	char name[STORE_NAME_MAX + 16];
};

struct node *vfs_node_by_ino(vfs *v, uint64_t ino);
/*
 * The kernel caches directory listings (fsops.c answers OPENDIR with
 * ENOSYS, and then every listing is cached until invalidated): a listing
 * the daemon changes must be dropped. Defers that for the directory of
 * kind (N_ROOT, N_COLL, N_SNAPS, N_INCOMING) of coll, if the kernel knows
 * it; with v->mu held.
 */
void vfs_dir_changed(vfs *v, enum nkind kind, const char *coll);
struct node *vfs_node_by_key(vfs *v, const char *key);
void vfs_node_unkey(vfs *v, struct node *n);
void vfs_node_setkey(vfs *v, struct node *n, char *key);
struct node *vfs_node_get(vfs *v, enum nkind kind, const char *coll, uint64_t id, const char *name);
void vfs_node_free(vfs *v, struct node *n);
char *vfs_key(enum nkind kind, const char *coll, uint64_t id, const char *name);
struct vcoll *vfs_coll_find(vfs *v, const char *name);
int vfs_ids_push(uint64_t **ids, size_t *n, size_t *cap, uint64_t id);
void vfs_ids_remove_at(uint64_t *ids, size_t *n, size_t i);
bool vfs_ids_has(const uint64_t *ids, size_t n, uint64_t id);
bool vfs_is_snap_kind(enum nkind k);
bool vfs_snap_in_use(vfs *v, const char *coll, uint64_t id);
size_t vfs_retired_names(vfs *v, const char *coll, uint64_t id, struct inval *out, size_t max);
void vfs_send_invals(vfs *v, const struct inval *iv, size_t n);
void vfs_node_maybe_free(vfs *v, struct node *n);
size_t vfs_retain(vfs *v, struct vcoll *c, uint64_t *inval, size_t max);
struct vcoll *vfs_coll_load(vfs *v, const char *name);
void vfs_coll_free(struct vcoll *c);
int vfs_node_path(vfs *v, const struct node *n, char *buf, size_t len);
int vfs_node_stat(vfs *v, struct node *n, struct stat *st, double *timeout);
int vfs_fill_entry(vfs *v, struct node *n, struct vfs_entry *e);
bool vfs_name_ok(const char *name);
/* A name a file in incoming/ may take: -ENAMETOOLONG past STORE_DELTA_NAME_MAX unless a dot-file. */
int vfs_incoming_name_check(const char *name);
const char *vfs_snap_file_name(const struct node *dir, char *buf, size_t len);
int vfs_resolve(vfs *v, struct node *p, const char *name, struct node **out, double *neg_timeout);
void vfs_dir_free(vfs_dir *d);
void vfs_node_close(vfs *v, struct node *n, struct inval *iv, size_t max, size_t *niv);
void vfs_gen_status(vfs *v, struct node *n, sbuf *b);
bool vfs_queue_delta(vfs *v, struct node *n);
bool vfs_is_retired(vfs *v, const char *coll, uint64_t id);
void vfs_snap_maybe_delete(vfs *v, const struct node *n);
/* vfs.c: the namespace lock, and the work done once it is dropped. */
void vfs_lock(vfs *v);
/* Drops v->mu, then runs (and frees) the work deferred while it was held. */
void vfs_unlock(vfs *v);
/* With v->mu held: adds work for vfs_unlock (out of memory: done at once, still correct). */
void vfs_defer(vfs *v, enum vfs_work_kind kind, const char *coll, uint64_t id);

#endif
