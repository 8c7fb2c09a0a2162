/*
 * store_snap — snapshot ids (never reused, even across crashes), staging,
 * publishing (content fsynced, then renamed into snapshots/, then latest
 * moved) and removal of snapshots.
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

/* ---- snapshot ids --------------------------------------------------------- */

void store_id_format(uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%0*llu", ID_DIGITS, (unsigned long long)id);
}

bool store_id_parse(const char *name, uint64_t *id)
{
	size_t n = strlen(name);
	uint64_t v;
	if (n < ID_DIGITS || !store_all_digits(name, n) || !store_parse_u64(name, n, &v))
		return false;
	/* Only the spelling store_id_format makes: "000000042" is not an id,
	 * so two directories can never name the same snapshot. */
	if (n > ID_DIGITS && name[0] == '0')
		return false;
	*id = v;
	return true;
}

/* Reads next-id; 0 if the file does not exist yet. */
int store_next_id_read(const store *s, const char *path, uint64_t *v)
{
	char *text;
	size_t len;
	*v = 0;
	int rc = fsx_read_all(path, &text, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	size_t nd = strspn(text, "0123456789");
	bool ok = nd > 0 && (text[nd] == '\0' || (text[nd] == '\n' && text[nd + 1] == '\0')) &&
		  store_parse_u64(text, nd, v);
	free(text);
	if (!ok) {
		/* Never guess: a wrong guess could hand out an id twice. */
		store_say(s, LOG_ERR,
			  "store: %s does not hold a snapshot id; fix or remove it by hand", path);
		return -EINVAL;
	}
	return 0;
}

int store_next_id_write(const store *s, const char *path, uint64_t v)
{
	char text[32];
	int len = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)v);
	int rc = fsx_write_atomic(path, text, (size_t)len);
	if (rc < 0)
		store_say(s, LOG_ERR, "store: cannot write %s: %s", path, strerror(-rc));
	return rc;
}

/*
 * The smallest id that is safe to hand out: not below next-id and above
 * every id in snapshots/ and staging/. Called with s->mu held.
 */
int store_id_floor(store *s, const char *coll, uint64_t *floor, char *nid, size_t nidlen)
{
	char snaps[PATH_MAX], staging[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, NEXT_ID, nid, nidlen)) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0)
		return rc;
	uint64_t v, m;
	bool found;
	if ((rc = store_next_id_read(s, nid, &v)) < 0)
		return rc;
	if (v == 0)
		v = 1; /* ids start at 1 */
	const char *dirs[] = {snaps, staging};
	for (size_t i = 0; i < 2; i++) {
		if ((rc = store_max_id_in(s, dirs[i], &m, &found)) < 0)
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
	int rc = store_id_floor(s, coll, &v, nid, sizeof(nid));
	if (rc == 0 && v == UINT64_MAX)
		rc = -EOVERFLOW;
	/* next-id moves past v on disk before anyone sees v: after a crash
	 * the same id can never be handed out again. */
	if (rc == 0)
		rc = store_next_id_write(s, nid, v + 1);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot allocate a snapshot id: %s", coll,
			  strerror(-rc));
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
	if ((rc = store_coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_STAGING, name, buf, len)) < 0)
		return rc;
	if (mkdir(buf, s->dir_mode) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot create staging directory %s: %s", coll,
			  buf, strerror(-rc));
		return rc;
	}
	return store_sync_dir(s, staging);
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
	int rc = store_list(s, dir, &names, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char p[PATH_MAX];
		if ((rc = store_fmt_path(p, sizeof(p), "%s/%s", dir, names[i])) < 0)
			break;
		if (!store_is_reg_at(dir, names[i])) {
			store_say(s, LOG_ERR,
				  "store: %s: refusing to publish %s: %s is not a regular file",
				  coll, dir, p);
			rc = -EINVAL;
			break;
		}
		if (chmod(p, s->sealed_mode) < 0) {
			rc = -errno;
			store_say(s, LOG_ERR, "store: %s: cannot set the mode of %s: %s", coll, p,
				  strerror(-rc));
			break;
		}
		rc = store_fsync_file(s, p);
	}
	store_names_free(names, n);
	return rc < 0 ? rc : store_sync_dir(s, dir);
}

/* The id latest points at; false if it is missing or not ours. */
bool store_latest_target(const char *latest, uint64_t *id)
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
int store_latest_set(store *s, const char *coll, uint64_t id)
{
	char dir[PATH_MAX], latest[PATH_MAX], tmp[PATH_MAX], target[48], name[24];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) <
		    0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, LATEST_TMP, tmp, sizeof(tmp))) < 0)
		return rc;
	store_id_format(id, name, sizeof(name));
	snprintf(target, sizeof(target), "snapshots/%s", name);
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll, tmp, strerror(-rc));
		return rc;
	}
	if (symlink(target, tmp) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot create symlink %s: %s", coll, tmp,
			  strerror(-rc));
		return rc;
	}
	if (rename(tmp, latest) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot rename %s to %s: %s", coll, tmp, latest,
			  strerror(-rc));
		unlink(tmp);
		return rc;
	}
	return store_sync_dir(s, dir);
}

int store_publish(store *s, const char *coll, uint64_t id)
{
	char name[24], src[PATH_MAX], dst[PATH_MAX], staging[PATH_MAX], snaps[PATH_MAX];
	char latest[PATH_MAX];
	int rc;
	store_id_format(id, name, sizeof(name));
	if ((rc = store_coll_path(s, coll, STORE_AREA_STAGING, name, src, sizeof(src))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, name, dst, sizeof(dst))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0)
		return rc;

	/* Content first, then the name: snapshots/ID appears only whole. */
	if ((rc = sync_snapshot_dir(s, coll, src)) < 0)
		return rc;
	if ((rc = store_rename_noreplace(src, dst)) < 0) {
		if (rc == -ENOTEMPTY)
			rc = -EEXIST;
		store_say(s, LOG_ERR, "store: %s: cannot publish snapshot %s: rename %s to %s: %s",
			  coll, name, src, dst, strerror(-rc));
		return rc;
	}
	if ((rc = store_sync_dir(s, snaps)) < 0 || (rc = store_sync_dir(s, staging)) < 0)
		return rc;

	/* latest only moves forward, should publishes ever finish out of order. */
	pthread_mutex_lock(&s->mu);
	uint64_t cur;
	struct stat st;
	char curdir[PATH_MAX], curname[24];
	bool newer = false;
	if (store_latest_target(latest, &cur) && cur > id) {
		store_id_format(cur, curname, sizeof(curname));
		newer = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, curname, curdir,
					sizeof(curdir)) == 0 &&
			lstat(curdir, &st) == 0;
	}
	rc = newer ? 0 : store_latest_set(s, coll, id);
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		store_say(s, LOG_INFO, "store: %s: published snapshot %s", coll, name);
	return rc;
}

int store_snapshots(store *s, const char *coll, uint64_t **ids, size_t *n)
{
	char snaps[PATH_MAX];
	*ids = NULL;
	*n = 0;
	int rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = store_list(s, snaps, &names, &cnt)) < 0)
		return rc;
	uint64_t *v = malloc((cnt ? cnt : 1) * sizeof(*v));
	size_t k = 0;
	if (!v) {
		store_names_free(names, cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++) {
		uint64_t id;
		if (store_id_parse(names[i], &id) && store_is_dir_at(snaps, names[i]))
			v[k++] = id;
	}
	store_names_free(names, cnt);
	qsort(v, k, sizeof(*v), store_cmp_u64);
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
	if ((rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, name, dir, sizeof(dir))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_SNAPSHOTS, NULL, snaps, sizeof(snaps))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_STAGING, NULL, staging, sizeof(staging))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_STAGING, leaf, gone, sizeof(gone))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, LATEST, latest, sizeof(latest))) < 0)
		return rc;

	pthread_mutex_lock(&s->mu);
	uint64_t cur;
	if (store_latest_target(latest, &cur) && cur == id) {
		pthread_mutex_unlock(&s->mu);
		store_say(s, LOG_ERR, "store: %s: not removing snapshot %s: latest points to it",
			  coll, name);
		return -EBUSY;
	}
	/* Out of snapshots/ in one rename, into staging/ which recovery
	 * empties: a crash mid-delete never leaves a partial snapshot. */
	fsx_rm_rf(gone);
	rc = rename(dir, gone) < 0 ? -errno : 0;
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot remove snapshot: rename %s to %s: %s",
			  coll, dir, gone, strerror(-rc));
		return rc;
	}
	if ((rc = store_sync_dir(s, snaps)) < 0 || (rc = store_sync_dir(s, staging)) < 0)
		return rc;
	if ((rc = fsx_rm_rf(gone)) < 0)
		store_say(s, LOG_ERR, "store: %s: snapshot %s removed, but deleting %s failed: %s",
			  coll, name, gone, strerror(-rc));
	else
		store_say(s, LOG_INFO, "store: %s: removed snapshot %s", coll, name);
	return 0;
}
