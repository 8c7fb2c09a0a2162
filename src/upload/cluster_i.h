/*
 * cluster_i — what the files of the cluster module share (cluster.h is
 * the interface):
 *
 *   cluster.c     life cycle, the coordinator thread (discovery,
 *                 leases and roles)
 *   cl_claim.c    the host claim (cluster_claim, the beat)
 *   cl_ship.c     the shipper thread: outbox/ to S3, refusals back
 *   cl_follow.c   the follower thread: the pointer's snapshots made local
 *   cl_lead.c     the intake thread: deltas from S3 into queue/, deleted
 *                 once the pointer's snapshot has them, refusals relayed
 *   cl_status.c   status members and metrics (any thread, under cl->mu)
 *
 * Internal functions carry the prefix cl_. cl->mu protects every field
 * marked so; it is a leaf lock (cluster.h). Each thread has its own S3
 * client; a struct ccl is never freed before cluster_stop, so a thread
 * may keep a pointer to one without the lock.
 */
#ifndef SNAPFS_CLUSTER_I_H
#define SNAPFS_CLUSTER_I_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"
#include "layout.h"
#include "lease.h"
#include "mono.h"

enum cl_role {
	CL_FOLLOW, /* follows the pointer */
	CL_SYNC,   /* holds the lease; the pointer's snapshot is being made local */
	CL_REBASE, /* holds the lease; the compactor is starting over from it */
	CL_LEAD,   /* the compactor: imports, merges, swaps */
};

/* A delta imported into queue/ from S3, until a snapshot the pointer names holds it. */
struct cl_import {
	char key[S3_KEY_MAX + 1];
	char sha256[65];
};

struct ccl {
	char name[STORE_NAME_MAX + 1];
	struct ccl *next;
	lease *lease; /* the uploader's (upl_lease_of), made and used by the coordinator thread only */
	/* Protected by cl->mu. */
	bool marker_written; /* collection.json is known to be in S3 */
	enum cl_role role;
	bool hold;           /* the coordinator's hold on the lease */
	double lease_until;  /* mono seconds: held until then, as of the last acquire or renewal */
	unsigned free_polls; /* polls the lease was seen free (role auto waits CLUSTER_AUTO_DEFER) */
	struct lease_state holder; /* as last read; owner "" if none */
	uint64_t rebase_ticket;
	bool ptr_polled;    /* the pointer was read at least once */
	double ptr_read_at; /* mono seconds of the last answer about the pointer (a 304 included) */
	double lease_taken_at; /* mono seconds when the coordinator took the lease */
	bool ptr_present;
	struct lease_pointer ptr; /* as last read (or written by us) */
	char ptr_etag[S3_ETAG_MAX];
	double ptr_changed_at;                   /* mono seconds when the generation last moved */
	uint64_t applied_generation, applied_id; /* the pointer snapshot published here */
	char applied_sha[65];
	double applied_at;
	unsigned follow_failures;
	double follow_not_before;
	struct cl_import *imports;
	size_t nimports, capimports;
	bool imports_dirty; /* check imports against the pointer's ledger */
	uint64_t imported, deleted, relayed, shipped, remote_rejected;
	uint64_t outbox, in_flight;
	char error[512]; /* last failure of any thread for this collection ("" none) */
};

struct cluster {
	store *st;
	compactor *comp;
	upl *u;
	struct cluster_hooks hooks;
	char prefix[LAYOUT_PREFIX_MAX];
	char host[LAYOUT_HOST_ID_MAX + 1];
	char inst[LAYOUT_INST_LEN + 1];
	enum cluster_role role;
	double poll_s;
	unsigned ttl_s;
	uint64_t part_size;
	unsigned parallel;
	s3_client *coord_c, *ship_c, *follow_c, *lead_c;
	atomic_bool cancel;
	pthread_t coord_t, ship_t, follow_t, lead_t;
	bool started[4];

	pthread_mutex_t mu;
	pthread_cond_t cv; /* mono clock: kicks and stop */
	/* Protected by mu. */
	bool stop;
	bool ship_kick, follow_kick, lead_kick, coord_kick;
	struct ccl *colls;
	char host_etag[S3_ETAG_MAX]; /* of our last write of the host claim */
	double next_beat;
	char error[512]; /* the coordinator's last failure not tied to a collection */
};

/* cluster.c */
/* With cl->mu held: finds or adds (NULL: out of memory or a bad name). */
struct ccl *cl_coll_get(cluster *cl, const char *name);
/* The collections as they are now (malloc'd array; free it). Takes cl->mu. */
struct ccl **cl_colls(cluster *cl, size_t *n);
/* Waits until *kick is set (then clears it), stop, or poll_s. False once stopping. Takes cl->mu. */
bool cl_wait(cluster *cl, bool *kick, double seconds);
/* Records a failure for coll (NULL: the cluster's) and logs it when it is new. */
void cl_error(cluster *cl, struct ccl *c, const char *what, const struct s3_error *e, int rc);
void cl_clear_error(cluster *cl, struct ccl *c);
bool cl_stopping(cluster *cl);
/*
 * Downloads key into staging/leaf of coll, fsynced: 0 with info (free
 * it) and sha256 (65 bytes, may be NULL) of the bytes; else a negative
 * errno (-ENOENT: no such key) with e, and nothing left behind.
 */
int cl_fetch_tmp(cluster *cl, s3_client *c3, const char *coll, const char *key, const char *leaf,
		 char tmp[PATH_MAX], char *sha256, struct s3_object_info *info, struct s3_error *e);
/* The path of snapshot id's database of coll here. */
int cl_local_path(cluster *cl, const char *coll, uint64_t id, char *buf, size_t len);

/* cl_claim.c: the coordinator rewrites our host claim when it is due. */
void cl_beat(cluster *cl);

/* cl_ship.c */
void *cl_ship_main(void *arg);
/* Names and reasons travel as S3 metadata: all but [A-Za-z0-9._-] as %XX (out: 3x in, + 1). */
void cl_pct_encode(const char *in, char *out, size_t len);
/* Decodes %XX; control bytes, '/' and NUL become '_'. */
void cl_pct_decode(const char *in, char *out, size_t len);
/* The value of user metadata name in info, or NULL. */
const char *cl_meta(const struct s3_object_info *info, const char *name);
/* cl_follow.c */
void *cl_follow_main(void *arg);
/*
 * One follower pass for c (also run by the coordinator's becoming
 * compactor): makes the pointer's snapshot local if it is not. 1 when
 * the local snapshot is the pointer's (or there is no pointer), 0 when
 * not yet, a negative errno on failure (recorded).
 */
int cl_follow_one(cluster *cl, s3_client *c3, struct ccl *c);
/* cl_lead.c */
void *cl_lead_main(void *arg);
/* c stops being compacted here: forget its imports. With cl->mu held. */
void cl_lead_forget(struct ccl *c);

#endif
