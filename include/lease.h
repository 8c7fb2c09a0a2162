/*
 * lease — a lease object and a compare-and-swap pointer object in S3.
 *
 * Knows keys, not collections: the caller says where the lease and the
 * pointer live. Both are small JSON objects written only by conditional
 * PUTs, so that hosts sharing a bucket agree through S3 alone.
 *
 * The lease (JSON: owner, token, expires, acquired_at, ttl):
 *  - absent: created with If-None-Match: *, token 1;
 *  - expired or released (expires 0): taken over with If-Match on the
 *    ETag just read, token + 1 (the fencing token grows with every
 *    takeover, and is written into every pointer its holder writes);
 *  - ours and live: renewed with If-Match, same token;
 *  - someone else's and live: not touched (-EBUSY, the holder reported).
 * A lost race (412) is re-read once: if the object then holds our owner
 * and token, the write was ours (a retried PUT whose first answer was
 * lost); otherwise the lease is busy.
 *
 * Our idea of "held" runs on the local monotonic clock from the moment
 * before the acquiring PUT was sent, for ttl seconds; the wall-clock
 * expires written in the object is what other hosts compare against.
 * lease_pointer_swap refuses to write unless more than margin seconds of
 * the lease are left, so a host whose lease expired never writes the
 * pointer. The client given to lease_new should have bounded retries
 * (see uploader.c) so that one PUT cannot outlast the margin.
 *
 * The pointer (JSON: generation, id, host, keys {db, manifest}, sha256,
 * size, etag, lease_token, written_at) moves only by If-Match on the ETag
 * read before the new snapshot was uploaded, or If-None-Match: * when
 * there was none, and its generation grows by one with each swap.
 *
 * Threads: a lease object is used by one thread at a time.
 * Errors: 0 or a negative errno, with *err filled for S3 failures.
 */
#ifndef SNAPFS_LEASE_H
#define SNAPFS_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "sbuf.h"

#define LEASE_OWNER_MAX 192 /* with NUL */
#define LEASE_HOST_MAX 65   /* with NUL: host ids are 1-64 characters */
#define LEASE_DOC_MAX 65536 /* lease and pointer documents are at most this big */

/* The content of a lease object. */
struct lease_state {
	char owner[LEASE_OWNER_MAX];
	uint64_t token;
	int64_t expires;     /* unix seconds; 0: released */
	int64_t acquired_at; /* unix seconds */
	uint64_t ttl;        /* seconds */
};

typedef struct lease lease;

/* key: the lease object; owner: unique to this process (host, pid, random). */
int lease_new(s3_client *c, const char *key, const char *owner, unsigned ttl_s, lease **out);
void lease_free(lease *l);

/*
 * Reads the lease object: *present false if there is none. etag (may be
 * NULL) receives its ETag. -EPROTO if the object is not a lease document.
 */
int lease_read(s3_client *c, const char *key, struct lease_state *st, char etag[S3_ETAG_MAX],
	       bool *present, struct s3_error *err);

/*
 * Takes (or renews) the lease, as described above. 0: held, with
 * lease_token() its token; -EBUSY: someone else holds it, *holder says
 * who and until when; another negative errno: S3 failed (err).
 */
int lease_acquire(lease *l, struct lease_state *holder, struct s3_error *err);
/* Seconds of the lease left by the local clock; <= 0 when not held. */
double lease_remaining(const lease *l);
uint64_t lease_token(const lease *l);
/*
 * Gives the lease up: If-Match on our last write, expires 0, the token
 * kept so that the next takeover increments it. A 412 (someone took it
 * after it expired) counts as released. Not held afterwards either way.
 */
int lease_release(lease *l, struct s3_error *err);

/* ---- the pointer ---- */

struct lease_pointer {
	uint64_t generation;
	uint64_t id; /* the writer's local snapshot id */
	char host[LEASE_HOST_MAX];
	char db_key[S3_KEY_MAX + 1];
	char manifest_key[S3_KEY_MAX + 1];
	char sha256[65];
	uint64_t size;
	char etag[S3_ETAG_MAX]; /* of the database object */
	uint64_t lease_token;
	int64_t written_at; /* unix seconds */
};

/* Appends the pointer document (one JSON object and a newline). */
void lease_pointer_json(const struct lease_pointer *p, sbuf *out);
/* Strict: -EINVAL unless every field is there with its type. */
int lease_pointer_parse(const char *json, struct lease_pointer *p);
/* GETs and parses the pointer: *present false (etag "") if there is none. */
int lease_pointer_get(s3_client *c, const char *key, struct lease_pointer *p,
		      char etag[S3_ETAG_MAX], bool *present, struct s3_error *err);
/*
 * Writes p (its lease_token set from l) to key if l is held with more
 * than margin_s seconds left (else -ENOLCK, nothing sent), with If-Match
 * if_match, or If-None-Match: * when if_match is NULL or "". -ESTALE if
 * the pointer moved (the condition failed and what is there is not our
 * write). new_etag (may be NULL) receives the new ETag.
 */
int lease_pointer_swap(lease *l, const char *key, struct lease_pointer *p, const char *if_match,
		       double margin_s, char new_etag[S3_ETAG_MAX], struct s3_error *err);

#endif
