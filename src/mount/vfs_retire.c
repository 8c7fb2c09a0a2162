/*
 * vfs_retire — the snapshots each collection shows, retention, and the
 * retirement of snapshots still in use.
 *
 * A retired snapshot vanishes from snapshots/ at once; its files are
 * deleted from the store only when no node of it is known to the kernel
 * or open (vfs_snap_in_use), which covers open files and a shell's cwd
 * alike. Functions here run with v->mu held, except vfs_published; the
 * files of a snapshot are deleted by vfs_unlock, after the lock is
 * dropped (a retired id is already out of every list, so nothing can
 * find it meanwhile).
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

/* ---- collections and snapshots ---- */

struct vcoll *vfs_coll_find(vfs *v, const char *name)
{
	for (struct vcoll *c = v->colls; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

int vfs_ids_push(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		uint64_t *p = realloc(*ids, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*ids = p;
		*cap = nc;
	}
	(*ids)[(*n)++] = id;
	return 0;
}

void vfs_ids_remove_at(uint64_t *ids, size_t *n, size_t i)
{
	memmove(&ids[i], &ids[i + 1], (*n - i - 1) * sizeof(*ids));
	(*n)--;
}

bool vfs_ids_has(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

bool vfs_is_snap_kind(enum nkind k)
{
	return k == N_SNAPDIR || k == N_SNAPDB || k == N_MANIFEST;
}

/* Whether the kernel knows, or a handle holds, any inode of the snapshot. */
bool vfs_snap_in_use(vfs *v, const char *coll, uint64_t id)
{
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct node *n = v->by_ino[b]; n; n = n->next_ino)
			if (vfs_is_snap_kind(n->kind) && n->id == id && !strcmp(n->coll, coll) &&
			    (n->nlookup || n->opens))
				return true;
	return false;
}

/* A retired snapshot whose last user went away is deleted; with v->mu held. */
void vfs_snap_maybe_delete(vfs *v, const struct node *n)
{
	if (!vfs_is_snap_kind(n->kind))
		return;
	struct vcoll *c = vfs_coll_find(v, n->coll);
	if (!c)
		return;
	for (size_t i = 0; i < c->nretired; i++) {
		if (c->retired[i] != n->id)
			continue;
		if (vfs_snap_in_use(v, n->coll, n->id))
			return;
		uint64_t id = c->retired[i];
		vfs_ids_remove_at(c->retired, &c->nretired, i);
		log_info("collection %s: retired snapshot %llu released by its last reader",
			 c->name, (unsigned long long)id);
		vfs_defer(v, VFS_WORK_REMOVE_SNAPSHOT, c->name, id);
		return;
	}
}

bool vfs_is_retired(vfs *v, const char *coll, uint64_t id)
{
	struct vcoll *c = vfs_coll_find(v, coll);
	return c && vfs_ids_has(c->retired, c->nretired, id);
}

/*
 * For a retired snapshot that no handle holds any more: the names of its
 * inodes the kernel still caches, so that dropping them lets the kernel
 * send FORGET and the files can go (an unused child dentry under an
 * invalidated directory would otherwise stay cached indefinitely).
 * With v->mu held; returns how many were written to out.
 */
size_t vfs_retired_names(vfs *v, const char *coll, uint64_t id, struct inval *out, size_t max)
{
	if (!vfs_is_retired(v, coll, id))
		return 0;
	size_t n = 0;
	struct node *dir = NULL;
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct node *x = v->by_ino[b]; x; x = x->next_ino) {
			if (!vfs_is_snap_kind(x->kind) || x->id != id || strcmp(x->coll, coll))
				continue;
			if (x->opens)
				return 0; /* still open: wait for its release */
			if (x->kind == N_SNAPDIR)
				dir = x;
		}
	char idname[24];
	store_id_format(id, idname, sizeof(idname));
	char *key = vfs_key(N_SNAPS, coll, 0, NULL);
	struct node *snaps = vfs_node_by_key(v, key);
	free(key);
	if (dir && dir->nlookup && n < max) {
		if (snaps)
			out[n].parent = snaps->ino;
		snprintf(out[n].name, sizeof(out[n].name), "%s", idname);
		n += snaps ? 1 : 0;
	}
	for (size_t b = 0; dir && b < NBUCKETS; b++)
		for (struct node *x = v->by_ino[b]; x && n < max; x = x->next_ino) {
			if ((x->kind != N_SNAPDB && x->kind != N_MANIFEST) || x->id != id ||
			    strcmp(x->coll, coll) || !x->nlookup)
				continue;
			out[n].parent = dir->ino;
			if (x->kind == N_MANIFEST)
				snprintf(out[n].name, sizeof(out[n].name), "MANIFEST.json");
			else
				snprintf(out[n].name, sizeof(out[n].name), "%s.sqlite3", coll);
			n++;
		}
	return n;
}

void vfs_send_invals(vfs *v, const struct inval *iv, size_t n)
{
	for (size_t i = 0; v->inval && i < n; i++)
		v->inval(v->inval_ctx, iv[i].parent, iv[i].name);
}

/* Drops a node the kernel and handles no longer hold; with v->mu held. */
void vfs_node_maybe_free(vfs *v, struct node *n)
{
	if (n->nlookup || n->opens || n->kind == N_ROOT)
		return;
	struct node copy = *n;
	vfs_node_free(v, n);
	vfs_snap_maybe_delete(v, &copy);
}

/*
 * Applies retention to c: retires the oldest shown snapshots beyond
 * cfg.keep. Unused ones are deleted now; ids of those in use are written
 * to inval (the caller tells the kernel to forget their names once it
 * has dropped v->mu). With v->mu held.
 */
size_t vfs_retain(vfs *v, struct vcoll *c, uint64_t *inval, size_t max)
{
	size_t ninval = 0;
	while (c->nids > v->cfg.keep) {
		uint64_t id = c->ids[0];
		vfs_ids_remove_at(c->ids, &c->nids, 0);
		if (vfs_snap_in_use(v, c->name, id)) {
			if (vfs_ids_push(&c->retired, &c->nretired, &c->capretired, id) < 0)
				continue; /* out of memory: the files stay until restart */
			log_info("collection %s: snapshot %llu retired; kept on disk while in use",
				 c->name, (unsigned long long)id);
			if (ninval < max)
				inval[ninval++] = id;
		} else {
			/* Gone from the namespace now; its files go once the lock is dropped. */
			vfs_defer(v, VFS_WORK_REMOVE_SNAPSHOT, c->name, id);
		}
	}
	return ninval;
}

struct vcoll *vfs_coll_load(vfs *v, const char *name)
{
	struct vcoll *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s", name);
	uint64_t *ids = NULL;
	size_t n = 0;
	if (store_snapshots(v->st, name, &ids, &n) == 0) {
		c->ids = ids;
		c->nids = c->capids = n;
	}
	return c;
}

void vfs_coll_free(struct vcoll *c)
{
	free(c->ids);
	free(c->retired);
	free(c);
}

void vfs_published(void *ctx, const char *coll, uint64_t id)
{
	vfs *v = ctx;
	uint64_t retired[64];
	struct inval iv[3 * 64];
	size_t nretired = 0, niv = 0;
	vfs_lock(v);
	struct vcoll *c = vfs_coll_find(v, coll);
	if (c && vfs_ids_push(&c->ids, &c->nids, &c->capids, id) == 0) {
		nretired = vfs_retain(v, c, retired, sizeof(retired) / sizeof(retired[0]));
		vfs_dir_changed(v, N_SNAPS, coll);
		if (c->nids == 1)
			vfs_dir_changed(v, N_COLL, coll); /* latest appears */
	}
	for (size_t i = 0; i < nretired; i++)
		niv += vfs_retired_names(v, coll, retired[i], iv + niv,
					 sizeof(iv) / sizeof(iv[0]) - niv);
	vfs_unlock(v);
	/* Outside the lock: the kernel may call back into us to drop the names. */
	vfs_send_invals(v, iv, niv);
}
