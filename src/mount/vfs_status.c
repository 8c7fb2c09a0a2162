/*
 * vfs_status — the generated files: .snapfs/status, .snapfs/metrics and
 * each collection's status, rendered from memory under v->mu.
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

#include "log.h"
#include "sbuf.h"


/* One collection's status object; with v->mu held. */
static void coll_status(vfs *v, const struct vcoll *c, sbuf *b)
{
	sbuf_adds(b, "{");
	compactor_status_fields(v->comp, c->name, c->nids, b);
	if (v->status_hook)
		v->status_hook(v->status_ctx, c->name, b);
	sbuf_adds(b, "}");
}

void vfs_gen_status(vfs *v, struct node *n, sbuf *b)
{
	if (n->kind == N_COLL_STATUS) {
		struct vcoll *c = vfs_coll_find(v, n->coll);
		if (c)
			coll_status(v, c, b);
		sbuf_adds(b, "\n");
		return;
	}
	if (n->kind == N_META_METRICS) {
		compactor_metrics(v->comp, b);
		sbuf_adds(b, "# HELP snapfs_snapshots Snapshots shown in the mount.\n"
			     "# TYPE snapfs_snapshots gauge\n");
		for (struct vcoll *c = v->colls; c; c = c->next)
			sbuf_addf(b, "snapfs_snapshots{collection=\"%s\"} %zu\n", c->name, c->nids);
		sbuf_addf(b, "# HELP snapfs_uptime_seconds Seconds since mount.\n"
			     "# TYPE snapfs_uptime_seconds gauge\nsnapfs_uptime_seconds %lld\n",
			  (long long)(time(NULL) - v->started));
		if (v->status_hook)
			v->status_hook(v->status_ctx, NULL, b);
		return;
	}
	sbuf_addf(b, "{\"version\": \"%s\", \"uptime_s\": %lld, \"store\": ", SNAPFS_VERSION,
		  (long long)(time(NULL) - v->started));
	sbuf_add_json_str(b, store_root(v->st));
	sbuf_adds(b, ", \"collections\": {");
	for (struct vcoll *c = v->colls; c; c = c->next) {
		sbuf_add_json_str(b, c->name);
		sbuf_adds(b, ": ");
		coll_status(v, c, b);
		if (c->next)
			sbuf_adds(b, ", ");
	}
	sbuf_adds(b, "}}\n");
}

