/*
 * vfs — the namespace of a snapfs mount, independent of FUSE.
 *
 * Nodes: every name the kernel has looked up (or that has open handles)
 * has a struct node, found by inode number and by key (kind, collection,
 * snapshot id, name). A node lives while the kernel's lookup count or an
 * open handle holds it; inode numbers are never reused.
 *
 * Snapshots: each collection keeps the ids it shows (ascending) and the
 * ids retention retired while they were in use. A retired snapshot
 * vanishes from snapshots/ at once; its files are deleted from the store
 * only when no node of it is known to the kernel or open (see
 * snap_in_use), which covers open files and a shell's cwd alike.
 *
 * Locking: vfs->mu protects nodes, collections and their id lists. It is
 * held across store calls that must not interleave with namespace
 * changes (queueing a delta, creating a collection); it is never held
 * while calling the inval notifier. Lock order: vfs->mu, compactor->mu.
 */
#include "vfs.h"

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

#define T_LONG 86400.0 /* for what never changes: sealed snapshots, fixed names */
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
	uint64_t id;  /* N_SNAPDIR, N_SNAPDB, N_MANIFEST */
	char *name;   /* N_INFILE, N_REJFILE */
	char *key;    /* NULL once the name is gone (unlinked, renamed over, queued) */
	uint64_t nlookup;
	unsigned opens;   /* open handles, files and directories */
	unsigned writers; /* open handles with write access (N_INFILE) */
	struct node *next_ino, *next_key;
};

struct vcoll {
	char name[STORE_NAME_MAX + 1];
	uint64_t *ids; /* shown snapshots, ascending */
	size_t nids, capids;
	uint64_t *retired; /* retired but in use */
	size_t nretired, capretired;
	struct vcoll *next;
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
	pthread_mutex_t mu;
	uint64_t next_ino;              /* protected by mu */
	struct node *by_ino[NBUCKETS];  /* protected by mu */
	struct node *by_key[NBUCKETS];  /* protected by mu */
	struct vcoll *colls;            /* protected by mu */
	/*
	 * Open handles, protected by mu. An unmount can overtake RELEASEs
	 * still on their way, so vfs_destroy frees what is left here.
	 */
	struct vfs_file *files;
	struct vfs_dir *dirs;
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
	int fd;        /* backing file, or -1 for generated content */
	bool writable;
	char *mem;     /* generated content (status, metrics) */
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

static void dir_free(vfs_dir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d);
}

/* ---- hashing and nodes ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static char *make_key(enum nkind kind, const char *coll, uint64_t id, const char *name)
{
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "%d\x1f%s\x1f%llu\x1f%s", (int)kind, coll ? coll : "", (unsigned long long)id,
		  name ? name : "");
	return sbuf_detach(&b);
}

static struct node *node_by_ino(vfs *v, uint64_t ino)
{
	for (struct node *n = v->by_ino[ino % NBUCKETS]; n; n = n->next_ino)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct node *node_by_key(vfs *v, const char *key)
{
	for (struct node *n = v->by_key[hash_str(key) % NBUCKETS]; n; n = n->next_key)
		if (!strcmp(n->key, key))
			return n;
	return NULL;
}

static void node_unkey(vfs *v, struct node *n)
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

static void node_setkey(vfs *v, struct node *n, char *key)
{
	node_unkey(v, n);
	n->key = key;
	size_t b = hash_str(key) % NBUCKETS;
	n->next_key = v->by_key[b];
	v->by_key[b] = n;
}

/* Finds or makes the node for a name; with v->mu held. */
static struct node *node_get(vfs *v, enum nkind kind, const char *coll, uint64_t id, const char *name)
{
	char *key = make_key(kind, coll, id, name);
	struct node *n = node_by_key(v, key);
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
	node_setkey(v, n, key);
	return n;
}

static void node_free(vfs *v, struct node *n)
{
	node_unkey(v, n);
	for (struct node **p = &v->by_ino[n->ino % NBUCKETS]; *p; p = &(*p)->next_ino) {
		if (*p == n) {
			*p = n->next_ino;
			break;
		}
	}
	free(n->name);
	free(n);
}

/* ---- collections and snapshots ---- */

static struct vcoll *vcoll_find(vfs *v, const char *name)
{
	for (struct vcoll *c = v->colls; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static int ids_push(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
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

static void ids_remove_at(uint64_t *ids, size_t *n, size_t i)
{
	memmove(&ids[i], &ids[i + 1], (*n - i - 1) * sizeof(*ids));
	(*n)--;
}

static bool ids_has(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool is_snap_kind(enum nkind k)
{
	return k == N_SNAPDIR || k == N_SNAPDB || k == N_MANIFEST;
}

/* Whether the kernel knows, or a handle holds, any inode of the snapshot. */
static bool snap_in_use(vfs *v, const char *coll, uint64_t id)
{
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct node *n = v->by_ino[b]; n; n = n->next_ino)
			if (is_snap_kind(n->kind) && n->id == id && !strcmp(n->coll, coll) &&
			    (n->nlookup || n->opens))
				return true;
	return false;
}

/* A retired snapshot whose last user went away is deleted; with v->mu held. */
static void snap_maybe_delete(vfs *v, const struct node *n)
{
	if (!is_snap_kind(n->kind))
		return;
	struct vcoll *c = vcoll_find(v, n->coll);
	if (!c)
		return;
	for (size_t i = 0; i < c->nretired; i++) {
		if (c->retired[i] != n->id)
			continue;
		if (snap_in_use(v, n->coll, n->id))
			return;
		uint64_t id = c->retired[i];
		ids_remove_at(c->retired, &c->nretired, i);
		if (store_snapshot_remove(v->st, c->name, id) == 0)
			log_info("collection %s: removed retired snapshot %llu (released by its last "
				 "reader)",
				 c->name, (unsigned long long)id);
		return;
	}
}

/* A name the kernel should forget: entry name in directory parent. */
struct inval {
	uint64_t parent;
	char name[STORE_NAME_MAX + 16];
};

static bool is_retired(vfs *v, const char *coll, uint64_t id)
{
	struct vcoll *c = vcoll_find(v, coll);
	return c && ids_has(c->retired, c->nretired, id);
}

/*
 * For a retired snapshot that no handle holds any more: the names of its
 * inodes the kernel still caches, so that dropping them lets the kernel
 * send FORGET and the files can go (an unused child dentry under an
 * invalidated directory would otherwise stay cached indefinitely).
 * With v->mu held; returns how many were written to out.
 */
static size_t retired_names(vfs *v, const char *coll, uint64_t id, struct inval *out, size_t max)
{
	if (!is_retired(v, coll, id))
		return 0;
	size_t n = 0;
	struct node *dir = NULL;
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct node *x = v->by_ino[b]; x; x = x->next_ino) {
			if (!is_snap_kind(x->kind) || x->id != id || strcmp(x->coll, coll))
				continue;
			if (x->opens)
				return 0; /* still open: wait for its release */
			if (x->kind == N_SNAPDIR)
				dir = x;
		}
	char idname[24];
	store_id_format(id, idname, sizeof(idname));
	char *key = make_key(N_SNAPS, coll, 0, NULL);
	struct node *snaps = node_by_key(v, key);
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

static void send_invals(vfs *v, const struct inval *iv, size_t n)
{
	for (size_t i = 0; v->inval && i < n; i++)
		v->inval(v->inval_ctx, iv[i].parent, iv[i].name);
}

/* Drops a node the kernel and handles no longer hold; with v->mu held. */
static void node_maybe_free(vfs *v, struct node *n)
{
	if (n->nlookup || n->opens || n->kind == N_ROOT)
		return;
	struct node copy = *n;
	node_free(v, n);
	snap_maybe_delete(v, &copy);
}

/*
 * Applies retention to c: retires the oldest shown snapshots beyond
 * cfg.keep. Unused ones are deleted now; ids of those in use are written
 * to inval (the caller tells the kernel to forget their names once it
 * has dropped v->mu). With v->mu held.
 */
static size_t retain(vfs *v, struct vcoll *c, uint64_t *inval, size_t max)
{
	size_t ninval = 0;
	while (c->nids > v->cfg.keep) {
		uint64_t id = c->ids[0];
		ids_remove_at(c->ids, &c->nids, 0);
		if (snap_in_use(v, c->name, id)) {
			if (ids_push(&c->retired, &c->nretired, &c->capretired, id) < 0)
				continue; /* out of memory: the files stay until restart */
			log_info("collection %s: snapshot %llu retired; kept on disk while in use",
				 c->name, (unsigned long long)id);
			if (ninval < max)
				inval[ninval++] = id;
		} else if (store_snapshot_remove(v->st, c->name, id) == 0) {
			log_info("collection %s: removed snapshot %llu (keep=%u)", c->name,
				 (unsigned long long)id, v->cfg.keep);
		}
	}
	return ninval;
}

static struct vcoll *vcoll_load(vfs *v, const char *name)
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

static void vcoll_free(struct vcoll *c)
{
	free(c->ids);
	free(c->retired);
	free(c);
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
static int node_path(vfs *v, const struct node *n, char *buf, size_t len)
{
	char leaf[PATH_MAX], idname[24];
	store_id_format(n->id, idname, sizeof(idname));
	switch (n->kind) {
	case N_INFILE:
		return store_path(v->st, n->coll, STORE_AREA_INCOMING, n->name, buf, len);
	case N_REJFILE:
		return store_path(v->st, n->coll, STORE_AREA_REJECTED, n->name, buf, len);
	case N_SNAPDIR:
		return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, idname, buf, len);
	case N_SNAPDB:
		snprintf(leaf, sizeof(leaf), "%s/%s.sqlite3", idname, n->coll);
		return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, leaf, buf, len);
	case N_MANIFEST:
		snprintf(leaf, sizeof(leaf), "%s/MANIFEST.json", idname);
		return store_path(v->st, n->coll, STORE_AREA_SNAPSHOTS, leaf, buf, len);
	default:
		return -EINVAL;
	}
}

/* Attributes and cache times of n; with v->mu held. */
static int node_stat(vfs *v, struct node *n, struct stat *st, double *timeout)
{
	char path[PATH_MAX];
	*timeout = T_LONG;
	switch (n->kind) {
	case N_ROOT:
		stat_virtual(v, n, st, S_IFDIR | 0755);
		*timeout = 1.0;
		return 0;
	case N_META:
	case N_COLL:
	case N_SNAPS:
	case N_REJECTED:
		stat_virtual(v, n, st, S_IFDIR | 0555);
		*timeout = 1.0;
		return n->kind == N_META || vcoll_find(v, n->coll) ? 0 : -ENOENT;
	case N_INCOMING:
		stat_virtual(v, n, st, S_IFDIR | 0755);
		*timeout = 1.0;
		return vcoll_find(v, n->coll) ? 0 : -ENOENT;
	case N_META_STATUS:
	case N_META_METRICS:
	case N_COLL_STATUS:
		stat_virtual(v, n, st, S_IFREG | 0444);
		*timeout = 0;
		return 0;
	case N_LATEST: {
		struct vcoll *c = vcoll_find(v, n->coll);
		if (!c || c->nids == 0)
			return -ENOENT;
		stat_virtual(v, n, st, S_IFLNK | 0777);
		st->st_size = 18; /* "snapshots/" + 8 digits; wider ids are rare */
		*timeout = 0;
		return 0;
	}
	default:
		break;
	}
	int rc = node_path(v, n, path, sizeof(path));
	if (rc < 0)
		return rc;
	if (lstat(path, st) < 0)
		return -errno;
	st->st_ino = n->ino;
	if (n->kind == N_INFILE) {
		*timeout = 0;
	} else if (n->kind == N_REJFILE) {
		st->st_mode = (st->st_mode & S_IFMT) | 0444;
		*timeout = 1.0;
	} else {
		/* Sealed: read-only whatever the backing file says. */
		st->st_mode = (st->st_mode & S_IFMT) | (S_ISDIR(st->st_mode) ? 0555 : 0444);
	}
	return 0;
}

static int fill_entry(vfs *v, struct node *n, struct vfs_entry *e)
{
	double t;
	int rc = node_stat(v, n, &e->st, &t);
	if (rc < 0)
		return rc;
	e->ino = n->ino;
	e->attr_timeout = t;
	e->entry_timeout = t;
	return 0;
}

/* ---- names ---- */

static bool name_ok_for_file(const char *name)
{
	size_t len = strlen(name);
	return len > 0 && len <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

static const char *snap_file_name(const struct node *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s.sqlite3", dir->coll);
	return buf;
}

/*
 * Resolves name in parent to a node, without touching lookup counts.
 * *neg_timeout says how long a miss may be cached.
 */
static int resolve(vfs *v, struct node *p, const char *name, struct node **out, double *neg_timeout)
{
	*neg_timeout = 0;
	struct vcoll *c = p->kind == N_ROOT ? NULL : vcoll_find(v, p->coll);
	char buf[PATH_MAX];
	struct stat st;
	uint64_t id;
	struct node *n = NULL;
	if (p->kind != N_ROOT && p->kind != N_META && !c)
		return -ENOENT;
	switch (p->kind) {
	case N_ROOT:
		if (!strcmp(name, ".snapfs"))
			n = node_get(v, N_META, NULL, 0, NULL);
		else if (vcoll_find(v, name))
			n = node_get(v, N_COLL, name, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_META:
		*neg_timeout = T_LONG;
		if (!strcmp(name, "status"))
			n = node_get(v, N_META_STATUS, NULL, 0, NULL);
		else if (!strcmp(name, "metrics"))
			n = node_get(v, N_META_METRICS, NULL, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_COLL:
		if (!strcmp(name, "incoming"))
			n = node_get(v, N_INCOMING, p->coll, 0, NULL);
		else if (!strcmp(name, "snapshots"))
			n = node_get(v, N_SNAPS, p->coll, 0, NULL);
		else if (!strcmp(name, "rejected"))
			n = node_get(v, N_REJECTED, p->coll, 0, NULL);
		else if (!strcmp(name, "status"))
			n = node_get(v, N_COLL_STATUS, p->coll, 0, NULL);
		else if (!strcmp(name, "latest") && c->nids > 0)
			n = node_get(v, N_LATEST, p->coll, 0, NULL);
		else
			return -ENOENT;
		break;
	case N_INCOMING:
	case N_REJECTED:
		if (!name_ok_for_file(name))
			return -ENOENT;
		if (store_path(v->st, p->coll,
			       p->kind == N_INCOMING ? STORE_AREA_INCOMING : STORE_AREA_REJECTED, name,
			       buf, sizeof(buf)) < 0 ||
		    lstat(buf, &st) < 0)
			return -ENOENT;
		n = node_get(v, p->kind == N_INCOMING ? N_INFILE : N_REJFILE, p->coll, 0, name);
		break;
	case N_SNAPS:
		if (!store_id_parse(name, &id) ||
		    (!ids_has(c->ids, c->nids, id) && !ids_has(c->retired, c->nretired, id)))
			return -ENOENT;
		/* A retired id is found only by a process that still holds it. */
		if (!ids_has(c->ids, c->nids, id) && !snap_in_use(v, p->coll, id))
			return -ENOENT;
		n = node_get(v, N_SNAPDIR, p->coll, id, NULL);
		break;
	case N_SNAPDIR:
		/* The names in a sealed snapshot never change: misses may be cached too. */
		*neg_timeout = T_LONG;
		if (!strcmp(name, snap_file_name(p, buf, sizeof(buf))))
			n = node_get(v, N_SNAPDB, p->coll, p->id, NULL);
		else if (!strcmp(name, "MANIFEST.json"))
			n = node_get(v, N_MANIFEST, p->coll, p->id, NULL);
		else
			return -ENOENT;
		break;
	default:
		return -ENOTDIR;
	}
	if (!n)
		return -ENOMEM;
	*out = n;
	return 0;
}

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
	if (!node_get(v, N_ROOT, NULL, 0, NULL)) {
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
		struct vcoll *vc = vcoll_load(v, names[i]);
		if (!vc) {
			rc = -ENOMEM;
			break;
		}
		vc->next = v->colls;
		v->colls = vc;
		uint64_t unused[1];
		retain(v, vc, unused, 0);
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
		dir_free(d);
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
		vcoll_free(c);
	}
	pthread_mutex_destroy(&v->mu);
	free(v);
}

void vfs_published(void *ctx, const char *coll, uint64_t id)
{
	vfs *v = ctx;
	uint64_t retired[64];
	struct inval iv[3 * 64];
	size_t nretired = 0, niv = 0;
	pthread_mutex_lock(&v->mu);
	struct vcoll *c = vcoll_find(v, coll);
	if (c && ids_push(&c->ids, &c->nids, &c->capids, id) == 0)
		nretired = retain(v, c, retired, sizeof(retired) / sizeof(retired[0]));
	for (size_t i = 0; i < nretired; i++)
		niv += retired_names(v, coll, retired[i], iv + niv, sizeof(iv) / sizeof(iv[0]) - niv);
	pthread_mutex_unlock(&v->mu);
	/* Outside the lock: the kernel may call back into us to drop the names. */
	send_invals(v, iv, niv);
}

/* ---- lookups and attributes ---- */

int vfs_lookup(vfs *v, uint64_t parent, const char *name, struct vfs_entry *e)
{
	memset(e, 0, sizeof(*e));
	pthread_mutex_lock(&v->mu);
	struct node *p = node_by_ino(v, parent), *n = NULL;
	double neg = 0;
	int rc = p ? resolve(v, p, name, &n, &neg) : -ENOENT;
	if (rc == 0) {
		rc = fill_entry(v, n, e);
		if (rc == 0)
			n->nlookup++;
		else
			node_maybe_free(v, n);
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
	struct node *n = node_by_ino(v, ino);
	if (n) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		gone = n->nlookup == 0 && n->opens == 0 && n->kind != N_ROOT;
		node_maybe_free(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return gone;
}

int vfs_getattr(vfs *v, uint64_t ino, struct stat *st, double *timeout)
{
	pthread_mutex_lock(&v->mu);
	struct node *n = node_by_ino(v, ino);
	int rc = n ? node_stat(v, n, st, timeout) : -ENOENT;
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_setattr(vfs *v, uint64_t ino, int to_set, const struct stat *attr, struct stat *out,
		double *timeout)
{
	char path[PATH_MAX];
	pthread_mutex_lock(&v->mu);
	struct node *n = node_by_ino(v, ino);
	int rc = !n ? -ENOENT : n->kind != N_INFILE ? -EROFS : node_path(v, n, path, sizeof(path));
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
		rc = node_stat(v, n, out, timeout);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_readlink(vfs *v, uint64_t ino, char *buf, size_t len)
{
	pthread_mutex_lock(&v->mu);
	struct node *n = node_by_ino(v, ino);
	struct vcoll *c = n && n->kind == N_LATEST ? vcoll_find(v, n->coll) : NULL;
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
	int rc = vcoll_find(v, name) ? -EEXIST : store_collection_create(v->st, name);
	if (rc == 0)
		rc = compactor_add(v->comp, name);
	struct vcoll *c = NULL;
	if (rc == 0 && !(c = vcoll_load(v, name)))
		rc = -ENOMEM;
	if (rc == 0) {
		c->next = v->colls;
		v->colls = c;
		struct node *n = node_get(v, N_COLL, name, 0, NULL);
		rc = n ? fill_entry(v, n, e) : -ENOMEM;
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
	struct vcoll *c = vcoll_find(v, name);
	int rc = c ? compactor_remove(v->comp, name) : -ENOENT;
	if (rc == 0) {
		for (struct vcoll **p = &v->colls; *p; p = &(*p)->next) {
			if (*p == c) {
				*p = c->next;
				break;
			}
		}
		vcoll_free(c);
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
static void queue_delta(vfs *v, struct node *n)
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
	node_unkey(v, n);
	compactor_kick(v->comp, n->coll);
}

int vfs_unlink(vfs *v, uint64_t parent, const char *name)
{
	char path[PATH_MAX];
	pthread_mutex_lock(&v->mu);
	struct node *p = node_by_ino(v, parent);
	int rc = !p ? -ENOENT : p->kind != N_INCOMING ? -EROFS : 0;
	if (rc == 0 && !name_ok_for_file(name))
		rc = -ENOENT;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, path, sizeof(path));
	if (rc == 0 && unlink(path) < 0)
		rc = -errno;
	if (rc == 0) {
		char *key = make_key(N_INFILE, p->coll, 0, name);
		struct node *n = node_by_key(v, key);
		free(key);
		if (n)
			node_unkey(v, n);
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
	struct node *p = node_by_ino(v, parent), *np = node_by_ino(v, newparent);
	int rc = 0;
	if (!p || !np)
		rc = -ENOENT;
	else if (p->kind != N_INCOMING || np->kind != N_INCOMING)
		rc = -EROFS;
	else if (strcmp(p->coll, np->coll) != 0)
		rc = -EXDEV;
	else if (!name_ok_for_file(name) || !name_ok_for_file(newname))
		rc = -EINVAL;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, from, sizeof(from));
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, newname, to, sizeof(to));
	if (rc == 0 && renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0)
		rc = -errno;
	if (rc == 0) {
		char *oldkey = make_key(N_INFILE, p->coll, 0, name);
		char *newkey = make_key(N_INFILE, p->coll, 0, newname);
		struct node *over = node_by_key(v, newkey);
		if (over)
			node_unkey(v, over);
		struct node *n = node_by_key(v, oldkey);
		free(oldkey);
		char *nm = strdup(newname);
		if (n && nm) {
			free(n->name);
			n->name = nm;
			node_setkey(v, n, newkey);
		} else {
			free(nm);
			free(newkey);
			n = n ? n : node_get(v, N_INFILE, p->coll, 0, newname);
		}
		/* Renamed to its final name by a writer that is done: a complete delta. */
		if (n && newname[0] != '.' && n->writers == 0)
			queue_delta(v, n);
		if (n)
			node_maybe_free(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_refuse_create(vfs *v, uint64_t parent)
{
	pthread_mutex_lock(&v->mu);
	struct node *p = node_by_ino(v, parent);
	int rc = p && p->kind == N_INCOMING ? -EPERM : -EROFS;
	pthread_mutex_unlock(&v->mu);
	return rc;
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

int vfs_opendir(vfs *v, uint64_t ino, vfs_dir **out, bool *cache_readdir)
{
	vfs_dir *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*cache_readdir = false;
	pthread_mutex_lock(&v->mu);
	struct node *n = node_by_ino(v, ino);
	struct vcoll *c = n && n->kind != N_ROOT && n->kind != N_META ? vcoll_find(v, n->coll) : NULL;
	char buf[PATH_MAX];
	int rc = 0;
	if (!n || (n->kind != N_ROOT && n->kind != N_META && !c))
		rc = -ENOENT;
	if (rc == 0)
		rc = dir_add(d, ".", 0, 0);
	if (rc == 0)
		rc = dir_add(d, "..", 0, 0);
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
			rc = dir_add_backing(v, d, n->coll, STORE_AREA_INCOMING, N_INFILE);
			break;
		case N_REJECTED:
			rc = dir_add_backing(v, d, n->coll, STORE_AREA_REJECTED, N_REJFILE);
			break;
		case N_SNAPS:
			for (size_t i = 0; rc == 0 && i < c->nids; i++) {
				store_id_format(c->ids[i], buf, sizeof(buf));
				rc = dir_add(d, buf, N_SNAPDIR, c->ids[i]);
			}
			break;
		case N_SNAPDIR:
			rc = dir_add(d, snap_file_name(n, buf, sizeof(buf)), N_SNAPDB, n->id);
			if (rc == 0)
				rc = dir_add(d, "MANIFEST.json", N_MANIFEST, n->id);
			*cache_readdir = true;
			break;
		default:
			rc = -ENOTDIR;
		}
	}
	if (rc == 0) {
		d->node = n;
		n->opens++;
		LIST_PUSH(v->dirs, d);
		*out = d;
	}
	pthread_mutex_unlock(&v->mu);
	if (rc < 0)
		dir_free(d);
	return rc;
}

int vfs_readdir_entry(vfs *v, vfs_dir *d, size_t i, bool plus, const char **name,
		      struct vfs_entry *e)
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
	pthread_mutex_lock(&v->mu);
	struct node *n = NULL;
	double neg;
	int rc = resolve(v, d->node, d->ents[i].name, &n, &neg);
	if (rc == 0)
		rc = fill_entry(v, n, e);
	if (rc == 0 && plus)
		n->nlookup++;
	if (rc < 0) {
		/* Gone since opendir: list it without attributes. */
		if (n)
			node_maybe_free(v, n);
		memset(e, 0, sizeof(*e));
		e->st.st_ino = 0xffffffffULL;
		e->st.st_mode = S_IFREG;
		rc = 0;
	} else if (!plus) {
		e->ino = 0;
		node_maybe_free(v, n);
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

/* With v->mu held: drops one handle of n; *niv names for the kernel to forget. */
static void node_close(vfs *v, struct node *n, struct inval *iv, size_t max, size_t *niv)
{
	n->opens--;
	struct node copy = *n;
	node_maybe_free(v, n);
	*niv = is_snap_kind(copy.kind) ? retired_names(v, copy.coll, copy.id, iv, max) : 0;
}

void vfs_releasedir(vfs *v, vfs_dir *d)
{
	struct inval iv[3];
	size_t niv;
	pthread_mutex_lock(&v->mu);
	LIST_UNLINK(v->dirs, d);
	node_close(v, d->node, iv, 3, &niv);
	pthread_mutex_unlock(&v->mu);
	send_invals(v, iv, niv);
	dir_free(d);
}

/* ---- files ---- */

/* One collection's status object; with v->mu held. */
static void coll_status(vfs *v, const struct vcoll *c, sbuf *b)
{
	sbuf_adds(b, "{");
	compactor_status_fields(v->comp, c->name, c->nids, b);
	if (v->status_hook)
		v->status_hook(v->status_ctx, c->name, b);
	sbuf_adds(b, "}");
}

static void gen_status(vfs *v, struct node *n, sbuf *b)
{
	if (n->kind == N_COLL_STATUS) {
		struct vcoll *c = vcoll_find(v, n->coll);
		if (c)
			coll_status(v, c, b);
		sbuf_adds(b, "\n");
		return;
	}
	if (n->kind == N_META_METRICS) {
		compactor_metrics(v->comp, b);
		sbuf_adds(b, "# HELP snapfs_snapshots Snapshots shown in the mount.\n"
			     "# TYPE snapfs_snapshots gauge\n");
		for (struct vcoll *c = v->colls; c; c = c->next)
			sbuf_addf(b, "snapfs_snapshots{collection=\"%s\"} %zu\n", c->name, c->nids);
		sbuf_addf(b, "# HELP snapfs_uptime_seconds Seconds since mount.\n"
			     "# TYPE snapfs_uptime_seconds gauge\nsnapfs_uptime_seconds %lld\n",
			  (long long)(time(NULL) - v->started));
		if (v->status_hook)
			v->status_hook(v->status_ctx, NULL, b);
		return;
	}
	sbuf_addf(b, "{\"version\": \"%s\", \"uptime_s\": %lld, \"store\": ", SNAPFS_VERSION,
		  (long long)(time(NULL) - v->started));
	sbuf_add_json_str(b, store_root(v->st));
	sbuf_adds(b, ", \"collections\": {");
	for (struct vcoll *c = v->colls; c; c = c->next) {
		sbuf_add_json_str(b, c->name);
		sbuf_adds(b, ": ");
		coll_status(v, c, b);
		if (c->next)
			sbuf_adds(b, ", ");
	}
	sbuf_adds(b, "}}\n");
}

/* With v->mu held. */
static int file_new(vfs *v, struct node *n, int fd, bool writable, vfs_file **out)
{
	vfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->node = n;
	f->fd = fd;
	f->writable = writable;
	n->opens++;
	if (writable)
		n->writers++;
	LIST_PUSH(v->files, f);
	*out = f;
	return 0;
}

int vfs_open(vfs *v, uint64_t ino, int flags, vfs_file **out, struct vfs_open_info *info)
{
	char path[PATH_MAX];
	memset(info, 0, sizeof(*info));
	info->sealed_fd = -1;
	bool wr = (flags & O_ACCMODE) != O_RDONLY;
	pthread_mutex_lock(&v->mu);
	struct node *n = node_by_ino(v, ino);
	int rc = n ? 0 : -ENOENT, fd = -1;
	if (rc == 0) {
		switch (n->kind) {
		case N_META_STATUS:
		case N_META_METRICS:
		case N_COLL_STATUS:
			if (wr || (flags & O_TRUNC)) {
				rc = -EROFS;
				break;
			}
			info->direct_io = true;
			sbuf b = SBUF_INIT;
			gen_status(v, n, &b);
			rc = file_new(v, n, -1, false, out);
			if (rc == 0) {
				(*out)->memlen = b.len;
				(*out)->mem = sbuf_detach(&b);
			} else {
				sbuf_free(&b);
			}
			break;
		case N_SNAPDB:
		case N_MANIFEST:
		case N_REJFILE:
			if (wr || (flags & O_TRUNC)) {
				rc = -EROFS;
				break;
			}
			rc = node_path(v, n, path, sizeof(path));
			if (rc == 0 && (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
				rc = -errno;
			if (rc == 0 && (rc = file_new(v, n, fd, false, out)) < 0)
				close(fd);
			info->keep_cache = n->kind != N_REJFILE;
			if (rc == 0 && n->kind != N_REJFILE)
				info->sealed_fd = fd;
			break;
		case N_INFILE:
			if (!n->key) {
				rc = -ENOENT; /* queued or unlinked meanwhile */
				break;
			}
			rc = node_path(v, n, path, sizeof(path));
			if (rc == 0 && (fd = open(path, (flags & (O_ACCMODE | O_TRUNC)) | O_NOFOLLOW |
							      O_CLOEXEC)) < 0)
				rc = -errno;
			if (rc == 0 && (rc = file_new(v, n, fd, wr, out)) < 0)
				close(fd);
			break;
		default:
			rc = -EISDIR;
		}
	}
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_create_file(vfs *v, uint64_t parent, const char *name, mode_t mode, int flags,
		    struct vfs_entry *e, vfs_file **out)
{
	char path[PATH_MAX];
	memset(e, 0, sizeof(*e));
	pthread_mutex_lock(&v->mu);
	struct node *p = node_by_ino(v, parent), *n = NULL;
	int rc = !p ? -ENOENT : p->kind != N_INCOMING ? -EROFS : 0, fd = -1;
	if (rc == 0 && !name_ok_for_file(name))
		rc = -EINVAL;
	if (rc == 0 && !vcoll_find(v, p->coll))
		rc = -ENOENT;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, path, sizeof(path));
	if (rc == 0 &&
	    (fd = open(path, O_RDWR | O_CREAT | (flags & O_EXCL) | (flags & O_TRUNC) | O_NOFOLLOW |
				     O_CLOEXEC,
		       (mode & 0777) | 0600)) < 0)
		rc = -errno;
	if (rc == 0 && !(n = node_get(v, N_INFILE, p->coll, 0, name)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = fill_entry(v, n, e);
	if (rc == 0)
		rc = file_new(v, n, fd, true, out);
	if (rc == 0)
		n->nlookup++;
	else if (fd >= 0)
		close(fd);
	if (rc < 0 && n)
		node_maybe_free(v, n);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

int vfs_read(vfs *v, vfs_file *f, size_t size, off_t off, const char **mem, size_t *len, int *fd)
{
	*mem = NULL;
	*len = 0;
	*fd = -1;
	if (f->fd >= 0) {
		*fd = f->fd;
		return 0;
	}
	if ((size_t)off < f->memlen) {
		*mem = f->mem + off;
		*len = f->memlen - (size_t)off < size ? f->memlen - (size_t)off : size;
	}
	return 0;
}

ssize_t vfs_write(vfs *v, vfs_file *f, const char *buf, size_t size, off_t off)
{
	if (!f->writable)
		return -EBADF;
	if (off < 0 || (uint64_t)off + size > v->cfg.max_delta_size) {
		log_warn("collection %s: delta %s exceeds max_delta_size=%llu bytes; write refused",
			 f->node->coll, f->node->name ? f->node->name : "?",
			 (unsigned long long)v->cfg.max_delta_size);
		return -EFBIG;
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(f->fd, buf + done, size - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -errno;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int vfs_flush(vfs *v, vfs_file *f)
{
	/*
	 * close(2) waits for FLUSH, not RELEASE: make the data durable here
	 * so that a close that returned 0 means the delta survives a crash
	 * (it is queued at release, or by store_recover after a restart).
	 */
	if (!f->writable)
		return 0;
	if (fsync(f->fd) < 0)
		return -errno;
	char dir[PATH_MAX];
	if (store_path(v->st, f->node->coll, STORE_AREA_INCOMING, NULL, dir, sizeof(dir)) == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			int rc = fsync(dfd) < 0 ? -errno : 0;
			close(dfd);
			return rc;
		}
	}
	return 0;
}

int vfs_fsync(vfs *v, vfs_file *f, bool datasync)
{
	if (f->fd < 0 || !f->writable)
		return 0;
	return (datasync ? fdatasync(f->fd) : fsync(f->fd)) < 0 ? -errno : 0;
}

void vfs_release(vfs *v, vfs_file *f)
{
	struct inval iv[3];
	size_t niv;
	pthread_mutex_lock(&v->mu);
	LIST_UNLINK(v->files, f);
	struct node *n = f->node;
	if (f->writable)
		n->writers--;
	/* The last writer is done with a file under a final name: queue it. */
	if (f->writable && n->kind == N_INFILE && n->writers == 0 && n->key && n->name[0] != '.')
		queue_delta(v, n);
	if (f->fd >= 0)
		close(f->fd);
	node_close(v, n, iv, 3, &niv);
	pthread_mutex_unlock(&v->mu);
	send_invals(v, iv, niv);
	free(f->mem);
	free(f);
}
