/*
 * sweeper — the daemon's housekeeping thread: runs sweep passes (sweep.h)
 * on every collection, beside the uploader and never before it.
 *
 * A pass runs when a collection is first watched (so that multipart
 * uploads left by a crash go), soon after its pointer moved (kick), when
 * the next unneeded object's grace runs out, and every 10 minutes
 * otherwise. A pass that fails is retried with a backoff growing from 5 s
 * to 10 min, and reported in the status and metrics; it is never looped
 * on, and never delays an upload: the sweeper has its own S3 client and
 * thread, and shares only the collection's lease (lease_hold), which the
 * uploader's swap can hold at the same time.
 *
 * Threads: sweeper_watch, sweeper_kick, sweeper_status and
 * sweeper_metrics may be called from any thread; they take only the
 * sweeper's own mutex, which is never held across an S3 call or a
 * callback.
 */
#ifndef SNAPFS_SWEEPER_H
#define SNAPFS_SWEEPER_H

#include <jansson.h>

#include "lease.h"
#include "s3.h"
#include "sbuf.h"
#include "sweep.h"

typedef struct sweeper sweeper;

struct sweeper_config {
	s3_client *c;             /* the sweeper's own client */
	const char *prefix;       /* normalized (layout_prefix_normalize) */
	struct sweep_rules rules; /* keep, grace, host id, in_flight */
	double margin_s;          /* lease time a deletion needs left */
	/* The collection's lease, shared with the uploader; NULL if it cannot be made. */
	lease *(*lease_for)(void *arg, const char *coll);
	void *lease_arg;
};

/* Copies cfg (strings included) and starts the thread. */
int sweeper_start(const struct sweeper_config *cfg, sweeper **out, char *err, size_t errlen);
/* Stops the thread (the caller cancels the client first, so that this is prompt) and frees. */
void sweeper_stop(sweeper *s);
/* Looks after coll from now on; its first pass runs at once. */
void sweeper_watch(sweeper *s, const char *coll);
/* coll's pointer moved: a pass soon (what left the keep window waits for its grace). */
void sweeper_kick(sweeper *s, const char *coll);
/*
 * Adds the member "bucket" to coll's "upload" status object: what is in
 * S3 and what the sweep did (null if coll is not watched).
 */
void sweeper_status(sweeper *s, const char *coll, json_t *upload);
/* Appends the metrics lines of every collection. */
void sweeper_metrics(sweeper *s, sbuf *out);

#endif
