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
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"

/* ---- namespace changes ---- */

/* With v->mu held: makes collection name in the store, the compactor and the list. */
static int coll_add(vfs *v, const char *name)
{
	int rc = vfs_coll_find(v, name) ? -EEXIST : store_collection_create(v->st, name);
	if (rc == 0)
		rc = compactor_add(v->comp, name);
	struct vcoll *c = NULL;
	if (rc == 0 && !(c = vfs_coll_load(v, name)))
		rc = -ENOMEM;
	if (rc == 0) {
		c->next = v->colls;
		v->colls = c;
	}
	return rc;
}

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
	vfs_lock(v);
	int rc = coll_add(v, name);
	if (rc == 0) {
		struct node *n = vfs_node_get(v, N_COLL, name, 0, NULL);
		rc = n ? vfs_fill_entry(v, n, e) : -ENOMEM;
		if (rc == 0)
			n->nlookup++;
		log_info("collection %s: created", name);
		if (v->cluster.made)
			v->cluster.made(v->cluster.ctx, name);
	}
	vfs_unlock(v);
	return rc;
}

int vfs_collection_appeared(vfs *v, const char *name)
{
	if (!store_name_valid(name))
		return -EINVAL;
	vfs_lock(v);
	int rc = coll_add(v, name);
	if (rc == 0)
		vfs_dir_changed(v, N_ROOT, NULL);
	vfs_unlock(v);
	/* The kernel may remember that the name did not exist. */
	if (rc == 0 && v->inval)
		v->inval(v->inval_ctx, VFS_ROOT_INO, name);
	return rc;
}

/* With v->mu held: whether a file of coll's incoming/ is open (a writer may still be at work). */
static bool incoming_open(vfs *v, const char *coll)
{
	for (vfs_file *f = v->files; f; f = f->next)
		if (f->node->kind == N_INFILE && !strcmp(f->node->coll, coll))
			return true;
	return false;
}

/* Whether incoming/ of coll holds a file that is not a dot-file (a delta not queued yet). */
static int incoming_has_deltas(vfs *v, const char *coll)
{
	char path[PATH_MAX];
	int rc = store_path(v->st, coll, STORE_AREA_INCOMING, NULL, path, sizeof(path));
	if (rc < 0)
		return rc;
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	rc = 0;
	while (!rc && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			rc = 1;
	closedir(d);
	return rc;
}

/*
 * rmdir of a collection. The namespace lock is not held while the store
 * and the compactor work (no thread waits on another while holding it):
 * the collection is marked removing first, which refuses new files in
 * its incoming/, and unmarked if the removal is refused.
 */
int vfs_rmdir(vfs *v, uint64_t parent, const char *name)
{
	if (parent != VFS_ROOT_INO)
		return -EROFS;
	if (v->cluster.queued) {
		log_info("rmdir %s refused: on a cluster member a collection belongs to every host",
			 name);
		return -EPERM;
	}
	vfs_lock(v);
	struct vcoll *c = vfs_coll_find(v, name);
	int rc = !c ? -ENOENT : c->removing ? -EBUSY : 0;
	/* A writer still at work in incoming/: its close must not find the file gone. */
	if (rc == 0 && incoming_open(v, name))
		rc = -EBUSY;
	if (rc == 0)
		c->removing = true;
	vfs_unlock(v);
	if (rc < 0) {
		if (rc == -EBUSY)
			log_info("rmdir %s refused: a file in its incoming/ is open", name);
		return rc;
	}

	rc = incoming_has_deltas(v, name);
	if (rc > 0)
		rc = -ENOTEMPTY;
	if (rc == 0)
		rc = compactor_remove(v->comp, name);

	vfs_lock(v);
	if (rc == 0) {
		for (struct vcoll **p = &v->colls; *p; p = &(*p)->next) {
			if (*p == c) {
				*p = c->next;
				break;
			}
		}
		vfs_coll_free(c);
		log_info("collection %s: removed", name);
	} else {
		c->removing = false;
		if (rc == -ENOTEMPTY)
			log_info("rmdir %s refused: it holds snapshots, queued deltas, files in incoming/ or "
				 "applied deltas no snapshot holds yet",
				 name);
		else if (rc == -EBUSY)
			log_info("rmdir %s refused: the compactor is working on it", name);
	}
	vfs_unlock(v);
	return rc;
}

/*
 * Queues incoming/NAME of n's collection as a delta; with v->mu held so
 * that nobody opens the name for writing between the decision and the
 * rename. Only the rename happens here: the writer's close already made
 * the content durable (vfs_flush), and the directory fsyncs run after the
 * lock is dropped (vfs_unlock). Returns whether it was queued: then the
 * name is gone from incoming/. A delta whose write or flush failed is
 * never queued; the collection's last_error says so.
 */
bool vfs_queue_delta(vfs *v, struct node *n)
{
	if (n->write_error) {
		log_warn("collection %s: not queuing delta %s: writing it failed (%s); it stays in incoming/",
			 n->coll, n->name, strerror(n->write_error));
		compactor_report(v->comp, n->coll,
				 "delta %s not queued: writing it failed (%s); the file is incomplete and stays in "
				 "incoming/: remove it, or copy it again once the cause is fixed",
				 n->name, strerror(n->write_error));
		return false;
	}
	uint64_t seq;
	int rc = store_queue_move(v->st, n->coll, n->name, &seq);
	if (rc < 0) {
		log_err("collection %s: cannot queue delta %s: %s; it stays in incoming/ and is queued at the "
			"next start",
			n->coll, n->name, strerror(-rc));
		compactor_report(
			v->comp, n->coll,
			"delta %s not queued: %s; it stays in incoming/ and is queued at the next start",
			n->name, strerror(-rc));
		return false;
	}
	log_info("collection %s: queued delta %s (#%llu)", n->coll, n->name, (unsigned long long)seq);
	if (n->hash) {
		/* No writer is left (the caller's condition): the hash is complete. */
		trailhash_end(n->hash);
		if (v->cluster.queued)
			trailhash_put(n->hash); /* merged by the cluster's compactor, wherever it runs */
		else
			compactor_delta_hash(v->comp, n->coll, seq, n->hash);
		n->hash = NULL;
	}
	vfs_node_unkey(v, n);
	vfs_defer(v, VFS_WORK_QUEUE_SYNC, n->coll, 0);
	vfs_dir_changed(v, N_INCOMING, n->coll);
	if (v->cluster.queued)
		v->cluster.queued(v->cluster.ctx, n->coll); /* in outbox/: to be shipped */
	else
		compactor_kick(v->comp, n->coll);
	return true;
}

int vfs_unlink(vfs *v, uint64_t parent, const char *name)
{
	char path[PATH_MAX];
	vfs_lock(v);
	struct node *p = vfs_node_by_ino(v, parent);
	int rc = !p ? -ENOENT : p->kind != N_INCOMING && p->kind != N_REJECTED ? -EROFS : 0;
	enum store_area area = p && p->kind == N_REJECTED ? STORE_AREA_REJECTED : STORE_AREA_INCOMING;
	enum nkind kind = area == STORE_AREA_REJECTED ? N_REJFILE : N_INFILE;
	if (rc == 0 && !vfs_name_ok(name))
		rc = -ENOENT;
	if (rc == 0)
		rc = store_path(v->st, p->coll, area, name, path, sizeof(path));
	if (rc == 0 && unlink(path) < 0)
		rc = -errno;
	if (rc == 0) {
		char *key = vfs_key(kind, p->coll, 0, name);
		struct node *n = vfs_node_by_key(v, key);
		free(key);
		if (n)
			vfs_node_unkey(v, n);
		/* rm in rejected/ is how an operator cleans it: keep the count in status true. */
		size_t len = strlen(name);
		if (kind == N_REJFILE && name[0] != '.' &&
		    !(len >= 7 && !strcmp(name + len - 7, ".reason")))
			compactor_rejected_removed(v->comp, p->coll, 1);
	}
	vfs_unlock(v);
	return rc;
}

int vfs_rename(vfs *v, uint64_t parent, const char *name, uint64_t newparent, const char *newname,
	       unsigned flags)
{
	char from[PATH_MAX], to[PATH_MAX];
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	vfs_lock(v);
	struct node *p = vfs_node_by_ino(v, parent), *np = vfs_node_by_ino(v, newparent);
	struct vcoll *c = p ? vfs_coll_find(v, p->coll) : NULL;
	int rc = 0;
	if (!p || !np)
		rc = -ENOENT;
	else if (p->kind != N_INCOMING || np->kind != N_INCOMING)
		rc = -EROFS;
	else if (strcmp(p->coll, np->coll) != 0)
		rc = -EXDEV;
	else if (!c || c->removing)
		rc = -ENOENT;
	else if (!vfs_name_ok(name))
		rc = -EINVAL;
	else
		rc = vfs_incoming_name_check(newname);
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
		/*
		 * Renamed to its final name by a writer that is done: a complete
		 * delta (the queueing makes the rename durable). Any other rename
		 * (to a dot-name, or while a writer has it open and will queue it
		 * at its last close) is made durable all the same: after a power
		 * loss the file must not come back under its old dot-name, never
		 * to be queued.
		 */
		if (!n || newname[0] == '.' || n->writers || !vfs_queue_delta(v, n))
			vfs_defer(v, VFS_WORK_SYNC_INCOMING, p->coll, 0);
		if (n)
			vfs_node_maybe_free(v, n);
	}
	vfs_unlock(v);
	return rc;
}

int vfs_refuse_create(vfs *v, uint64_t parent)
{
	vfs_lock(v);
	struct node *p = vfs_node_by_ino(v, parent);
	int rc = p && p->kind == N_INCOMING ? -EPERM : -EROFS;
	vfs_unlock(v);
	return rc;
}

/*
 * Housekeeping (on the compactor thread): dot-files of incoming/ that no
 * handle holds and that nobody wrote for stale_dotfiles_ms are left-overs
 * (rsync's temp file of a transfer that was killed) and are removed. The
 * directory is read without the lock; each removal is decided under it.
 */
void vfs_housekeeping(vfs *v, const char *coll)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (!v->cfg.stale_dotfiles_ms ||
	    store_path(v->st, coll, STORE_AREA_INCOMING, NULL, dir, sizeof(dir)) < 0)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
		    lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		double age_ms = (double)(now.tv_sec - st.st_mtim.tv_sec) * 1e3 +
				(double)(now.tv_nsec - st.st_mtim.tv_nsec) / 1e6;
		if (age_ms < (double)v->cfg.stale_dotfiles_ms)
			continue;
		vfs_lock(v);
		char *key = vfs_key(N_INFILE, coll, 0, de->d_name);
		struct node *n = vfs_node_by_key(v, key);
		free(key);
		struct vcoll *c = vfs_coll_find(v, coll);
		bool gone = false;
		if (c && !c->removing && (!n || !n->opens) && unlink(path) == 0) {
			if (n)
				vfs_node_unkey(v, n);
			vfs_dir_changed(v, N_INCOMING, coll);
			gone = true;
		}
		vfs_unlock(v);
		if (gone)
			log_info("collection %s: removed %s from incoming/: a dot-file untouched for %.0f s "
				 "(stale_dotfiles), left by an interrupted copy",
				 coll, de->d_name, age_ms / 1000.0);
	}
	closedir(d);
}
