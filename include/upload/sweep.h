/*
 * sweep — what may go from a collection's part of the bucket, and taking
 * it away: snapshots the retention rule no longer keeps, snapshot
 * objects no pointer ever named (orphans), stale multipart uploads.
 *
 * Knows the layout (layout.h) and the pointer (lease.h), not the store or
 * any thread: the daemon's sweeper thread and snapfs-ctl both call it.
 *
 * The rule, for the pointer P (generation G, naming snapshot T):
 *  - T is kept, and so is every snapshot the pointer named in the keep-1
 *    generations before G (its history);
 *  - a snapshot whose objects are not older than T's database object was
 *    uploaded after T was named: an upload about to be swapped in, or one
 *    that lost a race. It is kept ("newer") until the pointer moves past it;
 *  - every other snapshot of ours is unneeded: one the pointer named
 *    longer ago ("expired"), or one no pointer ever named ("orphan"). It
 *    is deleted, both objects, once it has been unneeded for the grace:
 *    an expired one from when the keep window left it (the written_at of
 *    generation g+keep), an orphan from the later of its upload and the
 *    oldest written_at the history still holds (it may be a snapshot the
 *    pointer named so long ago that the history forgot it). A reader that
 *    fetched the pointer just before a deletion can therefore still
 *    download what it names for the whole grace.
 *  - keep 0 ("all") turns retention off: no snapshot is deleted, orphans
 *    included (an orphan cannot be told from a snapshot named longer ago
 *    than the history remembers).
 *  - Nothing is deleted when the pointer is missing or not a pointer
 *    document, or names an object that is not in the listing.
 * Only keys layout_parse_snapshot_key recognises are ever touched: other
 * keys under snapshots/ (and everything outside it, such as deltas/) are
 * counted as unknown and left alone.
 *
 * Multipart uploads under snapshots/: this host's are stale unless the
 * caller says one is in flight (in_flight); another host's once they were
 * initiated upload_age_s ago.
 *
 * Times are wall-clock seconds: S3's LastModified and Initiated, the
 * written_at of pointer documents (the writers' clocks) and now. Clocks
 * off by less than a small part of the grace do no harm.
 *
 * Errors: 0 or a negative errno, with *err filled for S3 failures.
 */
#ifndef SNAPFS_SWEEP_H
#define SNAPFS_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "layout.h"
#include "lease.h"
#include "s3.h"

#define SWEEP_DEFAULT_UPLOAD_AGE_S (24u * 3600u)

struct sweep_rules {
	unsigned keep;         /* the pointer's snapshot and keep-1 before it; 0: all */
	unsigned grace_s;      /* an unneeded snapshot stays this long */
	unsigned upload_age_s; /* another host's multipart upload is stale after this; 0: default */
	const char *host_id;   /* this host (its uploads are stale unless in flight); NULL: none */
	/* Is this multipart upload of this host in flight? NULL: none is. Called without locks held. */
	bool (*in_flight)(void *arg, const char *key, const char *upload_id);
	void *in_flight_arg;
};

enum sweep_role {
	SWEEP_POINTER, /* the pointer names it */
	SWEEP_KEPT,    /* named in the keep-1 generations before */
	SWEEP_NEWER,   /* uploaded after the pointer's, never named */
	SWEEP_EXPIRED, /* named longer ago than the keep window */
	SWEEP_ORPHAN,  /* never named by any pointer the history remembers */
};

enum sweep_action {
	SWEEP_KEEP,   /* needed */
	SWEEP_WAIT,   /* unneeded, within the grace */
	SWEEP_DELETE, /* unneeded for longer than the grace */
};

/* One snapshot directory of ours in the bucket. */
struct sweep_snap {
	struct layout_snap name; /* id, host, inst, dir */
	enum sweep_role role;
	enum sweep_action action;
	uint64_t generation; /* the pointer generation that named it; 0 if none */
	bool has_db, has_manifest;
	unsigned objects;
	uint64_t bytes;
	time_t newest;          /* LastModified of its newest object */
	time_t db_modified;     /* LastModified of its database object */
	int64_t unneeded_since; /* unix seconds (action wait or delete) */
};

struct sweep_upload {
	char *key;
	char *upload_id;
	time_t initiated;
	struct layout_snap name;
	bool ours;       /* this host's */
	bool abort;      /* stale: to abort */
	const char *why; /* "in flight", "left by an earlier run", "older than ...", ... */
};

struct sweep_plan {
	/* The pointer as read: present, parsed (pointer_rc 0) or not (-EPROTO). */
	bool pointer_present;
	int pointer_rc;
	struct lease_pointer pointer;
	struct lease_history history;
	char pointer_etag[S3_ETAG_MAX];
	struct sweep_snap *snaps; /* in key order */
	size_t nsnaps;
	struct sweep_upload *uploads;
	size_t nuploads;
	size_t unknown;                  /* keys under snapshots/ that are not ours: left alone */
	uint64_t objects, bytes;         /* ours under snapshots/ */
	uint64_t kept;                   /* snapshots with action keep */
	uint64_t del_objects, del_bytes; /* what the plan deletes */
	size_t del_snaps, aborts;
	int64_t next_due;   /* unix seconds when the next object comes due; 0 if none */
	char blocked[1200]; /* why no snapshot may be deleted, or "" */
};

/*
 * Reads the pointer, lists PREFIX/COLL/snapshots/ and its multipart
 * uploads, and decides by r at time now. Read-only: sends no write.
 * A pointer that is not a pointer document is not a failure here: the
 * plan says so (blocked, pointer_rc) and deletes no snapshot.
 */
int sweep_plan(s3_client *c, const char *prefix, const char *coll, const struct sweep_rules *r,
	       int64_t now, struct sweep_plan *out, struct s3_error *err);
void sweep_plan_free(struct sweep_plan *p);

const char *sweep_role_name(enum sweep_role r);
const char *sweep_action_name(enum sweep_action a);

struct sweep_result {
	uint64_t deleted_objects, deleted_bytes;
	size_t deleted_snaps, aborted, aborted_ours, failed;
};

/*
 * Carries out a plan. This host's stale uploads are aborted in any case;
 * another host's uploads and every snapshot only with l held (lease_hold
 * by the caller) with more than margin_s left before each request, and
 * only after the pointer was read again and found where the plan saw it
 * or further on (the same ETag, or a higher generation): a host that lost
 * its lease, or whose plan is behind a pointer moved elsewhere, deletes
 * nothing. l NULL: uploads of this host only. A failed deletion stops the
 * run (the rest waits for the next); res counts what was done.
 */
int sweep_run(s3_client *c, const char *prefix, const char *coll, const struct sweep_plan *p,
	      lease *l, double margin_s, struct sweep_result *res, struct s3_error *err);

#endif
