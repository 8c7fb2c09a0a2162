/*
 * uploader_i — what the files of the uploader share (uploader.c: the
 * thread and life cycle; upl_job.c: one upload and one swap; upl_state.c:
 * the local record and the status). The interface is uploader.h.
 *
 * Lock order: the vfs calls upl_status with its lock held; the uploader
 * takes u->mu there and, after releasing it, the sweeper's mutex
 * (sweeper_status); it never calls the vfs. u->mu and the sweeper's
 * mutex are never held together, and neither is held across an S3 call.
 */
#ifndef SNAPFS_UPLOADER_I_H
#define SNAPFS_UPLOADER_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "lease.h"
#include "s3.h"
#include "store.h"
#include "sweeper.h"
#include "uploader.h"

#define UPL_ERR_MAX 1400

struct ucoll {
	struct ucoll *next;
	char name[STORE_NAME_MAX + 1];
	/* Protected by u->mu (down to the thread-only part). */
	uint64_t *ids; /* published, not yet uploaded, ascending */
	size_t nids, capids;
	const char *state; /* "idle", "uploading", "swapping", "conflict", "failed" */
	uint64_t bytes_done, bytes_total;
	bool have_last;
	struct lease_pointer last; /* last uploaded (objects verified); written_at: when */
	uint64_t pointer_generation;
	char lease_desc[LEASE_OWNER_MAX + 64];
	char last_error[UPL_ERR_MAX]; /* "" if none */
	char error_code[64];          /* the S3 code of the last error, "" if none */
	bool server_full;             /* the last error said: no space, or over quota */
	const char *corrupt;          /* "pointer", "lease": not a document of its kind; NULL */
	/* A swap still to do after the upload of `swap` (lease busy, S3 failed). */
	bool swap_pending;
	struct lease_pointer swap;       /* the new pointer value but its generation */
	char swap_if_match[S3_ETAG_MAX]; /* the pointer's ETag before the upload; "" absent */
	uint64_t swap_base_generation;
	unsigned failures_in_row;
	double next_try; /* monotonic seconds */
	/* Made on first use (upl_lease), then fixed until upl_stop; shared with the sweeper. */
	lease *lease;
	/* Used by the uploader thread only. */
	struct lease_history swap_hist; /* the history the pending swap writes */
	unsigned busy_in_row;           /* lease found busy, in a row */
	/* metrics */
	uint64_t n_uploads, n_bytes, n_retries, n_failures, n_conflicts;
	double last_seconds;
	bool lease_held;
};

struct upl {
	store *st;
	s3_client *data; /* uploads */
	s3_client *ctl;  /* the lease and the pointer: few retries, short deadlines */
	s3_client *hk;   /* the sweeper's: housekeeping never queues behind an upload */
	sweeper *sw;     /* NULL when uploads are off */
	char prefix[LAYOUT_PREFIX_MAX];
	char host_id[LAYOUT_HOST_ID_MAX + 1];
	char bucket[64];
	char owner[LEASE_OWNER_MAX];
	uint64_t part_size;
	unsigned parallel;
	unsigned ttl_s;
	size_t hist_max; /* history entries each pointer we write carries */
	bool enabled;
	atomic_bool cancel; /* set by upl_stop: abandons the upload in progress */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;            /* protected by mu */
	struct ucoll *colls;  /* protected by mu; entries are never freed before upl_stop */
	struct ucoll *served; /* the last collection served (round robin); protected by mu */
	/* The multipart upload in flight: key, and its id once created ("" before). mu. */
	char inflight_key[S3_KEY_MAX + 1];
	char inflight_id[512];
	bool thread_started;
	pthread_t thread;
};

/* Copies src into dst[cap], cut short if it does not fit. */
void upl_copy(char *dst, size_t cap, const char *src);
/* snprintf that fails (-ENAMETOOLONG) rather than cut short, and never past an S3 key. */
int upl_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* With u->mu held: finds or adds. NULL only if out of memory or the name is bad. */
struct ucoll *upl_coll_get(upl *u, const char *name);
struct ucoll *upl_coll_find(upl *u, const char *name);
/* With u->mu held: adds a published id; forgets ids up to and including id. */
void upl_coll_push(struct ucoll *c, uint64_t id);
void upl_coll_trim(struct ucoll *c, uint64_t id);
/* The collection's lease, made on first use; NULL if it cannot be. Takes u->mu. */
lease *upl_lease(upl *u, struct ucoll *c);

/* ---- upl_state.c ---- */

/* pointer: "pending" (objects uploaded, swap not done), "swapped" or "conflict". */
void upl_record_write(upl *u, const char *coll, const struct lease_pointer *p, const char *pointer,
		      uint64_t generation);
/* At start: what is left to upload for coll, from its record and snapshots. */
void upl_load_coll(upl *u, const char *name);

/* ---- upl_job.c ---- */

/* Uploads snapshot id of c and then swaps the pointer. On the thread, without u->mu. */
void upl_upload(upl *u, struct ucoll *c, uint64_t id);
/* The pending swap of c. On the thread, without u->mu. */
void upl_swap(upl *u, struct ucoll *c);

#endif
