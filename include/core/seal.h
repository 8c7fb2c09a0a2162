/*
 * seal — turns a closed live database into a sealed snapshot in staging.
 *
 * Precondition: the connection that wrote live_path was checkpointed and
 * closed successfully (livedb_close returned 0) and nothing writes it
 * until seal_make returns. seal_make then, in staging_dir:
 *   1. copies live_path to NAME.sqlite3, computes the SHA-256 of the
 *      copy as it lands (on a second thread), and fsyncs it;
 *   2. opens the copy with a fresh read-only connection (pages mapped,
 *      with bounded residency: sqlh_open_mapped) and runs
 *      PRAGMA integrity_check; counts rows per table;
 *   3. writes MANIFEST.json and fsyncs it and staging_dir.
 * Any failure leaves nothing to publish and says why in err; a stop
 * (req->cancel) ends the copy or the check within a chunk or a few
 * thousand SQLite steps. Files are created owner-read-only (0400); the
 * store gives them the STORE's modes when it publishes them. Publishing
 * (rename into snapshots/) is the store's job: store_publish().
 */
#ifndef SNAPFS_SEAL_H
#define SNAPFS_SEAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "manifest.h"

struct seal_request {
	const char *collection;
	uint64_t id;
	const char *live_path;
	const char *staging_dir;
	time_t created;
	int64_t ledger_max;
	const struct manifest_delta *deltas; /* the deltas new in this snapshot */
	size_t ndeltas;
	const atomic_bool *cancel; /* may be NULL; once true, seal_make stops with -ECANCELED */
};

struct seal_result {
	uint64_t size;
	char sha256[65];
	double copy_ms;  /* copy + hash */
	double check_ms; /* integrity check + row counts */
};

int seal_make(const struct seal_request *req, struct seal_result *res, char *err, size_t len);

#endif
