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
 * Nothing stops a collection for good, and one collection never holds
 * up another:
 *  - a delta that is bad is rejected with a reason (livedb, delta);
 *  - a delta that fails for reasons of its own that might pass (its file
 *    cannot be read, a merge statement fails) is tried again after a
 *    backoff, and rejected after max_attempts failures in a row, the
 *    reason saying why and how often (the poison-delta rule);
 *  - a failure of the machine (disk full, I/O error or corruption of the
 *    live database) parks the collection with a backoff (1 s doubling to
 *    60 s), never rejects a delta, and everything resumes by itself when
 *    the cause goes away;
 *  - a seal that fails is tried again with the same backoff, whether or
 *    not a new delta arrives; a delta already in the ledger leaves the
 *    queue only once a published snapshot holds it.
 * compactor_stop interrupts the merge, copy or check in progress (rolled
 * back; the delta stays queued) and returns within a fraction of a second.
 *
 * Lock order: a caller may hold its own lock (the vfs's) when calling in;
 * the compactor thread holds none of its locks while calling the events;
 * no call waits for the compactor thread.
 */
#ifndef SNAPFS_COMPACTOR_H
#define SNAPFS_COMPACTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"
#include "store.h"
#include "trailhash.h"

typedef struct compactor compactor;

struct compactor_config {
	unsigned batch_delay_ms; /* gather time after the first queued delta */
	unsigned batch_max;      /* deltas per snapshot, at most */
	unsigned max_attempts;   /* failures in a row before a delta is rejected; 0: 3 */
	unsigned rejected_max;   /* delta files kept in rejected/; the oldest go first; 0: no cap */
	unsigned housekeep_ms; /* how often the housekeeping event runs per collection; 0: 10 min */
};

struct compactor_events {
	void *ctx;
	/* On the compactor thread, after snapshot id of coll is durably published. */
	void (*published)(void *ctx, const char *coll, uint64_t id);
	/* On the compactor thread, every housekeep_ms per collection, between batches. */
	void (*housekeeping)(void *ctx, const char *coll);
};

int compactor_start(store *st, const struct compactor_config *cfg,
		    const struct compactor_events *ev, compactor **out);
/*
 * Finishes the delta being applied (and seals what was applied), then
 * stops the thread and frees everything. Queued deltas stay queued.
 */
void compactor_stop(compactor *c);

/*
 * Recovers coll (store_recover) and starts serving it. A collection whose
 * recovery failed is served all the same, its last_error saying why; the
 * recovery is tried again by the thread. -ENOMEM is the only failure.
 */
int compactor_add(compactor *c, const char *coll);
/*
 * Removes coll from the store (store_collection_remove): -EBUSY while the
 * thread works on it, -ENOTEMPTY if it has snapshots, queued deltas or
 * applied deltas no snapshot holds yet; -ENOENT if unknown. Never waits.
 */
int compactor_remove(compactor *c, const char *coll);
/* A delta was queued for coll (store_queue_move succeeded). */
void compactor_kick(compactor *c, const char *coll);
/*
 * coll's queued delta seq was hashed while it was written, by t (ended;
 * the reference is the compactor's now). Its merge takes the hash from t
 * instead of reading the file again, if t's result describes the queued
 * file (trailhash_same_file); else, or once more than COMPACTOR_HASHES
 * wait in one collection, the file is hashed as usual. Never waits.
 */
void compactor_delta_hash(compactor *c, const char *coll, uint64_t seq, trailhash *t);
#define COMPACTOR_HASHES 32
/*
 * A cluster member's compactor of coll starts over from a snapshot: at
 * its next round, before anything else, the thread empties queue/ (in a
 * cluster it holds only deltas imported from S3, which keeps them),
 * makes the live database a copy of db (NULL: none, the next delta
 * starts an empty one; store_live_replace) and forgets what was left to
 * seal. A newer request replaces one not carried out yet. Returns its
 * ticket (> 0); compactor_rebased says when it is done. Never waits.
 */
uint64_t compactor_rebase(compactor *c, const char *coll, const char *db);
/* The newest ticket of coll's compactor_rebase carried out (0: none, or unknown collection). */
uint64_t compactor_rebased(compactor *c, const char *coll);
/*
 * A snapshot of coll was published by someone else (a cluster member's
 * follower): what status shows of the newest snapshot is read again
 * from its files. Any thread; reads files, then takes c->mu briefly.
 */
void compactor_adopted(compactor *c, const char *coll);
/* A problem seen outside the compactor (a delta not queued): shown as last_error. */
void compactor_report(compactor *c, const char *coll, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* n delta files were removed from coll's rejected/ (rm through the mount). */
void compactor_rejected_removed(compactor *c, const char *coll, uint64_t n);

/*
 * Adds coll's status members to the JSON object status (collection,
 * state, ..., last_error: see STATUS AND METRICS in snapfs.8, in that
 * order), so that others can add theirs to the same object; snapshots =
 * published count. Reads memory only, under the compactor's mutex.
 * -ENOENT (nothing added) for a collection it does not know.
 */
int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, json_t *status);
/* Appends Prometheus metrics for every collection. */
void compactor_metrics(compactor *c, sbuf *out);

#endif
