/*
 * sigv4 — AWS Signature Version 4 (AWS4-HMAC-SHA256) for HTTP headers.
 *
 * Knows nothing of S3 buckets, collections, FUSE or HTTP libraries: it
 * turns a request description into the canonical request, the string to
 * sign, the signature and the Authorization header value, and names the
 * headers (x-amz-date, x-amz-content-sha256, x-amz-security-token) the
 * caller must send along with it.
 *
 * Guarantees:
 *  - The secret access key (and the session token) never appear in an
 *    error message, a log line or any output but the header the caller
 *    asked for (x-amz-security-token). The signer keeps its copy of the
 *    secret in memory it wipes (OPENSSL_cleanse) when freed, and wipes
 *    every derived key after use.
 *  - A signer is immutable once made: any number of threads may sign
 *    with the same signer at once without locking.
 *  - What is signed is exactly what the caller passed plus the headers
 *    this module adds; a caller-given x-amz-date, x-amz-content-sha256
 *    or x-amz-security-token that contradicts the signing time, payload
 *    hash or credentials is refused rather than signed.
 *
 * Canonicalisation (the AWS rules):
 *  - header names are lower-cased; values are trimmed and every run of
 *    white space inside them (spaces, tabs, line breaks of a folded
 *    multi-line value) becomes one space; headers of the same name are
 *    joined with ',' in the order given; headers are sorted by name.
 *  - the query string (wire form, without '?') is split on '&', each
 *    name and value is percent-decoded then re-encoded with only the
 *    RFC 3986 unreserved set (A-Z a-z 0-9 - . _ ~) left bare, and the
 *    pairs are sorted by name, then value. "acl" signs as "acl=". '+' is
 *    a literal plus (it signs as %2B), not a space: encode spaces as %20.
 *  - the path is percent-encoded byte by byte, leaving the unreserved
 *    set and '/' bare. For S3 (service "s3") pass the raw path
 *    ("/bucket/my key$1") and send the result on the wire too: S3 wants
 *    one encoding and no normalisation. For other services pass the path
 *    as it appears on the request line; encoding it once more is what
 *    AWS calls double encoding, and SIGV4_NORMALIZE_PATH first removes
 *    "." and ".." segments and empty segments ("//").
 *
 * Memory: allocation failure aborts the process, as sbuf does. Functions
 * that can fail return 0 or a negative errno and write why into err.
 */
#ifndef SNAPFS_SIGV4_H
#define SNAPFS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SIGV4_SHA256_HEX_LEN 64
/* SHA-256 of the empty string: the payload hash of a request without a body. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Payload hash value for a body that is not signed (S3 over TLS only). */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

typedef struct sigv4_signer sigv4_signer; /* credentials + scope */
typedef struct sigv4_signed sigv4_signed; /* the result of signing one request */

struct sigv4_header {
	const char *name;
	const char *value;
};

struct sigv4_credentials {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token; /* NULL or "" if none */
};

enum sigv4_flags {
	/* Remove dot segments and empty segments from the path (not for S3). */
	SIGV4_NORMALIZE_PATH = 1u << 0,
	/* Add and sign x-amz-content-sha256 (always done for service "s3"). */
	SIGV4_CONTENT_SHA256 = 1u << 1,
	/*
	 * Hand back x-amz-security-token to send, but leave it out of the
	 * signature (services that add the token after signing, e.g. IoT).
	 */
	SIGV4_UNSIGNED_TOKEN = 1u << 2,
};

struct sigv4_request {
	const char *method;                 /* "GET", "PUT", ... as sent */
	const char *path;                   /* starts with '/'; see above */
	const char *query;                  /* wire form without '?'; NULL or "" if none */
	const struct sigv4_header *headers; /* must include Host; never Authorization */
	size_t n_headers;
	/*
	 * Lower-case hex SHA-256 of the body (SIGV4_EMPTY_SHA256 if none),
	 * or SIGV4_UNSIGNED_PAYLOAD.
	 */
	const char *payload_sha256;
	time_t when;    /* signing time, UTC seconds; becomes x-amz-date */
	unsigned flags; /* enum sigv4_flags */
};

/*
 * Makes a signer for one set of credentials and one scope (region,
 * service). Copies everything it is given. -EINVAL, with the reason in
 * err, if a field is missing or would break the Authorization header.
 */
int sigv4_signer_new(const struct sigv4_credentials *cred, const char *region, const char *service,
		     sigv4_signer **out, char *err, size_t errlen);
void sigv4_signer_free(sigv4_signer *s);

/*
 * Signs req. On success *out holds the result; free it with
 * sigv4_signed_free. -EINVAL with the reason in err if the request
 * cannot be signed as given (no Host, a bad header name, a malformed
 * percent-escape in the query, a contradicting x-amz-* header, ...);
 * -EIO if OpenSSL fails (its error text is in err).
 */
int sigv4_sign(const sigv4_signer *s, const struct sigv4_request *req, sigv4_signed **out,
	       char *err, size_t errlen);
void sigv4_signed_free(sigv4_signed *r);

/*
 * The value of the Authorization header:
 * "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...".
 */
const char *sigv4_signed_authorization(const sigv4_signed *r);
/*
 * Headers the caller must send besides its own and Authorization, in
 * the order x-amz-date, x-amz-content-sha256, x-amz-security-token;
 * each is present only if the caller did not pass it already. Names are
 * lower-case. Valid until sigv4_signed_free.
 */
const struct sigv4_header *sigv4_signed_added_headers(const sigv4_signed *r, size_t *n);
/* The intermediate results, for tests and for debugging a SignatureDoesNotMatch. */
const char *sigv4_signed_canonical_request(const sigv4_signed *r);
const char *sigv4_signed_string_to_sign(const sigv4_signed *r);
const char *sigv4_signed_signature(const sigv4_signed *r);      /* 64 hex digits */
const char *sigv4_signed_signed_headers(const sigv4_signed *r); /* "host;x-amz-date" */
/* Canonical path and query; for S3 both are also correct to send on the wire. */
const char *sigv4_signed_canonical_path(const sigv4_signed *r);
const char *sigv4_signed_canonical_query(const sigv4_signed *r);
/* The x-amz-date value, "YYYYMMDDTHHMMSSZ". */
const char *sigv4_signed_amz_date(const sigv4_signed *r);

/*
 * Percent-encodes s, leaving only RFC 3986 unreserved characters (and
 * '/' if keep_slash) bare: object keys in paths (keep_slash true) and
 * query values (false). Returns a malloc'd string.
 */
char *sigv4_uri_encode(const char *s, bool keep_slash);

/*
 * Writes the lower-case hex SHA-256 of data and a NUL into out. 0, or
 * -EIO if OpenSSL fails.
 */
int sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_SHA256_HEX_LEN + 1]);

#endif
