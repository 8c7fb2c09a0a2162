/*
 * vfs_dir — directory handles: listings fixed at opendir, read entry by
 * entry (readdirplus raising lookup counts).
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

void vfs_dir_free(vfs_dir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d);
}

/* ---- directories ---- */

static int dir_add(vfs_dir *d, const char *name, enum nkind kind, uint64_t id)
{
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 16;
		struct vfs_dentry *p = realloc(d->ents, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		d->ents = p;
		d->cap = nc;
	}
	char *s = strdup(name);
	if (!s)
		return -ENOMEM;
	d->ents[d->n++] = (struct vfs_dentry){s, kind, id};
	return 0;
}

static int dir_add_backing(vfs *v, vfs_dir *d, const char *coll, enum store_area area, enum nkind kind)
{
	char path[PATH_MAX];
	int rc = store_path(v->st, coll, area, NULL, path, sizeof(path));
	if (rc < 0)
		return rc;
	DIR *dir = opendir(path);
	if (!dir)
		return -errno;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dir)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = dir_add(d, de->d_name, kind, 0);
	closedir(dir);
	return rc;
}

/*
 * The listing of incoming/ or rejected/ of coll: read from the store
 * without the namespace lock (a directory of many files must not stall
 * every other request), then fixed in d.
 */
static int backing_listing(vfs *v, uint64_t ino, vfs_dir *d)
{
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	enum nkind kind = n ? n->kind : N_ROOT;
	char coll[STORE_NAME_MAX + 1];
	snprintf(coll, sizeof(coll), "%s", n ? n->coll : "");
	vfs_unlock(v);
	if (kind == N_INCOMING)
		return dir_add_backing(v, d, coll, STORE_AREA_INCOMING, N_INFILE);
	if (kind == N_REJECTED)
		return dir_add_backing(v, d, coll, STORE_AREA_REJECTED, N_REJFILE);
	return 0;
}

int vfs_opendir(vfs *v, uint64_t ino, vfs_dir **out, bool *cache_readdir)
{
	vfs_dir *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*cache_readdir = false;
	int rc = dir_add(d, ".", 0, 0);
	if (rc == 0)
		rc = dir_add(d, "..", 0, 0);
	if (rc == 0)
		rc = backing_listing(v, ino, d);
	if (rc < 0) {
		vfs_dir_free(d);
		return rc;
	}
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	struct vcoll *c =
		n && n->kind != N_ROOT && n->kind != N_META ? vfs_coll_find(v, n->coll) : NULL;
	char buf[PATH_MAX];
	if (!n || (n->kind != N_ROOT && n->kind != N_META && !c))
		rc = -ENOENT;
	if (rc == 0) {
		switch (n->kind) {
		case N_ROOT:
			rc = dir_add(d, ".snapfs", N_META, 0);
			for (struct vcoll *vc = v->colls; rc == 0 && vc; vc = vc->next)
				rc = dir_add(d, vc->name, N_COLL, 0);
			break;
		case N_META:
			if ((rc = dir_add(d, "status", N_META_STATUS, 0)) == 0)
				rc = dir_add(d, "metrics", N_META_METRICS, 0);
			break;
		case N_COLL:
			rc = dir_add(d, "incoming", N_INCOMING, 0);
			if (rc == 0)
				rc = dir_add(d, "snapshots", N_SNAPS, 0);
			if (rc == 0 && c->nids)
				rc = dir_add(d, "latest", N_LATEST, 0);
			if (rc == 0)
				rc = dir_add(d, "rejected", N_REJECTED, 0);
			if (rc == 0)
				rc = dir_add(d, "status", N_COLL_STATUS, 0);
			break;
		case N_INCOMING:
		case N_REJECTED: break; /* listed by backing_listing, without the lock */
		case N_SNAPS:
			for (size_t i = 0; rc == 0 && i < c->nids; i++) {
				store_id_format(c->ids[i], buf, sizeof(buf));
				rc = dir_add(d, buf, N_SNAPDIR, c->ids[i]);
			}
			break;
		case N_SNAPDIR:
			rc = dir_add(d, vfs_snap_file_name(n, buf, sizeof(buf)), N_SNAPDB, n->id);
			if (rc == 0)
				rc = dir_add(d, "MANIFEST.json", N_MANIFEST, n->id);
			*cache_readdir = true;
			break;
		default: rc = -ENOTDIR;
		}
	}
	if (rc == 0) {
		d->node = n;
		n->opens++;
		LIST_PUSH(v->dirs, d);
		*out = d;
	}
	vfs_unlock(v);
	if (rc < 0)
		vfs_dir_free(d);
	return rc;
}

int vfs_readdir_entry(vfs *v, vfs_dir *d, size_t i, bool plus, const char **name, struct vfs_entry *e)
{
	if (i >= d->n)
		return -ENOENT;
	memset(e, 0, sizeof(*e));
	*name = d->ents[i].name;
	if (i < 2) { /* "." and "..": no lookup, the kernel ignores them */
		e->st.st_ino = d->node->ino;
		e->st.st_mode = S_IFDIR;
		return 0;
	}
	vfs_lock(v);
	struct node *n = NULL;
	double neg;
	int rc = vfs_resolve(v, d->node, d->ents[i].name, &n, &neg);
	if (rc == 0)
		rc = vfs_fill_entry(v, n, e);
	if (rc == 0 && plus)
		n->nlookup++;
	if (rc < 0) {
		/* Gone since opendir: list it without attributes. */
		if (n)
			vfs_node_maybe_free(v, n);
		memset(e, 0, sizeof(*e));
		e->st.st_ino = 0xffffffffULL;
		e->st.st_mode = S_IFREG;
		rc = 0;
	} else if (!plus) {
		e->ino = 0;
		vfs_node_maybe_free(v, n);
	}
	vfs_unlock(v);
	return rc;
}

/* With v->mu held: drops one handle of n; *niv names for the kernel to forget. */
void vfs_node_close(vfs *v, struct node *n, struct inval *iv, size_t max, size_t *niv)
{
	n->opens--;
	struct node copy = *n;
	vfs_node_maybe_free(v, n);
	*niv = vfs_is_snap_kind(copy.kind) ? vfs_retired_names(v, copy.coll, copy.id, iv, max) : 0;
}

void vfs_releasedir(vfs *v, vfs_dir *d)
{
	struct inval iv[3];
	size_t niv;
	vfs_lock(v);
	LIST_UNLINK(v->dirs, d);
	vfs_node_close(v, d->node, iv, 3, &niv);
	vfs_unlock(v);
	vfs_send_invals(v, iv, niv);
	vfs_dir_free(d);
}
