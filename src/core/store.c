/*
 * store — the on-disk layout of a snapfs STORE directory (see store.h for
 * the picture and the guarantees).
 *
 * Every change that a crash must not tear is made by building the new
 * thing under a name nobody reads, fsyncing it, and renaming it into place
 * (then fsyncing the directory that changed):
 *  - a collection is built as collections/.creating-NAME-* and renamed;
 *    it is removed by renaming it to collections/.removing-NAME-* first;
 *    store_open() deletes leftovers of both;
 *  - a snapshot is built in staging/ID and renamed to snapshots/ID; it is
 *    removed by renaming it back into staging/ (which recovery empties);
 *  - next-id and the marker are replaced with fsx_write_atomic();
 *  - latest is replaced by renaming a new symlink latest.tmp over it.
 *
 * Locking: STORE/.lock is flock()ed for the life of the store, so one
 * process owns it. Inside the process, s->seq_mu orders queue arrivals and
 * s->mu serialises read-modify-write of next-id, rejected/ names and
 * latest. Everything else works on distinct names and needs no lock.
 */
#include "store.h"
#include "store_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "sbuf.h"

const char *const store_coll_subdirs[6] = {"incoming",  "queue",    "staging",
					   "snapshots", "rejected", "outbox"};

const char *const store_area_names[] = {
	[STORE_AREA_COLLECTION] = NULL,     [STORE_AREA_LIVE_DB] = "live.db",
	[STORE_AREA_INCOMING] = "incoming", [STORE_AREA_QUEUE] = "queue",
	[STORE_AREA_STAGING] = "staging",   [STORE_AREA_SNAPSHOTS] = "snapshots",
	[STORE_AREA_REJECTED] = "rejected", [STORE_AREA_OUTBOX] = "outbox",
};

/* ---- open / close -------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * store_open reports through err, which its caller prints once.
 */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	char tmp[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s", tmp);
}

/* A directory is empty for us if it holds nothing but our own crumbs. */
static int root_is_empty(const char *root, bool *empty)
{
	char **names;
	size_t n;
	int rc = store_list_dir(root, &names, &n);
	if (rc < 0)
		return rc;
	*empty = true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], LOCK_NAME) && strcmp(names[i], MARKER_TMP))
			*empty = false;
	store_names_free(names, n);
	return 0;
}

/*
 * Marker: "snapfs-store\nformat N\n", then optionally "instance HEX\n"
 * (16 lower-case hex digits), then lines we ignore. instance is set to ""
 * when the line is missing (stores made before it existed).
 */
static bool marker_parse(const char *text, unsigned long *format, char *instance)
{
	static const char head[] = "snapfs-store\nformat ";
	static const char inst[] = "instance ";
	if (strncmp(text, head, sizeof(head) - 1))
		return false;
	const char *p = text + sizeof(head) - 1;
	size_t nd = strspn(p, "0123456789");
	uint64_t v;
	if (nd == 0 || nd > 9 || p[nd] != '\n' || !store_parse_u64(p, nd, &v) || v == 0)
		return false;
	*format = (unsigned long)v;
	instance[0] = '\0';
	p += nd + 1;
	if (!strncmp(p, inst, sizeof(inst) - 1)) {
		p += sizeof(inst) - 1;
		if (strspn(p, "0123456789abcdef") != STORE_INSTANCE_LEN ||
		    p[STORE_INSTANCE_LEN] != '\n')
			return false;
		memcpy(instance, p, STORE_INSTANCE_LEN);
		instance[STORE_INSTANCE_LEN] = '\0';
	}
	return true;
}

/* A fresh random instance id: STORE_INSTANCE_LEN hex digits. */
static int instance_new(char *out)
{
	unsigned char r[STORE_INSTANCE_LEN / 2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return errno ? -errno : -EIO;
	hex_encode(r, sizeof(r), out);
	return 0;
}

/* Deletes collections/.creating-* and .removing-* left by a crash. */
static int store_sweep_collections(const store *s, const char *dir)
{
	char **names;
	size_t n;
	int rc = store_list(s, dir, &names, &n);
	if (rc < 0)
		return rc;
	bool removed = false;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (strncmp(names[i], ".creating-", 10) && strncmp(names[i], ".removing-", 10))
			continue;
		char p[PATH_MAX];
		if ((rc = store_fmt_path(p, sizeof(p), "%s/%s", dir, names[i])) < 0)
			break;
		store_say(s, LOG_INFO,
			  "store: removing %s, left over from an interrupted create or remove", p);
		if ((rc = fsx_rm_rf(p)) < 0)
			store_say(s, LOG_ERR, "store: cannot remove %s: %s", p, strerror(-rc));
		removed = true;
	}
	store_names_free(names, n);
	if (rc == 0 && removed)
		rc = store_sync_dir(s, dir);
	return rc;
}

/* Raises s->next_seq above every queued delta of coll. */
int store_seq_raise(store *s, const char *coll)
{
	char q[PATH_MAX];
	int rc = store_path(s, coll, STORE_AREA_QUEUE, NULL, q, sizeof(q));
	if (rc < 0)
		return rc;
	char **names;
	size_t n;
	rc = store_list_dir(q, &names, &n);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: cannot list %s: %s", q, strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&s->seq_mu);
	for (size_t i = 0; i < n; i++) {
		uint64_t seq;
		const char *name;
		if (store_queue_name_parse(names[i], &seq, &name) && seq < UINT64_MAX &&
		    seq + 1 > s->next_seq)
			s->next_seq = seq + 1;
	}
	pthread_mutex_unlock(&s->seq_mu);
	store_names_free(names, n);
	return 0;
}

/* Takes STORE/.lock; on EWOULDBLOCK names the pid written by its holder. */
static int store_lock(store *s, char *err, size_t errlen)
{
	char p[PATH_MAX];
	int rc = store_fmt_path(p, sizeof(p), "%s/%s", s->root, LOCK_NAME);
	if (rc < 0) {
		set_err(err, errlen, "%s: store path too long", s->root);
		return rc;
	}
	/* 0600: a lock file others can open lets them hold a shared flock and keep us from starting. */
	s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->lock_fd < 0) {
		rc = -errno;
		set_err(err, errlen, "%s: cannot open lock file: %s", p, strerror(-rc));
		return rc;
	}
	if (fchmod(s->lock_fd, 0600) < 0)
		store_say(s, LOG_WARNING, "store: cannot make %s private (mode 0600): %s", p,
			  strerror(errno));
	/* flock belongs to the open file description: a second store_open of
	 * the same store, even in this process, is refused. */
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK) {
			char pid[32] = "";
			ssize_t r = pread(s->lock_fd, pid, sizeof(pid) - 1, 0);
			pid[r > 0 ? r : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			set_err(err, errlen,
				"%s: already mounted by another snapfs process (pid %s); refusing to open it",
				s->root,
				pid[0] && store_all_digits(pid, strlen(pid)) ? pid : "unknown");
			return -EBUSY;
		}
		set_err(err, errlen, "%s: cannot lock: %s", p, strerror(-rc));
		return rc;
	}
	store_note_pid(s);
	return 0;
}

void store_note_pid(store *s)
{
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, pid, (size_t)len, 0) != len)
		store_say(s, LOG_WARNING, "store: cannot write our pid into %s/%s: %s", s->root,
			  LOCK_NAME, strerror(errno));
}

/*
 * Reads the marker of s->root into s (format, instance). *fresh: there
 * is none and the directory is empty, so it may become a store.
 */
static int store_marker_read(store *s, const char *marker, bool *fresh, char *err, size_t errlen)
{
	char *text = NULL;
	size_t tlen;
	int rc = fsx_read_all(marker, &text, &tlen);
	*fresh = false;
	if (rc == -ENOENT) {
		/* No marker: only an empty directory may become a store. */
		bool empty;
		if ((rc = root_is_empty(s->root, &empty)) < 0) {
			set_err(err, errlen, "%s: cannot list store directory: %s", s->root,
				strerror(-rc));
			return rc;
		}
		if (!empty) {
			set_err(err, errlen,
				"%s is not a snapfs store (no " MARKER_NAME
				" marker) and is not empty; refusing to take it over",
				s->root);
			return -ENOTEMPTY;
		}
		*fresh = true;
		return 0;
	}
	if (rc < 0) {
		set_err(err, errlen, "%s: cannot read store marker: %s", marker, strerror(-rc));
		return rc;
	}
	unsigned long format;
	bool ok = marker_parse(text, &format, s->instance);
	free(text);
	if (!ok) {
		set_err(err, errlen,
			"%s is not a snapfs store (%s is not a snapfs marker); refusing to open it",
			s->root, marker);
		return -EINVAL;
	}
	if (format > STORE_FORMAT) {
		set_err(err, errlen,
			"%s was written by a newer snapfs (store format %lu; this snapfs reads "
			"format %d); refusing to open it",
			s->root, format, STORE_FORMAT);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

/*
 * Gives s an instance id and writes the marker naming it. The marker
 * goes first and durably: a crash after it leaves a store that the next
 * open completes; a crash before it leaves a directory that still
 * counts as empty. A store made before instance ids existed gets one
 * now, the same way.
 */
static int store_marker_write(store *s, const char *marker, bool fresh, char *err, size_t errlen)
{
	char mtext[64];
	_Static_assert(STORE_FORMAT == 1, "marker text names the format");
	int rc = instance_new(s->instance);
	if (rc < 0) {
		set_err(err, errlen, "%s: cannot make a store instance id: %s", s->root,
			strerror(-rc));
		return rc;
	}
	int mlen =
		snprintf(mtext, sizeof(mtext), "snapfs-store\nformat 1\ninstance %s\n", s->instance);
	if ((rc = fsx_write_atomic(marker, mtext, (size_t)mlen)) < 0) {
		set_err(err, errlen, "%s: cannot write store marker: %s", marker, strerror(-rc));
		return rc;
	}
	if (fresh)
		store_say(s, LOG_INFO, "store: initialised a new store in %s (instance %s)",
			  s->root, s->instance);
	else
		store_say(s, LOG_INFO, "store: %s: gave the store its instance id %s", s->root,
			  s->instance);
	return 0;
}

/*
 * Makes sure collections/ is there with the store's mode, cleans up the
 * work a crash interrupted, and sets the queue sequence above everything
 * queued (one sequence for the whole store).
 */
static int store_collections_open(store *s, char *err, size_t errlen)
{
	char colls[PATH_MAX];
	int rc;
	if ((rc = store_fmt_path(colls, sizeof(colls), "%s/%s", s->root, COLLECTIONS)) < 0) {
		set_err(err, errlen, "%s: store path too long", s->root);
		return rc;
	}
	struct stat st;
	if (lstat(colls, &st) < 0) {
		if ((rc = fsx_mkdir_p(colls, s->dir_mode)) < 0 || (rc = fsx_fsync_dir(s->root)) < 0) {
			set_err(err, errlen, "%s: cannot create: %s", colls, strerror(-rc));
			return rc;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		set_err(err, errlen, "%s: not a directory", colls);
		return -ENOTDIR;
	} else if ((st.st_mode & 07777) != s->dir_mode && chmod(colls, s->dir_mode) < 0) {
		store_say(s, LOG_WARNING, "store: cannot set the mode of %s to %04o: %s", colls,
			  (unsigned)s->dir_mode, strerror(errno));
	}
	if ((rc = store_sweep_collections(s, colls)) < 0) {
		set_err(err, errlen, "%s: cannot clean up interrupted work: %s", colls,
			strerror(-rc));
		return rc;
	}
	char **names;
	size_t n;
	if ((rc = store_collections(s, &names, &n)) < 0) {
		set_err(err, errlen, "%s: cannot list collections: %s", colls, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = store_seq_raise(s, names[i]);
	store_names_free(names, n);
	if (rc < 0)
		set_err(err, errlen, "%s: cannot scan queues: %s", colls, strerror(-rc));
	return rc;
}

int store_open(const char *root, unsigned flags, const struct diag *diag, store **out, char *err,
	       size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	mode_t dir_mode = flags & STORE_OPEN_GROUP ? 0750 : 0700;
	int rc = fsx_mkdir_p(root, dir_mode);
	if (rc < 0) {
		set_err(err, errlen, "%s: cannot create store directory: %s", root, strerror(-rc));
		return rc;
	}
	store *s = calloc(1, sizeof(*s));
	if (!s) {
		set_err(err, errlen, "%s: out of memory", root);
		return -ENOMEM;
	}
	s->lock_fd = -1;
	if (diag)
		s->diag = *diag;
	s->dir_mode = dir_mode;
	s->sealed_mode = flags & STORE_OPEN_GROUP ? 0440 : 0400;
	pthread_mutex_init(&s->seq_mu, NULL);
	pthread_mutex_init(&s->mu, NULL);
	s->next_seq = 1;
	if (!(s->root = realpath(root, NULL))) {
		rc = -errno;
		set_err(err, errlen, "%s: cannot resolve store path: %s", root, strerror(-rc));
		goto out_err;
	}

	char marker[PATH_MAX];
	bool fresh;
	if ((rc = store_fmt_path(marker, sizeof(marker), "%s/%s", s->root, MARKER_NAME)) < 0) {
		set_err(err, errlen, "%s: store path too long", s->root);
		goto out_err;
	}
	if ((rc = store_marker_read(s, marker, &fresh, err, errlen)) < 0 ||
	    (rc = store_lock(s, err, errlen)) < 0)
		goto out_err;
	/*
	 * The STORE holds the data as plain files: only its owner (and, with
	 * STORE_OPEN_GROUP, its group) may enter it, whatever modes the files
	 * inside were made with.
	 */
	if (chmod(s->root, s->dir_mode) < 0)
		store_say(s, LOG_WARNING, "store: cannot set the mode of %s to %04o: %s", s->root,
			  (unsigned)s->dir_mode, strerror(errno));
	if (!s->instance[0] && (rc = store_marker_write(s, marker, fresh, err, errlen)) < 0)
		goto out_err;
	if ((rc = store_collections_open(s, err, errlen)) < 0)
		goto out_err;
	*out = s;
	return 0;

out_err:
	store_close(s);
	return rc;
}

void store_close(store *s)
{
	if (!s)
		return;
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&s->seq_mu);
	pthread_mutex_destroy(&s->mu);
	free(s->root);
	free(s);
}

const char *store_root(const store *s)
{
	return s->root;
}

const char *store_instance(const store *s)
{
	return s->instance;
}

/* ---- names and paths ----------------------------------------------------- */

bool store_name_valid(const char *name)
{
	size_t n = 0;
	if (!name)
		return false;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		bool alnum =
			(c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (p == name || (c != '_' && c != '-')))
			return false;
		if (n >= STORE_NAME_MAX)
			return false;
	}
	return n >= 1;
}

int store_path(const store *s, const char *coll, enum store_area area, const char *leaf, char *buf,
	       size_t len)
{
	if (len)
		buf[0] = '\0';
	/* coll and leaf come from the mount: never let them leave the store. */
	if (!store_name_valid(coll) || (leaf && !store_leaf_valid(leaf)) ||
	    (unsigned)area > STORE_AREA_OUTBOX)
		return -EINVAL;
	const char *a = store_area_names[area];
	int rc;
	if (a && leaf)
		rc = store_fmt_path(buf, len, "%s/" COLLECTIONS "/%s/%s/%s", s->root, coll, a, leaf);
	else if (a || leaf)
		rc = store_fmt_path(buf, len, "%s/" COLLECTIONS "/%s/%s", s->root, coll,
				    a ? a : leaf);
	else
		rc = store_fmt_path(buf, len, "%s/" COLLECTIONS "/%s", s->root, coll);
	if (rc < 0)
		store_say(s, LOG_ERR,
			  "store: path for collection %s (%s%s%s) is longer than %zu bytes", coll,
			  a ? a : "", a && leaf ? "/" : "", leaf ? leaf : "", len);
	return rc;
}

/* store_path, logging the reason when the caller passed a bad name. */
int store_coll_path(const store *s, const char *coll, enum store_area area, const char *leaf,
		    char *buf, size_t len)
{
	int rc = store_path(s, coll, area, leaf, buf, len);
	if (rc == -EINVAL)
		store_say(s, LOG_ERR,
			  "store: refusing collection name \"%s\"%s%s%s: not a valid name",
			  coll ? coll : "", leaf ? " with entry \"" : "", leaf ? leaf : "",
			  leaf ? "\"" : "");
	return rc;
}

/* ---- collections --------------------------------------------------------- */

void store_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int store_collections(store *s, char ***names, size_t *n)
{
	char dir[PATH_MAX];
	*names = NULL;
	*n = 0;
	int rc = store_fmt_path(dir, sizeof(dir), "%s/" COLLECTIONS, s->root);
	if (rc < 0)
		return rc;
	char **all;
	size_t cnt;
	if ((rc = store_list(s, dir, &all, &cnt)) < 0)
		return rc;
	/* Only valid names: this hides .creating-/.removing- work in progress. */
	size_t k = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (store_name_valid(all[i]) && store_is_dir_at(dir, all[i]))
			all[k++] = all[i];
		else
			free(all[i]);
	}
	if (k > 1)
		qsort(all, k, sizeof(*all), store_cmp_str);
	*names = all;
	*n = k;
	return 0;
}

int store_collection_create(store *s, const char *name)
{
	if (!store_name_valid(name)) {
		store_say(s, LOG_ERR,
			  "store: cannot create collection \"%s\": not a valid name (1-%d characters of "
			  "[A-Za-z0-9_-], first one alphanumeric)",
			  name ? name : "", STORE_NAME_MAX);
		return -EINVAL;
	}
	char final[PATH_MAX], tmp[PATH_MAX], sub[PATH_MAX], colls[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, name, STORE_AREA_COLLECTION, NULL, final, sizeof(final))) < 0)
		return rc;
	struct stat st;
	if (lstat(final, &st) == 0)
		return -EEXIST;
	pthread_mutex_lock(&s->mu);
	unsigned long nr = s->tmp_nr++;
	pthread_mutex_unlock(&s->mu);
	if ((rc = store_fmt_path(colls, sizeof(colls), "%s/" COLLECTIONS, s->root)) < 0 ||
	    (rc = store_fmt_path(tmp, sizeof(tmp), "%s/.creating-%s-%ld-%lu", colls, name,
				 (long)getpid(), nr)) < 0) {
		store_say(s, LOG_ERR, "store: cannot create collection %s: path too long", name);
		return rc;
	}

	/* Build it under a dot-name nobody lists, then rename it into place:
	 * after a crash the collection is either whole or absent. */
	if (mkdir(tmp, s->dir_mode) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: cannot create collection %s: mkdir %s: %s", name, tmp,
			  strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < sizeof(store_coll_subdirs) / sizeof(store_coll_subdirs[0]); i++) {
		if ((rc = store_fmt_path(sub, sizeof(sub), "%s/%s", tmp, store_coll_subdirs[i])) < 0)
			goto out_err;
		if (mkdir(sub, s->dir_mode) < 0) {
			rc = -errno;
			store_say(s, LOG_ERR, "store: cannot create collection %s: mkdir %s: %s",
				  name, sub, strerror(-rc));
			goto out_err;
		}
	}
	if ((rc = store_sync_dir(s, tmp)) < 0)
		goto out_err;
	if ((rc = store_rename_noreplace(tmp, final)) < 0) {
		if (rc != -EEXIST && rc != -ENOTEMPTY)
			store_say(s, LOG_ERR,
				  "store: cannot create collection %s: rename %s to %s: %s", name,
				  tmp, final, strerror(-rc));
		else
			rc = -EEXIST;
		goto out_err;
	}
	if ((rc = store_sync_dir(s, colls)) < 0)
		return rc;
	store_say(s, LOG_INFO, "store: created collection %s", name);
	return 0;

out_err:
	fsx_rm_rf(tmp);
	return rc;
}

/* -ENOTEMPTY if dir holds any entry; a missing dir is empty. */
static int dir_check_empty(const store *s, const char *dir)
{
	char **names;
	size_t n;
	int rc = store_list_dir(dir, &names, &n);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: cannot list %s: %s", dir, strerror(-rc));
		return rc;
	}
	store_names_free(names, n);
	return n ? -ENOTEMPTY : 0;
}

int store_collection_remove(store *s, const char *name)
{
	char dir[PATH_MAX], snaps[PATH_MAX], queue[PATH_MAX], outbox[PATH_MAX], colls[PATH_MAX],
		gone[PATH_MAX];
	int rc;
	if (!store_name_valid(name)) {
		store_say(s, LOG_ERR, "store: cannot remove collection \"%s\": not a valid name",
			  name ? name : "");
		return -EINVAL;
	}
	if ((rc = store_coll_path(s, name, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = store_coll_path(s, name, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = store_coll_path(s, name, STORE_AREA_QUEUE, NULL, queue, sizeof(queue))) < 0 ||
	    (rc = store_coll_path(s, name, STORE_AREA_OUTBOX, NULL, outbox, sizeof(outbox))) < 0 ||
	    (rc = store_fmt_path(colls, sizeof(colls), "%s/" COLLECTIONS, s->root)) < 0)
		return rc;
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return -ENOENT;

	/* Held across check and rename so that no delta is queued into the
	 * collection between "the queue is empty" and its disappearance. */
	pthread_mutex_lock(&s->seq_mu);
	pthread_mutex_lock(&s->mu);
	unsigned long nr = s->tmp_nr++;
	pthread_mutex_unlock(&s->mu);
	/* staging/ is not checked: it only ever holds half-made work. */
	if ((rc = dir_check_empty(s, snaps)) < 0 || (rc = dir_check_empty(s, queue)) < 0 ||
	    (rc = dir_check_empty(s, outbox)) < 0) {
		pthread_mutex_unlock(&s->seq_mu);
		if (rc == -ENOTEMPTY)
			store_say(s, LOG_INFO,
				  "store: not removing collection %s: it holds snapshots, "
				  "queued deltas or deltas not shipped yet",
				  name);
		return rc;
	}
	if ((rc = store_fmt_path(gone, sizeof(gone), "%s/.removing-%s-%ld-%lu", colls, name,
				 (long)getpid(), nr)) < 0) {
		pthread_mutex_unlock(&s->seq_mu);
		store_say(s, LOG_ERR, "store: cannot remove collection %s: path too long", name);
		return rc;
	}
	/* Rename it away first, durably: a crash during rm_rf then leaves a
	 * dot-name that store_collections ignores and store_open deletes,
	 * never a half-removed collection that looks valid. */
	rc = store_rename_noreplace(dir, gone);
	pthread_mutex_unlock(&s->seq_mu);
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: cannot remove collection %s: rename %s to %s: %s",
			  name, dir, gone, strerror(-rc));
		return rc;
	}
	if ((rc = store_sync_dir(s, colls)) < 0)
		return rc;
	if ((rc = fsx_rm_rf(gone)) < 0) {
		store_say(s, LOG_ERR, "store: collection %s removed, but deleting %s failed: %s",
			  name, gone, strerror(-rc));
		return 0; /* the collection is gone; the next open finishes the job */
	}
	store_say(s, LOG_INFO, "store: removed collection %s", name);
	return 0;
}
