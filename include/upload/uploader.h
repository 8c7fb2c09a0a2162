/*
 * uploader — the thread that ships sealed snapshots to S3 and moves each
 * collection's pointer.
 *
 * Knows collections and the store, not FUSE. Bucket layout under PREFIX
 * (default "snapfs/"), see layout.h:
 *
 *   PREFIX/COLL/snapshots/ID-HOST-INST/COLL.sqlite3   the sealed database
 *   PREFIX/COLL/snapshots/ID-HOST-INST/MANIFEST.json  its manifest
 *   PREFIX/COLL/pointer.json                          the newest snapshot (lease.h)
 *   PREFIX/COLL/lease.json                            the per-collection lease
 *
 * ID is the local 8-digit snapshot id, HOST the mount's host id, INST the
 * STORE's instance id (store_instance): no two hosts, and no two STOREs
 * of one host, ever write the same snapshot key, so an upload can never
 * replace the object the pointer names. Single-PUT objects (manifests,
 * small databases) are also sent create-only (If-None-Match: *).
 *
 * For each snapshot: read the pointer (its ETag, or "absent") before
 * uploading; upload the database (parallel multipart, verified by HEAD)
 * and then the manifest; check that the SHA-256 of the file's bytes is
 * the manifest's; record the upload in STORE/collections/COLL/upload.json
 * (fsx_write_atomic); then take the lease, swap the pointer by If-Match
 * (If-None-Match: * if it was absent) while the lease has a margin left,
 * the pointer it replaces put at the head of the new one's history, and
 * release the lease. A pointer that moved meanwhile is not overwritten
 * ("conflict"); a lease held by another host is waited out.
 *
 * The thread uploads every published snapshot in order, but when it is
 * behind it skips to the newest of each collection. At start it redoes
 * the newest snapshot if upload.json does not say it was handled.
 * Beside it the sweeper (sweeper.h) keeps the bucket bounded: snapshots
 * beyond keep behind the pointer, orphans and stale multipart uploads
 * (those a crash left at once) go after the grace; it never delays an
 * upload.
 * Failures are retried with backoff (errors that cannot go away, such as
 * AccessDenied, NoSuchBucket, SignatureDoesNotMatch or a pointer or lease
 * that is not a document of its kind, every 60 s or when a new snapshot
 * arrives; a full or over-quota server from 5 s up to 60 s); local
 * snapshots stay published whatever happens here.
 *
 * Lock order: the vfs calls upl_status with its own lock held; the
 * uploader takes only its own lock, then the sweeper's (never both at
 * once), and never calls the vfs.
 */
#ifndef SNAPFS_UPLOADER_H
#define SNAPFS_UPLOADER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lease.h"
#include "s3.h"
#include "sbuf.h"
#include "store.h"

typedef struct upl upl;

#define UPL_DEFAULT_KEEP 4      /* s3_keep */
#define UPL_DEFAULT_GRACE_S 600 /* s3_grace */
#define UPL_KEEP_MAX 100

struct upl_config {
	const struct s3_config *s3; /* endpoint, region, bucket, keys: copied */
	const char *prefix;         /* NULL: "snapfs/"; a '/' is added if missing; "" allowed */
	const char *host_id;        /* required: layout_host_id_valid */
	uint64_t part_size;         /* 0: 16 MiB */
	unsigned parallel;          /* 0: 4 */
	unsigned lease_ttl_s;       /* 0: 60 */
	unsigned keep;    /* snapshots kept in S3, 1..UPL_KEEP_MAX; 0: all (no retention) */
	unsigned grace_s; /* an unneeded object stays this long */
	bool enabled;     /* false: status says "off", nothing is sent */
	/*
	 * A cluster member (cluster.h): the pointer is swapped, and the sweep
	 * deletes, only while the cluster code holds the collection's lease
	 * (lease_hold_if_held); a snapshot published while this host is not
	 * the compactor stays local. Nothing is redone at start. After each
	 * swap, swapped(ctx, coll, local id, pointer written, its ETag).
	 */
	bool cluster;
	void (*swapped)(void *ctx, const char *coll, uint64_t id, const struct lease_pointer *p,
			const char *etag);
	void *swapped_ctx;
};

/* The lease object of coll, shared by the uploader, the sweeper and the cluster; NULL if it cannot be made. */
lease *upl_lease_of(upl *u, const char *coll);

/*
 * Makes the S3 clients and, if enabled, starts the thread (after any
 * fork). Reads every collection's upload.json and snapshot list first.
 */
int upl_start(store *st, const struct upl_config *cfg, upl **out, char *err, size_t errlen);
/*
 * Cancels every S3 call in flight (the upload is aborted on the server if
 * that can be done within a fraction of a second; else the next start's
 * sweep aborts it), joins the threads, frees. Returns within about a
 * second whatever the server does.
 */
void upl_stop(upl *u);
/* The compactor's published() event (ctx is the upl). Never blocks on S3. */
void upl_published(void *ctx, const char *coll, uint64_t id);
/*
 * The local upload record (STORE/collections/COLL/upload.json) as one
 * JSON line: p's snapshot, and pointer ("pending" until the pointer step
 * is done, then "swapped" or "conflict") with the pointer generation.
 */
void upl_record_json(const struct lease_pointer *p, const char *pointer, uint64_t generation,
		     sbuf *out);
/*
 * Strict: -EINVAL unless json is one JSON object (no key twice) of
 * format 1 with every field of its type, integers >= 0 but at, strings
 * fitting. *done: the pointer step is not "pending".
 */
int upl_record_parse(const char *json, struct lease_pointer *p, bool *done, uint64_t *generation);

/*
 * A vfs_status_fn: adds the member "upload" to coll's status object, or
 * for coll NULL appends the upload and sweep metrics lines to metrics.
 */
void upl_status(void *ctx, const char *coll, json_t *status, sbuf *metrics);

#endif
