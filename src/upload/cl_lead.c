/*
 * cl_lead — the intake thread, for the collections this host compacts:
 *
 *  - import: every delta under PREFIX/COLL/deltas/ (any host's) not yet
 *    imported is downloaded into staging/, checked against the SHA-256
 *    its key names, fsynced and imported into queue/ as @HOST@LEAF
 *    (store_queue_import); the compactor applies it or finds it in its
 *    ledger already (a duplicate), exactly as a local delta;
 *  - delete: an imported delta is deleted from S3 once the snapshot the
 *    pointer names (published here) holds its SHA-256 in its ledger,
 *    never before: until then a new compactor would need it;
 *  - relay: a delta the compactor refused (rejected/@HOST@LEAF) goes to
 *    PREFIX/COLL/rejected/HOST/LEAF with its reason, its delta object is
 *    deleted, and it leaves rejected/ here: HOST's shipper brings it into
 *    HOST's own rejected/.
 * The thread never holds cl->mu across S3 or the store. A role change
 * between two steps is harmless: queue/ is emptied by the compactor's
 * rebase whenever this host starts or stops compacting.
 */
#include "cluster_i.h"

#include <dirent.h>
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
#include "hex.h"
#include "log.h"
#include "sqlh.h"

#define CL_REASON_MAX 1024

void cl_lead_forget(struct ccl *c)
{
	c->nimports = 0;
}

static bool cl_leading(cluster *cl, struct ccl *c)
{
	pthread_mutex_lock(&cl->mu);
	bool lead = c->role == CL_LEAD;
	pthread_mutex_unlock(&cl->mu);
	return lead;
}

/* With cl->mu held. */
static bool cl_imported(const struct ccl *c, const char *key)
{
	for (size_t i = 0; i < c->nimports; i++)
		if (!strcmp(c->imports[i].key, key))
			return true;
	return false;
}

static int cl_import_one(cluster *cl, struct ccl *c, const char *key, const struct layout_delta *ld)
{
	char tmp[PATH_MAX], leaf[64], name[LAYOUT_HOST_ID_MAX + LAYOUT_DELTA_LEAF_MAX + 4],
		dl[LAYOUT_DELTA_LEAF_MAX];
	struct s3_error e;
	struct s3_object_info info;
	char sha[FSX_SHA256_HEX];
	snprintf(leaf, sizeof(leaf), ".import-%016" PRIx64, ld->seq);
	int rc = cl_fetch_tmp(cl, cl->lead_c, c->name, key, leaf, tmp, sha, &info, &e);
	if (rc == -ENOENT) /* applied and deleted, or relayed, meanwhile */
		return 0;
	if (rc < 0) {
		cl_error(cl, c, "fetching a delta of the cluster", &e, rc);
		return rc;
	}
	s3_object_info_free(&info);
	layout_delta_leaf(ld, dl, sizeof(dl));
	snprintf(name, sizeof(name), "@%s@%s", ld->host, dl);
	if (strcmp(sha, ld->sha256) != 0) {
		/* Not the bytes its host shipped: refuse it as a delta would be refused. */
		char why[256];
		snprintf(why, sizeof(why),
			 "the object's bytes have SHA-256 %.64s, not the %.64s its key names "
			 "(changed in S3 after it was shipped)",
			 sha, ld->sha256);
		rc = store_reject_import(cl->st, c->name, tmp, name, why);
		if (rc < 0)
			unlink(tmp);
		return rc;
	}
	if (!cl_leading(cl, c)) {
		unlink(tmp);
		return -ECANCELED;
	}
	uint64_t seq;
	if ((rc = store_queue_import(cl->st, c->name, tmp, name, &seq)) < 0) {
		unlink(tmp);
		cl_error(cl, c, "importing a delta of the cluster", NULL, rc);
		return rc;
	}
	compactor_kick(cl->comp, c->name);
	pthread_mutex_lock(&cl->mu);
	if (c->nimports == c->capimports) {
		size_t cap = c->capimports ? 2 * c->capimports : 64;
		void *p = realloc(c->imports, cap * sizeof(*c->imports));
		if (p) {
			c->imports = p;
			c->capimports = cap;
		}
	}
	if (c->nimports < c->capimports) {
		struct cl_import *im = &c->imports[c->nimports++];
		snprintf(im->key, sizeof(im->key), "%s", key);
		snprintf(im->sha256, sizeof(im->sha256), "%s", ld->sha256);
	}
	c->imported++;
	c->imports_dirty = true;
	pthread_mutex_unlock(&cl->mu);
	log_info("cluster: %s: imported delta %s of host %s (#%" PRIu64 ")", c->name, dl, ld->host,
		 seq);
	return 0;
}

static void cl_import(cluster *cl, struct ccl *c)
{
	char pfx[S3_KEY_MAX + 1];
	struct s3_object *o = NULL;
	size_t n = 0;
	struct s3_error e;
	if (layout_deltas_prefix(cl->prefix, c->name, "deltas", NULL, pfx, sizeof(pfx)) < 0)
		return;
	int rc = s3_list_all(cl->lead_c, pfx, &o, &n, &e);
	if (rc < 0) {
		cl_error(cl, c, "listing the cluster's deltas", &e, rc);
		return;
	}
	for (size_t i = 0; i < n && !cl_stopping(cl) && cl_leading(cl, c); i++) {
		struct layout_delta ld;
		if (!layout_parse_delta_key(cl->prefix, c->name, "deltas", o[i].key, &ld))
			continue;
		pthread_mutex_lock(&cl->mu);
		bool seen = cl_imported(c, o[i].key);
		pthread_mutex_unlock(&cl->mu);
		if (!seen && cl_import_one(cl, c, o[i].key, &ld) < 0)
			break;
	}
	s3_objects_free(o, n);
}

/* Deletes from S3 the imports the pointer's snapshot (applied_id, published here) holds. */
static void cl_delete_applied(cluster *cl, struct ccl *c)
{
	pthread_mutex_lock(&cl->mu);
	bool dirty = c->imports_dirty && c->applied_id && c->nimports;
	uint64_t id = c->applied_id;
	size_t n = c->nimports;
	struct cl_import *im = dirty ? malloc(n * sizeof(*im)) : NULL;
	if (im)
		memcpy(im, c->imports, n * sizeof(*im));
	c->imports_dirty = false;
	pthread_mutex_unlock(&cl->mu);
	if (!im)
		return;
	char db[PATH_MAX], why[256];
	sqlite3 *sq = NULL;
	sqlite3_stmt *st = NULL;
	if (cl_local_path(cl, c->name, id, db, sizeof(db)) < 0 ||
	    sqlh_open_ro(db, &sq, why, sizeof(why)) < 0 ||
	    sqlite3_prepare_v2(sq, "SELECT 1 FROM _snapfs_ledger WHERE sha256 = ?1", -1, &st,
			       NULL) != SQLITE_OK) {
		sqlite3_close(sq);
		free(im);
		return;
	}
	const char **keys = calloc(n, sizeof(*keys));
	size_t nk = 0;
	for (size_t i = 0; keys && i < n; i++) {
		sqlite3_bind_text(st, 1, im[i].sha256, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			keys[nk++] = im[i].key;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	sqlite3_close(sq);
	size_t done = 0;
	for (size_t i = 0; i < nk && !cl_stopping(cl); i += S3_DELETE_MAX) {
		size_t k = nk - i < S3_DELETE_MAX ? nk - i : S3_DELETE_MAX, failed = 0;
		struct s3_error e;
		int rc = s3_delete_objects(cl->lead_c, keys + i, k, &failed, &e);
		if (rc < 0) {
			cl_error(cl, c, "deleting deltas the pointer's snapshot holds", &e, rc);
			pthread_mutex_lock(&cl->mu);
			c->imports_dirty = true; /* again next pass */
			pthread_mutex_unlock(&cl->mu);
			break;
		}
		done += k;
	}
	pthread_mutex_lock(&cl->mu);
	/* Forget what is gone from S3 (the list may have grown meanwhile: match by key). */
	for (size_t i = 0; i < done; i++)
		for (size_t j = 0; j < c->nimports; j++)
			if (!strcmp(c->imports[j].key, keys[i])) {
				c->imports[j] = c->imports[--c->nimports];
				break;
			}
	c->deleted += done;
	pthread_mutex_unlock(&cl->mu);
	if (done)
		log_info("cluster: %s: deleted %zu delta(s) from S3: snapshot %08" PRIu64
			 " holds them",
			 c->name, done, id);
	free(keys);
	free(im);
}

/* Relays one refusal (rejected/@HOST@LEAF here) to PREFIX/COLL/rejected/HOST/LEAF. */
static int cl_relay_one(cluster *cl, struct ccl *c, const char *leaf)
{
	char path[PATH_MAX], rpath[PATH_MAX + 16], key[S3_KEY_MAX + 1], dkey[S3_KEY_MAX + 1];
	char reason[CL_REASON_MAX + 1] = "", ereason[CL_REASON_MAX * 3 + 1],
				    ename[STORE_DELTA_NAME_MAX * 3 + 1] = "";
	struct layout_delta ld;
	struct s3_error e;
	const char *at = strchr(leaf + 1, '@');
	if (!at || (size_t)(at - leaf - 1) > LAYOUT_HOST_ID_MAX)
		return 0;
	snprintf(dkey, sizeof(dkey), "%s%s/deltas/%.*s/%s", cl->prefix, c->name,
		 (int)(at - leaf - 1), leaf + 1, at + 1);
	if (!layout_parse_delta_key(cl->prefix, c->name, "deltas", dkey, &ld) ||
	    layout_delta_key(cl->prefix, c->name, "rejected", &ld, key, sizeof(key)) < 0 ||
	    store_path(cl->st, c->name, STORE_AREA_REJECTED, leaf, path, sizeof(path)) < 0)
		return 0;
	snprintf(rpath, sizeof(rpath), "%s.reason", path);
	char *text = NULL;
	if (fsx_read_all(rpath, &text, NULL) == 0) {
		snprintf(reason, sizeof(reason), "%s", text);
		reason[strcspn(reason, "\n")] = '\0';
	}
	free(text);
	cl_pct_encode(reason, ereason, sizeof(ereason));
	struct s3_object_info info;
	if (s3_head(cl->lead_c, dkey, &info, &e) == 0) {
		const char *n = cl_meta(&info, "snapfs-name");
		snprintf(ename, sizeof(ename), "%s", n ? n : "");
		s3_object_info_free(&info);
	}
	struct s3_meta meta[2] = {{"snapfs-reason", ereason}, {"snapfs-name", ename}};
	struct s3_put_opts po = {.content_type = "application/vnd.sqlite3",
				 .meta = meta,
				 .n_meta = ename[0] ? 2 : 1,
				 .cancel = &cl->cancel};
	struct s3_put_result pr;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0
			 ? -errno
			 : s3_put_file(cl->lead_c, key, fd, 0, (uint64_t)st.st_size, &po, &pr, &e);
	close(fd);
	if (rc == 0)
		rc = s3_delete(cl->lead_c, dkey, &e);
	if (rc < 0) {
		cl_error(cl, c, "relaying a refused delta to its host", &e, rc);
		return rc;
	}
	if ((rc = store_rejected_remove(cl->st, c->name, leaf)) < 0)
		return rc;
	compactor_rejected_removed(cl->comp, c->name, 1);
	log_info("cluster: %s: refused delta %s relayed to host %s: %s", c->name, leaf, ld.host,
		 reason);
	pthread_mutex_lock(&cl->mu);
	for (size_t j = 0; j < c->nimports; j++)
		if (!strcmp(c->imports[j].key, dkey)) {
			c->imports[j] = c->imports[--c->nimports];
			break;
		}
	c->relayed++;
	pthread_mutex_unlock(&cl->mu);
	return 0;
}

static void cl_relay(cluster *cl, struct ccl *c)
{
	char dir[PATH_MAX];
	if (store_path(cl->st, c->name, STORE_AREA_REJECTED, NULL, dir, sizeof(dir)) < 0)
		return;
	char **names = NULL;
	size_t n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] != '@' || (len > 7 && !strcmp(de->d_name + len - 7, ".reason")))
			continue;
		char **p = realloc(names, (n + 1) * sizeof(*names));
		if (!p || !(p[n] = strdup(de->d_name))) {
			names = p ? p : names;
			break;
		}
		names = p;
		n++;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		if (!cl_stopping(cl) && store_remote_name(names[i]))
			cl_relay_one(cl, c, names[i]);
		free(names[i]);
	}
	free(names);
}

void *cl_lead_main(void *arg)
{
	cluster *cl = arg;
	do {
		size_t n;
		struct ccl **v = cl_colls(cl, &n);
		for (size_t i = 0; v && i < n && !cl_stopping(cl); i++) {
			if (!cl_leading(cl, v[i]))
				continue;
			cl_import(cl, v[i]);
			cl_delete_applied(cl, v[i]);
			cl_relay(cl, v[i]);
		}
		free(v);
	} while (cl_wait(cl, &cl->lead_kick, cl->poll_s));
	return NULL;
}
