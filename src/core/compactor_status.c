/*
 * compactor_status — a collection's compactor state as members of its
 * JSON status object, and Prometheus metrics.
 *
 * Reads only memory, under c->mu: a status read never touches the disk
 * (the count of rejected/ is kept up to date by the compactor and the
 * vfs, not listed here), so readers of status never wait behind I/O.
 */
#include "compactor.h"
#include "compactor_i.h"
#include "mono.h"
#include "rfc3339.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "jsonx.h"

const char *cc_state_name(enum cstate s)
{
	switch (s) {
	case CSTATE_MERGING: return "merging";
	case CSTATE_SEALING: return "sealing";
	case CSTATE_WAITING: return "waiting";
	default: return "idle";
	}
}

static struct ccoll *find(compactor *c, const char *name)
{
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		if (!strcmp(cc->name, name))
			return cc;
	return NULL;
}

/* Seconds until a parked collection is tried again; negative if it is not parked. */
static double retry_in_s(const struct ccoll *cc)
{
	if (!cc->parked)
		return -1;
	double s = cc->not_before - mono_now();
	return s > 0 ? s : 0;
}

static json_t *last_snapshot_json(const struct ccoll *cc)
{
	char idname[24], created[RFC3339_LEN];
	if (!cc->last.id)
		return json_null();
	store_id_format(cc->last.id, idname, sizeof(idname));
	rfc3339_format(cc->last.created, created);
	json_t *o = json_object();
	jsonx_set(o, "id", jsonx_u64(cc->last.id));
	jsonx_set(o, "snapshot", jsonx_str(idname));
	jsonx_set(o, "created", jsonx_str(created));
	jsonx_set(o, "size", jsonx_u64(cc->last.size));
	jsonx_set(o, "sha256", jsonx_str(cc->last.sha256));
	jsonx_set(o, "ledger_max", jsonx_int(cc->last.ledger_max));
	return o;
}

static json_t *last_batch_json(const struct batch_times *b)
{
	if (!b->ms)
		return json_null();
	json_t *o = json_object();
	jsonx_set(o, "deltas", jsonx_u64(b->deltas));
	jsonx_set(o, "bytes", jsonx_u64(b->bytes));
	jsonx_set(o, "hash_ms", jsonx_real(b->hash_ms, 1));
	jsonx_set(o, "hashed_while_written", jsonx_u64(b->hashed_while_written));
	jsonx_set(o, "check_ms", jsonx_real(b->check_ms, 1));
	jsonx_set(o, "apply_ms", jsonx_real(b->apply_ms, 1));
	jsonx_set(o, "seal_ms", jsonx_real(b->seal_ms, 1));
	jsonx_set(o, "ms", jsonx_real(b->ms, 1));
	return o;
}

int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, json_t *status)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = find(c, coll);
	if (!cc) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	double retry = retry_in_s(cc);
	jsonx_set(status, "collection", jsonx_str(cc->name));
	jsonx_set(status, "state", jsonx_str(cc_state_name(cc->state)));
	jsonx_set(status, "queued", jsonx_u64(cc->queued));
	jsonx_set(status, "applied_total", jsonx_u64(cc->applied_total));
	jsonx_set(status, "duplicate_total", jsonx_u64(cc->duplicate_total));
	jsonx_set(status, "rejected_total", jsonx_u64(cc->rejected_total));
	jsonx_set(status, "rejected", jsonx_u64(cc->rejected_now));
	jsonx_set(status, "snapshots", jsonx_u64(snapshots));
	jsonx_set(status, "seal_failures", jsonx_u64(cc->seal_failures));
	jsonx_set(status, "delta_failures", jsonx_u64(cc->delta_failures));
	jsonx_set(status, "retry_in_s", retry >= 0 ? jsonx_real(retry, 1) : json_null());
	jsonx_set(status, "last_snapshot", last_snapshot_json(cc));
	jsonx_set(status, "last_batch", last_batch_json(&cc->last_batch));
	jsonx_set(status, "last_error", jsonx_str_or_null(cc->last_error));
	pthread_mutex_unlock(&c->mu);
	return 0;
}

void compactor_metrics(compactor *c, sbuf *out)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} counters[] = {
		{"snapfs_deltas_applied_total", "counter", "Deltas merged into a live database.",
		 offsetof(struct ccoll, applied_total)},
		{"snapfs_deltas_duplicate_total", "counter",
		 "Deltas skipped because the ledger already held them.",
		 offsetof(struct ccoll, duplicate_total)},
		{"snapfs_deltas_rejected_total", "counter", "Deltas moved to rejected/.",
		 offsetof(struct ccoll, rejected_total)},
		{"snapfs_deltas_failed_total", "counter",
		 "Attempts at a delta that failed for a reason of its own (rejected after max_attempts).",
		 offsetof(struct ccoll, delta_failures)},
		{"snapfs_compactor_waits_total", "counter",
		 "Times the collection waited a backoff after a failure.",
		 offsetof(struct ccoll, waits)},
		{"snapfs_snapshots_published_total", "counter", "Snapshots sealed and published.",
		 offsetof(struct ccoll, published_total)},
		{"snapfs_seal_failures_total", "counter", "Snapshots that failed sealing.",
		 offsetof(struct ccoll, seal_failures)},
		{"snapfs_queue_deltas", "gauge", "Deltas waiting in the queue.",
		 offsetof(struct ccoll, queued)},
		{"snapfs_rejected_deltas", "gauge", "Delta files in rejected/.",
		 offsetof(struct ccoll, rejected_now)},
	};
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", counters[i].name, counters[i].help,
			  counters[i].name, counters[i].type);
		for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
			uint64_t v;
			memcpy(&v, (const char *)cc + counters[i].off, sizeof(v));
			sbuf_addf(out, "%s{collection=\"%s\"} %llu\n", counters[i].name, cc->name,
				  (unsigned long long)v);
		}
	}
	sbuf_adds(out, "# HELP snapfs_seal_seconds Duration of the last seal.\n"
		       "# TYPE snapfs_seal_seconds gauge\n");
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		sbuf_addf(out, "snapfs_seal_seconds{collection=\"%s\"} %.3f\n", cc->name,
			  cc->last_seal_ms / 1000.0);
	pthread_mutex_unlock(&c->mu);
}
