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
 * and release the lease. A pointer that moved meanwhile is not
 * overwritten ("conflict"); a lease held by another host is waited out.
 *
 * The thread uploads every published snapshot in order, but when it is
 * behind it skips to the newest of each collection. At start it aborts
 * multipart uploads of this host left under PREFIX/COLL/snapshots/
 * in every collection, and redoes the newest snapshot if upload.json does
 * not say it was handled.
 * Failures are retried with backoff (errors that cannot go away, such as
 * AccessDenied, NoSuchBucket or SignatureDoesNotMatch, only every 60 s or
 * when a new snapshot arrives); local snapshots stay published whatever
 * happens here.
 *
 * Lock order: the vfs calls upl_status with its own lock held; the
 * uploader takes only its own lock there and never calls the vfs.
 */
#ifndef SNAPFS_UPLOADER_H
#define SNAPFS_UPLOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "sbuf.h"
#include "store.h"

typedef struct upl upl;

struct upl_config {
	const struct s3_config *s3; /* endpoint, region, bucket, keys: copied */
	const char *prefix;         /* NULL: "snapfs/"; a '/' is added if missing; "" allowed */
	const char *host_id;        /* required: layout_host_id_valid */
	uint64_t part_size;         /* 0: 16 MiB */
	unsigned parallel;          /* 0: 4 */
	unsigned lease_ttl_s;       /* 0: 60 */
	bool enabled;               /* false: status says "off", nothing is sent */
};

/*
 * Makes the S3 clients and, if enabled, starts the thread (after any
 * fork). Reads every collection's upload.json and snapshot list first.
 */
int upl_start(store *st, const struct upl_config *cfg, upl **out, char *err, size_t errlen);
/* Cancels the upload in progress (it is aborted on the server), joins the thread, frees. */
void upl_stop(upl *u);
/* The compactor's published() event (ctx is the upl). Never blocks on S3. */
void upl_published(void *ctx, const char *coll, uint64_t id);
/* A vfs_status_fn: ", \"upload\": {...}" for coll, or metrics lines for coll NULL. */
void upl_status(void *ctx, const char *coll, sbuf *out);

#endif
