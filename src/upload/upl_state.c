/*
 * upl_state — the uploader's local record (STORE/collections/COLL/
 * upload.json) and what it shows: the "upload" member of a collection's
 * status and the upload metrics.
 *
 * The record is written with fsx_write_atomic after the objects are
 * uploaded and again after the swap, so that a restart knows whether the
 * newest snapshot still has to be shipped (pointer "pending") or not.
 */
#include "uploader_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsx.h"
#include "jread.h"
#include "rfc3339.h"
#include "log.h"

#define UPL_RECORD "upload.json"

/* ---- the local record ---- */

static int upl_record_path(upl *u, const char *coll, char *buf, size_t len)
{
	return store_path(u->st, coll, STORE_AREA_COLLECTION, UPL_RECORD, buf, len);
}

void upl_record_write(upl *u, const char *coll, const struct lease_pointer *p, const char *pointer,
		      uint64_t generation)
{
	char path[PATH_MAX];
	if (upl_record_path(u, coll, path, sizeof(path)) < 0)
		return;
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "{\"format\": 1, \"pointer\": \"%s\", \"pointer_generation\": %" PRIu64
		      ", \"id\": %" PRIu64 ", \"host\": ",
		  pointer, generation, p->id);
	sbuf_add_json_str(&b, p->host);
	sbuf_adds(&b, ", \"key\": ");
	sbuf_add_json_str(&b, p->db_key);
	sbuf_adds(&b, ", \"manifest_key\": ");
	sbuf_add_json_str(&b, p->manifest_key);
	sbuf_addf(&b, ", \"size\": %" PRIu64 ", \"etag\": ", p->size);
	sbuf_add_json_str(&b, p->etag);
	sbuf_adds(&b, ", \"sha256\": ");
	sbuf_add_json_str(&b, p->sha256);
	sbuf_addf(&b, ", \"at\": %" PRId64 "}\n", p->written_at);
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
	char path[PATH_MAX], *doc = NULL, pointer[16] = "";
	size_t len;
	uint64_t format = 0;
	int rc = upl_record_path(u, coll, path, sizeof(path));
	if (rc < 0)
		return rc;
	if ((rc = fsx_read_all(path, &doc, &len)) < 0)
		return rc;
	memset(p, 0, sizeof(*p));
	const struct jread_field f[] = {
		{"format", JREAD_U64, &format, 0, NULL, 0, false, NULL, NULL},
		{"pointer", JREAD_STR, pointer, sizeof(pointer), NULL, 0, false, NULL, NULL},
		{"pointer_generation", JREAD_U64, generation, 0, NULL, 0, false, NULL, NULL},
		{"id", JREAD_U64, &p->id, 0, NULL, 0, false, NULL, NULL},
		{"host", JREAD_STR, p->host, sizeof(p->host), NULL, 0, false, NULL, NULL},
		{"key", JREAD_STR, p->db_key, sizeof(p->db_key), NULL, 0, false, NULL, NULL},
		{"manifest_key", JREAD_STR, p->manifest_key, sizeof(p->manifest_key), NULL, 0, false, NULL,
		 NULL},
		{"size", JREAD_U64, &p->size, 0, NULL, 0, false, NULL, NULL},
		{"etag", JREAD_STR, p->etag, sizeof(p->etag), NULL, 0, false, NULL, NULL},
		{"sha256", JREAD_STR, p->sha256, sizeof(p->sha256), NULL, 0, false, NULL, NULL},
		{"at", JREAD_I64, &p->written_at, 0, NULL, 0, false, NULL, NULL},
	};
	rc = jread_object(doc, f, sizeof(f) / sizeof(f[0]));
	free(doc);
	if (rc < 0 || format != 1) {
		log_warn("upload: %s: %s is not an upload record; the newest snapshot will be uploaded "
			 "again",
			 coll, path);
		return -EINVAL;
	}
	*done = strcmp(pointer, "pending") != 0;
	return 0;
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
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			  ch == '_' || ch == '.' || ch == '-';
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
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name, m[i].type);
		for (struct ucoll *c = u->colls; c; c = c->next) {
			if (i == 8) {
				for (int d = 0; d < 2; d++) {
					const char *doc = d ? "lease" : "pointer";
					sbuf_addf(out, "%s{collection=\"%s\",document=\"%s\"} %d\n", m[i].name,
						  c->name, doc, c->corrupt && !strcmp(c->corrupt, doc) ? 1 : 0);
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

void upl_status(void *ctx, const char *coll, sbuf *out)
{
	upl *u = ctx;
	pthread_mutex_lock(&u->mu);
	if (!coll) {
		upl_metrics(u, out);
		pthread_mutex_unlock(&u->mu);
		if (u->sw)
			sweeper_status(u->sw, NULL, out);
		return;
	}
	struct ucoll *c = upl_coll_find(u, coll);
	sbuf_adds(out, ", \"upload\": {\"state\": ");
	if (!c) {
		sbuf_add_json_str(out, u->enabled ? "idle" : "off");
		sbuf_adds(out, ", \"bytes_done\": 0, \"bytes_total\": 0, \"bytes_uploaded_total\": 0, "
			       "\"last_uploaded_id\": null, \"last_uploaded\": null, \"lag\": 0, "
			       "\"pointer_generation\": null, \"lease\": \"free\", \"last_error\": null, "
			       "\"error_code\": null, \"server_full\": false, \"corrupt\": null");
	} else {
		sbuf_add_json_str(out, u->enabled ? c->state : "off");
		sbuf_addf(out,
			  ", \"bytes_done\": %" PRIu64 ", \"bytes_total\": %" PRIu64
			  ", \"bytes_uploaded_total\": %" PRIu64,
			  c->bytes_done, c->bytes_total, c->n_bytes);
		if (c->have_last) {
			char at[32];
			rfc3339_format(c->last.written_at, at);
			sbuf_addf(out, ", \"last_uploaded_id\": %" PRIu64 ", \"last_uploaded\": {\"id\": %" PRIu64
				       ", \"key\": ",
				  c->last.id, c->last.id);
			sbuf_add_json_str(out, c->last.db_key);
			sbuf_adds(out, ", \"manifest_key\": ");
			sbuf_add_json_str(out, c->last.manifest_key);
			sbuf_addf(out, ", \"size\": %" PRIu64 ", \"etag\": ", c->last.size);
			sbuf_add_json_str(out, c->last.etag);
			sbuf_adds(out, ", \"sha256\": ");
			sbuf_add_json_str(out, c->last.sha256);
			sbuf_addf(out, ", \"at\": %" PRId64 ", \"at_iso\": \"%s\"}", c->last.written_at, at);
		} else {
			sbuf_adds(out, ", \"last_uploaded_id\": null, \"last_uploaded\": null");
		}
		sbuf_addf(out, ", \"lag\": %zu, \"pointer_generation\": ", c->nids);
		if (c->pointer_generation)
			sbuf_addf(out, "%" PRIu64, c->pointer_generation);
		else
			sbuf_adds(out, "null");
		sbuf_adds(out, ", \"lease\": ");
		sbuf_add_json_str(out, c->lease_desc);
		sbuf_adds(out, ", \"last_error\": ");
		if (c->last_error[0])
			sbuf_add_json_str(out, c->last_error);
		else
			sbuf_adds(out, "null");
		sbuf_adds(out, ", \"error_code\": ");
		if (c->error_code[0])
			sbuf_add_json_str(out, c->error_code);
		else
			sbuf_adds(out, "null");
		sbuf_addf(out, ", \"server_full\": %s, \"corrupt\": ", c->server_full ? "true" : "false");
		if (c->corrupt)
			sbuf_add_json_str(out, c->corrupt);
		else
			sbuf_adds(out, "null");
	}
	pthread_mutex_unlock(&u->mu);
	if (u->sw)
		sweeper_status(u->sw, coll, out);
	else
		sbuf_adds(out, ", \"bucket\": null");
	sbuf_adds(out, "}");
}
