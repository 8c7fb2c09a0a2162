/*
 * compactor_status — a collection's compactor state as JSON members and
 * Prometheus metrics.
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

const char *cc_state_name(enum cstate s)
{
	switch (s) {
	case CSTATE_MERGING:
		return "merging";
	case CSTATE_SEALING:
		return "sealing";
	case CSTATE_WAITING:
		return "waiting";
	default:
		return "idle";
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

int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, sbuf *out)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = find(c, coll);
	if (!cc) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	sbuf_adds(out, "\"collection\": ");
	sbuf_add_json_str(out, cc->name);
	sbuf_addf(out,
		  ", \"state\": \"%s\", \"queued\": %llu, \"applied_total\": %llu, "
		  "\"duplicate_total\": %llu, \"rejected_total\": %llu, \"rejected\": %llu, "
		  "\"snapshots\": %llu, \"seal_failures\": %llu, \"delta_failures\": %llu, \"retry_in_s\": ",
		  cc_state_name(cc->state), (unsigned long long)cc->queued, (unsigned long long)cc->applied_total,
		  (unsigned long long)cc->duplicate_total, (unsigned long long)cc->rejected_total,
		  (unsigned long long)cc->rejected_now, (unsigned long long)snapshots,
		  (unsigned long long)cc->seal_failures, (unsigned long long)cc->delta_failures);
	double retry = retry_in_s(cc);
	if (retry >= 0)
		sbuf_addf(out, "%.1f", retry);
	else
		sbuf_adds(out, "null");
	sbuf_adds(out, ", \"last_snapshot\": ");
	if (cc->last.id) {
		char idname[24], created[32];
		store_id_format(cc->last.id, idname, sizeof(idname));
		rfc3339_format(cc->last.created, created);
		sbuf_addf(out,
			  "{\"id\": %llu, \"snapshot\": \"%s\", \"created\": \"%s\", \"size\": %llu, "
			  "\"sha256\": \"%s\", \"ledger_max\": %lld}",
			  (unsigned long long)cc->last.id, idname, created, (unsigned long long)cc->last.size,
			  cc->last.sha256, (long long)cc->last.ledger_max);
	} else {
		sbuf_adds(out, "null");
	}
	sbuf_adds(out, ", \"last_error\": ");
	if (cc->last_error[0])
		sbuf_add_json_str(out, cc->last_error);
	else
		sbuf_adds(out, "null");
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
		{"snapfs_deltas_duplicate_total", "counter", "Deltas skipped because the ledger already held them.",
		 offsetof(struct ccoll, duplicate_total)},
		{"snapfs_deltas_rejected_total", "counter", "Deltas moved to rejected/.",
		 offsetof(struct ccoll, rejected_total)},
		{"snapfs_deltas_failed_total", "counter",
		 "Attempts at a delta that failed for a reason of its own (rejected after max_attempts).",
		 offsetof(struct ccoll, delta_failures)},
		{"snapfs_compactor_waits_total", "counter", "Times the collection waited a backoff after a failure.",
		 offsetof(struct ccoll, waits)},
		{"snapfs_snapshots_published_total", "counter", "Snapshots sealed and published.",
		 offsetof(struct ccoll, published_total)},
		{"snapfs_seal_failures_total", "counter", "Snapshots that failed sealing.",
		 offsetof(struct ccoll, seal_failures)},
		{"snapfs_queue_deltas", "gauge", "Deltas waiting in the queue.", offsetof(struct ccoll, queued)},
		{"snapfs_rejected_deltas", "gauge", "Delta files in rejected/.", offsetof(struct ccoll, rejected_now)},
	};
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", counters[i].name, counters[i].help, counters[i].name,
			  counters[i].type);
		for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
			uint64_t v;
			memcpy(&v, (const char *)cc + counters[i].off, sizeof(v));
			sbuf_addf(out, "%s{collection=\"%s\"} %llu\n", counters[i].name, cc->name, (unsigned long long)v);
		}
	}
	sbuf_adds(out, "# HELP snapfs_seal_seconds Duration of the last seal.\n"
		       "# TYPE snapfs_seal_seconds gauge\n");
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		sbuf_addf(out, "snapfs_seal_seconds{collection=\"%s\"} %.3f\n", cc->name, cc->last_seal_ms / 1000.0);
	pthread_mutex_unlock(&c->mu);
}
