/*
 * s3 — a small S3 client over libcurl: objects, listings, multipart
 * uploads and a parallel, verified, retrying file upload.
 *
 * Knows nothing of collections, snapshots or FUSE: it moves bytes
 * between files or buffers and keys of one bucket.
 *
 * Guarantees:
 *  - Integrity on the wire: every request body is sent with its SHA-256
 *    (signed, as x-amz-content-sha256) and its MD5 (Content-MD5), so the
 *    server refuses a body damaged in transit (BadDigest /
 *    XAmzContentSHA256Mismatch, which are retried: the body is re-read).
 *    s3_upload_file HEADs the object when done and fails unless its size
 *    and ETag are the ones the upload produced.
 *  - Bodies stream from the file descriptor: memory use does not grow
 *    with the object (one read buffer per request in flight).
 *  - Transient failures (resets and other transport errors, 5xx,
 *    429/SlowDown, RequestTimeout, a transfer that stalls mid-body) are
 *    retried with capped exponential backoff and full jitter, every
 *    request (and every part) on its own, re-signed and re-read each
 *    attempt. Errors that cannot go away (403, 404, 412, most 4xx, a full
 *    or over-quota server) fail at once.
 *  - Every call ends by a total deadline, all attempts included, sized to
 *    its work: timeout_s for calls that move little data, slow_timeout_s
 *    for calls the server may work on for long without sending a byte
 *    (CompleteMultipartUpload, AbortMultipartUpload, DeleteObjects), and
 *    timeout_s plus the time to move the body at S3_MIN_RATE for PUTs,
 *    parts and downloads into a file. Only those body transfers are also
 *    cut off by the low-speed limit: a server that thinks before it
 *    answers is waited out, never abandoned and asked again. A call whose
 *    deadline passed fails with -ETIMEDOUT and says which deadline.
 *  - s3_client_cancel() ends every call in flight within 100 ms.
 *  - Secrets (secret key, session token) are never in an error, a log
 *    line or a URL; credentials reach the client only through s3_config.
 *  - Conditional PUTs: If-None-Match: * and If-Match: ETAG. If-Match is
 *    sent without quotes, which radosgw requires and AWS accepts.
 *
 * Threads: an s3_client may be used by any number of threads at once
 * (its configuration and signer never change; the pool of curl handles
 * and the counters are protected by the client). Each call runs on the
 * calling thread, except s3_upload_file, which runs its parts on a few
 * threads of its own and returns when they are done.
 *
 * Errors: functions return 0 or a negative errno and fill *err (may be
 * NULL): -ENOENT (404), -EACCES (403), -ESTALE (a condition failed: 412,
 * or 404 for an If-Match PUT), -ECANCELED (the cancel flag was set, or
 * the client was cancelled), -ETIMEDOUT (the call's deadline passed),
 * -EINVAL (bad arguments), -EPROTO (an answer that does not parse),
 * another -errno for a local file, -EIO for every other S3 or transport
 * failure. ETags handed out are without their quotes.
 *
 * The process must not die of SIGPIPE when a peer resets a connection:
 * curl sends with MSG_NOSIGNAL, but callers that use other sockets
 * should ignore SIGPIPE anyway.
 */
#ifndef SNAPFS_S3_H
#define SNAPFS_S3_H

#include "diag.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct s3_client s3_client;

#define S3_KEY_MAX 1024 /* bytes, as S3 allows */
#define S3_ETAG_MAX 128 /* with NUL; S3 ETags are 32 hex digits, "-N" for multipart */
#define S3_MIN_PART_SIZE (5ull << 20)
#define S3_MAX_PART_SIZE (5ull << 30)
#define S3_MAX_PARTS 10000u
/* A body transfer's deadline allows this rate (bytes/s) on top of timeout_s. */
#define S3_MIN_RATE (64u << 10)

enum s3_addressing {
	S3_ADDRESSING_AUTO = 0, /* path-style for IP addresses, localhost and dotted buckets */
	S3_ADDRESSING_PATH,     /* http://host/bucket/key */
	S3_ADDRESSING_VIRTUAL,  /* http://bucket.host/key */
};

struct s3_retry {
	unsigned max_attempts; /* per request or part, the first included; 0: 8 */
	unsigned base_ms; /* backoff before retry n is random(0, min(cap, base * 2^n)); 0: 200 */
	unsigned cap_ms;  /* 0: 20000 */
};

struct s3_config {
	const char *endpoint; /* "http://127.0.0.1:7480", "https://host"; NULL: https://s3.REGION.amazonaws.com */
	const char *region; /* NULL: us-east-1 */
	const char *bucket; /* required */
	enum s3_addressing addressing;
	const char *access_key_id;     /* required */
	const char *secret_access_key; /* required; copied into the signer only */
	const char *session_token;     /* NULL if none */
	const char *ca_bundle;         /* NULL: the system's CAs */
	struct s3_retry retry;
	unsigned connect_timeout_s; /* 0: 10 */
	/* Total deadline, all attempts, of a call that moves little data; 0: 60. */
	unsigned timeout_s;
	/* ... of Complete/AbortMultipartUpload and DeleteObjects; 0: 600. */
	unsigned slow_timeout_s;
	/*
	 * A body transfer (PUT, part, GET into a file) slower than
	 * low_speed_limit bytes/s for low_speed_time_s is abandoned (and
	 * retried). Other calls are bounded by their deadline only.
	 */
	unsigned low_speed_limit;  /* 0: 1024 */
	unsigned low_speed_time_s; /* 0: 30 */
	const char *user_agent;    /* NULL: "snapfs/VERSION" */
	/* Where retries, each request (debug) and clean-ups that failed are reported; {0}: nowhere. */
	struct diag diag;
};

/*
 * What went wrong, for one request. Only the fields that apply are set:
 * http_status and code for an S3 answer, curl_code and transport for a
 * transport failure, sys_errno for a local one. Never contains a secret.
 */
struct s3_error {
	char method[8];  /* "PUT", "GET", ... */
	char detail[48]; /* "part 3", "CompleteMultipartUpload", ... or "" */
	char bucket[64];
	char key[S3_KEY_MAX + 1]; /* "" for bucket-level requests */
	int http_status;          /* 0 if no HTTP answer */
	char code[64];            /* S3 error Code; from the status if there was no error body */
	char message[512];
	char request_id[128];
	int curl_code;            /* CURLcode, 0 if none */
	char transport[256];      /* curl's error text, or what was wrong with the answer */
	int sys_errno;            /* a local failure (reading the file, ...), 0 if none */
	unsigned attempts;        /* tries made */
	bool precondition_failed; /* 412, or a 404 answering an If-Match PUT */
	unsigned deadline_ms;     /* when the call's deadline passed: that deadline, else 0 */
};

/* "PUT s3://bucket/key: 403 SignatureDoesNotMatch: The request ... (request id X, 3 attempts)". */
void s3_error_format(const struct s3_error *e, char *buf, size_t len);
/* Would trying the same request again possibly succeed? (The retry rule, exposed for tests.) */
bool s3_error_retryable(const struct s3_error *e);
/* Did the server say it is full or the account over quota (QuotaExceeded, 507, ...)? */
bool s3_error_no_space(const struct s3_error *e);

/* Counters since the client was made; read without locking, may be slightly behind. */
struct s3_stats {
	uint64_t requests; /* attempts sent, retries included */
	uint64_t retries;
	uint64_t failures;   /* requests that failed for good */
	uint64_t bytes_sent; /* request bodies sent in full */
	uint64_t bytes_received;
};

/* Copies cfg. No network access. -EINVAL with the reason in err if cfg is unusable. */
int s3_client_new(const struct s3_config *cfg, s3_client **out, char *err, size_t errlen);
/* Only once no call on c is running. */
void s3_client_free(s3_client *c);
/*
 * For a stop: every call in flight on c, and every retry of it, ends
 * within 100 ms with -ECANCELED. Calls started afterwards still run
 * but end at the latest linger_ms after this call: the clean-up a
 * stopping caller still wants (abort an upload, release a lease) gets
 * that long and no longer. Cannot be undone; safe from any thread.
 */
void s3_client_cancel(s3_client *c, unsigned linger_ms);
void s3_client_stats(s3_client *c, struct s3_stats *out);
const char *s3_client_bucket(const s3_client *c);
/* The URL a request for key goes to (bucket-level if key is NULL): malloc'd. */
char *s3_client_url(const s3_client *c, const char *key);

/* User metadata: x-amz-meta-NAME: VALUE (NAME lower-case on the way back). */
struct s3_meta {
	const char *name;
	const char *value;
};

struct s3_put_opts {
	bool if_none_match; /* If-None-Match: *: create only */
	/*
	 * With if_none_match: an object already there with the same size and
	 * the MD5 of these bytes as its ETag counts as written (a repeated
	 * upload of the same bytes). Only unencrypted objects have such ETags.
	 */
	bool identical_ok;
	const char *if_match; /* ETag (quotes optional): replace only that version; NULL: none */
	const char *content_type; /* NULL: none sent */
	const struct s3_meta *meta;
	size_t n_meta;
	const atomic_bool *cancel; /* NULL, or set to abandon the request */
	unsigned timeout_ms;       /* total deadline; 0: the client's for the call */
};

struct s3_put_result {
	char etag[S3_ETAG_MAX];
	unsigned retries;
};

int s3_put_buf(s3_client *c, const char *key, const void *data, size_t len,
	       const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err);
/* PUTs bytes [off, off+len) of fd, read with pread (fd's offset is not used). */
int s3_put_file(s3_client *c, const char *key, int fd, uint64_t off, uint64_t len,
		const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err);

struct s3_object_info {
	uint64_t size;   /* of the whole object */
	uint64_t length; /* of the body received (the range for a ranged GET; 0 for HEAD) */
	char etag[S3_ETAG_MAX];
	time_t last_modified;
	char content_type[128];
	struct s3_meta *meta; /* malloc'd; s3_object_info_free */
	size_t n_meta;
	unsigned retries;
};
void s3_object_info_free(struct s3_object_info *info);

/* A byte range, both ends included ("bytes=first-last"). */
struct s3_range {
	uint64_t first;
	uint64_t last;
};

int s3_head(s3_client *c, const char *key, struct s3_object_info *info, struct s3_error *err);

/* Conditions and limits of a GET (s3_get_buf_opts, s3_get_fd_opts). */
struct s3_get_opts {
	const struct s3_range *range; /* NULL: the whole object */
	const char *if_match;         /* ETag: that version only, else -ESTALE */
	/* ETag: if the object is still that version, nothing is received (S3_NOT_MODIFIED). */
	const char *if_none_match;
	const atomic_bool *cancel; /* NULL, or set to abandon the request */
	unsigned timeout_ms;       /* total deadline; 0: the client's for the call */
	uint64_t offset;           /* s3_get_fd_opts: where in fd the body goes (pwrite) */
	bool keep_size;            /* s3_get_fd_opts: do not truncate fd after the body */
};
#define S3_NOT_MODIFIED 1 /* the answer to If-None-Match on an unchanged object (304) */

/*
 * GETs key into a malloc'd buffer of at most max bytes (-EFBIG beyond);
 * *data is NUL-terminated for convenience. o may be NULL. 0, or
 * S3_NOT_MODIFIED (nothing received: *data NULL, info holds the ETag), or a
 * negative errno (-ESTALE: If-Match failed; -ENOENT: no such key).
 */
int s3_get_buf_opts(s3_client *c, const char *key, const struct s3_get_opts *o, size_t max,
		    void **data, size_t *len, struct s3_object_info *info, struct s3_error *err);
/*
 * GETs key into fd at o->offset (0 if o is NULL) with pwrite, then,
 * unless o->keep_size, truncates fd to the end of what was received.
 * sha256_hex (NULL, or 65 bytes) receives the SHA-256 of the bytes
 * received. A retry starts over. Results as s3_get_buf_opts.
 */
int s3_get_fd_opts(s3_client *c, const char *key, const struct s3_get_opts *o, int fd,
		   char *sha256_hex, struct s3_object_info *info, struct s3_error *err);
/*
 * GETs key (or range) into a malloc'd buffer of at most max bytes
 * (-EFBIG beyond). *data is NUL-terminated for convenience.
 */
int s3_get_buf(s3_client *c, const char *key, const struct s3_range *range, size_t max, void **data,
	       size_t *len, struct s3_object_info *info, struct s3_error *err);
/*
 * GETs key (or range) into fd from offset 0 (pwrite), then truncates fd
 * to what was received. sha256_hex (NULL, or 65 bytes) receives the
 * SHA-256 of the bytes written. A retry starts over.
 */
int s3_get_fd(s3_client *c, const char *key, const struct s3_range *range, int fd, char *sha256_hex,
	      struct s3_object_info *info, struct s3_error *err);
/* DELETE; a missing key is success, as S3 answers. */
int s3_delete(s3_client *c, const char *key, struct s3_error *err);

#define S3_DELETE_MAX 1000u /* keys per DeleteObjects */
/*
 * DeleteObjects: n (1..1000) keys in one request. A missing key counts
 * as deleted. -EIO if some could not be deleted: *failed (may be NULL)
 * says how many, and err names the first (its key and the server's
 * code); any other failure of the request leaves all n counted failed.
 */
int s3_delete_objects(s3_client *c, const char *const *keys, size_t n, size_t *failed,
		      struct s3_error *err);

struct s3_object {
	const char *key;
	const char *etag; /* "" for a common prefix */
	uint64_t size;
	time_t last_modified;
	bool is_prefix; /* a CommonPrefixes entry (when a delimiter is given) */
};
/* Called once per entry, in key order; non-zero stops the listing and is returned. */
typedef int s3_list_fn(void *arg, const struct s3_object *o);
/* ListObjectsV2 under prefix (NULL: all), following continuation tokens. */
int s3_list(s3_client *c, const char *prefix, const char *delimiter, s3_list_fn *fn, void *arg,
	    struct s3_error *err);
/* The same into an array (strings owned by it): s3_objects_free. */
int s3_list_all(s3_client *c, const char *prefix, struct s3_object **out, size_t *n,
		struct s3_error *err);
void s3_objects_free(struct s3_object *o, size_t n);

/* ---- multipart ---- */

struct s3_part {
	unsigned number; /* 1..10000 */
	char etag[S3_ETAG_MAX];
	uint64_t size;
};

/* opts: content_type and meta are used; conditions are not. *upload_id is malloc'd. */
int s3_multipart_create(s3_client *c, const char *key, const struct s3_put_opts *opts,
			char **upload_id, struct s3_error *err);
/* Uploads bytes [off, off+len) of fd as part number; part receives its number, ETag and size. */
int s3_multipart_upload_part(s3_client *c, const char *key, const char *upload_id, unsigned number,
			     int fd, uint64_t off, uint64_t len, const atomic_bool *cancel,
			     struct s3_part *part, unsigned *retries, struct s3_error *err);
/*
 * Completes with parts (ascending numbers). etag receives the ETag the
 * server answered, which may be "" (radosgw): HEAD the object for it.
 */
int s3_multipart_complete(s3_client *c, const char *key, const char *upload_id,
			  const struct s3_part *parts, size_t n, char etag[S3_ETAG_MAX],
			  struct s3_error *err);
/* A missing upload (NoSuchUpload) is success: it is gone either way. */
int s3_multipart_abort(s3_client *c, const char *key, const char *upload_id, struct s3_error *err);

/* A multipart upload in progress. */
struct s3_multipart {
	char *key;
	char *upload_id;
	time_t initiated;
};
/* Multipart uploads in progress under prefix (NULL: all). Free with s3_multipart_list_free. */
int s3_multipart_list(s3_client *c, const char *prefix, struct s3_multipart **out, size_t *n,
		      struct s3_error *err);
void s3_multipart_list_free(struct s3_multipart *u, size_t n);

/* ---- whole-file upload ---- */

/* Called with the bytes acknowledged so far; from upload threads, one call at a time. */
typedef void s3_progress_fn(void *arg, uint64_t done, uint64_t total);

struct s3_upload_opts {
	uint64_t part_size; /* 0: 16 MiB; at least 5 MiB; raised if the file needs > 10,000 parts */
	unsigned parallel;  /* parts in flight; 0: 4 */
	uint64_t multipart_threshold; /* files up to this size go in one PUT; 0: part_size */
	const char *content_type;
	const struct s3_meta *meta;
	size_t n_meta;
	s3_progress_fn *progress; /* NULL: none */
	void *progress_arg;
	const atomic_bool *cancel; /* NULL, or set to abandon the upload (it is then aborted) */
	/*
	 * A single PUT is sent with If-None-Match: * and identical_ok (see
	 * s3_put_opts): it never replaces other bytes under key. A multipart
	 * upload cannot be made create-only everywhere (radosgw 16 ignores
	 * If-None-Match on CompleteMultipartUpload): its key must be unique.
	 */
	bool create_only;
	/*
	 * Called with the upload id once a multipart upload is created, before
	 * any part is sent: the caller's housekeeping can then tell this upload
	 * (its own, in flight) from uploads left by a crash.
	 */
	void (*started)(void *arg, const char *upload_id);
	void *started_arg;
};

struct s3_upload_result {
	uint64_t size;
	char etag[S3_ETAG_MAX]; /* from the HEAD that confirmed the upload */
	unsigned parts;         /* 0 for a single PUT */
	unsigned retries;       /* over every request of the upload */
	/* The ETag is the MD5 (or multipart MD5-of-MD5s) of what we sent: false with SSE-KMS/SSE-C. */
	bool etag_is_md5;
};

/*
 * Uploads the file at path to key: one PUT up to the threshold, else a
 * multipart upload with parallel parts, aborted if it fails (after a
 * cancel, within the client's linger: an abort that cannot be made then
 * leaves the upload for the caller's housekeeping). Then HEADs
 * key and fails with -EIO unless size and ETag match. The file must not
 * change meanwhile (if it does, the server sees a digest mismatch and
 * the upload fails).
 */
int s3_upload_file(s3_client *c, const char *key, const char *path, const struct s3_upload_opts *opts,
		   struct s3_upload_result *res, struct s3_error *err);

/* ---- whole-file download ---- */

struct s3_download_opts {
	uint64_t part_size; /* bytes per ranged GET; 0: 16 MiB; at least 1 MiB */
	unsigned parallel;  /* ranges in flight; 0: 4 */
	/* ETag the object must have; NULL: the one its HEAD names. Every range is asked for with
	 * If-Match on it, so the file holds one version or the download fails (-ESTALE). */
	const char *if_match;
	uint64_t max_size;        /* 0: none; a larger object fails (-EFBIG) before any GET */
	s3_progress_fn *progress; /* bytes received and hashed in order so far; NULL: none */
	void *progress_arg;
	const atomic_bool *cancel; /* NULL, or set to abandon the download */
};

struct s3_download_result {
	uint64_t size;
	char etag[S3_ETAG_MAX];
	char sha256[65]; /* of the bytes written to the file, in order */
	unsigned parts;  /* ranged GETs */
	unsigned retries;
};

/*
 * Downloads key into fd (from offset 0, then truncated to the object's
 * size): a HEAD for size and ETag, then parallel ranged GETs written in
 * place with pwrite, hashed in order as they land (the hash reads the
 * file back while later ranges are still coming). On failure the file's
 * content is undefined; the caller removes it.
 */
int s3_download_file(s3_client *c, const char *key, int fd, const struct s3_download_opts *opts,
		     struct s3_download_result *res, struct s3_error *err);

#endif
