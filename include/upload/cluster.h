/*
 * cluster — a mount that shares its bucket and prefix with other hosts:
 * every host accepts deltas, exactly one compacts each collection, every
 * host serves the newest verified snapshot. S3 is all the hosts share
 * (the keys are in layout.h); there is no coordinator and no port.
 *
 *  - Host claim: PREFIX/.cluster/hosts/HOST.json says which STORE
 *    instance uses host id HOST; it is rewritten every CLUSTER_BEAT_S.
 *    cluster_claim (before mounting) refuses a host id whose claim
 *    another instance keeps rewriting; a claim left by a dead instance
 *    is taken over after watching it unchanged for CLUSTER_CLAIM_WATCH_S.
 *  - Collections: COLL/collection.json (create-only) says a collection
 *    exists in the cluster. A local mkdir writes it; every poll lists
 *    PREFIX/ and creates here what another host made (hooks.appeared).
 *    rmdir is refused (EPERM) on a cluster member: a collection belongs
 *    to every host at once.
 *  - Deltas: acknowledged locally into outbox/ (store_set_outbox_intake),
 *    shipped to COLL/deltas/HOST/INST-SEQ-SHA256 by the shipper thread
 *    (create-only; the signed payload hash makes S3 check every byte),
 *    and removed locally only once S3 has them.
 *  - One compactor per collection: the host that holds COLL/lease.json
 *    (lease.h: conditional PUTs, fencing token, expiry watched on each
 *    host's own clock). The coordinator takes a free or expired lease
 *    (s3_role=compactor at once, auto after CLUSTER_AUTO_DEFER polls, so
 *    that a preferred host wins; follower never), renews it every ttl/3
 *    and steps down when it cannot. On taking it: the pointer's snapshot
 *    is made local first (as a follower does), the compactor rebuilds
 *    its live database from it (compactor_rebase), and only then does
 *    the intake thread import the deltas under COLL/deltas/ into queue/.
 *    The uploader swaps the pointer only under the coordinator's hold;
 *    after a swap the intake deletes from S3 every imported delta whose
 *    SHA-256 the new snapshot's ledger holds, and relays the ones the
 *    compactor refused to COLL/rejected/HOST/ (the shipper of HOST puts
 *    them into its own rejected/). Stepping down (the lease lost or
 *    taken): the intake stops and the compactor drops its live database
 *    and queue; nothing it merged is lost, S3 still has every delta.
 *  - Followers: every host that is not the compactor GETs the pointer
 *    with If-None-Match each poll, downloads a snapshot it does not have
 *    (parallel ranged GETs of one version), checks its size and SHA-256
 *    against pointer and manifest and runs integrity_check, and only
 *    then publishes it under the pointer's id (or above the newest local
 *    id if that is taken). A snapshot that fails is never shown; status
 *    says why and it is tried again with backoff.
 *
 * Threads: the coordinator (claim, discovery, leases and roles), the
 * shipper, the follower and the intake, each with its own S3 client, so
 * that a long download never delays a lease renewal. Lock order: cl->mu
 * is a leaf: it is never held across an S3 call or a call into the
 * compactor, the store, the uploader or the hooks. The vfs calls
 * cluster_kick_ship, cluster_collection_made and cluster_status with
 * its own lock held: they take cl->mu only.
 */
#ifndef SNAPFS_CLUSTER_H
#define SNAPFS_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "compactor.h"
#include "s3.h"
#include "sbuf.h"
#include "store.h"
#include "uploader.h"

#define CLUSTER_BEAT_S 5         /* host claim rewritten this often */
#define CLUSTER_CLAIM_WATCH_S 16 /* a claim unchanged this long is a dead instance's */
#define CLUSTER_AUTO_DEFER 3     /* polls an auto host lets a free lease be, for a preferred one */
#define CLUSTER_DEFAULT_POLL_MS 1000

typedef struct cluster cluster;

enum cluster_role {
	CLUSTER_ROLE_AUTO,      /* may compact: takes a free or expired lease */
	CLUSTER_ROLE_COMPACTOR, /* prefers to: takes it at once */
	CLUSTER_ROLE_FOLLOWER,  /* never compacts */
};

struct cluster_hooks {
	void *ctx;
	/* Another host made coll: create it here (store, compactor, vfs). 0 or a negative errno. */
	int (*appeared)(void *ctx, const char *coll);
	/* Snapshot id of coll was published here from the cluster (what the compactor's event does). */
	void (*published)(void *ctx, const char *coll, uint64_t id);
};

struct cluster_config {
	const struct s3_config *s3; /* copied */
	const char *prefix;         /* normalized (layout_prefix_normalize) */
	const char *host_id;
	enum cluster_role role;
	unsigned poll_ms;     /* 0: CLUSTER_DEFAULT_POLL_MS */
	unsigned lease_ttl_s; /* as the uploader's */
	uint64_t part_size;   /* download ranges; 0: 16 MiB */
	unsigned parallel;    /* ranges in flight; 0: 4 */
	struct cluster_hooks hooks;
};

/*
 * Before mounting: claims host_id for this STORE instance in the bucket.
 * Refuses (-EEXIST, err says which instance and what to do) if another
 * instance keeps its claim alive; may take up to CLUSTER_CLAIM_WATCH_S
 * to tell a dead claim from a live one.
 */
int cluster_claim(const struct s3_config *s3, const char *prefix, const char *host_id,
		  const char *instance, char *err, size_t errlen);
/*
 * Before the compactor and the vfs start on st: every collection's
 * queue/ goes to outbox/ (store_queue_to_outbox) and its live database
 * is dropped (the cluster's snapshot is the truth), and from now on
 * deltas are acknowledged into outbox/. -errno with err.
 */
int cluster_prepare(store *st, char *err, size_t errlen);
/* Makes the S3 clients (cfg->s3 holds the credentials now); no thread yet. -errno with err. */
int cluster_new(store *st, const struct cluster_config *cfg, cluster **out, char *err, size_t errlen);
/*
 * Once the compactor and the vfs serve st: starts the threads. u: the
 * uploader (started with cluster set and this cluster as swapped_ctx),
 * whose lease objects the cluster shares. -errno with err.
 */
int cluster_run(cluster *cl, compactor *comp, upl *u, char *err, size_t errlen);
/*
 * Cancels every S3 call in flight and joins the threads (the leases it
 * holds are released if that can be done in half a second), within about
 * a second. cl stays valid for the calls above (the uploader may still
 * report a swap) until cluster_free. cl may be NULL.
 */
void cluster_stop(cluster *cl);
void cluster_free(cluster *cl);

/* A delta of coll reached outbox/: ship it soon. */
void cluster_kick_ship(cluster *cl, const char *coll);
/* coll was made here (mkdir): write its marker. */
void cluster_collection_made(cluster *cl, const char *coll);
/* The uploader's swapped event (ctx: the cluster). */
void cluster_swapped(void *ctx, const char *coll, uint64_t id, const struct lease_pointer *p,
		     const char *etag);
/*
 * A vfs_status_fn: the member "cluster" of coll's status (role, lease,
 * pointer, lag, deltas pending shipment and in flight, rejections), or
 * the cluster's metrics lines for coll NULL.
 */
void cluster_status(void *ctx, const char *coll, json_t *status, sbuf *metrics);

#endif
