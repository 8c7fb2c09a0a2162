/*
 * upl_state — the uploader's local record (STORE/collections/COLL/
 * upload.json) and what it shows: the "upload" member of a collection's
 * status and the upload metrics.
 *
 * The record is written with fsx_write_atomic after the objects are
 * uploaded and again after the swap, so that a restart knows whether the
 * newest snapshot still has to be shipped (pointer "pending") or not.
 */
#include "uploader_i.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsx.h"
#include "jsonx.h"
#include "log.h"
#include "rfc3339.h"

#define UPL_RECORD "upload.json"
#define UPL_RECORD_DEPTH 16

/* ---- the local record ---- */

static int upl_record_path(upl *u, const char *coll, char *buf, size_t len)
{
	return store_path(u->st, coll, STORE_AREA_COLLECTION, UPL_RECORD, buf, len);
}

void upl_record_json(const struct lease_pointer *p, const char *pointer, uint64_t generation,
		     sbuf *out)
{
	json_t *o = json_object();
	jsonx_set(o, "format", jsonx_int(1));
	jsonx_set(o, "pointer", jsonx_str(pointer));
	jsonx_set(o, "pointer_generation", jsonx_u64(generation));
	jsonx_set(o, "id", jsonx_u64(p->id));
	jsonx_set(o, "host", jsonx_str(p->host));
	jsonx_set(o, "key", jsonx_str(p->db_key));
	jsonx_set(o, "manifest_key", jsonx_str(p->manifest_key));
	jsonx_set(o, "size", jsonx_u64(p->size));
	jsonx_set(o, "etag", jsonx_str(p->etag));
	jsonx_set(o, "sha256", jsonx_str(p->sha256));
	jsonx_set(o, "at", jsonx_int(p->written_at));
	jsonx_dump(o, 0, out);
	sbuf_adds(out, "\n");
	json_decref(o);
}

int upl_record_parse(const char *json, struct lease_pointer *p, bool *done, uint64_t *generation)
{
	char pointer[16];
	const char *ptr, *host, *key, *mkey, *etag, *sha;
	json_int_t format, gen, id, size, at;
	json_t *root;
	memset(p, 0, sizeof(*p));
	if (jsonx_load(json, UPL_RECORD_DEPTH, &root) < 0)
		return -EINVAL;
	int rc = json_unpack(root, "{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:I}",
			     "format", &format, "pointer", &ptr, "pointer_generation", &gen, "id",
			     &id, "host", &host, "key", &key, "manifest_key", &mkey, "size", &size,
			     "etag", &etag, "sha256", &sha, "at", &at) < 0 ||
				 format != 1 || gen < 0 || id < 0 || size < 0 ||
				 jsonx_copy(pointer, sizeof(pointer), ptr) < 0 ||
				 jsonx_copy(p->host, sizeof(p->host), host) < 0 ||
				 jsonx_copy(p->db_key, sizeof(p->db_key), key) < 0 ||
				 jsonx_copy(p->manifest_key, sizeof(p->manifest_key), mkey) < 0 ||
				 jsonx_copy(p->etag, sizeof(p->etag), etag) < 0 ||
				 jsonx_copy(p->sha256, sizeof(p->sha256), sha) < 0
			 ? -EINVAL
			 : 0;
	json_decref(root);
	if (rc < 0) {
		memset(p, 0, sizeof(*p));
		return rc;
	}
	*generation = (uint64_t)gen;
	p->id = (uint64_t)id;
	p->size = (uint64_t)size;
	p->written_at = at;
	*done = strcmp(pointer, "pending") != 0;
	return 0;
}

void upl_record_write(upl *u, const char *coll, const struct lease_pointer *p, const char *pointer,
		      uint64_t generation)
{
	char path[PATH_MAX];
	if (upl_record_path(u, coll, path, sizeof(path)) < 0)
		return;
	sbuf b = SBUF_INIT;
	upl_record_json(p, pointer, generation, &b);
	int rc = fsx_write_atomic(path, b.buf, b.len);
	if (rc < 0)
		log_warn("upload: %s: cannot write %s: %s", coll, path, strerror(-rc));
	sbuf_free(&b);
}

/*
 * Reads upload.json: 0 with *p and *done (the pointer step was finished,
 * swapped or conflict), -ENOENT if there is none, -EINVAL if unreadable.
 */
static int upl_record_read(upl *u, const char *coll, struct lease_pointer *p, bool *done,
			   uint64_t *generation)
{
	char path[PATH_MAX], *doc = NULL;
	size_t len;
	int rc = upl_record_path(u, coll, path, sizeof(path));
	if (rc < 0)
		return rc;
	if ((rc = fsx_read_all(path, &doc, &len)) < 0)
		return rc;
	rc = upl_record_parse(doc, p, done, generation);
	free(doc);
	if (rc < 0)
		log_warn("upload: %s: %s is not an upload record; the newest snapshot will be uploaded "
			 "again",
			 coll, path);
	return rc;
}

void upl_load_coll(upl *u, const char *name)
{
	struct lease_pointer rec;
	bool done = false, have = false;
	uint64_t gen = 0, *ids = NULL;
	size_t n = 0;
	if (upl_record_read(u, name, &rec, &done, &gen) == 0)
		have = true;
	int rc = store_snapshots(u->st, name, &ids, &n);
	if (rc < 0)
		log_warn("upload: %s: cannot list snapshots: %s", name, strerror(-rc));
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = upl_coll_get(u, name);
	if (c) {
		if (have) {
			c->have_last = true;
			c->last = rec;
			c->pointer_generation = gen;
		}
		for (size_t i = 0; i < n; i++)
			/* Not done: the recorded snapshot is uploaded again. */
			if (!have || ids[i] > rec.id || (!done && ids[i] == rec.id))
				upl_coll_push(c, ids[i]);
	}
	pthread_mutex_unlock(&u->mu);
	free(ids);
}

/* ---- status and metrics ---- */

/* A Prometheus label value: the server's code, kept to [A-Za-z0-9_.-]. */
static void upl_label(sbuf *out, const char *v)
{
	for (; *v; v++) {
		char ch = *v;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
		sbuf_add(out, ok ? v : "_", 1);
	}
}

static void upl_metrics(upl *u, sbuf *out)
{
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{"snapfs_uploads_total", "counter", "Snapshots uploaded to S3."},
		{"snapfs_upload_bytes_total", "counter", "Bytes of snapshot databases uploaded."},
		{"snapfs_upload_retries_total", "counter", "S3 requests retried by the uploader."},
		{"snapfs_upload_failures_total", "counter", "Upload or pointer attempts that failed."},
		{"snapfs_lease_held", "gauge", "1 while this host holds the collection's lease."},
		{"snapfs_upload_seconds", "gauge", "Duration of the last upload (seconds)."},
		{"snapfs_pointer_conflicts_total", "counter",
		 "Pointer swaps refused because another host moved the pointer."},
		{"snapfs_upload_server_full", "gauge",
		 "1 while uploads fail because the S3 server is full or over quota."},
		{"snapfs_s3_document_corrupt", "gauge",
		 "1 while the collection's pointer.json or lease.json is not a document of its kind."},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
			  m[i].type);
		for (struct ucoll *c = u->colls; c; c = c->next) {
			if (i == 8) {
				for (int d = 0; d < 2; d++) {
					const char *doc = d ? "lease" : "pointer";
					sbuf_addf(out, "%s{collection=\"%s\",document=\"%s\"} %d\n",
						  m[i].name, c->name, doc,
						  c->corrupt && !strcmp(c->corrupt, doc) ? 1 : 0);
				}
				continue;
			}
			sbuf_addf(out, "%s{collection=\"%s\"} ", m[i].name, c->name);
			switch (i) {
			case 0: sbuf_addf(out, "%" PRIu64 "\n", c->n_uploads); break;
			case 1: sbuf_addf(out, "%" PRIu64 "\n", c->n_bytes); break;
			case 2: sbuf_addf(out, "%" PRIu64 "\n", c->n_retries); break;
			case 3: sbuf_addf(out, "%" PRIu64 "\n", c->n_failures); break;
			case 4: sbuf_addf(out, "%d\n", c->lease_held ? 1 : 0); break;
			case 5: sbuf_addf(out, "%.3f\n", c->last_seconds); break;
			case 6: sbuf_addf(out, "%" PRIu64 "\n", c->n_conflicts); break;
			default: sbuf_addf(out, "%d\n", c->server_full ? 1 : 0); break;
			}
		}
	}
	/* The server's own word for what is wrong, while it is. */
	sbuf_adds(out, "# HELP snapfs_upload_error The S3 error code of the failing upload (1 while it "
		       "fails).\n# TYPE snapfs_upload_error gauge\n");
	for (struct ucoll *c = u->colls; c; c = c->next) {
		if (strcmp(c->state, "failed") != 0 || !c->error_code[0])
			continue;
		sbuf_addf(out, "snapfs_upload_error{collection=\"%s\",code=\"", c->name);
		upl_label(out, c->error_code);
		sbuf_adds(out, "\"} 1\n");
	}
}

/* What the status shows of the last uploaded snapshot; with u->mu. */
static json_t *upl_last_json(const struct ucoll *c)
{
	char at[RFC3339_LEN];
	rfc3339_format(c->last.written_at, at);
	json_t *o = json_object();
	jsonx_set(o, "id", jsonx_u64(c->last.id));
	jsonx_set(o, "key", jsonx_str(c->last.db_key));
	jsonx_set(o, "manifest_key", jsonx_str(c->last.manifest_key));
	jsonx_set(o, "size", jsonx_u64(c->last.size));
	jsonx_set(o, "etag", jsonx_str(c->last.etag));
	jsonx_set(o, "sha256", jsonx_str(c->last.sha256));
	jsonx_set(o, "at", jsonx_int(c->last.written_at));
	jsonx_set(o, "at_iso", jsonx_str(at));
	return o;
}

/* The members of "upload" before "bucket" (c NULL: not watched yet); with u->mu. */
static void upl_status_members(upl *u, const struct ucoll *c, json_t *o)
{
	bool last = c && c->have_last;
	jsonx_set(o, "state", jsonx_str(!u->enabled ? "off" : c ? c->state : "idle"));
	jsonx_set(o, "bytes_done", jsonx_u64(c ? c->bytes_done : 0));
	jsonx_set(o, "bytes_total", jsonx_u64(c ? c->bytes_total : 0));
	jsonx_set(o, "bytes_uploaded_total", jsonx_u64(c ? c->n_bytes : 0));
	jsonx_set(o, "last_uploaded_id", last ? jsonx_u64(c->last.id) : json_null());
	jsonx_set(o, "last_uploaded", last ? upl_last_json(c) : json_null());
	jsonx_set(o, "lag", jsonx_u64(c ? c->nids : 0));
	jsonx_set(o, "pointer_generation",
		  c && c->pointer_generation ? jsonx_u64(c->pointer_generation) : json_null());
	jsonx_set(o, "lease", jsonx_str(c ? c->lease_desc : "free"));
	jsonx_set(o, "last_error", jsonx_str_or_null(c ? c->last_error : NULL));
	jsonx_set(o, "error_code", jsonx_str_or_null(c ? c->error_code : NULL));
	jsonx_set(o, "server_full", json_boolean(c && c->server_full));
	jsonx_set(o, "corrupt", c ? jsonx_str(c->corrupt) : json_null());
}

void upl_status(void *ctx, const char *coll, json_t *status, sbuf *metrics)
{
	upl *u = ctx;
	if (!coll && !metrics)
		return; /* the whole mount's status: nothing of the uploader's */
	if (!coll) {
		pthread_mutex_lock(&u->mu);
		upl_metrics(u, metrics);
		pthread_mutex_unlock(&u->mu);
		if (u->sw)
			sweeper_metrics(u->sw, metrics);
		return;
	}
	json_t *o = json_object();
	pthread_mutex_lock(&u->mu);
	upl_status_members(u, upl_coll_find(u, coll), o);
	pthread_mutex_unlock(&u->mu);
	if (u->sw)
		sweeper_status(u->sw, coll, o);
	else
		jsonx_set(o, "bucket", json_null());
	jsonx_set(status, "upload", o);
}
