/*
 * compactor_i.h — what the files of the compactor module share (not an
 * interface; compactor.h is):
 *
 *   compactor.c         life cycle, the scheduler thread, backoff, add/remove/kick
 *   compactor_batch.c   one batch: apply the queue, seal, publish (thread only)
 *   compactor_status.c  status members and metrics (any thread, under c->mu)
 *
 * Locks: c->mu protects every field marked so below. Order: a caller may
 * hold the vfs lock when it takes c->mu (kick, add, status); the
 * compactor thread never holds c->mu while it calls out (the events) or
 * does I/O, and no thread waits on another thread while holding c->mu
 * (compactor_remove refuses a busy collection instead of waiting for it).
 */
#ifndef SNAPFS_COMPACTOR_I_H
#define SNAPFS_COMPACTOR_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "compactor.h"
#include "fsx.h"

#define COMPACTOR_BACKOFF_MIN_MS 1000u
#define COMPACTOR_BACKOFF_MAX_MS 60000u
#define COMPACTOR_HOUSEKEEP_MS (10u * 60u * 1000u)

enum cstate { CSTATE_IDLE, CSTATE_MERGING, CSTATE_SEALING, CSTATE_WAITING };

struct last_snapshot {
	uint64_t id; /* 0: none yet */
	time_t created;
	uint64_t size;
	char sha256[FSX_SHA256_HEX];
	int64_t ledger_max;
};

/* Where a batch spent its time (milliseconds), for status and the benchmark. */
struct batch_times {
	uint64_t deltas, bytes;             /* deltas merged (applied) and their size */
	uint64_t hashed_while_written;      /* deltas whose hash came from compactor_delta_hash */
	double hash_ms, check_ms, apply_ms; /* summed over the batch's deltas */
	double seal_ms;                     /* seal_make and the publish */
	double ms;                          /* first delta hashed to snapshot published */
};

struct ccoll {
	char name[STORE_NAME_MAX + 1];
	struct ccoll *next;
	/* All fields below are protected by c->mu. */
	enum cstate state;
	bool busy;       /* the compactor thread is working on it */
	bool removing;   /* compactor_remove is deleting it: the thread leaves it alone */
	bool recover;    /* store_recover failed at add: the thread tries again */
	bool check_live; /* first look whether live is ahead of the newest snapshot */
	bool needs_seal; /* live ledger is ahead of the newest snapshot */
	uint64_t queued; /* deltas in queue/: as last listed, plus kicks since */
	uint64_t kicks;  /* kicks since the thread last listed the queue */
	double due;      /* when the gathered batch should start (mono_now seconds) */
	/* After a failure: nothing is tried before not_before (mono_now seconds). */
	bool parked;
	double not_before;
	unsigned backoff_ms;
	/* The queued delta that failed for reasons of its own, and how often in a row. */
	uint64_t fail_seq;
	unsigned fail_count;
	double next_housekeep;
	uint64_t rejected_now; /* delta files in rejected/ */
	uint64_t applied_total, duplicate_total, rejected_total, published_total, seal_failures;
	uint64_t delta_failures, waits;
	double last_seal_ms;
	struct batch_times batch;      /* the batch in progress (compactor thread) */
	double batch_start;            /* mono_now() when it began */
	struct batch_times last_batch; /* the newest batch that published a snapshot */
	struct last_snapshot last;
	char last_error[512];
	/* compactor_rebase: start over from rebase_db (NULL: nothing) at the next round. */
	bool rebase_pending;
	char *rebase_db; /* malloc'd */
	/* compactor_delta_hash: hashes taken while deltas were written, by arrival number. */
	struct {
		uint64_t seq;
		trailhash *t;
	} hashes[COMPACTOR_HASHES];
	size_t nhashes;
	uint64_t rebase_ticket; /* of the newest request */
	uint64_t rebase_done;   /* the newest ticket carried out */
};

struct compactor {
	store *st;
	struct compactor_config cfg;
	struct compactor_events ev;
	pthread_t thread;
	atomic_bool cancel; /* set by compactor_stop: interrupts SQLite work and copies at once */
	pthread_mutex_t mu;
	pthread_cond_t cond; /* signalled on kick, add, remove and stop */
	struct ccoll *colls; /* protected by mu */
	bool stopping;       /* protected by mu */
};

/* compactor.c */
/*
 * The hash compactor_delta_hash left for queued delta seq of cc (NULL:
 * none), forgetting it and any of earlier arrivals: the queue is applied
 * in arrival order, so those are gone. Takes c->mu.
 */
trailhash *cc_take_hash(compactor *c, struct ccoll *cc, uint64_t seq);
/* Drops every hash cc holds; with c->mu held. */
void cc_drop_hashes(struct ccoll *cc);
void cc_set_state(compactor *c, struct ccoll *cc, enum cstate s);
/* Records msg as the collection's last_error and logs it once, at err level. */
void cc_error(compactor *c, struct ccoll *cc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Parks cc after a failure: nothing is tried again before the backoff, which doubles each time. */
void cc_park(compactor *c, struct ccoll *cc);
/* A success: the backoff starts from its minimum again. */
void cc_unpark(compactor *c, struct ccoll *cc);
bool cc_stopping(compactor *c);

/* compactor_batch.c */
/* Reads what status shows about the newest snapshot of coll from its files (no lock needed). */
void cc_load_last(compactor *c, const char *coll, struct last_snapshot *ls);
/* One round of work on cc (check live, apply the queue, seal), on the compactor thread. */
void cc_run(compactor *c, struct ccoll *cc);
/* Carries out a pending compactor_rebase of cc, on the compactor thread; false if it failed. */
bool cc_rebase(compactor *c, struct ccoll *cc);

/* compactor_status.c */
const char *cc_state_name(enum cstate s);

#endif
