/*
 * vfs_status — the generated files: .snapfs/status, .snapfs/metrics and
 * each collection's status, rendered from memory under v->mu. Status is
 * one JSON tree the compactor and the status hook (the uploader) add
 * their members to, dumped on one line.
 */
#include "vfs.h"
#include "vfs_i.h"

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

#include "jsonx.h"
#include "log.h"
#include "sbuf.h"

/* One collection's status object; with v->mu held. */
static json_t *coll_status(vfs *v, const struct vcoll *c)
{
	json_t *o = json_object();
	compactor_status_fields(v->comp, c->name, c->nids, o);
	if (v->status_hook)
		v->status_hook(v->status_ctx, c->name, o, NULL);
	return o;
}

/*
 * How sealed files are read: the read_path setting, whether the kernel
 * does passthrough, and for each sealed file open now, how many handles
 * each way serves; with v->mu held.
 */
static json_t *reads_status(vfs *v)
{
	json_t *o = json_object(), *open = json_object();
	jsonx_set(o, "read_path", jsonx_str(vfs_read_path_name(v->cfg.read_path)));
	jsonx_set(o, "passthrough", json_boolean(v->passthrough));
	for (const vfs_file *f = v->files; f; f = f->next) {
		const struct node *n = f->node;
		if (f->fd < 0 || (n->kind != N_SNAPDB && n->kind != N_MANIFEST))
			continue;
		char idname[24], name[STORE_NAME_MAX * 2 + 64];
		store_id_format(n->id, idname, sizeof(idname));
		if (n->kind == N_SNAPDB)
			snprintf(name, sizeof(name), "%s/snapshots/%s/%s.sqlite3", n->coll, idname,
				 n->coll);
		else
			snprintf(name, sizeof(name), "%s/snapshots/%s/MANIFEST.json", n->coll,
				 idname);
		json_t *e = json_object_get(open, name);
		if (!e) {
			e = json_object();
			jsonx_set(e, "passthrough", jsonx_u64(0));
			jsonx_set(e, "page_cache", jsonx_u64(0));
			jsonx_set(open, name, e);
		}
		const char *way = f->passthrough ? "passthrough" : "page_cache";
		jsonx_set(e, way, jsonx_u64(json_integer_value(json_object_get(e, way)) + 1));
	}
	jsonx_set(o, "open", open);
	return o;
}

void vfs_gen_status(vfs *v, struct node *n, sbuf *b)
{
	if (n->kind == N_COLL_STATUS) {
		struct vcoll *c = vfs_coll_find(v, n->coll);
		if (c) {
			json_t *o = coll_status(v, c);
			jsonx_dump(o, 0, b);
			json_decref(o);
		}
		sbuf_adds(b, "\n");
		return;
	}
	if (n->kind == N_META_METRICS) {
		compactor_metrics(v->comp, b);
		sbuf_adds(b, "# HELP snapfs_snapshots Snapshots shown in the mount.\n"
			     "# TYPE snapfs_snapshots gauge\n");
		for (struct vcoll *c = v->colls; c; c = c->next)
			sbuf_addf(b, "snapfs_snapshots{collection=\"%s\"} %zu\n", c->name, c->nids);
		sbuf_addf(b,
			  "# HELP snapfs_uptime_seconds Seconds since mount.\n"
			  "# TYPE snapfs_uptime_seconds gauge\nsnapfs_uptime_seconds %lld\n",
			  (long long)(time(NULL) - v->started));
		if (v->status_hook)
			v->status_hook(v->status_ctx, NULL, NULL, b);
		return;
	}
	json_t *o = json_object(), *colls = json_object();
	jsonx_set(o, "version", jsonx_str(SNAPFS_VERSION));
	jsonx_set(o, "uptime_s", jsonx_int((int64_t)(time(NULL) - v->started)));
	jsonx_set(o, "store", jsonx_str(store_root(v->st)));
	for (struct vcoll *c = v->colls; c; c = c->next)
		jsonx_set(colls, c->name, coll_status(v, c));
	jsonx_set(o, "collections", colls);
	jsonx_set(o, "reads", reads_status(v));
	if (v->status_hook)
		v->status_hook(v->status_ctx, NULL, o,
			       NULL); /* members of the whole mount's (the cluster's) */
	jsonx_dump(o, 0, b);
	json_decref(o);
	sbuf_adds(b, "\n");
}
