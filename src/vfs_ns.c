/*
 * vfs_ns — namespace changes: collections (mkdir, rmdir) and the files of
 * incoming/ (unlink, rename), and queueing a complete delta.
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

/* ---- namespace changes ---- */

int vfs_mkdir(vfs *v, uint64_t parent, const char *name, struct vfs_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (parent != VFS_ROOT_INO)
		return -EROFS;
	if (!store_name_valid(name)) {
		log_warn("mkdir %s refused: a collection name is 1-%d characters of A-Z a-z 0-9 _ -, "
			 "starting with a letter or digit",
			 name, STORE_NAME_MAX);
		return -EINVAL;
	}
	pthread_mutex_lock(&v->mu);
	int rc = vfs_coll_find(v, name) ? -EEXIST : store_collection_create(v->st, name);
	if (rc == 0)
		rc = compactor_add(v->comp, name);
	struct vcoll *c = NULL;
	if (rc == 0 && !(c = vfs_coll_load(v, name)))
		rc = -ENOMEM;
	if (rc == 0) {
		c->next = v->colls;
		v->colls = c;
		struct node *n = vfs_node_get(v, N_COLL, name, 0, NULL);
		rc = n ? vfs_fill_entry(v, n, e) : -ENOMEM;
		if (rc == 0)
			n->nlookup++;
		log_info("collection %s: created", name);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_rmdir(vfs *v, uint64_t parent, const char *name)
{
	if (parent != VFS_ROOT_INO)
		return -EROFS;
	pthread_mutex_lock(&v->mu);
	struct vcoll *c = vfs_coll_find(v, name);
	int rc = c ? compactor_remove(v->comp, name) : -ENOENT;
	if (rc == 0) {
		for (struct vcoll **p = &v->colls; *p; p = &(*p)->next) {
			if (*p == c) {
				*p = c->next;
				break;
			}
		}
		vfs_coll_free(c);
		log_info("collection %s: removed", name);
	} else if (rc == -ENOTEMPTY) {
		log_info("rmdir %s refused: it holds snapshots or queued deltas", name);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

/*
 * Queues incoming/NAME of n's collection as a delta; with v->mu held so
 * that nobody opens the name for writing meanwhile. On success the name
 * is gone from incoming/.
 */
void vfs_queue_delta(vfs *v, struct node *n)
{
	uint64_t seq;
	int rc = store_queue_add(v->st, n->coll, n->name, &seq);
	if (rc < 0) {
		log_err("collection %s: cannot queue delta %s: %s; it stays in incoming/ and is "
			"queued at the next start",
			n->coll, n->name, strerror(-rc));
		return;
	}
	log_info("collection %s: queued delta %s (#%llu)", n->coll, n->name, (unsigned long long)seq);
	vfs_node_unkey(v, n);
	compactor_kick(v->comp, n->coll);
}

int vfs_unlink(vfs *v, uint64_t parent, const char *name)
{
	char path[PATH_MAX];
	pthread_mutex_lock(&v->mu);
	struct node *p = vfs_node_by_ino(v, parent);
	int rc = !p ? -ENOENT : p->kind != N_INCOMING ? -EROFS : 0;
	if (rc == 0 && !vfs_name_ok(name))
		rc = -ENOENT;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, path, sizeof(path));
	if (rc == 0 && unlink(path) < 0)
		rc = -errno;
	if (rc == 0) {
		char *key = vfs_key(N_INFILE, p->coll, 0, name);
		struct node *n = vfs_node_by_key(v, key);
		free(key);
		if (n)
			vfs_node_unkey(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_rename(vfs *v, uint64_t parent, const char *name, uint64_t newparent, const char *newname,
	       unsigned flags)
{
	char from[PATH_MAX], to[PATH_MAX];
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	pthread_mutex_lock(&v->mu);
	struct node *p = vfs_node_by_ino(v, parent), *np = vfs_node_by_ino(v, newparent);
	int rc = 0;
	if (!p || !np)
		rc = -ENOENT;
	else if (p->kind != N_INCOMING || np->kind != N_INCOMING)
		rc = -EROFS;
	else if (strcmp(p->coll, np->coll) != 0)
		rc = -EXDEV;
	else if (!vfs_name_ok(name) || !vfs_name_ok(newname))
		rc = -EINVAL;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, from, sizeof(from));
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, newname, to, sizeof(to));
	if (rc == 0 && renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0)
		rc = -errno;
	if (rc == 0) {
		char *oldkey = vfs_key(N_INFILE, p->coll, 0, name);
		char *newkey = vfs_key(N_INFILE, p->coll, 0, newname);
		struct node *over = vfs_node_by_key(v, newkey);
		if (over)
			vfs_node_unkey(v, over);
		struct node *n = vfs_node_by_key(v, oldkey);
		free(oldkey);
		char *nm = strdup(newname);
		if (n && nm) {
			free(n->name);
			n->name = nm;
			vfs_node_setkey(v, n, newkey);
		} else {
			free(nm);
			free(newkey);
			n = n ? n : vfs_node_get(v, N_INFILE, p->coll, 0, newname);
		}
		/* Renamed to its final name by a writer that is done: a complete delta. */
		if (n && newname[0] != '.' && n->writers == 0)
			vfs_queue_delta(v, n);
		if (n)
			vfs_node_maybe_free(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_refuse_create(vfs *v, uint64_t parent)
{
	pthread_mutex_lock(&v->mu);
	struct node *p = vfs_node_by_ino(v, parent);
	int rc = p && p->kind == N_INCOMING ? -EPERM : -EROFS;
	pthread_mutex_unlock(&v->mu);
	return rc;
}

