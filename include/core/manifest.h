/*
 * manifest — MANIFEST.json of a sealed snapshot.
 *
 * Fields (format 1): format, snapfs_version, collection, id, snapshot
 * (the directory name), created (RFC 3339 UTC), created_unix, file,
 * size, sha256, page_size, page_count, integrity_check, ledger_max,
 * tables {name: rows}, deltas [{seq, name, sha256}]. Integers are
 * signed 64-bit (jansson's): an id, size or page count past INT64_MAX is
 * neither written nor read.
 */
#ifndef SNAPFS_MANIFEST_H
#define SNAPFS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sbuf.h"

struct manifest_table {
	const char *name;
	int64_t rows;
};

struct manifest_delta {
	int64_t seq; /* ledger seq */
	const char *name;
	const char *sha256;
};

struct manifest {
	const char *collection;
	uint64_t id;
	time_t created;
	const char *file; /* "NAME.sqlite3" */
	uint64_t size;
	const char *sha256; /* hex */
	uint64_t page_size;
	uint64_t page_count;
	const char *integrity; /* "ok" for a published snapshot */
	int64_t ledger_max;
	const struct manifest_table *tables;
	size_t ntables;
	const struct manifest_delta *deltas;
	size_t ndeltas;
};

/* Appends the manifest as pretty-printed JSON with a final newline. */
void manifest_write_json(const struct manifest *m, sbuf *out);

/*
 * Reads the fields a verifier needs from a manifest this module wrote:
 * size, sha256 (hex, 65 bytes) and id. Returns 0, or -EINVAL if the
 * document is not strict JSON (a key given twice included) or lacks them.
 * Out-parameters may be NULL.
 */
int manifest_read_basic(const char *json, uint64_t *size, char sha256[65], uint64_t *id);
/*
 * The database's file name ("file") of a manifest manifest_read_basic
 * accepts, into file[cap]: 0, or -EINVAL if it is missing, not a string
 * or does not fit.
 */
int manifest_read_file(const char *json, char *file, size_t cap);

#endif
