/*
 * cl_ship — the shipper thread: every delta this host acknowledged
 * (outbox/) goes to PREFIX/COLL/deltas/HOST/INST-SEQ-SHA256 and leaves
 * outbox/ only once S3 has it; refusals the compactor relayed to
 * PREFIX/COLL/rejected/HOST/ come back into rejected/ with their reason.
 *
 * The PUT is create-only and its signed payload hash makes S3 check
 * every byte. The key holds the SHA-256 of the bytes, so a PUT refused
 * because the key exists (a retry after a lost answer, a crash between
 * the PUT and the local removal) found the very same delta: done.
 */
#include "cluster_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "log.h"

#define CL_REASON_MAX 1024

/* Delta names travel as S3 metadata: everything but [A-Za-z0-9._-] as %XX. */
void cl_pct_encode(const char *in, char *out, size_t len)
{
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && k + 4 < len; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')
			out[k++] = (char)*p;
		else
			k += (size_t)snprintf(out + k, len - k, "%%%02X", *p);
	}
	out[k] = '\0';
}

static int cl_hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
				      : -1;
}

/* Decodes %XX; control bytes, '/' and NUL become '_' (a name, never a path). */
void cl_pct_decode(const char *in, char *out, size_t len)
{
	size_t k = 0;
	for (const char *p = in; *p && k + 1 < len; p++) {
		int c = (unsigned char)*p;
		if (*p == '%' && cl_hexval(p[1]) >= 0 && cl_hexval(p[2]) >= 0) {
			c = cl_hexval(p[1]) * 16 + cl_hexval(p[2]);
			p += 2;
		}
		out[k++] = c < 0x20 || c == 0x7f || c == '/' ? '_' : (char)c;
	}
	out[k] = '\0';
}

const char *cl_meta(const struct s3_object_info *info, const char *name)
{
	for (size_t i = 0; i < info->n_meta; i++)
		if (!strcmp(info->meta[i].name, name))
			return info->meta[i].value;
	return NULL;
}

/* Ships one delta of outbox/. 0: S3 has it (and it left outbox/). */
static int cl_ship_one(cluster *cl, struct ccl *c, const store_delta *d)
{
	unsigned char sha[FSX_SHA256_LEN];
	uint64_t size;
	struct layout_delta ld = {.seq = d->seq};
	char key[S3_KEY_MAX + 1], ename[STORE_DELTA_NAME_MAX * 3 + 1];
	struct s3_error e;
	memset(&e, 0, sizeof(e));
	int rc = fsx_sha256_file(d->path, sha, &size);
	if (rc < 0) {
		cl_error(cl, c, "reading a delta to ship", NULL, rc);
		return rc;
	}
	hex_encode(sha, sizeof(sha), ld.sha256);
	snprintf(ld.host, sizeof(ld.host), "%s", cl->host);
	snprintf(ld.inst, sizeof(ld.inst), "%s", cl->inst);
	if ((rc = layout_delta_key(cl->prefix, c->name, "deltas", &ld, key, sizeof(key))) < 0)
		return rc;
	cl_pct_encode(d->name, ename, sizeof(ename));
	struct s3_meta meta[] = {{"snapfs-name", ename}};
	struct s3_put_opts po = {.if_none_match = true,
				 .content_type = "application/vnd.sqlite3",
				 .meta = meta,
				 .n_meta = 1,
				 .cancel = &cl->cancel};
	struct s3_put_result pr;
	int fd = open(d->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = s3_put_file(cl->ship_c, key, fd, 0, size, &po, &pr, &e);
	close(fd);
	if (rc == -ESTALE)
		rc = 0; /* the key names these bytes: they are there already */
	if (rc < 0) {
		cl_error(cl, c, "shipping a delta", &e, rc);
		return rc;
	}
	if ((rc = store_area_remove(cl->st, c->name, STORE_AREA_OUTBOX, d)) < 0)
		return rc;
	log_info("cluster: %s: delta %s shipped as %s (%" PRIu64 " bytes)", c->name, d->name, key,
		 size);
	pthread_mutex_lock(&cl->mu);
	c->shipped++;
	if (c->outbox)
		c->outbox--; /* counted up by cluster_kick_ship (or cluster_run's listing) */
	pthread_mutex_unlock(&cl->mu);
	return 0;
}

/* Brings one refusal of ours back into rejected/, then deletes it from S3. */
static int cl_unrelay_one(cluster *cl, struct ccl *c, const char *key)
{
	struct s3_object_info info;
	struct s3_error e;
	char tmp[PATH_MAX], name[STORE_DELTA_NAME_MAX + 1], reason[CL_REASON_MAX + 1];
	char leaf[64];
	snprintf(leaf, sizeof(leaf), ".unrelay-%d", (int)getpid());
	int rc = cl_fetch_tmp(cl, cl->ship_c, c->name, key, leaf, tmp, NULL, &info, &e);
	if (rc < 0) {
		if (rc != -ENOENT)
			cl_error(cl, c, "fetching a refused delta", &e, rc);
		return rc == -ENOENT ? 0 : rc;
	}
	const char *n = cl_meta(&info, "snapfs-name"), *r = cl_meta(&info, "snapfs-reason");
	cl_pct_decode(n ? n : strrchr(key, '/') + 1, name, sizeof(name));
	cl_pct_decode(r ? r : "refused by the compactor (no reason given)", reason, sizeof(reason));
	s3_object_info_free(&info);
	if (!store_delta_name_valid(name))
		snprintf(name, sizeof(name), "%s", strrchr(key, '/') + 1);
	char why[CL_REASON_MAX + 64];
	snprintf(why, sizeof(why), "refused by the cluster's compactor: %s", reason);
	if ((rc = store_reject_import(cl->st, c->name, tmp, name, why)) < 0) {
		unlink(tmp);
		return rc;
	}
	if ((rc = s3_delete(cl->ship_c, key, &e)) < 0)
		cl_error(cl, c, "deleting a refused delta brought back", &e, rc);
	log_warn("cluster: %s: delta %s was refused by the compactor: %s", c->name, name, reason);
	pthread_mutex_lock(&cl->mu);
	c->remote_rejected++;
	pthread_mutex_unlock(&cl->mu);
	return 0;
}

static void cl_ship_coll(cluster *cl, struct ccl *c)
{
	store_delta *d = NULL;
	size_t n = 0;
	int rc = store_area_list(cl->st, c->name, STORE_AREA_OUTBOX, &d, &n);
	if (rc < 0) {
		cl_error(cl, c, "listing outbox/", NULL, rc);
		return;
	}
	for (size_t i = 0; i < n && !cl_stopping(cl); i++) {
		if (cl_ship_one(cl, c, &d[i]) < 0)
			break;
	}
	store_deltas_free(d, n);

	/* What S3 still holds of ours (not yet in a published snapshot), and our refusals. */
	char pfx[S3_KEY_MAX + 1];
	struct s3_object *o = NULL;
	size_t no = 0, ours = 0;
	struct s3_error e;
	if (layout_deltas_prefix(cl->prefix, c->name, "deltas", cl->host, pfx, sizeof(pfx)) == 0 &&
	    s3_list_all(cl->ship_c, pfx, &o, &no, &e) == 0)
		ours = no;
	s3_objects_free(o, no);
	o = NULL;
	no = 0;
	if (layout_deltas_prefix(cl->prefix, c->name, "rejected", cl->host, pfx, sizeof(pfx)) == 0 &&
	    (rc = s3_list_all(cl->ship_c, pfx, &o, &no, &e)) == 0) {
		for (size_t i = 0; i < no && !cl_stopping(cl); i++)
			if (cl_unrelay_one(cl, c, o[i].key) < 0)
				break;
	}
	s3_objects_free(o, no);
	pthread_mutex_lock(&cl->mu);
	c->in_flight = ours;
	pthread_mutex_unlock(&cl->mu);
}

void *cl_ship_main(void *arg)
{
	cluster *cl = arg;
	do {
		size_t n;
		struct ccl **v = cl_colls(cl, &n);
		for (size_t i = 0; v && i < n && !cl_stopping(cl); i++)
			cl_ship_coll(cl, v[i]);
		free(v);
	} while (cl_wait(cl, &cl->ship_kick, cl->poll_s));
	return NULL;
}
