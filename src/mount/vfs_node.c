/*
 * vfs_node — nodes (by inode number and by key), their attributes and
 * name resolution: what a name in a directory of the mount is.
 *
 * Every function here runs with v->mu held.
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

/* ---- hashing and nodes ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

char *vfs_key(enum nkind kind, const char *coll, uint64_t id, const char *name)
{
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "%d\x1f%s\x1f%llu\x1f%s", (int)kind, coll ? coll : "", (unsigned long long)id,
		  name ? name : "");
	return sbuf_detach(&b);
}

struct node *vfs_node_by_ino(vfs *v, uint64_t ino)
{
	for (struct node *n = v->by_ino[ino % NBUCKETS]; n; n = n->next_ino)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct node *vfs_node_by_key(vfs *v, const char *key)
{
	for (struct node *n = v->by_key[hash_str(key) % NBUCKETS]; n; n = n->next_key)
		if (!strcmp(n->key, key))
			return n;
	return NULL;
}

void vfs_node_unkey(vfs *v, struct node *n)
{
	if (!n->key)
		return;
	for (struct node **p = &v->by_key[hash_str(n->key) % NBUCKETS]; *p; p = &(*p)->next_key) {
		if (*p == n) {
			*p = n->next_key;
			break;
		}
	}
	free(n->key);
	n->key = NULL;
}

void vfs_node_setkey(vfs *v, struct node *n, char *key)
{
	vfs_node_unkey(v, n);
	n->key = key;
	size_t b = hash_str(key) % NBUCKETS;
	n->next_key = v->by_key[b];
	v->by_key[b] = n;
}

/* Finds or makes the node for a name; with v->mu held. */
struct node *vfs_node_get(vfs *v, enum nkind kind, const char *coll, uint64_t id, const char *name)
{
	char *key = vfs_key(kind, coll, id, name);
	struct node *n = vfs_node_by_key(v, key);
	if (n) {
		free(key);
		return n;
	}
	n = calloc(1, sizeof(*n));
	if (!n || (name && !(n->name = strdup(name)))) {
		free(n);
		free(key);
		return NULL;
	}
	n->kind = kind;
	n->ino = kind == N_ROOT ? VFS_ROOT_INO : v->next_ino++;
	n->id = id;
	snprintf(n->coll, sizeof(n->coll), "%s", coll ? coll : "");
	n->next_ino = v->by_ino[n->ino % NBUCKETS];
	v->by_ino[n->ino % NBUCKETS] = n;
	vfs_node_setkey(v, n, key);
	return n;
}

void vfs_node_free(vfs *v, struct node *n)
{
	vfs_node_unkey(v, n);
	for (struct node **p = &v->by_ino[n->ino % NBUCKETS]; *p; p = &(*p)->next_ino) {
		if (*p == n) {
			*p = n->next_ino;
			break;
		}
	}
	trailhash_put(n->hash);
	free(n->name);
	free(n);
}

/* ---- attributes ---- */

static void stat_virtual(vfs *v, struct node *n, struct stat *st, mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_uid = v->uid;
	st->st_gid = v->gid;
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = v->started;
}

/* The backing path of a node that has one. */
int vfs_node_path(vfs *v, const struct node *n, char *buf, size_t len)
{
	char leaf[PATH_MAX], idname[24];
	store_id_format(n->id, idname, sizeof(idname));
	switch (n->kind) {
	case N_INFILE: return store_path(v->st, n->coll, STORE_AREA_INCOMING, n->name, buf, len);
	case N_REJFILE: return store_path(v->st, n->coll, STORE_AREA_REJECTED, n->name, buf, len);
	case N_SNAPDIR: return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, idname, buf, len);
	case N_SNAPDB:
		snprintf(leaf, sizeof(leaf), "%s/%s.sqlite3", idname, n->coll);
		return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, leaf, buf, len);
	case N_MANIFEST:
		snprintf(leaf, sizeof(leaf), "%s/MANIFEST.json", idname);
		return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, leaf, buf, len);
	default: return -EINVAL;
	}
}

/* Attributes and cache times of n; with v->mu held. */
int vfs_node_stat(vfs *v, struct node *n, struct stat *st, double *timeout)
{
	char path[PATH_MAX];
	*timeout = T_LONG;
	switch (n->kind) {
	case N_ROOT:
		stat_virtual(v, n, st, S_IFDIR | 0755);
		*timeout = 1.0;
		return 0;
	case N_REJECTED:
		/*
		 * Its backing directory's mtime, never cached: the compactor fills
		 * it behind the kernel, which compares the mtime when a listing
		 * starts (fsops.c).
		 */
		stat_virtual(v, n, st, S_IFDIR | 0555);
		*timeout = 0;
		if (vfs_coll_find(v, n->coll) &&
		    store_path(v->st, n->coll, STORE_AREA_REJECTED, NULL, path, sizeof(path)) == 0) {
			struct stat bs;
			if (stat(path, &bs) == 0)
				st->st_mtim = st->st_ctim = bs.st_mtim;
		}
		return vfs_coll_find(v, n->coll) ? 0 : -ENOENT;
	case N_META:
	case N_COLL:
	case N_SNAPS:
		stat_virtual(v, n, st, S_IFDIR | 0555);
		*timeout = 1.0;
		return n->kind == N_META || vfs_coll_find(v, n->coll) ? 0 : -ENOENT;
	case N_INCOMING:
		stat_virtual(v, n, st, S_IFDIR | 0755);
		*timeout = 1.0;
		return vfs_coll_find(v, n->coll) ? 0 : -ENOENT;
	case N_META_STATUS:
	case N_META_METRICS:
	case N_COLL_STATUS:
		stat_virtual(v, n, st, S_IFREG | 0444);
		*timeout = 0;
		return 0;
	case N_LATEST: {
		struct vcoll *c = vfs_coll_find(v, n->coll);
		if (!c || c->nids == 0)
			return -ENOENT;
		stat_virtual(v, n, st, S_IFLNK | 0777);
		st->st_size = 18; /* "snapshots/" + 8 digits; wider ids are rare */
		*timeout = 0;
		return 0;
	}
	default: break;
	}
	int rc = vfs_node_path(v, n, path, sizeof(path));
	if (rc < 0)
		return rc;
	if (lstat(path, st) < 0)
		return -errno;
	st->st_ino = n->ino;
	if (n->kind == N_INFILE) {
		*timeout = 0;
		/*
		 * cp and friends size their writes from st_blksize: 1 MiB writes
		 * are 1 MiB FUSE requests (max_write), 8x fewer round trips than
		 * their 128 KiB default.
		 */
		st->st_blksize = VFS_WRITE_BLKSIZE;
	} else if (n->kind == N_REJFILE) {
		st->st_mode = (st->st_mode & S_IFMT) | 0444;
		*timeout = 1.0;
	} else {
		/* Sealed: read-only whatever the backing file says. */
		st->st_mode = (st->st_mode & S_IFMT) | (S_ISDIR(st->st_mode) ? 0555 : 0444);
	}
	return 0;
}

int vfs_fill_entry(vfs *v, struct node *n, struct vfs_entry *e)
{
	double t;
	int rc = vfs_node_stat(v, n, &e->st, &t);
	if (rc < 0)
		return rc;
	e->ino = n->ino;
	e->attr_timeout = t;
	e->entry_timeout = t;
	return 0;
}

/* ---- names ---- */

bool vfs_name_ok(const char *name)
{
	size_t len = strlen(name);
	return len > 0 && len <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

int vfs_incoming_name_check(const char *name)
{
	if (!vfs_name_ok(name))
		return -EINVAL;
	/* A delta's name must fit in queue/ (SEQ-NAME): refused now, not found unqueueable later. */
	if (name[0] != '.' && strlen(name) > STORE_DELTA_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

const char *vfs_snap_file_name(const struct node *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s.sqlite3", dir->coll);
	return buf;
}

/*
 * Resolves name in parent to a node, without touching lookup counts.
 * *neg_timeout says how long a miss may be cached.
 */
int vfs_resolve(vfs *v, struct node *p, const char *name, struct node **out, double *neg_timeout)
{
	*neg_timeout = 0;
	struct vcoll *c = p->kind == N_ROOT ? NULL : vfs_coll_find(v, p->coll);
	char buf[PATH_MAX];
	struct stat st;
	uint64_t id;
	struct node *n = NULL;
	if (p->kind != N_ROOT && p->kind != N_META && !c)
		return -ENOENT;
	switch (p->kind) {
	case N_ROOT:
		if (!strcmp(name, ".snapfs"))
			n = vfs_node_get(v, N_META, NULL, 0, NULL);
		else if (vfs_coll_find(v, name))
			n = vfs_node_get(v, N_COLL, name, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_META:
		*neg_timeout = T_LONG;
		if (!strcmp(name, "status"))
			n = vfs_node_get(v, N_META_STATUS, NULL, 0, NULL);
		else if (!strcmp(name, "metrics"))
			n = vfs_node_get(v, N_META_METRICS, NULL, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_COLL:
		if (!strcmp(name, "incoming"))
			n = vfs_node_get(v, N_INCOMING, p->coll, 0, NULL);
		else if (!strcmp(name, "snapshots"))
			n = vfs_node_get(v, N_SNAPS, p->coll, 0, NULL);
		else if (!strcmp(name, "rejected"))
			n = vfs_node_get(v, N_REJECTED, p->coll, 0, NULL);
		else if (!strcmp(name, "status"))
			n = vfs_node_get(v, N_COLL_STATUS, p->coll, 0, NULL);
		else if (!strcmp(name, "latest") && c->nids > 0)
			n = vfs_node_get(v, N_LATEST, p->coll, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_INCOMING:
	case N_REJECTED:
		if (!vfs_name_ok(name))
			return -ENOENT;
		if (store_path(v->st, p->coll,
			       p->kind == N_INCOMING ? STORE_AREA_INCOMING : STORE_AREA_REJECTED,
			       name, buf, sizeof(buf)) < 0 ||
		    lstat(buf, &st) < 0)
			return -ENOENT;
		n = vfs_node_get(v, p->kind == N_INCOMING ? N_INFILE : N_REJFILE, p->coll, 0, name);
		break;
	case N_SNAPS:
		if (!store_id_parse(name, &id) ||
		    (!vfs_ids_has(c->ids, c->nids, id) && !vfs_ids_has(c->retired, c->nretired, id)))
			return -ENOENT;
		/* A retired id is found only by a process that still holds it. */
		if (!vfs_ids_has(c->ids, c->nids, id) && !vfs_snap_in_use(v, p->coll, id))
			return -ENOENT;
		n = vfs_node_get(v, N_SNAPDIR, p->coll, id, NULL);
		break;
	case N_SNAPDIR:
		/* The names in a sealed snapshot never change: misses may be cached too. */
		*neg_timeout = T_LONG;
		if (!strcmp(name, vfs_snap_file_name(p, buf, sizeof(buf))))
			n = vfs_node_get(v, N_SNAPDB, p->coll, p->id, NULL);
		else if (!strcmp(name, "MANIFEST.json"))
			n = vfs_node_get(v, N_MANIFEST, p->coll, p->id, NULL);
		else
			return -ENOENT;
		break;
	default: return -ENOTDIR;
	}
	if (!n)
		return -ENOMEM;
	*out = n;
	return 0;
}
