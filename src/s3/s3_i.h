/*
 * s3_i — what the files of the S3 client share and nobody else sees:
 * the client's struct, a request as the engine runs it, and the helpers
 * of s3_client.c, s3_request.c (the engine), s3_transfer.c, s3_error.c,
 * s3_object.c, s3_upload.c and s3_download.c. Internal functions carry the prefix s3i_;
 * the interface is s3.h.
 *
 * Ownership: a struct req and its struct resp belong to the thread that
 * runs the request; s3i_request() runs it to the end on that thread.
 */
#ifndef SNAPFS_S3_I_H
#define SNAPFS_S3_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "s3.h"
#include "sbuf.h"
#include "sigv4.h"

#define S3I_DEFAULT_PART_SIZE (16ull << 20)
#define S3I_DEFAULT_PARALLEL 4u
#define S3I_MAX_PARALLEL 64u
#define S3I_MAX_HEADERS 48
#define S3I_XMLBODY_MAX (16u << 20) /* a listing page of 1000 long keys fits easily */
#define S3I_META_MAX 32

struct s3_client {
	char *scheme;   /* "http" or "https" */
	char *hostport; /* endpoint host[:port] as sent in Host (default port left out) */
	char *bucket;
	char *region;
	bool path_style;
	char *ca_bundle; /* NULL: curl's default */
	char *user_agent;
	struct diag diag; /* the owner's sink (s3_config.diag); fixed once made */
	struct s3_retry retry;
	long connect_timeout_s;
	unsigned timeout_ms;      /* a call that moves little data, all attempts */
	unsigned slow_timeout_ms; /* Complete/Abort, DeleteObjects */
	long low_speed_limit;
	long low_speed_time_s;
	sigv4_signer *signer; /* immutable: signs from any thread */

	pthread_mutex_t mu;
	struct s3i_conn *idle; /* handles not in use; protected by mu */
	size_t n_idle, cap_idle;

	/*
	 * s3_client_cancel: cancel_end (monotonic seconds) is written before
	 * cancelled is set, and read only once cancelled was seen set.
	 */
	atomic_bool cancelled;
	double cancel_end;

	atomic_uint_fast64_t requests, retries, failures, bytes_sent, bytes_received;
};

/*
 * A pooled connection: an easy handle and the multi handle that runs it
 * (and keeps its connections open between requests). One thread at a
 * time, the one that took it from the pool.
 */
struct s3i_conn {
	CURL *h;
	CURLM *m;
};

enum body_kind { BODY_NONE, BODY_MEM, BODY_FD };

/* A request body: where it is, and its digests (computed once, before the first attempt). */
struct body {
	enum body_kind kind;
	const unsigned char *mem;
	int fd;
	uint64_t off, len;
	uint64_t pos;   /* bytes handed to curl in this attempt */
	int read_errno; /* set when pread failed or the file came up short */
	char sha256[SIGV4_SHA256_HEX_LEN + 1];
	unsigned char md5[16];
	char md5_b64[32];
};

enum sink_kind { SINK_MEM, SINK_FD };

/* Where a 2xx response body goes. Bodies of other answers go to resp.errbody. */
struct sink {
	enum sink_kind kind;
	sbuf mem;
	size_t max; /* for SINK_MEM */
	bool too_big;
	int fd;
	uint64_t base; /* SINK_FD: where in fd the body starts */
	uint64_t written;
	int write_errno;
	EVP_MD_CTX *sha; /* NULL, or hashes what is written */
};

struct resp {
	long status;
	char etag[S3_ETAG_MAX];
	bool have_length;
	uint64_t content_length;
	bool have_total;
	uint64_t total; /* from Content-Range: bytes a-b/TOTAL */
	char request_id[128];
	char last_modified[64];
	char content_type[128];
	struct s3_meta *meta;
	size_t n_meta;
	sbuf errbody;
};

typedef int check_fn(struct resp *rs, void *arg, struct s3_error *e);

struct req {
	const char *method;
	const char *detail;                        /* for messages; NULL or "part 3" */
	const char *key;                           /* NULL: a bucket-level request */
	const char *query;                         /* wire form, NULL: none */
	struct sigv4_header hdrs[S3I_MAX_HEADERS]; /* besides Host and what the signer adds */
	size_t n_hdrs;
	bool if_match;        /* a 404 then means "precondition failed" */
	bool not_modified_ok; /* If-None-Match on a GET: a 304 is an answer, not an error */
	struct body body;
	struct sink sink;
	bool want_meta;
	const atomic_bool *cancel[2];
	check_fn *check; /* NULL, or vets a 2xx answer (a 200 can carry an error) */
	void *check_arg;
	void *check_out; /* where check puts what it found, if anything */
	/* The server may work on it for long without answering (Complete, Abort, DeleteObjects). */
	bool slow;
	/* Total deadline of the call, all attempts; 0: by its kind (see s3.h). */
	unsigned timeout_ms;
	unsigned retries; /* out: attempts beyond the first */
	/* Set by s3i_request for its attempts. */
	double deadline;   /* monotonic seconds */
	bool after_cancel; /* started after s3_client_cancel: bounded, not cancelled */
};
/* ---- s3_client.c ---- */

/* Copies src (NULL: "") into dst[len], cut short if it does not fit. */
void s3i_copy(char *dst, size_t len, const char *src);
/* Copies an ETag without its quotes (S3 sends "abc", with quotes, in headers). */
void s3i_etag_copy(char dst[S3_ETAG_MAX], const char *src, size_t len);
/* A header value we may send: no control characters (no header injection). */
bool s3i_clean_value(const char *v);
/* A token of [A-Za-z0-9._-], not empty. */
bool s3i_clean_token(const char *v);
bool s3i_ends_with(const char *s, const char *suffix);
/* Appends s with &, < and > escaped, for an XML request body. */
void s3i_xml_escape(sbuf *b, const char *s);
/* Host header value for this client's requests. */
void s3i_host_of(const s3_client *c, sbuf *out);
/* The unencoded request path: what the signer takes (it encodes it, once, as S3 wants). */
void s3i_raw_path_of(const s3_client *c, const char *key, sbuf *out);
/* Borrows a handle from the pool (or makes one); s3i_conn_put gives it back. */
struct s3i_conn s3i_conn_get(s3_client *c);
void s3i_conn_put(s3_client *c, struct s3i_conn k);
/* Should rq stop now? Its own flags, or the client's cancel (unless rq began after it). */
bool s3i_cancelled(s3_client *c, const struct req *rq);

/* ---- s3_transfer.c ---- */

/* What the transfer callbacks of one attempt work on. */
struct s3i_xfer {
	struct req *rq;
	struct resp *rs;
};

/* Points h's header, write, read and seek callbacks at x (x outlives the transfer). */
void s3i_xfer_bind(CURL *h, struct s3i_xfer *x);
/* Empties a sink for a new attempt (and restarts its hash). */
void s3i_sink_reset(struct sink *s);
void s3i_resp_clear(struct resp *rs);
void s3i_add_header(struct req *rq, const char *name, const char *value);
/*
 * Computes the body's SHA-256 and MD5 in one pass. For a file, this is
 * the pass that decides what the server must receive.
 */
int s3i_body_digest(struct body *b, const atomic_bool *cancel, struct s3_error *e);

/* ---- s3_request.c: the request engine ---- */

/* Sets up rq for method on key, and fails early on a key S3 cannot take. */
int s3i_req_init(s3_client *c, struct req *rq, const char *method, const char *key,
		 struct s3_error *err);
void s3i_req_free(struct req *rq);
/* Appends "name=value" (value encoded) to a wire-form query. */
void s3i_query_add(sbuf *q, const char *name, const char *value);
void s3i_error_init(s3_client *c, const struct req *rq, struct s3_error *e);
/*
 * Runs rq with retries. On return rs holds the last answer (the caller
 * clears it) and, on failure, *err the last error.
 */
int s3i_request(s3_client *c, struct req *rq, struct resp *rs, struct s3_error *err);
/*
 * Runs rq (a POST set up but for its body: check, slow, timeout) with
 * the XML document xml as its body, its digests and Content-MD5.
 */
int s3i_request_xml(s3_client *c, struct req *rq, const sbuf *xml, struct resp *rs,
		    struct s3_error *err);
/* An invalid-argument failure found before any request was sent. */
int s3i_bad_arg(s3_client *c, const struct req *rq, struct s3_error *err, const char *why);

/* ---- s3_error.c ---- */

/* The errno a failed request returns. */
int s3i_error_rc(const struct s3_error *e);
/* Fills e from an HTTP answer that is not a success. */
void s3i_error_from_answer(struct req *rq, struct resp *rs, struct s3_error *e);

/* ---- s3_object.c ---- */

/* Adds the headers of a PUT's options; their storage (sb) lives as long as the request. */
int s3i_put_headers(s3_client *c, struct req *rq, const struct s3_put_opts *o, sbuf *sb,
		    size_t n_sb, struct s3_error *err);
/* One PUT of body; md5 (may be NULL) receives the MD5 of what was sent. */
int s3i_put_body(s3_client *c, const char *key, struct body *body, const struct s3_put_opts *o,
		 struct s3_put_result *res, unsigned char md5[16], struct s3_error *err);
/*
 * A GET with o's conditions and range into rq's sink (set up by the
 * caller); cancel2 (may be NULL) stops it too. 0, S3_NOT_MODIFIED, or
 * a negative errno.
 */
int s3i_get(s3_client *c, struct req *rq, struct resp *rs, const struct s3_get_opts *o,
	    const atomic_bool *cancel2, struct s3_error *err);
/* A 2xx answer whose body does not parse: not retried, reported as EPROTO. */
int s3i_protocol_error(s3_client *c, const struct req *rq, struct s3_error *err, const char *why);

#endif
