/*
 * vfs — the namespace of a snapfs mount, independent of FUSE: life cycle,
 * lookups and attributes. See vfs.h for the contract and vfs_i.h for how
 * the module is laid out and locked.
 */
#include "vfs.h"
#include "vfs_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"
#include "log.h"
#include "sbuf.h"

/* ---- lifecycle ---- */

void vfs_lock(vfs *v)
{
	pthread_mutex_lock(&v->mu);
}

/* One piece of deferred work, without v->mu. */
static void work_run(vfs *v, const struct vfs_work *w)
{
	char dir[PATH_MAX];
	int rc;
	switch (w->kind) {
	case VFS_WORK_REMOVE_SNAPSHOT:
		if (store_snapshot_remove(v->st, w->coll, w->id) == 0)
			log_info("collection %s: removed snapshot %llu (retired, no longer in use)",
				 w->coll, (unsigned long long)w->id);
		break;
	case VFS_WORK_QUEUE_SYNC:
		if ((rc = store_queue_sync(v->st, w->coll)) < 0)
			compactor_report(v->comp, w->coll,
					 "a queued delta may not survive a power loss: fsync of queue/ or incoming/ "
					 "failed: %s",
					 strerror(-rc));
		break;
	case VFS_WORK_INVAL_DIR:
		if (v->inval)
			v->inval(v->inval_ctx, w->id, NULL);
		break;
	case VFS_WORK_SYNC_INCOMING:
		if (store_path(v->st, w->coll, STORE_AREA_INCOMING, NULL, dir, sizeof(dir)) == 0 &&
		    (rc = fsx_fsync_dir(dir)) < 0)
			log_err("collection %s: fsync of %s after a rename failed: %s", w->coll,
				dir, strerror(-rc));
		break;
	}
}

void vfs_defer(vfs *v, enum vfs_work_kind kind, const char *coll, uint64_t id)
{
	struct vfs_work *w = calloc(1, sizeof(*w));
	struct vfs_work now = {.kind = kind, .id = id};
	snprintf(w ? w->coll : now.coll, sizeof(now.coll), "%s", coll);
	if (!w) {
		work_run(v, &now); /* under the lock, but done */
		return;
	}
	w->kind = kind;
	w->id = id;
	/* In order: a collection's queue sync before a later removal, say. */
	struct vfs_work **p = &v->work;
	while (*p)
		p = &(*p)->next;
	*p = w;
}

void vfs_dir_changed(vfs *v, enum nkind kind, const char *coll)
{
	if (kind == N_ROOT) {
		vfs_defer(v, VFS_WORK_INVAL_DIR, "", VFS_ROOT_INO);
		return;
	}
	char *key = vfs_key(kind, coll, 0, NULL);
	struct node *n = key ? vfs_node_by_key(v, key) : NULL;
	free(key);
	if (n && n->nlookup)
		vfs_defer(v, VFS_WORK_INVAL_DIR, coll, n->ino);
}

void vfs_unlock(vfs *v)
{
	struct vfs_work *w = v->work;
	v->work = NULL;
	pthread_mutex_unlock(&v->mu);
	while (w) {
		struct vfs_work *next = w->next;
		work_run(v, w);
		free(w);
		w = next;
	}
}

int vfs_create(const struct vfs_config *cfg, vfs **out)
{
	vfs *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cfg = *cfg;
	if (v->cfg.keep < 1)
		v->cfg.keep = 1;
	v->started = time(NULL);
	v->uid = getuid();
	v->gid = getgid();
	v->next_ino = VFS_ROOT_INO + 1;
	pthread_mutex_init(&v->mu, NULL);
	if (!vfs_node_get(v, N_ROOT, NULL, 0, NULL)) {
		vfs_destroy(v);
		return -ENOMEM;
	}
	*out = v;
	return 0;
}

int vfs_start(vfs *v, store *st, compactor *c)
{
	v->st = st;
	v->comp = c;
	char **names = NULL;
	size_t n = 0;
	int rc = store_collections(v->st, &names, &n);
	if (rc < 0)
		return rc;
	vfs_lock(v);
	for (size_t i = 0; i < n && rc == 0; i++) {
		/* Never fails for one collection's trouble (compactor.h): only out of memory. */
		rc = compactor_add(c, names[i]);
		if (rc < 0) {
			log_err("collection %s: cannot serve it: %s", names[i], strerror(-rc));
			break;
		}
		struct vcoll *vc = vfs_coll_load(v, names[i]);
		if (!vc) {
			rc = -ENOMEM;
			break;
		}
		vc->next = v->colls;
		v->colls = vc;
		uint64_t unused[1];
		vfs_retain(v, vc, unused, 0);
		log_info("collection %s: %zu snapshots", vc->name, vc->nids);
	}
	vfs_unlock(v);
	store_names_free(names, n);
	return rc;
}

void vfs_set_notifier(vfs *v, vfs_inval_fn fn, void *ctx)
{
	v->inval = fn;
	v->inval_ctx = ctx;
}

void vfs_set_cluster(vfs *v, const struct vfs_cluster *h)
{
	v->cluster = *h;
}

void vfs_set_status_hook(vfs *v, vfs_status_fn fn, void *ctx)
{
	v->status_hook = fn;
	v->status_ctx = ctx;
}

void vfs_destroy(vfs *v)
{
	if (!v)
		return;
	/* Handles the kernel never released (unmount overtook RELEASE). */
	while (v->files) {
		vfs_file *f = v->files;
		v->files = f->next;
		if (f->fd >= 0)
			close(f->fd);
		trailhash_put(f->hash);
		free(f->mem);
		free(f);
	}
	while (v->dirs) {
		vfs_dir *d = v->dirs;
		v->dirs = d->next;
		vfs_dir_free(d);
	}
	for (size_t b = 0; b < NBUCKETS; b++) {
		while (v->by_ino[b]) {
			struct node *n = v->by_ino[b];
			v->by_ino[b] = n->next_ino;
			trailhash_put(n->hash);
			free(n->key);
			free(n->name);
			free(n);
		}
	}
	while (v->colls) {
		struct vcoll *c = v->colls;
		v->colls = c->next;
		vfs_coll_free(c);
	}
	pthread_mutex_destroy(&v->mu);
	free(v);
}

/* ---- lookups and attributes ---- */

int vfs_lookup(vfs *v, uint64_t parent, const char *name, struct vfs_entry *e)
{
	memset(e, 0, sizeof(*e));
	vfs_lock(v);
	struct node *p = vfs_node_by_ino(v, parent), *n = NULL;
	double neg = 0;
	int rc = p ? vfs_resolve(v, p, name, &n, &neg) : -ENOENT;
	if (rc == 0) {
		rc = vfs_fill_entry(v, n, e);
		if (rc == 0)
			n->nlookup++;
		else
			vfs_node_maybe_free(v, n);
	}
	if (rc == -ENOENT)
		e->entry_timeout = neg;
	vfs_unlock(v);
	return rc;
}

bool vfs_forget(vfs *v, uint64_t ino, uint64_t nlookup)
{
	bool gone = false;
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	if (n) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		gone = n->nlookup == 0 && n->opens == 0 && n->kind != N_ROOT;
		vfs_node_maybe_free(v, n);
	}
	vfs_unlock(v);
	return gone;
}

int vfs_getattr(vfs *v, uint64_t ino, struct stat *st, double *timeout)
{
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	int rc = n ? vfs_node_stat(v, n, st, timeout) : -ENOENT;
	vfs_unlock(v);
	return rc;
}

/*
 * setattr acts on the handle's own file when the kernel names one (an
 * ftruncate, fchmod...): by the time it arrives, the name may belong to
 * another file (renamed over, or queued and made again). Without a
 * handle it acts on the name, which must still be this node's.
 */
int vfs_setattr(vfs *v, uint64_t ino, vfs_file *f, int to_set, const struct stat *attr,
		struct stat *out, double *timeout)
{
	char path[PATH_MAX];
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	/*
	 * Only an incoming/ file's handle is a vfs_file (a directory's fh is a
	 * vfs_dir). Without one (fchmod, futimens come without), any open
	 * handle of this node is its own file all the same.
	 */
	if (n && n->kind == N_INFILE && !(f && f->node == n))
		for (f = v->files; f && f->node != n; f = f->next)
			;
	bool by_fd = n && n->kind == N_INFILE && f && f->node == n && f->fd >= 0;
	int rc = !n ? -ENOENT : n->kind != N_INFILE ? -EROFS : 0;
	if (rc == 0 && !by_fd)
		rc = !n->key ? -ENOENT : vfs_node_path(v, n, path, sizeof(path));
	int fd = by_fd ? f->fd : -1;
	if (rc == 0 && (to_set & VFS_SET_SIZE) && (uint64_t)attr->st_size > v->cfg.max_delta_size)
		rc = -EFBIG;
	if (rc == 0 && (to_set & VFS_SET_SIZE) && n->hash)
		trailhash_break(n->hash); /* no longer a file written in one pass */
	if (rc == 0 && (to_set & VFS_SET_SIZE) &&
	    (by_fd ? ftruncate(fd, attr->st_size) : truncate(path, attr->st_size)) < 0)
		rc = -errno;
	if (rc == 0 && (to_set & VFS_SET_SIZE) && attr->st_size == 0)
		n->write_error = 0; /* emptied: whatever failed before is gone */
	if (rc == 0 && (to_set & VFS_SET_MODE) &&
	    (by_fd ? fchmod(fd, attr->st_mode & 07777) : chmod(path, attr->st_mode & 07777)) < 0)
		rc = -errno;
	if (rc == 0 && (to_set & (VFS_SET_UID | VFS_SET_GID))) {
		uid_t uid = (to_set & VFS_SET_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & VFS_SET_GID) ? attr->st_gid : (gid_t)-1;
		if ((by_fd ? fchown(fd, uid, gid) : lchown(path, uid, gid)) < 0)
			rc = -errno;
	}
	if (rc == 0 &&
	    (to_set & (VFS_SET_ATIME | VFS_SET_MTIME | VFS_SET_ATIME_NOW | VFS_SET_MTIME_NOW))) {
		struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
		if (to_set & VFS_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & VFS_SET_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & VFS_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & VFS_SET_MTIME)
			ts[1] = attr->st_mtim;
		if ((by_fd ? futimens(fd, ts) : utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW)) <
		    0)
			rc = -errno;
	}
	if (rc == 0 && by_fd) {
		/* Attributes of the handle's file, which may no longer have this name. */
		rc = fstat(fd, out) < 0 ? -errno : 0;
		if (rc == 0) {
			out->st_ino = n->ino;
			*timeout = 0;
		}
	} else if (rc == 0) {
		rc = vfs_node_stat(v, n, out, timeout);
	}
	vfs_unlock(v);
	return rc;
}

int vfs_readlink(vfs *v, uint64_t ino, char *buf, size_t len)
{
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	struct vcoll *c = n && n->kind == N_LATEST ? vfs_coll_find(v, n->coll) : NULL;
	int rc = -EINVAL;
	if (n && n->kind == N_LATEST)
		rc = -ENOENT;
	if (c && c->nids > 0) {
		char idname[24];
		store_id_format(c->ids[c->nids - 1], idname, sizeof(idname));
		snprintf(buf, len, "snapshots/%s", idname);
		rc = 0;
	}
	vfs_unlock(v);
	return rc;
}

int vfs_statfs(vfs *v, struct statvfs *out)
{
	return statvfs(store_root(v->st), out) < 0 ? -errno : 0;
}
