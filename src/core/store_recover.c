/*
 * store_recover — crash recovery of a collection: staging emptied,
 * next-id raised above every id on disk, latest repaired, modes set, and
 * files left in incoming/ queued (or set aside with a reason).
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
#include "sbuf.h"

/* ---- recovery ------------------------------------------------------------- */

/* Empties staging/ (entries only; the directory stays). */
static int recover_staging(const store *s, const char *coll, const char *staging)
{
	char **names;
	size_t n;
	int rc = store_list(s, staging, &names, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char p[PATH_MAX];
		if ((rc = store_fmt_path(p, sizeof(p), "%s/%s", staging, names[i])) < 0)
			break;
		store_say(s, LOG_INFO, "store: %s: removing half-made %s", coll, p);
		if ((rc = fsx_rm_rf(p)) < 0)
			store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll, p,
				  strerror(-rc));
	}
	store_names_free(names, n);
	return rc < 0 ? rc : (n ? store_sync_dir(s, staging) : 0);
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
	if ((rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) <
		    0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = store_snapshots(s, coll, &ids, &n)) < 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	bool has = store_latest_target(latest, &cur);
	if (n && (!has || cur != ids[n - 1])) {
		store_say(s, LOG_INFO, "store: %s: pointing latest at snapshot %llu", coll,
			  (unsigned long long)ids[n - 1]);
		rc = store_latest_set(s, coll, ids[n - 1]);
	} else if (!n) {
		struct stat st;
		if (lstat(latest, &st) == 0) {
			store_say(s, LOG_INFO, "store: %s: removing latest: there is no snapshot",
				  coll);
			if (unlink(latest) < 0) {
				rc = -errno;
				store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll,
					  latest, strerror(-rc));
			} else {
				rc = store_sync_dir(s, dir);
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
	int rc = store_list_dir(indir, &names, &n);
	if (rc < 0) {
		store_say(s, LOG_ERR,
			  "store: %s: cannot list %s: %s; its files are queued at the next start",
			  coll, indir, strerror(-rc));
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
		if (store_fmt_path(p, sizeof(p), "%s/%s", indir, names[i]) < 0 || lstat(p, &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode)) {
			store_say(s, LOG_WARNING,
				  "store: %s: leaving %s in incoming/: not a regular file", coll, p);
			continue;
		}
		f[k].name = names[i];
		f[k].mtime = st.st_mtim;
		k++;
	}
	qsort(f, k, sizeof(*f), cmp_incoming);
	for (size_t i = 0; i < k; i++) {
		store_say(s, LOG_INFO, "store: %s: queuing %s, left in incoming/ by an earlier run",
			  coll, f[i].name);
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
				 "left in incoming/ by an earlier run and could not be queued: %s",
				 strerror(-rc));
		if (store_fmt_path(p, sizeof(p), "%s/%s", indir, f[i].name) == 0 &&
		    store_reject_file(s, coll, p, indir, f[i].name, reason) == 0)
			(*quarantined)++;
		else
			store_say(s, LOG_ERR,
				  "store: %s: %s stays in incoming/: it can neither be queued nor moved to rejected/",
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
		store_say(s, LOG_WARNING, "store: %s: cannot set the mode of %s: %s", coll, dir,
			  strerror(errno));
	for (size_t i = 0; i < sizeof(store_coll_subdirs) / sizeof(store_coll_subdirs[0]); i++)
		if (store_fmt_path(sub, sizeof(sub), "%s/%s", dir, store_coll_subdirs[i]) == 0)
			chmod(sub, s->dir_mode);
	uint64_t *ids = NULL;
	size_t n = 0;
	if (store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps)) < 0 ||
	    store_snapshots(s, coll, &ids, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char name[24], p[PATH_MAX], file[PATH_MAX];
		store_id_format(ids[i], name, sizeof(name));
		if (store_fmt_path(p, sizeof(p), "%s/%s", snaps, name) < 0)
			continue;
		chmod(p, s->dir_mode);
		char **files;
		size_t nf;
		if (store_list_dir(p, &files, &nf) < 0)
			continue;
		for (size_t j = 0; j < nf; j++)
			if (store_fmt_path(file, sizeof(file), "%s/%s", p, files[j]) == 0)
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
	if ((rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0)
		return rc;
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		store_say(s, LOG_ERR, "store: cannot recover collection %s: %s is not a directory",
			  coll, dir);
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(store_coll_subdirs) / sizeof(store_coll_subdirs[0]); i++) {
		if ((rc = store_fmt_path(sub, sizeof(sub), "%s/%s", dir, store_coll_subdirs[i])) < 0)
			return rc;
		if ((rc = fsx_mkdir_p(sub, s->dir_mode)) < 0) {
			store_say(s, LOG_ERR, "store: %s: cannot create %s: %s", coll, sub,
				  strerror(-rc));
			return rc;
		}
	}
	/* in case a sub-directory was missing and has just been made */
	if ((rc = store_sync_dir(s, dir)) < 0)
		return rc;
	recover_modes(s, coll, dir);
	if ((rc = store_coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_INCOMING, NULL, indir, sizeof(indir))) < 0)
		return rc;

	/* next-id above every id on disk, staging/ included, before staging/
	 * is emptied: an id that was handed out stays used. */
	uint64_t floor, cur;
	pthread_mutex_lock(&s->mu);
	rc = store_id_floor(s, coll, &floor, nid, sizeof(nid));
	if (rc == 0)
		rc = store_next_id_read(s, nid, &cur);
	if (rc == 0 && cur < floor)
		rc = store_next_id_write(s, nid, floor);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot raise next-id above the ids on disk: %s",
			  coll, strerror(-rc));
		return rc;
	}

	if ((rc = recover_staging(s, coll, staging)) < 0)
		return rc;

	/* Crumbs of an interrupted latest or next-id replacement. */
	const char *crumbs[] = {LATEST_TMP, NEXT_ID ".tmp"};
	for (size_t i = 0; i < 2; i++) {
		if ((rc = store_fmt_path(tmp, sizeof(tmp), "%s/%s", dir, crumbs[i])) < 0)
			return rc;
		if (unlink(tmp) < 0 && errno != ENOENT) {
			rc = -errno;
			store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll, tmp,
				  strerror(-rc));
			return rc;
		}
	}
	if ((rc = recover_latest(s, coll)) < 0)
		return rc;
	if ((rc = store_seq_raise(s, coll)) < 0)
		return rc;
	store_recover_rejected(s, coll);
	if (incoming)
		recover_incoming(s, coll, indir, quarantined);
	return 0;
}
