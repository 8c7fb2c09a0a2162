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

#include "log.h"
#include "sbuf.h"

/* ---- lifecycle ---- */

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
	pthread_mutex_lock(&v->mu);
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = compactor_add(c, names[i]);
		if (rc < 0) {
			log_err("collection %s: cannot recover it: %s", names[i], strerror(-rc));
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
	pthread_mutex_unlock(&v->mu);
	store_names_free(names, n);
	return rc;
}

void vfs_set_notifier(vfs *v, vfs_inval_fn fn, void *ctx)
{
	v->inval = fn;
	v->inval_ctx = ctx;
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
	pthread_mutex_lock(&v->mu);
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
	pthread_mutex_unlock(&v->mu);
	return rc;
}

bool vfs_forget(vfs *v, uint64_t ino, uint64_t nlookup)
{
	bool gone = false;
	pthread_mutex_lock(&v->mu);
	struct node *n = vfs_node_by_ino(v, ino);
	if (n) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		gone = n->nlookup == 0 && n->opens == 0 && n->kind != N_ROOT;
		vfs_node_maybe_free(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return gone;
}

int vfs_getattr(vfs *v, uint64_t ino, struct stat *st, double *timeout)
{
	pthread_mutex_lock(&v->mu);
	struct node *n = vfs_node_by_ino(v, ino);
	int rc = n ? vfs_node_stat(v, n, st, timeout) : -ENOENT;
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_setattr(vfs *v, uint64_t ino, int to_set, const struct stat *attr, struct stat *out,
		double *timeout)
{
	char path[PATH_MAX];
	pthread_mutex_lock(&v->mu);
	struct node *n = vfs_node_by_ino(v, ino);
	int rc = !n ? -ENOENT : n->kind != N_INFILE ? -EROFS : vfs_node_path(v, n, path, sizeof(path));
	if (rc == 0 && (to_set & VFS_SET_SIZE) && (uint64_t)attr->st_size > v->cfg.max_delta_size)
		rc = -EFBIG;
	if (rc == 0 && (to_set & VFS_SET_SIZE) && truncate(path, attr->st_size) < 0)
		rc = -errno;
	if (rc == 0 && (to_set & VFS_SET_MODE) && chmod(path, attr->st_mode & 07777) < 0)
		rc = -errno;
	if (rc == 0 && (to_set & (VFS_SET_UID | VFS_SET_GID)) &&
	    lchown(path, (to_set & VFS_SET_UID) ? attr->st_uid : (uid_t)-1,
		   (to_set & VFS_SET_GID) ? attr->st_gid : (gid_t)-1) < 0)
		rc = -errno;
	if (rc == 0 && (to_set & (VFS_SET_ATIME | VFS_SET_MTIME | VFS_SET_ATIME_NOW |
				  VFS_SET_MTIME_NOW))) {
		struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
		if (to_set & VFS_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & VFS_SET_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & VFS_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & VFS_SET_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
			rc = -errno;
	}
	if (rc == 0)
		rc = vfs_node_stat(v, n, out, timeout);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_readlink(vfs *v, uint64_t ino, char *buf, size_t len)
{
	pthread_mutex_lock(&v->mu);
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
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_statfs(vfs *v, struct statvfs *out)
{
	return statvfs(store_root(v->st), out) < 0 ? -errno : 0;
}

