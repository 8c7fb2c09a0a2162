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
#include "log.h"
#include "sbuf.h"

#define MARKER_NAME "SNAPFS-STORE"
#define MARKER_TMP MARKER_NAME ".tmp" /* what fsx_write_atomic leaves on a crash */
#define LOCK_NAME ".lock"
#define COLLECTIONS "collections"
#define NEXT_ID "next-id"
#define LATEST "latest"
#define LATEST_TMP "latest.tmp"
#define REASON_SUFFIX ".reason"
#define REASON_TMP_SUFFIX ".reason.tmp"
#define SEQ_DIGITS 16
#define ID_DIGITS 8

struct store {
	char *root;  /* absolute, so paths stay valid after a daemon's chdir("/") */
	int lock_fd; /* STORE/.lock, flock()ed LOCK_EX while the store is open */

	pthread_mutex_t seq_mu;
	uint64_t next_seq; /* next queue sequence number; protected by seq_mu */

	char instance[STORE_INSTANCE_LEN + 1]; /* from the marker; fixed once open */
	/* Modes of what the store makes (STORE_OPEN_GROUP adds group read); fixed once open. */
	mode_t dir_mode;    /* 0700 or 0750 */
	mode_t sealed_mode; /* published snapshot files: 0400 or 0440 */

	pthread_mutex_t mu;   /* next-id files, rejected/ names, latest */
	unsigned long tmp_nr; /* suffix for .creating-/.removing- names; protected by mu */
};

/* The sub-directories of a collection, in the order they are created. */
static const char *const coll_subdirs[] = {"incoming", "queue", "staging", "snapshots", "rejected"};

static const char *const area_names[] = {
	[STORE_AREA_COLLECTION] = NULL,
	[STORE_AREA_LIVE_DB] = "live.db",
	[STORE_AREA_INCOMING] = "incoming",
	[STORE_AREA_QUEUE] = "queue",
	[STORE_AREA_STAGING] = "staging",
	[STORE_AREA_SNAPSHOTS] = "snapshots",
	[STORE_AREA_REJECTED] = "rejected",
};

/* ---- small helpers ------------------------------------------------------- */

static int fmt_path(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fmt_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Parses n decimal digits; false on overflow. */
static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* A relative path without empty, "." or ".." components. */
static bool leaf_valid(const char *leaf)
{
	const char *p = leaf;
	if (!*p || *p == '/')
		return false;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p = *e ? e + 1 : e;
		if (*e && !*p)
			return false; /* trailing slash */
	}
	return true;
}

/* A delta's name as it was in incoming/: one non-dot path component. */
static bool delta_name_valid(const char *name)
{
	return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

static int fsync_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		log_err("store: cannot open %s to fsync it: %s", path, strerror(-rc));
		return rc;
	}
	int rc = 0;
	if (fsync(fd) < 0) {
		rc = -errno;
		log_err("store: fsync %s: %s", path, strerror(-rc));
	}
	close(fd);
	return rc;
}

static int sync_dir(const char *dir)
{
	int rc = fsx_fsync_dir(dir);
	if (rc < 0)
		log_err("store: fsync directory %s: %s", dir, strerror(-rc));
	return rc;
}

/*
 * rename() that fails with -EEXIST instead of replacing `to` (plain
 * rename() silently replaces an empty directory). Falls back to a check
 * on filesystems without RENAME_NOREPLACE; the store lock means no other
 * process races us there.
 */
static int rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	struct stat st;
	if (lstat(to, &st) == 0)
		return -EEXIST;
	if (errno != ENOENT)
		return -errno;
	return rename(from, to) < 0 ? -errno : 0;
}

/* All names in dir except "." and "..", unsorted. */
static int list_dir(const char *dir, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			rc = -errno;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
		}
		if (!(v[cnt] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		cnt++;
	}
	closedir(d);
	if (rc < 0) {
		store_names_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool is_dir_at(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	return fmt_path(p, sizeof(p), "%s/%s", dir, name) == 0 && lstat(p, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

static bool is_reg_at(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	return fmt_path(p, sizeof(p), "%s/%s", dir, name) == 0 && lstat(p, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

/* Largest snapshot id among the entries of dir; *found false if none. */
static int max_id_in(const char *dir, uint64_t *max, bool *found)
{
	char **names;
	size_t n;
	*found = false;
	*max = 0;
	int rc = list_dir(dir, &names, &n);
	if (rc < 0) {
		log_err("store: cannot list %s: %s", dir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t id;
		if (store_id_parse(names[i], &id) && (!*found || id > *max)) {
			*max = id;
			*found = true;
		}
	}
	store_names_free(names, n);
	return 0;
}

/* Parses "SEQ-NAME" (SEQ: at least 16 digits) as made by store_queue_add. */
static bool queue_name_parse(const char *fname, uint64_t *seq, const char **name)
{
	const char *dash = strchr(fname, '-');
	if (!dash)
		return false;
	size_t nd = (size_t)(dash - fname);
	if (nd < SEQ_DIGITS || !all_digits(fname, nd) || !parse_u64(fname, nd, seq))
		return false;
	if (!delta_name_valid(dash + 1))
		return false;
	*name = dash + 1;
	return true;
}

/* ---- open / close -------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * store_open reports through err, which its caller prints once; it logs
 * only when there is no err buffer, so a refusal is never silent.
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
	else
		log_err("%s", tmp);
}

/* A directory is empty for us if it holds nothing but our own crumbs. */
static int root_is_empty(const char *root, bool *empty)
{
	char **names;
	size_t n;
	int rc = list_dir(root, &names, &n);
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
	if (nd == 0 || nd > 9 || p[nd] != '\n' || !parse_u64(p, nd, &v) || v == 0)
		return false;
	*format = (unsigned long)v;
	instance[0] = '\0';
	p += nd + 1;
	if (!strncmp(p, inst, sizeof(inst) - 1)) {
		p += sizeof(inst) - 1;
		if (strspn(p, "0123456789abcdef") != STORE_INSTANCE_LEN || p[STORE_INSTANCE_LEN] != '\n')
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
	fsx_hex(r, sizeof(r), out);
	return 0;
}

/* Deletes collections/.creating-* and .removing-* left by a crash. */
static int store_sweep_collections(const char *dir)
{
	char **names;
	size_t n;
	int rc = list_dir(dir, &names, &n);
	if (rc < 0) {
		log_err("store: cannot list %s: %s", dir, strerror(-rc));
		return rc;
	}
	bool removed = false;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (strncmp(names[i], ".creating-", 10) && strncmp(names[i], ".removing-", 10))
			continue;
		char p[PATH_MAX];
		if ((rc = fmt_path(p, sizeof(p), "%s/%s", dir, names[i])) < 0)
			break;
		log_info("store: removing %s, left over from an interrupted create or remove", p);
		if ((rc = fsx_rm_rf(p)) < 0)
			log_err("store: cannot remove %s: %s", p, strerror(-rc));
		removed = true;
	}
	store_names_free(names, n);
	if (rc == 0 && removed)
		rc = sync_dir(dir);
	return rc;
}

/* Raises s->next_seq above every queued delta of coll. */
static int store_seq_raise(store *s, const char *coll)
{
	char q[PATH_MAX];
	int rc = store_path(s, coll, STORE_AREA_QUEUE, NULL, q, sizeof(q));
	if (rc < 0)
		return rc;
	char **names;
	size_t n;
	rc = list_dir(q, &names, &n);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		log_err("store: cannot list %s: %s", q, strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&s->seq_mu);
	for (size_t i = 0; i < n; i++) {
		uint64_t seq;
		const char *name;
		if (queue_name_parse(names[i], &seq, &name) && seq < UINT64_MAX &&
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
	int rc = fmt_path(p, sizeof(p), "%s/%s", s->root, LOCK_NAME);
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
		log_warn("store: cannot make %s private (mode 0600): %s", p, strerror(errno));
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
				s->root, pid[0] && all_digits(pid, strlen(pid)) ? pid : "unknown");
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
		log_warn("store: cannot write our pid into %s/%s: %s", s->root, LOCK_NAME,
			 strerror(errno));
}

int store_open(const char *root, unsigned flags, store **out, char *err, size_t errlen)
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
	if ((rc = fmt_path(marker, sizeof(marker), "%s/%s", s->root, MARKER_NAME)) < 0) {
		set_err(err, errlen, "%s: store path too long", s->root);
		goto out_err;
	}
	char *text = NULL;
	size_t tlen;
	rc = fsx_read_all(marker, &text, &tlen);
	bool fresh = false;
	if (rc == -ENOENT) {
		/* No marker: only an empty directory may become a store. */
		bool empty;
		if ((rc = root_is_empty(s->root, &empty)) < 0) {
			set_err(err, errlen, "%s: cannot list store directory: %s", s->root,
				strerror(-rc));
			goto out_err;
		}
		if (!empty) {
			set_err(err, errlen,
				"%s is not a snapfs store (no " MARKER_NAME
				" marker) and is not empty; refusing to take it over",
				s->root);
			rc = -ENOTEMPTY;
			goto out_err;
		}
		fresh = true;
	} else if (rc < 0) {
		set_err(err, errlen, "%s: cannot read store marker: %s", marker, strerror(-rc));
		goto out_err;
	} else {
		unsigned long format;
		bool ok = marker_parse(text, &format, s->instance);
		free(text);
		if (!ok) {
			set_err(err, errlen,
				"%s is not a snapfs store (%s is not a snapfs marker); refusing to open it",
				s->root, marker);
			rc = -EINVAL;
			goto out_err;
		}
		if (format > STORE_FORMAT) {
			set_err(err, errlen,
				"%s was written by a newer snapfs (store format %lu; this snapfs reads "
				"format %d); refusing to open it",
				s->root, format, STORE_FORMAT);
			rc = -EPROTONOSUPPORT;
			goto out_err;
		}
	}

	if ((rc = store_lock(s, err, errlen)) < 0)
		goto out_err;
	/*
	 * The STORE holds the data as plain files: only its owner (and, with
	 * STORE_OPEN_GROUP, its group) may enter it, whatever modes the files
	 * inside were made with.
	 */
	if (chmod(s->root, s->dir_mode) < 0)
		log_warn("store: cannot set the mode of %s to %04o: %s", s->root, (unsigned)s->dir_mode,
			 strerror(errno));

	if (!s->instance[0]) {
		/* The marker goes first and durably: a crash after it leaves a
		 * store that the next open completes; a crash before it leaves a
		 * directory that still counts as empty. A store made before
		 * instance ids existed gets one now, the same way. */
		char mtext[64];
		_Static_assert(STORE_FORMAT == 1, "marker text names the format");
		if ((rc = instance_new(s->instance)) < 0) {
			set_err(err, errlen, "%s: cannot make a store instance id: %s", s->root,
				strerror(-rc));
			goto out_err;
		}
		int mlen = snprintf(mtext, sizeof(mtext), "snapfs-store\nformat 1\ninstance %s\n",
				    s->instance);
		if ((rc = fsx_write_atomic(marker, mtext, (size_t)mlen)) < 0) {
			set_err(err, errlen, "%s: cannot write store marker: %s", marker,
				strerror(-rc));
			goto out_err;
		}
		if (fresh)
			log_info("store: initialised a new store in %s (instance %s)", s->root,
				 s->instance);
		else
			log_info("store: %s: gave the store its instance id %s", s->root, s->instance);
	}

	char colls[PATH_MAX];
	if ((rc = fmt_path(colls, sizeof(colls), "%s/%s", s->root, COLLECTIONS)) < 0) {
		set_err(err, errlen, "%s: store path too long", s->root);
		goto out_err;
	}
	struct stat st;
	if (lstat(colls, &st) < 0) {
		if ((rc = fsx_mkdir_p(colls, s->dir_mode)) < 0 || (rc = fsx_fsync_dir(s->root)) < 0) {
			set_err(err, errlen, "%s: cannot create: %s", colls, strerror(-rc));
			goto out_err;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		set_err(err, errlen, "%s: not a directory", colls);
		rc = -ENOTDIR;
		goto out_err;
	} else if ((st.st_mode & 07777) != s->dir_mode && chmod(colls, s->dir_mode) < 0) {
		log_warn("store: cannot set the mode of %s to %04o: %s", colls, (unsigned)s->dir_mode,
			 strerror(errno));
	}
	if ((rc = store_sweep_collections(colls)) < 0) {
		set_err(err, errlen, "%s: cannot clean up interrupted work: %s", colls,
			strerror(-rc));
		goto out_err;
	}

	/* One queue sequence for the whole store, above everything queued. */
	char **names;
	size_t n;
	if ((rc = store_collections(s, &names, &n)) < 0) {
		set_err(err, errlen, "%s: cannot list collections: %s", colls, strerror(-rc));
		goto out_err;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = store_seq_raise(s, names[i]);
	store_names_free(names, n);
	if (rc < 0) {
		set_err(err, errlen, "%s: cannot scan queues: %s", colls, strerror(-rc));
		goto out_err;
	}
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
	if (!store_name_valid(coll) || (leaf && !leaf_valid(leaf)) ||
	    (unsigned)area > STORE_AREA_REJECTED)
		return -EINVAL;
	const char *a = area_names[area];
	int rc;
	if (a && leaf)
		rc = fmt_path(buf, len, "%s/" COLLECTIONS "/%s/%s/%s", s->root, coll, a, leaf);
	else if (a || leaf)
		rc = fmt_path(buf, len, "%s/" COLLECTIONS "/%s/%s", s->root, coll, a ? a : leaf);
	else
		rc = fmt_path(buf, len, "%s/" COLLECTIONS "/%s", s->root, coll);
	if (rc < 0)
		log_err("store: path for collection %s (%s%s%s) is longer than %zu bytes", coll,
			a ? a : "", a && leaf ? "/" : "", leaf ? leaf : "", len);
	return rc;
}

/* store_path, logging the reason when the caller passed a bad name. */
static int coll_path(const store *s, const char *coll, enum store_area area, const char *leaf,
		     char *buf, size_t len)
{
	int rc = store_path(s, coll, area, leaf, buf, len);
	if (rc == -EINVAL)
		log_err("store: refusing collection name \"%s\"%s%s%s: not a valid name",
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
	int rc = fmt_path(dir, sizeof(dir), "%s/" COLLECTIONS, s->root);
	if (rc < 0)
		return rc;
	char **all;
	size_t cnt;
	if ((rc = list_dir(dir, &all, &cnt)) < 0) {
		log_err("store: cannot list %s: %s", dir, strerror(-rc));
		return rc;
	}
	/* Only valid names: this hides .creating-/.removing- work in progress. */
	size_t k = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (store_name_valid(all[i]) && is_dir_at(dir, all[i]))
			all[k++] = all[i];
		else
			free(all[i]);
	}
	if (k > 1)
		qsort(all, k, sizeof(*all), cmp_str);
	*names = all;
	*n = k;
	return 0;
}

int store_collection_create(store *s, const char *name)
{
	if (!store_name_valid(name)) {
		log_err("store: cannot create collection \"%s\": not a valid name (1-%d characters of "
			"[A-Za-z0-9_-], first one alphanumeric)",
			name ? name : "", STORE_NAME_MAX);
		return -EINVAL;
	}
	char final[PATH_MAX], tmp[PATH_MAX], sub[PATH_MAX], colls[PATH_MAX];
	int rc;
	if ((rc = coll_path(s, name, STORE_AREA_COLLECTION, NULL, final, sizeof(final))) < 0)
		return rc;
	struct stat st;
	if (lstat(final, &st) == 0)
		return -EEXIST;
	pthread_mutex_lock(&s->mu);
	unsigned long nr = s->tmp_nr++;
	pthread_mutex_unlock(&s->mu);
	if ((rc = fmt_path(colls, sizeof(colls), "%s/" COLLECTIONS, s->root)) < 0 ||
	    (rc = fmt_path(tmp, sizeof(tmp), "%s/.creating-%s-%ld-%lu", colls, name, (long)getpid(),
			   nr)) < 0) {
		log_err("store: cannot create collection %s: path too long", name);
		return rc;
	}

	/* Build it under a dot-name nobody lists, then rename it into place:
	 * after a crash the collection is either whole or absent. */
	if (mkdir(tmp, s->dir_mode) < 0) {
		rc = -errno;
		log_err("store: cannot create collection %s: mkdir %s: %s", name, tmp,
			strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < sizeof(coll_subdirs) / sizeof(coll_subdirs[0]); i++) {
		if ((rc = fmt_path(sub, sizeof(sub), "%s/%s", tmp, coll_subdirs[i])) < 0)
			goto out_err;
		if (mkdir(sub, s->dir_mode) < 0) {
			rc = -errno;
			log_err("store: cannot create collection %s: mkdir %s: %s", name, sub,
				strerror(-rc));
			goto out_err;
		}
	}
	if ((rc = sync_dir(tmp)) < 0)
		goto out_err;
	if ((rc = rename_noreplace(tmp, final)) < 0) {
		if (rc != -EEXIST && rc != -ENOTEMPTY)
			log_err("store: cannot create collection %s: rename %s to %s: %s", name,
				tmp, final, strerror(-rc));
		else
			rc = -EEXIST;
		goto out_err;
	}
	if ((rc = sync_dir(colls)) < 0)
		return rc;
	log_info("store: created collection %s", name);
	return 0;

out_err:
	fsx_rm_rf(tmp);
	return rc;
}

/* -ENOTEMPTY if dir holds any entry; a missing dir is empty. */
static int dir_check_empty(const char *dir)
{
	char **names;
	size_t n;
	int rc = list_dir(dir, &names, &n);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		log_err("store: cannot list %s: %s", dir, strerror(-rc));
		return rc;
	}
	store_names_free(names, n);
	return n ? -ENOTEMPTY : 0;
}

int store_collection_remove(store *s, const char *name)
{
	char dir[PATH_MAX], snaps[PATH_MAX], queue[PATH_MAX], colls[PATH_MAX], gone[PATH_MAX];
	int rc;
	if (!store_name_valid(name)) {
		log_err("store: cannot remove collection \"%s\": not a valid name",
			name ? name : "");
		return -EINVAL;
	}
	if ((rc = coll_path(s, name, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = coll_path(s, name, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = coll_path(s, name, STORE_AREA_QUEUE, NULL, queue, sizeof(queue))) < 0 ||
	    (rc = fmt_path(colls, sizeof(colls), "%s/" COLLECTIONS, s->root)) < 0)
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
	if ((rc = dir_check_empty(snaps)) < 0 || (rc = dir_check_empty(queue)) < 0) {
		pthread_mutex_unlock(&s->seq_mu);
		if (rc == -ENOTEMPTY)
			log_info("store: not removing collection %s: it holds snapshots or "
				 "queued deltas",
				 name);
		return rc;
	}
	if ((rc = fmt_path(gone, sizeof(gone), "%s/.removing-%s-%ld-%lu", colls, name,
			   (long)getpid(), nr)) < 0) {
		pthread_mutex_unlock(&s->seq_mu);
		log_err("store: cannot remove collection %s: path too long", name);
		return rc;
	}
	/* Rename it away first, durably: a crash during rm_rf then leaves a
	 * dot-name that store_collections ignores and store_open deletes,
	 * never a half-removed collection that looks valid. */
	rc = rename_noreplace(dir, gone);
	pthread_mutex_unlock(&s->seq_mu);
	if (rc < 0) {
		log_err("store: cannot remove collection %s: rename %s to %s: %s", name, dir, gone,
			strerror(-rc));
		return rc;
	}
	if ((rc = sync_dir(colls)) < 0)
		return rc;
	if ((rc = fsx_rm_rf(gone)) < 0) {
		log_err("store: collection %s removed, but deleting %s failed: %s", name, gone,
			strerror(-rc));
		return 0; /* the collection is gone; the next open finishes the job */
	}
	log_info("store: removed collection %s", name);
	return 0;
}

/* ---- queue ---------------------------------------------------------------- */

/*
 * Moves incoming/NAME into the queue. The name comes from a user; it is
 * checked to be one non-dot component and used for nothing but that.
 */
int store_queue_move(store *s, const char *coll, const char *name, uint64_t *seq)
{
	char in[PATH_MAX], q[PATH_MAX];
	int rc;
	if (!delta_name_valid(name)) {
		log_err("store: %s: refusing to queue \"%s\": not a plain non-dot file name", coll, name);
		return -EINVAL;
	}
	if (strlen(name) > STORE_DELTA_NAME_MAX) {
		log_err("store: %s: cannot queue %s: a delta name has at most %d bytes", coll, name,
			STORE_DELTA_NAME_MAX);
		return -ENAMETOOLONG;
	}
	if ((rc = coll_path(s, coll, STORE_AREA_INCOMING, name, in, sizeof(in))) < 0)
		return rc;
	struct stat st;
	if (lstat(in, &st) < 0) {
		rc = -errno;
		log_err("store: %s: cannot queue delta %s: %s", coll, in, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("store: %s: not queuing %s: not a regular file", coll, in);
		return -EINVAL;
	}

	/* Sequence and rename under one lock: a delta visible in queue/ means
	 * every smaller sequence number is already there (or never will be),
	 * so the compactor never sees arrivals out of order. */
	pthread_mutex_lock(&s->seq_mu);
	uint64_t n = s->next_seq;
	char leaf[NAME_MAX + 32];
	snprintf(leaf, sizeof(leaf), "%0*llu-%s", SEQ_DIGITS, (unsigned long long)n, name);
	if ((rc = coll_path(s, coll, STORE_AREA_QUEUE, leaf, q, sizeof(q))) == 0) {
		if ((rc = rename_noreplace(in, q)) < 0)
			log_err("store: %s: cannot queue delta: rename %s to %s: %s", coll, in, q, strerror(-rc));
		else
			s->next_seq = n + 1;
	}
	pthread_mutex_unlock(&s->seq_mu);
	if (rc < 0)
		return rc;
	if (seq)
		*seq = n;
	log_debug("store: %s: queued delta %s as %s", coll, name, leaf);
	return 0;
}

int store_queue_sync(store *s, const char *coll)
{
	char indir[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_INCOMING, NULL, indir, sizeof(indir))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	/* queue/ first: if only that is lost to a crash the delta is back in incoming/, never gone. */
	if ((rc = sync_dir(qdir)) < 0 || (rc = sync_dir(indir)) < 0)
		return rc;
	return 0;
}

int store_queue_add(store *s, const char *coll, const char *name, uint64_t *seq)
{
	char in[PATH_MAX];
	int rc;
	if (!delta_name_valid(name)) {
		log_err("store: %s: refusing to queue \"%s\": not a plain non-dot file name", coll, name);
		return -EINVAL;
	}
	if ((rc = coll_path(s, coll, STORE_AREA_INCOMING, name, in, sizeof(in))) < 0)
		return rc;
	/* Its content must be on disk before its name says "queued". */
	int fd = open(in, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err("store: %s: cannot open delta %s: %s", coll, in, strerror(-rc));
		return rc;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = fstat(fd, &st) < 0 ? -errno : -EINVAL;
		log_err("store: %s: not queuing %s: %s", coll, in, rc == -EINVAL ? "not a regular file" : strerror(-rc));
		close(fd);
		return rc;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		log_err("store: %s: fsync delta %s: %s", coll, in, strerror(-rc));
		close(fd);
		return rc;
	}
	close(fd);
	if ((rc = store_queue_move(s, coll, name, seq)) < 0)
		return rc;
	return store_queue_sync(s, coll);
}

static int cmp_delta(const void *a, const void *b)
{
	const store_delta *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int store_queue_list(store *s, const char *coll, store_delta **out, size_t *n)
{
	char qdir[PATH_MAX];
	*out = NULL;
	*n = 0;
	int rc = coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = list_dir(qdir, &names, &cnt)) < 0) {
		log_err("store: %s: cannot list queue %s: %s", coll, qdir, strerror(-rc));
		return rc;
	}
	store_delta *d = calloc(cnt ? cnt : 1, sizeof(*d));
	size_t k = 0;
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		uint64_t seq;
		const char *name;
		/* Anything that is not SEQ-NAME and a regular file is not ours. */
		if (!queue_name_parse(names[i], &seq, &name) || !is_reg_at(qdir, names[i]))
			continue;
		char p[PATH_MAX];
		if (fmt_path(p, sizeof(p), "%s/%s", qdir, names[i]) < 0)
			continue;
		d[k].seq = seq;
		d[k].name = strdup(name);
		d[k].path = strdup(p);
		if (!d[k].name || !d[k].path) {
			k++;
			rc = -ENOMEM;
			goto out;
		}
		k++;
	}
	qsort(d, k, sizeof(*d), cmp_delta);
	*out = d;
	*n = k;
	d = NULL;
out:
	if (d)
		store_deltas_free(d, k);
	store_names_free(names, cnt);
	if (rc < 0)
		log_err("store: %s: cannot list queue %s: %s", coll, qdir, strerror(-rc));
	return rc;
}

void store_deltas_free(store_delta *d, size_t n)
{
	if (!d)
		return;
	for (size_t i = 0; i < n; i++) {
		free(d[i].name);
		free(d[i].path);
	}
	free(d);
}

/* The queue file of d, rebuilt from seq and name rather than d->path. */
static int queue_file(const store *s, const char *coll, const store_delta *d, char *buf, size_t len)
{
	char leaf[NAME_MAX + 32];
	if (!d->name || !delta_name_valid(d->name)) {
		log_err("store: %s: not a queued delta name: \"%s\"", coll, d->name ? d->name : "");
		return -EINVAL;
	}
	if (fmt_path(leaf, sizeof(leaf), "%0*llu-%s", SEQ_DIGITS, (unsigned long long)d->seq,
		     d->name) < 0)
		return -ENAMETOOLONG;
	return coll_path(s, coll, STORE_AREA_QUEUE, leaf, buf, len);
}

int store_queue_remove(store *s, const char *coll, const store_delta *d)
{
	char q[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if ((rc = queue_file(s, coll, d, q, sizeof(q))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	if (unlink(q) < 0) {
		rc = -errno;
		log_err("store: %s: cannot remove queued delta %s: %s", coll, q, strerror(-rc));
		return rc;
	}
	return sync_dir(qdir);
}

/* rejected/ names that belong to reasons, never to deltas. */
static bool is_reason_name(const char *name)
{
	return has_suffix(name, REASON_SUFFIX) || has_suffix(name, REASON_TMP_SUFFIX);
}

/*
 * Picks a free name in rejected/ for a delta called name: name, name.1,
 * name.2..., such that neither it nor its .reason exists, and that never
 * itself looks like a reason file (so store_rejected_count stays exact).
 * Called with s->mu held.
 */
static int reject_name(const char *rdir, const char *name, char *out, size_t len)
{
	/* Leave room for ".NNNNNNNNNN" and ".reason.tmp" within NAME_MAX. */
	size_t keep = strlen(name);
	size_t room = NAME_MAX - (sizeof(REASON_TMP_SUFFIX) - 1) - 11;
	if (keep > room)
		keep = room;
	for (unsigned i = 0; i < 100000; i++) {
		char cand[NAME_MAX + 1], p[PATH_MAX];
		if (i == 0)
			snprintf(cand, sizeof(cand), "%.*s", (int)keep, name);
		else
			snprintf(cand, sizeof(cand), "%.*s.%u", (int)keep, name, i);
		if (is_reason_name(cand) || cand[0] == '.')
			continue;
		struct stat st;
		int rc = fmt_path(p, sizeof(p), "%s/%s", rdir, cand);
		if (rc < 0)
			return rc;
		if (lstat(p, &st) == 0)
			continue;
		if (errno != ENOENT)
			return -errno;
		if ((rc = fmt_path(p, sizeof(p), "%s/%s" REASON_SUFFIX, rdir, cand)) < 0)
			return rc;
		if (lstat(p, &st) == 0)
			continue;
		if (errno != ENOENT)
			return -errno;
		snprintf(out, len, "%s", cand);
		return 0;
	}
	return -EEXIST;
}

/*
 * Moves src (a file of srcdir) to rejected/ under a free name made from
 * name, and writes its .reason; then fsyncs rejected/ and srcdir. The
 * reason is one line: control characters and bytes that are not UTF-8
 * are escaped (sbuf_add_text), so a delta's name cannot forge a line.
 */
static int reject_file(store *s, const char *coll, const char *src, const char *srcdir, const char *name,
		       const char *reason)
{
	char rdir[PATH_MAX], dst[PATH_MAX], rpath[PATH_MAX], cand[NAME_MAX + 1];
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir))) < 0)
		return rc;
	sbuf line = SBUF_INIT;
	sbuf_add_text(&line, reason ? reason : "");
	sbuf_adds(&line, "\n");

	pthread_mutex_lock(&s->mu);
	if ((rc = reject_name(rdir, name, cand, sizeof(cand))) < 0) {
		log_err("store: %s: cannot find a free name in %s for delta %s: %s", coll, rdir, name,
			strerror(-rc));
		goto out;
	}
	if ((rc = fmt_path(dst, sizeof(dst), "%s/%s", rdir, cand)) < 0 ||
	    (rc = fmt_path(rpath, sizeof(rpath), "%s/%s" REASON_SUFFIX, rdir, cand)) < 0) {
		log_err("store: %s: cannot reject delta %s: path too long", coll, name);
		goto out;
	}
	/* Delta first, then its reason: a crash in between leaves a rejected
	 * delta without a reason, never a delta both queued and rejected. */
	if ((rc = rename_noreplace(src, dst)) < 0) {
		log_err("store: %s: cannot reject delta: rename %s to %s: %s", coll, src, dst, strerror(-rc));
		goto out;
	}
	if ((rc = fsx_write_atomic(rpath, line.buf, line.len)) < 0) {
		log_err("store: %s: cannot write %s: %s", coll, rpath, strerror(-rc));
		goto out;
	}
	if ((rc = sync_dir(rdir)) < 0 || (rc = sync_dir(srcdir)) < 0)
		goto out;
	log_info("store: %s: rejected delta %s as %s: %.*s", coll, name, cand, (int)line.len - 1, line.buf);
out:
	pthread_mutex_unlock(&s->mu);
	sbuf_free(&line);
	return rc;
}

int store_reject(store *s, const char *coll, const store_delta *d, const char *reason)
{
	char q[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if ((rc = queue_file(s, coll, d, q, sizeof(q))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	return reject_file(s, coll, q, qdir, d->name, reason);
}

struct rejected_file {
	char *name;
	struct timespec mtime;
};

static int cmp_rejected(const void *a, const void *b)
{
	const struct rejected_file *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

int store_rejected_prune(store *s, const char *coll, uint64_t max, uint64_t *removed)
{
	char rdir[PATH_MAX], p[PATH_MAX];
	*removed = 0;
	int rc = coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = list_dir(rdir, &names, &cnt)) < 0) {
		log_err("store: %s: cannot list %s: %s", coll, rdir, strerror(-rc));
		return rc;
	}
	struct rejected_file *f = calloc(cnt ? cnt : 1, sizeof(*f));
	size_t k = 0;
	if (!f) {
		store_names_free(names, cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++) {
		struct stat st;
		if (names[i][0] == '.' || is_reason_name(names[i]) ||
		    fmt_path(p, sizeof(p), "%s/%s", rdir, names[i]) < 0 || lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		f[k].name = names[i];
		f[k].mtime = st.st_mtim;
		k++;
	}
	if (k > max) {
		/* Oldest first (when they were rejected: the rename keeps mtime, so by arrival). */
		qsort(f, k, sizeof(*f), cmp_rejected);
		for (size_t i = 0; i < k - max; i++) {
			if (fmt_path(p, sizeof(p), "%s/%s", rdir, f[i].name) < 0 || unlink(p) < 0)
				continue;
			(*removed)++;
			if (fmt_path(p, sizeof(p), "%s/%s" REASON_SUFFIX, rdir, f[i].name) == 0)
				unlink(p);
		}
		if (*removed) {
			log_info("store: %s: removed the %llu oldest deltas from rejected/ (rejected_max=%llu)", coll,
				 (unsigned long long)*removed, (unsigned long long)max);
			rc = sync_dir(rdir);
		}
	}
	free(f);
	store_names_free(names, cnt);
	return rc;
}

int store_rejected_count(store *s, const char *coll, uint64_t *n)
{
	char rdir[PATH_MAX];
	*n = 0;
	int rc = coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = list_dir(rdir, &names, &cnt)) < 0) {
		log_err("store: %s: cannot list %s: %s", coll, rdir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < cnt; i++)
		if (names[i][0] != '.' && !is_reason_name(names[i]) && is_reg_at(rdir, names[i]))
			(*n)++;
	store_names_free(names, cnt);
	return 0;
}

/* ---- snapshot ids --------------------------------------------------------- */

void store_id_format(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%0*llu", ID_DIGITS, (unsigned long long)id);
}

bool store_id_parse(const char *name, uint64_t *id)
{
	size_t n = strlen(name);
	uint64_t v;
	if (n < ID_DIGITS || !all_digits(name, n) || !parse_u64(name, n, &v))
		return false;
	/* Only the spelling store_id_format makes: "000000042" is not an id,
	 * so two directories can never name the same snapshot. */
	if (n > ID_DIGITS && name[0] == '0')
		return false;
	*id = v;
	return true;
}

/* Reads next-id; 0 if the file does not exist yet. */
static int next_id_read(const char *path, uint64_t *v)
{
	char *text;
	size_t len;
	*v = 0;
	int rc = fsx_read_all(path, &text, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		log_err("store: cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	size_t nd = strspn(text, "0123456789");
	bool ok = nd > 0 && (text[nd] == '\0' || (text[nd] == '\n' && text[nd + 1] == '\0')) &&
		  parse_u64(text, nd, v);
	free(text);
	if (!ok) {
		/* Never guess: a wrong guess could hand out an id twice. */
		log_err("store: %s does not hold a snapshot id; fix or remove it by hand", path);
		return -EINVAL;
	}
	return 0;
}

static int next_id_write(const char *path, uint64_t v)
{
	char text[32];
	int len = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)v);
	int rc = fsx_write_atomic(path, text, (size_t)len);
	if (rc < 0)
		log_err("store: cannot write %s: %s", path, strerror(-rc));
	return rc;
}

/*
 * The smallest id that is safe to hand out: not below next-id and above
 * every id in snapshots/ and staging/. Called with s->mu held.
 */
static int id_floor(store *s, const char *coll, uint64_t *floor, char *nid, size_t nidlen)
{
	char snaps[PATH_MAX], staging[PATH_MAX];
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_COLLECTION, NEXT_ID, nid, nidlen)) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0)
		return rc;
	uint64_t v, m;
	bool found;
	if ((rc = next_id_read(nid, &v)) < 0)
		return rc;
	if (v == 0)
		v = 1; /* ids start at 1 */
	const char *dirs[] = {snaps, staging};
	for (size_t i = 0; i < 2; i++) {
		if ((rc = max_id_in(dirs[i], &m, &found)) < 0)
			return rc;
		if (found && m == UINT64_MAX)
			return -EOVERFLOW;
		if (found && m + 1 > v)
			v = m + 1;
	}
	*floor = v;
	return 0;
}

int store_id_alloc(store *s, const char *coll, uint64_t *id)
{
	char nid[PATH_MAX];
	uint64_t v;
	pthread_mutex_lock(&s->mu);
	int rc = id_floor(s, coll, &v, nid, sizeof(nid));
	if (rc == 0 && v == UINT64_MAX)
		rc = -EOVERFLOW;
	/* next-id moves past v on disk before anyone sees v: after a crash
	 * the same id can never be handed out again. */
	if (rc == 0)
		rc = next_id_write(nid, v + 1);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		log_err("store: %s: cannot allocate a snapshot id: %s", coll, strerror(-rc));
		return rc;
	}
	*id = v;
	return 0;
}

int store_staging_create(store *s, const char *coll, uint64_t id, char *buf, size_t len)
{
	char name[24], staging[PATH_MAX];
	int rc;
	store_id_format(id, name, sizeof(name));
	if ((rc = coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_STAGING, name, buf, len)) < 0)
		return rc;
	if (mkdir(buf, s->dir_mode) < 0) {
		rc = -errno;
		log_err("store: %s: cannot create staging directory %s: %s", coll, buf,
			strerror(-rc));
		return rc;
	}
	return sync_dir(staging);
}

/* ---- publishing ----------------------------------------------------------- */

/*
 * Gives every file of a (flat) snapshot directory the sealed mode, fsyncs
 * it, then fsyncs the directory.
 */
static int sync_snapshot_dir(const store *s, const char *coll, const char *dir)
{
	char **names;
	size_t n;
	int rc = list_dir(dir, &names, &n);
	if (rc < 0) {
		log_err("store: %s: cannot list %s: %s", coll, dir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		char p[PATH_MAX];
		if ((rc = fmt_path(p, sizeof(p), "%s/%s", dir, names[i])) < 0)
			break;
		if (!is_reg_at(dir, names[i])) {
			log_err("store: %s: refusing to publish %s: %s is not a regular file", coll,
				dir, p);
			rc = -EINVAL;
			break;
		}
		if (chmod(p, s->sealed_mode) < 0) {
			rc = -errno;
			log_err("store: %s: cannot set the mode of %s: %s", coll, p, strerror(-rc));
			break;
		}
		rc = fsync_file(p);
	}
	store_names_free(names, n);
	return rc < 0 ? rc : sync_dir(dir);
}

/* The id latest points at; false if it is missing or not ours. */
static bool latest_target(const char *latest, uint64_t *id)
{
	char t[64];
	ssize_t r = readlink(latest, t, sizeof(t) - 1);
	if (r < 0)
		return false;
	t[r] = '\0';
	return strncmp(t, "snapshots/", 10) == 0 && store_id_parse(t + 10, id);
}

/*
 * Points latest at snapshots/ID: a new symlink latest.tmp renamed over
 * latest, then the collection directory fsynced. Readers see the old
 * target or the new one, never no latest. Called with s->mu held.
 */
static int latest_set(store *s, const char *coll, uint64_t id)
{
	char dir[PATH_MAX], latest[PATH_MAX], tmp[PATH_MAX], target[48], name[24];
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_COLLECTION, LATEST_TMP, tmp, sizeof(tmp))) < 0)
		return rc;
	store_id_format(id, name, sizeof(name));
	snprintf(target, sizeof(target), "snapshots/%s", name);
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		log_err("store: %s: cannot remove %s: %s", coll, tmp, strerror(-rc));
		return rc;
	}
	if (symlink(target, tmp) < 0) {
		rc = -errno;
		log_err("store: %s: cannot create symlink %s: %s", coll, tmp, strerror(-rc));
		return rc;
	}
	if (rename(tmp, latest) < 0) {
		rc = -errno;
		log_err("store: %s: cannot rename %s to %s: %s", coll, tmp, latest, strerror(-rc));
		unlink(tmp);
		return rc;
	}
	return sync_dir(dir);
}

int store_publish(store *s, const char *coll, uint64_t id)
{
	char name[24], src[PATH_MAX], dst[PATH_MAX], staging[PATH_MAX], snaps[PATH_MAX];
	char latest[PATH_MAX];
	int rc;
	store_id_format(id, name, sizeof(name));
	if ((rc = coll_path(s, coll, STORE_AREA_STAGING, name, src, sizeof(src))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, name, dst, sizeof(dst))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0)
		return rc;

	/* Content first, then the name: snapshots/ID appears only whole. */
	if ((rc = sync_snapshot_dir(s, coll, src)) < 0)
		return rc;
	if ((rc = rename_noreplace(src, dst)) < 0) {
		if (rc == -ENOTEMPTY)
			rc = -EEXIST;
		log_err("store: %s: cannot publish snapshot %s: rename %s to %s: %s", coll, name,
			src, dst, strerror(-rc));
		return rc;
	}
	if ((rc = sync_dir(snaps)) < 0 || (rc = sync_dir(staging)) < 0)
		return rc;

	/* latest only moves forward, should publishes ever finish out of order. */
	pthread_mutex_lock(&s->mu);
	uint64_t cur;
	struct stat st;
	char curdir[PATH_MAX], curname[24];
	bool newer = false;
	if (latest_target(latest, &cur) && cur > id) {
		store_id_format(cur, curname, sizeof(curname));
		newer = coll_path(s, coll, STORE_AREA_SNAPSHOTS, curname, curdir,
				  sizeof(curdir)) == 0 &&
			lstat(curdir, &st) == 0;
	}
	rc = newer ? 0 : latest_set(s, coll, id);
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		log_info("store: %s: published snapshot %s", coll, name);
	return rc;
}

int store_snapshots(store *s, const char *coll, uint64_t **ids, size_t *n)
{
	char snaps[PATH_MAX];
	*ids = NULL;
	*n = 0;
	int rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = list_dir(snaps, &names, &cnt)) < 0) {
		log_err("store: %s: cannot list %s: %s", coll, snaps, strerror(-rc));
		return rc;
	}
	uint64_t *v = malloc((cnt ? cnt : 1) * sizeof(*v));
	size_t k = 0;
	if (!v) {
		store_names_free(names, cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++) {
		uint64_t id;
		if (store_id_parse(names[i], &id) && is_dir_at(snaps, names[i]))
			v[k++] = id;
	}
	store_names_free(names, cnt);
	qsort(v, k, sizeof(*v), cmp_u64);
	*ids = v;
	*n = k;
	return 0;
}

int store_snapshot_remove(store *s, const char *coll, uint64_t id)
{
	char name[24], dir[PATH_MAX], gone[PATH_MAX], snaps[PATH_MAX], staging[PATH_MAX];
	char latest[PATH_MAX], leaf[40];
	int rc;
	store_id_format(id, name, sizeof(name));
	snprintf(leaf, sizeof(leaf), ".removing-%s", name);
	if ((rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, name, dir, sizeof(dir))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_STAGING, leaf, gone, sizeof(gone))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0)
		return rc;

	pthread_mutex_lock(&s->mu);
	uint64_t cur;
	if (latest_target(latest, &cur) && cur == id) {
		pthread_mutex_unlock(&s->mu);
		log_err("store: %s: not removing snapshot %s: latest points to it", coll, name);
		return -EBUSY;
	}
	/* Out of snapshots/ in one rename, into staging/ which recovery
	 * empties: a crash mid-delete never leaves a partial snapshot. */
	fsx_rm_rf(gone);
	rc = rename(dir, gone) < 0 ? -errno : 0;
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		log_err("store: %s: cannot remove snapshot: rename %s to %s: %s", coll, dir, gone,
			strerror(-rc));
		return rc;
	}
	if ((rc = sync_dir(snaps)) < 0 || (rc = sync_dir(staging)) < 0)
		return rc;
	if ((rc = fsx_rm_rf(gone)) < 0)
		log_err("store: %s: snapshot %s removed, but deleting %s failed: %s", coll, name,
			gone, strerror(-rc));
	else
		log_info("store: %s: removed snapshot %s", coll, name);
	return 0;
}

/* ---- recovery ------------------------------------------------------------- */

/* Empties staging/ (entries only; the directory stays). */
static int recover_staging(const char *coll, const char *staging)
{
	char **names;
	size_t n;
	int rc = list_dir(staging, &names, &n);
	if (rc < 0) {
		log_err("store: %s: cannot list %s: %s", coll, staging, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		char p[PATH_MAX];
		if ((rc = fmt_path(p, sizeof(p), "%s/%s", staging, names[i])) < 0)
			break;
		log_info("store: %s: removing half-made %s", coll, p);
		if ((rc = fsx_rm_rf(p)) < 0)
			log_err("store: %s: cannot remove %s: %s", coll, p, strerror(-rc));
	}
	store_names_free(names, n);
	return rc < 0 ? rc : (n ? sync_dir(staging) : 0);
}

/*
 * Publishing renames snapshots/ID before moving latest; a crash between
 * the two leaves a whole snapshot that latest does not name yet. Point
 * latest at the newest snapshot (or drop it when there is none).
 */
static int recover_latest(store *s, const char *coll)
{
	char latest[PATH_MAX], dir[PATH_MAX];
	uint64_t *ids, cur;
	size_t n;
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = store_snapshots(s, coll, &ids, &n)) < 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	bool has = latest_target(latest, &cur);
	if (n && (!has || cur != ids[n - 1])) {
		log_info("store: %s: pointing latest at snapshot %llu", coll,
			 (unsigned long long)ids[n - 1]);
		rc = latest_set(s, coll, ids[n - 1]);
	} else if (!n) {
		struct stat st;
		if (lstat(latest, &st) == 0) {
			log_info("store: %s: removing latest: there is no snapshot", coll);
			if (unlink(latest) < 0) {
				rc = -errno;
				log_err("store: %s: cannot remove %s: %s", coll, latest,
					strerror(-rc));
			} else {
				rc = sync_dir(dir);
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	free(ids);
	return rc;
}

struct incoming_file {
	char *name;
	struct timespec mtime;
};

static int cmp_incoming(const void *a, const void *b)
{
	const struct incoming_file *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * Queues every non-dot regular file left in incoming/, oldest first. A
 * file whose writer died midway is queued too: validation rejects it. A
 * file that cannot be queued (its name too long for queue/, EACCES, EIO)
 * is moved to rejected/ with the reason, so that one file never stops a
 * start; if even that fails it stays where it is, and is logged.
 */
static void recover_incoming(store *s, const char *coll, const char *indir, uint64_t *quarantined)
{
	char **names;
	size_t n;
	int rc = list_dir(indir, &names, &n);
	if (rc < 0) {
		log_err("store: %s: cannot list %s: %s; its files are queued at the next start", coll, indir,
			strerror(-rc));
		return;
	}
	struct incoming_file *f = calloc(n ? n : 1, sizeof(*f));
	size_t k = 0;
	if (!f) {
		store_names_free(names, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char p[PATH_MAX];
		struct stat st;
		if (names[i][0] == '.')
			continue; /* dot-files are never queued */
		if (fmt_path(p, sizeof(p), "%s/%s", indir, names[i]) < 0 || lstat(p, &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode)) {
			log_warn("store: %s: leaving %s in incoming/: not a regular file", coll, p);
			continue;
		}
		f[k].name = names[i];
		f[k].mtime = st.st_mtim;
		k++;
	}
	qsort(f, k, sizeof(*f), cmp_incoming);
	for (size_t i = 0; i < k; i++) {
		log_info("store: %s: queuing %s, left in incoming/ by an earlier run", coll, f[i].name);
		rc = store_queue_add(s, coll, f[i].name, NULL);
		if (rc == 0 || rc == -ENOENT)
			continue;
		char p[PATH_MAX], reason[512];
		if (rc == -ENAMETOOLONG)
			snprintf(reason, sizeof(reason),
				 "left in incoming/ by an earlier run and could not be queued: its name is %zu bytes, "
				 "and a delta name has at most %d",
				 strlen(f[i].name), STORE_DELTA_NAME_MAX);
		else
			snprintf(reason, sizeof(reason),
				 "left in incoming/ by an earlier run and could not be queued: %s", strerror(-rc));
		if (fmt_path(p, sizeof(p), "%s/%s", indir, f[i].name) == 0 &&
		    reject_file(s, coll, p, indir, f[i].name, reason) == 0)
			(*quarantined)++;
		else
			log_err("store: %s: %s stays in incoming/: it can neither be queued nor moved to rejected/",
				coll, f[i].name);
	}
	free(f);
	store_names_free(names, n);
}

/* Gives the collection's directories, and its snapshots' files, the store's modes. */
static void recover_modes(store *s, const char *coll, const char *dir)
{
	char sub[PATH_MAX], snaps[PATH_MAX];
	if (chmod(dir, s->dir_mode) < 0)
		log_warn("store: %s: cannot set the mode of %s: %s", coll, dir, strerror(errno));
	for (size_t i = 0; i < sizeof(coll_subdirs) / sizeof(coll_subdirs[0]); i++)
		if (fmt_path(sub, sizeof(sub), "%s/%s", dir, coll_subdirs[i]) == 0)
			chmod(sub, s->dir_mode);
	uint64_t *ids = NULL;
	size_t n = 0;
	if (coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps)) < 0 ||
	    store_snapshots(s, coll, &ids, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char name[24], p[PATH_MAX], file[PATH_MAX];
		store_id_format(ids[i], name, sizeof(name));
		if (fmt_path(p, sizeof(p), "%s/%s", snaps, name) < 0)
			continue;
		chmod(p, s->dir_mode);
		char **files;
		size_t nf;
		if (list_dir(p, &files, &nf) < 0)
			continue;
		for (size_t j = 0; j < nf; j++)
			if (fmt_path(file, sizeof(file), "%s/%s", p, files[j]) == 0)
				chmod(file, s->sealed_mode);
		store_names_free(files, nf);
	}
	free(ids);
}

int store_recover(store *s, const char *coll, bool incoming, uint64_t *quarantined)
{
	*quarantined = 0;
	char dir[PATH_MAX], sub[PATH_MAX], nid[PATH_MAX], tmp[PATH_MAX], staging[PATH_MAX];
	char indir[PATH_MAX];
	int rc;
	if ((rc = coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0)
		return rc;
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_err("store: cannot recover collection %s: %s is not a directory", coll, dir);
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(coll_subdirs) / sizeof(coll_subdirs[0]); i++) {
		if ((rc = fmt_path(sub, sizeof(sub), "%s/%s", dir, coll_subdirs[i])) < 0)
			return rc;
		if ((rc = fsx_mkdir_p(sub, s->dir_mode)) < 0) {
			log_err("store: %s: cannot create %s: %s", coll, sub, strerror(-rc));
			return rc;
		}
	}
	/* in case a sub-directory was missing and has just been made */
	if ((rc = sync_dir(dir)) < 0)
		return rc;
	recover_modes(s, coll, dir);
	if ((rc = coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = coll_path(s, coll, STORE_AREA_INCOMING, NULL, indir, sizeof(indir))) < 0)
		return rc;

	/* next-id above every id on disk, staging/ included, before staging/
	 * is emptied: an id that was handed out stays used. */
	uint64_t floor, cur;
	pthread_mutex_lock(&s->mu);
	rc = id_floor(s, coll, &floor, nid, sizeof(nid));
	if (rc == 0)
		rc = next_id_read(nid, &cur);
	if (rc == 0 && cur < floor)
		rc = next_id_write(nid, floor);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		log_err("store: %s: cannot raise next-id above the ids on disk: %s", coll,
			strerror(-rc));
		return rc;
	}

	if ((rc = recover_staging(coll, staging)) < 0)
		return rc;

	/* Crumbs of an interrupted latest or next-id replacement. */
	const char *crumbs[] = {LATEST_TMP, NEXT_ID ".tmp"};
	for (size_t i = 0; i < 2; i++) {
		if ((rc = fmt_path(tmp, sizeof(tmp), "%s/%s", dir, crumbs[i])) < 0)
			return rc;
		if (unlink(tmp) < 0 && errno != ENOENT) {
			rc = -errno;
			log_err("store: %s: cannot remove %s: %s", coll, tmp, strerror(-rc));
			return rc;
		}
	}
	if ((rc = recover_latest(s, coll)) < 0)
		return rc;
	if ((rc = store_seq_raise(s, coll)) < 0)
		return rc;
	if (incoming)
		recover_incoming(s, coll, indir, quarantined);
	return 0;
}
