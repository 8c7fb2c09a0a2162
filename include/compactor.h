/*
 * compactor — the thread that merges queued deltas and seals snapshots.
 *
 * One thread serves every collection; it alone opens live databases
 * (livedb.h), so no connection is ever shared between threads. For a
 * collection with queued deltas it waits batch_delay_ms after the first
 * arrival (to gather a burst), then applies up to batch_max deltas in
 * arrival order, each atomically with its ledger row, checkpoints and
 * closes the live database, seals a copy (seal.h), publishes it
 * (store_publish) and only then removes the applied deltas from the
 * queue. A crash anywhere in that sequence is repaired at start: applied
 * deltas still queued are duplicates by the ledger, and a live database
 * whose ledger is ahead of the newest snapshot is sealed again.
 *
 * Lock order: compactor->mu may be taken while holding nothing else;
 * the published() event is called with no compactor lock held.
 */
#ifndef SNAPFS_COMPACTOR_H
#define SNAPFS_COMPACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"
#include "store.h"

typedef struct compactor compactor;

struct compactor_config {
	unsigned batch_delay_ms; /* gather time after the first queued delta */
	unsigned batch_max;      /* deltas per snapshot, at most */
};

struct compactor_events {
	void *ctx;
	/* On the compactor thread, after snapshot id of coll is durably published. */
	void (*published)(void *ctx, const char *coll, uint64_t id);
};

int compactor_start(store *st, const struct compactor_config *cfg, const struct compactor_events *ev,
		    compactor **out);
/*
 * Finishes the delta being applied (and seals what was applied), then
 * stops the thread and frees everything. Queued deltas stay queued.
 */
void compactor_stop(compactor *c);

/* Recovers coll (store_recover) and starts serving it. */
int compactor_add(compactor *c, const char *coll);
/*
 * Removes coll from the store (store_collection_remove: -ENOTEMPTY if it
 * has snapshots or queued deltas), waiting for a batch in progress.
 */
int compactor_remove(compactor *c, const char *coll);
/* A delta was queued for coll (store_queue_add succeeded). */
void compactor_kick(compactor *c, const char *coll);

/*
 * Appends coll's status as JSON object members, without the braces
 * ("\"collection\": ..., \"last_error\": null"), so that others can add
 * theirs to the same object; snapshots = published count.
 */
int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, sbuf *out);
/* Appends Prometheus metrics for every collection. */
void compactor_metrics(compactor *c, sbuf *out);

#endif
