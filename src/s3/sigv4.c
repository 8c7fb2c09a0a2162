/*
 * sigv4 — AWS Signature Version 4 request signing with OpenSSL.
 *
 * Guarantees (see include/sigv4.h for the rules it applies):
 *  - no secret (secret key, session token, derived keys) is ever written
 *    to an error message; the secret lives only in the signer, in memory
 *    wiped on free, and derived keys are wiped as soon as they are used;
 *  - a signer is never written after sigv4_signer_new, so signing from
 *    many threads at once needs no lock;
 *  - a signed request names every header it covers (SignedHeaders) and
 *    the caller learns which headers it must add; nothing is signed that
 *    the caller would not send.
 */
#include "sigv4.h"

#include "sigv4_i.h"

#include "errbuf.h"
#include "xalloc.h"
#include "hex.h"
#include "sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define AMZ_DATE_LEN 16 /* YYYYMMDDTHHMMSSZ */
#define KNOWN_FLAGS (SIGV4_NORMALIZE_PATH | SIGV4_CONTENT_SHA256 | SIGV4_UNSIGNED_TOKEN)

struct sigv4_signer {
	char *access_key_id;
	char *session_token; /* NULL if none; wiped on free */
	char *region;
	char *service;
	bool s3; /* service "s3": one encoding, no normalisation, content hash always */
	/* "AWS4" followed by the secret: the key of the first HMAC. Wiped on free. */
	unsigned char *key;
	size_t key_len;
};

enum { ADDED_MAX = 3 };

struct sigv4_signed {
	char *canonical_request;
	char *string_to_sign;
	char *authorization;
	char *signed_headers;
	char *canonical_path;
	char *canonical_query;
	char signature[2 * 32 + 1];
	char amz_date[AMZ_DATE_LEN + 1];
	char *payload_sha256;
	char *session_token; /* copy for the added header; wiped on free */
	struct sigv4_header added[ADDED_MAX];
	size_t n_added;
};

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "sigv4", __VA_ARGS__)

/* Reports an OpenSSL failure with the library's own reason. */
static int ossl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "no reason given";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	seterr(err, errlen, "OpenSSL %s failed: %s", what, reason);
	return -EIO;
}

/* RFC 9110 token characters: methods and header names. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* As sigv4_sha256_hex, but leaves OpenSSL's reason in its error queue. */
static int sha256_hex(const void *data, size_t len, char out[SIGV4_SHA256_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		out[0] = '\0';
		return -EIO;
	}
	hex_encode(md, 32, out);
	return 0;
}

int sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_SHA256_HEX_LEN + 1])
{
	int rc = sha256_hex(data, len, out);
	if (rc)
		ERR_clear_error(); /* nobody would read it: do not leave it to the next caller */
	return rc;
}

/* Printable ASCII without space and without the characters listed in bad. */
static bool plain_field(const char *s, const char *bad)
{
	if (!s || !*s)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr(bad, *p))
			return false;
	return true;
}

int sigv4_signer_new(const struct sigv4_credentials *cred, const char *region, const char *service,
		     sigv4_signer **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!cred) {
		seterr(err, errlen, "no credentials given");
		return -EINVAL;
	}
	/* These go into "Credential=AKID/date/region/service/aws4_request, ". */
	if (!plain_field(cred->access_key_id, "/,;=")) {
		seterr(err, errlen, "access key id is %s",
		       cred->access_key_id && *cred->access_key_id
			       ? "not printable ASCII without space, '/', ',', ';' or '='"
			       : "missing");
		return -EINVAL;
	}
	if (!cred->secret_access_key || !*cred->secret_access_key) {
		seterr(err, errlen, "secret access key is missing");
		return -EINVAL;
	}
	const char *token = cred->session_token && *cred->session_token ? cred->session_token : NULL;
	if (token && !plain_field(token, "")) {
		/* The token is a credential: say where, never what. */
		seterr(err, errlen,
		       "session token contains a character not allowed in an HTTP header");
		return -EINVAL;
	}
	if (!plain_field(region, "/,;=")) {
		seterr(err, errlen, "region \"%.64s\" is %s", region ? region : "",
		       region && *region ? "not printable ASCII without space, '/', ',', ';' or '='"
					 : "missing");
		return -EINVAL;
	}
	if (!plain_field(service, "/,;=")) {
		seterr(err, errlen, "service \"%.64s\" is %s", service ? service : "",
		       service && *service ? "not printable ASCII without space, '/', ',', ';' or '='"
					   : "missing");
		return -EINVAL;
	}

	sigv4_signer *s = xcalloc(1, sizeof(*s));
	s->access_key_id = xstrdup(cred->access_key_id);
	s->session_token = token ? xstrdup(token) : NULL;
	s->region = xstrdup(region);
	s->service = xstrdup(service);
	s->s3 = strcmp(service, "s3") == 0;
	size_t slen = strlen(cred->secret_access_key);
	s->key_len = 4 + slen;
	s->key = xcalloc(s->key_len, 1);
	memcpy(s->key, "AWS4", 4);
	memcpy(s->key + 4, cred->secret_access_key, slen);
	*out = s;
	return 0;
}

void sigv4_signer_free(sigv4_signer *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s->key, s->key_len);
	free(s->key);
	sigv4i_free_secret(s->session_token);
	free(s->access_key_id);
	free(s->region);
	free(s->service);
	free(s);
}

void sigv4_signed_free(sigv4_signed *r)
{
	if (!r)
		return;
	free(r->canonical_request);
	free(r->string_to_sign);
	free(r->authorization);
	free(r->signed_headers);
	free(r->canonical_path);
	free(r->canonical_query);
	free(r->payload_sha256);
	sigv4i_free_secret(r->session_token);
	free(r);
}

const char *sigv4_signed_authorization(const sigv4_signed *r)
{
	return r->authorization;
}

const struct sigv4_header *sigv4_signed_added_headers(const sigv4_signed *r, size_t *n)
{
	*n = r->n_added;
	return r->added;
}

const char *sigv4_signed_canonical_request(const sigv4_signed *r)
{
	return r->canonical_request;
}

const char *sigv4_signed_string_to_sign(const sigv4_signed *r)
{
	return r->string_to_sign;
}

const char *sigv4_signed_signature(const sigv4_signed *r)
{
	return r->signature;
}

const char *sigv4_signed_signed_headers(const sigv4_signed *r)
{
	return r->signed_headers;
}

const char *sigv4_signed_canonical_path(const sigv4_signed *r)
{
	return r->canonical_path;
}

const char *sigv4_signed_canonical_query(const sigv4_signed *r)
{
	return r->canonical_query;
}

const char *sigv4_signed_amz_date(const sigv4_signed *r)
{
	return r->amz_date;
}

static bool valid_payload_hash(const char *h)
{
	if (!h)
		return false;
	if (strcmp(h, SIGV4_UNSIGNED_PAYLOAD) == 0)
		return true;
	if (strlen(h) != SIGV4_SHA256_HEX_LEN)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool valid_token(const char *m)
{
	if (!m || !*m)
		return false;
	for (const char *p = m; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return false;
	return true;
}

static int hmac(const void *key, size_t key_len, const char *data, unsigned char out[32], char *err,
		size_t errlen)
{
	/* out may be key (the chain reuses one buffer): compute aside, then copy. */
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data), md,
		  &len) ||
	    len != 32) {
		OPENSSL_cleanse(md, sizeof(md));
		return ossl_err(err, errlen, "HMAC-SHA256");
	}
	memcpy(out, md, 32);
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

/*
 * signature = HMAC(kSigning, string_to_sign) where
 * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request").
 */
static int compute_signature(const sigv4_signer *s, const char *date, const char *sts, char out[65],
			     char *err, size_t errlen)
{
	unsigned char k[32], sig[32];
	int rc = hmac(s->key, s->key_len, date, k, err, errlen);
	if (rc == 0)
		rc = hmac(k, sizeof(k), s->region, k, err, errlen);
	if (rc == 0)
		rc = hmac(k, sizeof(k), s->service, k, err, errlen);
	if (rc == 0)
		rc = hmac(k, sizeof(k), "aws4_request", k, err, errlen);
	if (rc == 0)
		rc = hmac(k, sizeof(k), sts, sig, err, errlen);
	if (rc == 0)
		hex_encode(sig, sizeof(sig), out);
	OPENSSL_cleanse(k, sizeof(k));
	return rc;
}

static void add_output_header(sigv4_signed *r, const char *name, const char *value)
{
	r->added[r->n_added].name = name;
	r->added[r->n_added].value = value;
	r->n_added++;
}

/*
 * Builds the canonical header list: the caller's headers, checked
 * against what the signer itself would add, plus the signer's own.
 * On success *out and *n_out hold the merged, sorted list.
 */
static int build_headers(const sigv4_signer *s, const struct sigv4_request *req, sigv4_signed *r,
			 struct sigv4i_hdr **out, size_t *n_out, char *err, size_t errlen)
{
	size_t cap = req->n_headers + ADDED_MAX;
	struct sigv4i_hdr *h = xcalloc(cap, sizeof(*h));
	size_t n = 0;
	int rc = -EINVAL;
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *name = req->headers[i].name, *value = req->headers[i].value;
		if (!valid_token(name)) {
			seterr(err, errlen,
			       "header #%zu: name \"%.64s\" is empty or not an HTTP token", i,
			       name ? name : "");
			goto out;
		}
		if (!value) {
			seterr(err, errlen, "header %.64s has no value (NULL)", name);
			goto out;
		}
		h[n].name = xstrdup(name);
		for (char *p = h[n].name; *p; p++)
			*p = lower(*p);
		h[n].value = sigv4i_fold_value(value);
		h[n].order = i;
		n++;
		if (strcmp(h[n - 1].name, "authorization") == 0) {
			seterr(err, errlen, "the request already carries an Authorization header");
			goto out;
		}
	}
	n = sigv4i_hdr_merge(h, n);

	if (!sigv4i_hdr_find(h, n, "host")) {
		seterr(err, errlen, "no Host header: SigV4 requires the host to be signed");
		goto out;
	}

	size_t own = n; /* the signer's headers go after this */
	struct sigv4i_hdr *d = sigv4i_hdr_find(h, n, "x-amz-date");
	if (d && strcmp(d->value, r->amz_date) != 0) {
		seterr(err, errlen, "x-amz-date header \"%.64s\" differs from the signing time %s",
		       d->value, r->amz_date);
		goto out;
	}
	if (!d) {
		h[own].name = xstrdup("x-amz-date");
		h[own].value = xstrdup(r->amz_date);
		own++;
		add_output_header(r, "x-amz-date", r->amz_date);
	}

	struct sigv4i_hdr *c = sigv4i_hdr_find(h, n, "x-amz-content-sha256");
	if (c && strcmp(c->value, req->payload_sha256) != 0) {
		seterr(err, errlen,
		       "x-amz-content-sha256 header \"%.80s\" differs from the payload hash %s",
		       c->value, req->payload_sha256);
		goto out;
	}
	if (!c && (s->s3 || (req->flags & SIGV4_CONTENT_SHA256))) {
		h[own].name = xstrdup("x-amz-content-sha256");
		h[own].value = xstrdup(req->payload_sha256);
		own++;
		add_output_header(r, "x-amz-content-sha256", r->payload_sha256);
	}

	struct sigv4i_hdr *t = sigv4i_hdr_find(h, n, "x-amz-security-token");
	if (s->session_token) {
		if (t && (req->flags & SIGV4_UNSIGNED_TOKEN)) {
			seterr(err, errlen,
			       "x-amz-security-token is among the headers to sign but "
			       "SIGV4_UNSIGNED_TOKEN asks to leave it unsigned");
			goto out;
		}
		if (t && strcmp(t->value, s->session_token) != 0) {
			seterr(err, errlen,
			       "the x-amz-security-token header differs from the session token of "
			       "the "
			       "credentials");
			goto out;
		}
		if (!t) {
			r->session_token = xstrdup(s->session_token);
			add_output_header(r, "x-amz-security-token", r->session_token);
			if (!(req->flags & SIGV4_UNSIGNED_TOKEN)) {
				h[own].name = xstrdup("x-amz-security-token");
				h[own].value = xstrdup(s->session_token);
				own++;
			}
		}
	}
	n = own;
	/* The added names were absent, so the list stays free of duplicates. */
	n = sigv4i_hdr_merge(h, n);
	rc = 0;
out:
	if (rc) {
		sigv4i_hdrs_free(h, cap); /* unused slots are zero */
		return rc;
	}
	*out = h;
	*n_out = n;
	return 0;
}

/* Refuses a request that cannot be signed as it is, and says why. */
static int check_request(const sigv4_signer *s, const struct sigv4_request *req, char *err,
			 size_t errlen)
{
	if (!valid_token(req->method)) {
		seterr(err, errlen, "method \"%.32s\" is empty or not an HTTP token",
		       req->method ? req->method : "");
		return -EINVAL;
	}
	if (!req->path || req->path[0] != '/') {
		seterr(err, errlen, "path \"%.200s\" does not start with '/'",
		       req->path ? req->path : "");
		return -EINVAL;
	}
	if (req->n_headers && !req->headers) {
		seterr(err, errlen, "%zu headers announced but no header list given", req->n_headers);
		return -EINVAL;
	}
	if (!valid_payload_hash(req->payload_sha256)) {
		seterr(err, errlen,
		       "payload hash \"%.80s\" is neither 64 lower-case hex digits "
		       "nor " SIGV4_UNSIGNED_PAYLOAD,
		       req->payload_sha256 ? req->payload_sha256 : "");
		return -EINVAL;
	}
	if (req->flags & ~(unsigned)KNOWN_FLAGS) {
		seterr(err, errlen, "unknown flags 0x%x", req->flags & ~(unsigned)KNOWN_FLAGS);
		return -EINVAL;
	}
	if (s->s3 && (req->flags & SIGV4_NORMALIZE_PATH)) {
		seterr(err, errlen,
		       "path normalization asked for service s3, which signs paths verbatim");
		return -EINVAL;
	}
	return 0;
}

int sigv4_sign(const sigv4_signer *s, const struct sigv4_request *req, sigv4_signed **out,
	       char *err, size_t errlen)
{
	*out = NULL;
	int rc = check_request(s, req, err, errlen);
	if (rc)
		return rc;

	sigv4_signed *r = xcalloc(1, sizeof(*r));
	struct sigv4i_hdr *h = NULL;
	size_t n = 0;
	sbuf b = SBUF_INIT;
	rc = -EINVAL;

	struct tm tm;
	if (!gmtime_r(&req->when, &tm) ||
	    strftime(r->amz_date, sizeof(r->amz_date), "%Y%m%dT%H%M%SZ", &tm) != AMZ_DATE_LEN) {
		seterr(err, errlen, "signing time %lld cannot be written as YYYYMMDDTHHMMSSZ",
		       (long long)req->when);
		goto out;
	}
	r->payload_sha256 = xstrdup(req->payload_sha256);

	if (req->flags & SIGV4_NORMALIZE_PATH) {
		sbuf norm = SBUF_INIT;
		sigv4i_normalize_path(&norm, req->path);
		sigv4i_uri_encode_to(&b, norm.buf, norm.len, true);
		sbuf_free(&norm);
	} else {
		sigv4i_uri_encode_to(&b, req->path, strlen(req->path), true);
	}
	r->canonical_path = sbuf_detach(&b);

	rc = sigv4i_canonical_query(&b, req->query, err, errlen);
	if (rc)
		goto out;
	r->canonical_query = sbuf_detach(&b);

	rc = build_headers(s, req, r, &h, &n, err, errlen);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++)
		sbuf_addf(&b, "%s%s", i ? ";" : "", h[i].name);
	r->signed_headers = sbuf_detach(&b);

	sbuf_addf(&b, "%s\n%s\n%s\n", req->method, r->canonical_path, r->canonical_query);
	for (size_t i = 0; i < n; i++)
		sbuf_addf(&b, "%s:%s\n", h[i].name, h[i].value);
	sbuf_addf(&b, "\n%s\n%s", r->signed_headers, r->payload_sha256);
	r->canonical_request = sbuf_detach(&b);

	char creq_hash[SIGV4_SHA256_HEX_LEN + 1];
	if (sha256_hex(r->canonical_request, strlen(r->canonical_request), creq_hash)) {
		rc = ossl_err(err, errlen, "SHA-256 of the canonical request");
		goto out;
	}
	char date[9];
	memcpy(date, r->amz_date, 8);
	date[8] = '\0';
	sbuf scope = SBUF_INIT;
	sbuf_addf(&scope, "%s/%s/%s/aws4_request", date, s->region, s->service);
	sbuf_addf(&b, ALGORITHM "\n%s\n%s\n%s", r->amz_date, sbuf_str(&scope), creq_hash);
	r->string_to_sign = sbuf_detach(&b);

	rc = compute_signature(s, date, r->string_to_sign, r->signature, err, errlen);
	if (rc == 0) {
		sbuf_addf(&b, ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
			  s->access_key_id, sbuf_str(&scope), r->signed_headers, r->signature);
		r->authorization = sbuf_detach(&b);
	}
	sbuf_free(&scope);
out:
	if (h)
		sigv4i_hdrs_free(h, n);
	sbuf_free(&b);
	if (rc) {
		sigv4_signed_free(r);
		return rc;
	}
	*out = r;
	return 0;
}
