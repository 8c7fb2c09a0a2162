/*
 * lease — a lease object and a compare-and-swap pointer object in S3.
 *
 * Knows keys, not collections: the caller says where the lease and the
 * pointer live. Both are small JSON objects written only by conditional
 * PUTs, so that hosts sharing a bucket agree through S3 alone.
 *
 * The lease (JSON: owner, token, expires, acquired_at, ttl):
 *  - absent: created with If-None-Match: *, token 1;
 *  - released (expires 0), expired, or left by an earlier process of
 *    ours (lease_set_self_prefix): taken over with If-Match on the ETag
 *    just read, token + 1 (the fencing token grows with every takeover,
 *    and is written into every pointer its holder writes);
 *  - ours: renewed with If-Match, same token;
 *  - someone else's and live: not touched (-EBUSY, the holder reported).
 * Expired means watched, not computed: another owner's lease counts as
 * expired only once this process has read it with the same ETag for its
 * ttl (and a margin of 2 s + 1 %) on its own monotonic clock. The
 * wall-clock expires in the document is for people and is never trusted
 * for a takeover, so a host whose clock is minutes off cannot take a
 * live lease: its holder renews (a new ETag) well within every ttl.
 * A lost race (412) is re-read once: if the object then holds our owner
 * and token, the write was ours (a retried PUT whose first answer was
 * lost); otherwise the lease is busy.
 *
 * Our idea of "held" runs on the local monotonic clock from the moment
 * before the acquiring PUT was sent, for ttl seconds; the wall-clock
 * expires written in the object is what other hosts compare against.
 * lease_pointer_swap refuses to write unless more than margin seconds of
 * the lease are left, and bounds its PUT by what is left of the lease,
 * so a host whose lease expired never writes the pointer.
 *
 * The lease belongs to the process, not to a thread: the uploader (to
 * swap the pointer) and the sweep (to delete behind it) each take a hold
 * with lease_hold; the lease is acquired by the first hold and released
 * when the last hold is dropped. Two threads of one process never
 * contend for it through S3 (same owner, same token), and neither waits
 * for the other's work.
 *
 * The pointer (JSON: generation, id, host, keys {db, manifest}, sha256,
 * size, etag, lease_token, written_at, history) moves only by If-Match
 * on the ETag read before the new snapshot was uploaded, or
 * If-None-Match: * when there was none, and its generation grows by one
 * with each swap. history lists the snapshots the pointer named before,
 * newest first ({generation, keys {db, manifest}, written_at}: when the
 * pointer came to name it); each swap puts the pointer it replaces at
 * its head (lease_history_next). It is what retention keeps and what
 * tells a snapshot once named from one no pointer ever named.
 *
 * Threads: a lease object may be used from any thread (its state is
 * protected by its own mutex, held across the S3 calls that change it).
 * Errors: 0 or a negative errno, with *err filled for S3 failures.
 */
#ifndef SNAPFS_LEASE_H
#define SNAPFS_LEASE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "sbuf.h"

#define LEASE_OWNER_MAX 192      /* with NUL */
#define LEASE_HOST_MAX 65        /* with NUL: host ids are 1-64 characters */
#define LEASE_DOC_MAX (1u << 20) /* lease and pointer documents are at most this big */
#define LEASE_HISTORY_MAX 128    /* entries a pointer's history keeps, at most */

/* The content of a lease object. */
struct lease_state {
	char owner[LEASE_OWNER_MAX];
	uint64_t token;
	int64_t expires;     /* unix seconds; 0: released */
	int64_t acquired_at; /* unix seconds */
	uint64_t ttl;        /* seconds */
};

/* Appends the lease document (one JSON object and a newline). */
void lease_state_json(const struct lease_state *st, sbuf *out);
/*
 * Strict: -EINVAL unless the document is one JSON object (no key twice)
 * with owner (fitting), token (>= 0) and expires, and acquired_at and ttl
 * (>= 0) integers if there; other keys are allowed.
 */
int lease_state_parse(const char *json, struct lease_state *st);

typedef struct lease lease;

/* key: the lease object; owner: unique to this process (host, pid, random). */
int lease_new(s3_client *c, const char *key, const char *owner, unsigned ttl_s, lease **out);
void lease_free(lease *l);

/*
 * Reads the lease object: *present false if there is none. etag (may be
 * NULL) receives its ETag. -EPROTO if the object is not a lease document
 * (err says so, with the key and the start of what is there; etag is
 * filled all the same, for a repair).
 */
int lease_read(s3_client *c, const char *key, struct lease_state *st, char etag[S3_ETAG_MAX],
	       bool *present, struct s3_error *err);

/*
 * Takes a hold on the lease for one user of this process: acquires it,
 * or renews it (same token), unless it is held with more than
 * min_left_s seconds left. 0: held, with lease_token() its token;
 * -EBUSY: someone else holds it, *holder (may be NULL) says who and
 * until when; another negative errno: S3 failed (err).
 */
int lease_hold(lease *l, double min_left_s, struct lease_state *holder, struct s3_error *err);
/*
 * Drops a hold. The last one gives the lease up: If-Match on our last
 * write, expires 0, the token kept so that the next takeover increments
 * it (a 412: someone took it after it expired, which counts as released).
 */
int lease_drop(lease *l, struct s3_error *err);
/*
 * As lease_hold, but never acquires: a hold only if the lease is held
 * now with more than min_left_s seconds left, else -ENOLCK (for users
 * that may work only while another user of this process holds it).
 */
int lease_hold_if_held(lease *l, double min_left_s);
/*
 * Owners that start with prefix are earlier processes of this one (the
 * caller knows they are gone: say, it holds a lock they held): their
 * lease is taken over at once. 0 or -ENOMEM.
 */
int lease_set_self_prefix(lease *l, const char *prefix);
/* Seconds of the lease left by the local clock; <= 0 when not held. */
double lease_remaining(lease *l);
uint64_t lease_token(lease *l);
/*
 * For a repair (snapfs-ctl): takes the lease by replacing whatever is at
 * its key, the object with ETag etag (say, one that is not a lease
 * document), with a lease of ours with token token; If-Match, so that a
 * concurrent change wins. Counts as a hold: lease_drop releases it.
 */
int lease_hold_over(lease *l, const char *etag, uint64_t token, struct s3_error *err);

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

/* A snapshot the pointer named before. */
struct lease_prev {
	uint64_t generation;
	char db_key[S3_KEY_MAX + 1];
	char manifest_key[S3_KEY_MAX + 1];
	int64_t written_at; /* when the pointer came to name it (unix seconds) */
};

/* A pointer's history, newest first (generations descending). */
struct lease_history {
	struct lease_prev *prev; /* malloc'd; lease_history_free */
	size_t n;
};

void lease_history_free(struct lease_history *h);
/*
 * The history the pointer that replaces cur carries: cur first, then
 * cur_h, at most max entries (max 0: none). 0 or -ENOMEM.
 */
int lease_history_next(const struct lease_pointer *cur, const struct lease_history *cur_h,
		       size_t max, struct lease_history *out);

/* The pointer document as a tree (json_decref it); h may be NULL (no history member). */
json_t *lease_pointer_to_json(const struct lease_pointer *p, const struct lease_history *h);
/* Appends the pointer document (one JSON object and a newline); h may be NULL. */
void lease_pointer_json(const struct lease_pointer *p, const struct lease_history *h, sbuf *out);
/*
 * Strict: -EINVAL unless the document is one JSON object (no key twice)
 * with every field there with its type, integers >= 0 but written_at,
 * strings fitting, keys not empty, sha256 64 lowercase hex digits (history
 * may be missing: older documents have none; other keys are allowed).
 * h (may be NULL) receives the history, which must then be strictly
 * older than the pointer and descending; free it with
 * lease_history_free. -ENOMEM if it cannot be kept.
 */
int lease_pointer_parse(const char *json, struct lease_pointer *p, struct lease_history *h);
/*
 * GETs and parses the pointer: *present false (etag "") if there is none.
 * -EPROTO if the object is not a pointer document: err says so, with the
 * key and the start of what is there.
 */
int lease_pointer_get(s3_client *c, const char *key, struct lease_pointer *p, struct lease_history *h,
		      char etag[S3_ETAG_MAX], bool *present, struct s3_error *err);
/*
 * Writes p (its lease_token set from l) and h (may be NULL) to key if l
 * is held with more than margin_s seconds left (else -ENOLCK, nothing
 * sent), with If-Match if_match, or If-None-Match: * when if_match is
 * NULL or "". The PUT must end before the lease does. -ESTALE if the
 * pointer moved (the condition failed and what is there is not our
 * write). new_etag (may be NULL) receives the new ETag.
 */
int lease_pointer_swap(lease *l, const char *key, struct lease_pointer *p,
		       const struct lease_history *h, const char *if_match, double margin_s,
		       char new_etag[S3_ETAG_MAX], struct s3_error *err);

#endif
