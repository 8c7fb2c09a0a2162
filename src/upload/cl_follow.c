/*
 * cl_follow — the follower thread: for every collection this host does
 * not compact, the pointer is read with If-None-Match at each poll; a
 * snapshot not here yet is downloaded (parallel ranged GETs of the one
 * version the pointer names), checked, and only then published:
 *
 *   1. the manifest (COLL/snapshots/DIR/MANIFEST.json) must say the size
 *      and SHA-256 the pointer says;
 *   2. the database is downloaded into staging/ID with If-Match on the
 *      pointer's ETag, hashed as it lands: size and SHA-256 must match;
 *   3. PRAGMA integrity_check of the file must say "ok";
 *   4. the manifest's bytes go beside it, and store_publish makes
 *      staging/ID snapshots/ID (fsyncs, rename, latest).
 * A snapshot that fails any step is never shown: staging/ID is removed,
 * status says why, and it is tried again after a backoff (1 s doubling
 * to 60 s). ID is the pointer's id, unless this STORE used it already
 * (a host that compacted and lost its lease before its swap): then the
 * next id of its own.
 */
#include "cluster_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "log.h"
#include "manifest.h"
#include "sqlh.h"

#define CL_MANIFEST_MAX (16u << 20)
#define CL_BACKOFF_MAX_S 60.0

/* PRAGMA integrity_check of path: 0 if "ok", else -EBADMSG with what it said in why. */
static int cl_integrity(const char *path, char *why, size_t len)
{
	sqlite3 *db;
	int rc = sqlh_open_ro(path, &db, why, len);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = NULL;
	rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);
		rc = r && !strcmp(r, "ok") ? 0 : -EBADMSG;
		if (rc < 0)
			snprintf(why, len, "integrity_check: %.200s", r ? r : "(null)");
	} else {
		snprintf(why, len, "integrity_check: %s", sqlite3_errmsg(db));
		rc = -EBADMSG;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* The id under which the pointer's snapshot p is published here: p->id if this STORE never used it. */
static int cl_follow_id(cluster *cl, const char *coll, const struct lease_pointer *p, uint64_t *id)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = store_snapshots(cl->st, coll, &ids, &n);
	if (rc < 0)
		return rc;
	uint64_t max = n ? ids[n - 1] : 0;
	free(ids);
	*id = p->id > max ? p->id : max + 1;
	return store_id_reserve(cl->st, coll, *id);
}

/* Whether the newest local snapshot already is p (this host wrote it, or made it local before). */
static bool cl_have(cluster *cl, const char *coll, const struct lease_pointer *p, uint64_t *id)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	bool have = false;
	if (store_snapshots(cl->st, coll, &ids, &n) == 0 && n) {
		char leaf[64], path[PATH_MAX], *json = NULL, sha[65];
		uint64_t size, mid;
		store_id_format(ids[n - 1], leaf, sizeof(leaf));
		strcat(leaf, "/MANIFEST.json");
		if (store_path(cl->st, coll, STORE_AREA_SNAPSHOTS, leaf, path, sizeof(path)) == 0 &&
		    fsx_read_all(path, &json, NULL) == 0 &&
		    manifest_read_basic(json, &size, sha, &mid) == 0 && !strcmp(sha, p->sha256) &&
		    size == p->size) {
			have = true;
			*id = ids[n - 1];
		}
		free(json);
	}
	free(ids);
	return have;
}

/* Steps 1-4 of the header into staging/ID. 0, or a negative errno with why. */
static int cl_fetch(cluster *cl, s3_client *c3, const char *coll, const struct lease_pointer *p,
		    uint64_t id, char *why, size_t len)
{
	char dir[PATH_MAX], db[PATH_MAX + 80], man[PATH_MAX + 16];
	struct s3_error e;
	struct s3_object_info info;
	void *mdoc = NULL;
	size_t mlen;
	uint64_t msize, mid;
	char msha[65];
	int rc = s3_get_buf(c3, p->manifest_key, NULL, CL_MANIFEST_MAX, &mdoc, &mlen, &info, &e);
	if (rc < 0) {
		s3_error_format(&e, why, len);
		return rc;
	}
	s3_object_info_free(&info);
	if (manifest_read_basic(mdoc, &msize, msha, &mid) < 0 || msize != p->size ||
	    strcmp(msha, p->sha256)) {
		snprintf(why, len,
			 "the manifest %.300s does not say what the pointer says (%" PRIu64
			 " bytes, %.64s)",
			 p->manifest_key, p->size, p->sha256);
		free(mdoc);
		return -EBADMSG;
	}
	if ((rc = store_staging_create(cl->st, coll, id, dir, sizeof(dir))) < 0) {
		snprintf(why, len, "cannot make staging/%" PRIu64 ": %s", id, strerror(-rc));
		free(mdoc);
		return rc;
	}
	snprintf(db, sizeof(db), "%s/%s.sqlite3", dir, coll);
	snprintf(man, sizeof(man), "%s/MANIFEST.json", dir);
	int fd = open(db, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, len, "cannot create %.300s: %s", db, strerror(-rc));
		goto out;
	}
	struct s3_download_opts o = {.part_size = cl->part_size,
				     .parallel = cl->parallel,
				     .if_match = p->etag[0] ? p->etag : NULL,
				     .max_size = p->size,
				     .cancel = &cl->cancel};
	struct s3_download_result res;
	rc = s3_download_file(c3, p->db_key, fd, &o, &res, &e);
	if (rc < 0)
		s3_error_format(&e, why, len);
	else if (res.size != p->size || strcmp(res.sha256, p->sha256) != 0)
		rc = -EBADMSG, snprintf(why, len,
					"%.300s is %" PRIu64
					" bytes with SHA-256 %.64s, but the pointer says %" PRIu64
					" bytes, %.64s (damaged or replaced)",
					p->db_key, res.size, res.sha256, p->size, p->sha256);
	else if (fsync(fd) < 0)
		rc = -errno, snprintf(why, len, "fsync %.300s: %s", db, strerror(errno));
	close(fd);
	if (rc == 0)
		rc = cl_integrity(db, why, len);
	if (rc == 0 && (rc = fsx_write_atomic(man, mdoc, mlen)) < 0)
		snprintf(why, len, "cannot write %.300s: %s", man, strerror(-rc));
	if (rc == 0 && (rc = store_publish(cl->st, coll, id)) < 0)
		snprintf(why, len, "cannot publish snapshot %" PRIu64 ": %s", id, strerror(-rc));
out:
	if (rc < 0)
		fsx_rm_rf(dir);
	free(mdoc);
	return rc;
}

/* Reads the pointer if it changed. 0, or a negative errno (recorded). */
static int cl_poll_pointer(cluster *cl, s3_client *c3, struct ccl *c)
{
	char key[S3_KEY_MAX + 1], etag[S3_ETAG_MAX];
	struct s3_error e;
	if (layout_pointer_key(cl->prefix, c->name, key, sizeof(key)) < 0)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&cl->mu);
	snprintf(etag, sizeof(etag), "%s", c->ptr_present ? c->ptr_etag : "");
	pthread_mutex_unlock(&cl->mu);
	void *doc = NULL;
	size_t len;
	struct s3_object_info info;
	struct s3_get_opts go = {.if_none_match = etag[0] ? etag : NULL, .cancel = &cl->cancel};
	/* Taken before the request: an answer is at least this fresh. */
	double asked = mono_now();
	int rc = s3_get_buf_opts(c3, key, &go, LEASE_DOC_MAX, &doc, &len, &info, &e);
	if (rc == S3_NOT_MODIFIED) {
		s3_object_info_free(&info);
		pthread_mutex_lock(&cl->mu);
		c->ptr_polled = true;
		c->ptr_read_at = asked;
		pthread_mutex_unlock(&cl->mu);
		return 0;
	}
	if (rc == -ENOENT) {
		pthread_mutex_lock(&cl->mu);
		c->ptr_polled = true;
		c->ptr_read_at = asked;
		c->ptr_present = false;
		pthread_mutex_unlock(&cl->mu);
		return 0;
	}
	if (rc < 0) {
		cl_error(cl, c, "reading the pointer", &e, rc);
		return rc;
	}
	struct lease_pointer p;
	rc = lease_pointer_parse(doc, &p, NULL);
	free(doc);
	if (rc < 0) {
		s3_object_info_free(&info);
		cl_error(cl, c, "the pointer is not a pointer document", NULL, -EPROTO);
		return -EPROTO;
	}
	pthread_mutex_lock(&cl->mu);
	if (!c->ptr_present || c->ptr.generation != p.generation)
		c->ptr_changed_at = mono_now();
	c->ptr = p;
	c->ptr_present = true;
	c->ptr_polled = true;
	c->ptr_read_at = asked;
	snprintf(c->ptr_etag, sizeof(c->ptr_etag), "%s", info.etag);
	pthread_mutex_unlock(&cl->mu);
	s3_object_info_free(&info);
	return 0;
}

int cl_follow_one(cluster *cl, s3_client *c3, struct ccl *c)
{
	int rc = cl_poll_pointer(cl, c3, c);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&cl->mu);
	bool present = c->ptr_present, wait = mono_now() < c->follow_not_before;
	struct lease_pointer p = c->ptr;
	bool done = !present || c->applied_generation == p.generation;
	pthread_mutex_unlock(&cl->mu);
	if (done)
		return 1;
	uint64_t id;
	if (!cl_have(cl, c->name, &p, &id)) {
		if (wait)
			return 0;
		char why[1200];
		double t0 = mono_now();
		if ((rc = cl_follow_id(cl, c->name, &p, &id)) < 0 ||
		    (rc = cl_fetch(cl, c3, c->name, &p, id, why, sizeof(why))) < 0) {
			if (rc == -ECANCELED || cl_stopping(cl))
				return rc;
			pthread_mutex_lock(&cl->mu);
			c->follow_failures++;
			double b = 1.0;
			for (unsigned i = 1; i < c->follow_failures && b < CL_BACKOFF_MAX_S; i++)
				b *= 2;
			c->follow_not_before =
				mono_now() + (b < CL_BACKOFF_MAX_S ? b : CL_BACKOFF_MAX_S);
			snprintf(c->error, sizeof(c->error),
				 "snapshot of generation %" PRIu64 " not shown: %.400s",
				 p.generation, why);
			pthread_mutex_unlock(&cl->mu);
			log_err("cluster: %s: snapshot %s of generation %" PRIu64 " not shown: %s",
				c->name, p.db_key, p.generation, why);
			return rc;
		}
		log_info("cluster: %s: snapshot %08" PRIu64 " of %s (generation %" PRIu64
			 ", %" PRIu64 " bytes) verified and published in %.2f s",
			 c->name, id, p.host, p.generation, p.size, mono_now() - t0);
		cl->hooks.published(cl->hooks.ctx, c->name, id);
	}
	pthread_mutex_lock(&cl->mu);
	c->applied_generation = p.generation;
	c->applied_id = id;
	snprintf(c->applied_sha, sizeof(c->applied_sha), "%s", p.sha256);
	c->applied_at = mono_now();
	c->follow_failures = 0;
	c->follow_not_before = 0;
	c->error[0] = '\0';
	cl->coord_kick = true; /* a host becoming compactor waits for this */
	pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
	return 1;
}

void *cl_follow_main(void *arg)
{
	cluster *cl = arg;
	do {
		size_t n;
		struct ccl **v = cl_colls(cl, &n);
		for (size_t i = 0; v && i < n && !cl_stopping(cl); i++) {
			pthread_mutex_lock(&cl->mu);
			enum cl_role role = v[i]->role;
			pthread_mutex_unlock(&cl->mu);
			if (role == CL_FOLLOW || role == CL_SYNC)
				cl_follow_one(cl, cl->follow_c, v[i]);
			else
				cl_poll_pointer(cl, cl->follow_c,
						v[i]); /* the compactor watches it moving under it */
		}
		free(v);
	} while (cl_wait(cl, &cl->follow_kick, cl->poll_s));
	return NULL;
}
