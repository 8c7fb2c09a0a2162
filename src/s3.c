/*
 * s3 — the S3 client: one request engine, the operations on top of it,
 * and the parallel file upload.
 *
 * The engine (request()) turns a struct req into signed HTTP attempts on
 * a curl easy handle borrowed from the client's pool, and retries what
 * s3_error_retryable() says may succeed. Each attempt is signed afresh
 * (a retry may come minutes later) and reads its body again from the
 * start: from memory or with pread from the file, never from a copy, so
 * memory stays flat whatever the size.
 *
 * Ownership: a curl handle is used by one thread at a time, the one
 * that took it from the pool (c->idle, protected by c->mu); curl keeps
 * the handle's connections open between requests. Everything else in
 * the client is read-only after s3_client_new, or an atomic counter.
 */
#include "s3.h"

#include "errbuf.h"
#include "log.h"
#include "s3_xml.h"
#include "sbuf.h"
#include "sigv4.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#ifndef SNAPFS_VERSION
#define SNAPFS_VERSION "0"
#endif

#define DEFAULT_REGION "us-east-1"
#define DEFAULT_PART_SIZE (16ull << 20)
#define DEFAULT_PARALLEL 4u
#define MAX_PARALLEL 64u
#define MAX_HEADERS 48
#define ERRBODY_MAX (64 * 1024)   /* error documents are small; keep no more */
#define XMLBODY_MAX (16u << 20)   /* a listing page of 1000 long keys fits easily */
#define HASH_BUF (1u << 20)
#define IO_BUF (512 * 1024)

struct s3_client {
	char *scheme;    /* "http" or "https" */
	char *hostport;  /* endpoint host[:port] as sent in Host (default port left out) */
	char *bucket;
	char *region;
	bool path_style;
	char *ca_bundle;  /* NULL: curl's default */
	char *user_agent;
	struct s3_retry retry;
	long connect_timeout_s;
	long low_speed_limit;
	long low_speed_time_s;
	sigv4_signer *signer; /* immutable: signs from any thread */

	pthread_mutex_t mu;
	CURL **idle; /* handles not in use; protected by mu */
	size_t n_idle, cap_idle;

	atomic_uint_fast64_t requests, retries, failures, bytes_sent, bytes_received;
};

/* ---- small helpers ------------------------------------------------------ */

static void oom(void)
{
	fprintf(stderr, "snapfs: out of memory\n");
	abort();
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

static char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		oom();
	return d;
}

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "s3", __VA_ARGS__)

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* Copies an ETag without its quotes (S3 sends "abc", with quotes, in headers). */
static void etag_copy(char dst[S3_ETAG_MAX], const char *src, size_t len)
{
	while (len && (src[len - 1] == ' ' || src[len - 1] == '\t'))
		len--;
	if (len >= 2 && src[0] == '"' && src[len - 1] == '"') {
		src++;
		len -= 2;
	}
	if (len >= S3_ETAG_MAX)
		len = S3_ETAG_MAX - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* A header value we may send: no control characters (no header injection). */
static bool clean_value(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

static bool clean_token(const char *v)
{
	if (!*v)
		return false;
	for (; *v; v++) {
		unsigned char ch = (unsigned char)*v;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

/* ---- configuration and URLs --------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Is host[:port] an IP address (which cannot take a bucket sub-domain)? */
static bool is_ip_literal(const char *hostport)
{
	if (hostport[0] == '[')
		return true;
	for (const char *p = hostport; *p && *p != ':'; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.'))
			return false;
	return true;
}

/* A bucket name that can be the first label of a host name (and of a TLS certificate). */
static bool dns_bucket(const char *b, bool https)
{
	size_t n = strlen(b);
	if (n < 3 || n > 63)
		return false;
	for (const char *p = b; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
			  (*p == '.' && !https);
		if (!ok)
			return false;
	}
	return b[0] != '-' && b[n - 1] != '-';
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Splits endpoint into scheme and Host value; refuses what S3 endpoints never have. */
static int parse_endpoint(s3_client *c, const char *endpoint, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
	int rc = -EINVAL;
	if (!u)
		oom();
	if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK) {
		seterr(err, errlen, "endpoint \"%s\" is not a URL (want http://host:port or https://host)",
		       endpoint);
		goto out;
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_HOST, &host, 0);
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		seterr(err, errlen, "endpoint \"%s\": scheme must be http or https", endpoint);
		goto out;
	}
	if (!host || !*host || user || query || (path && strcmp(path, "/") != 0 && *path)) {
		seterr(err, errlen,
		       "endpoint \"%s\": want scheme://host[:port] with no path, query or user name",
		       endpoint);
		goto out;
	}
	bool https = strcmp(scheme, "https") == 0;
	bool default_port = !port || strcmp(port, https ? "443" : "80") == 0;
	sbuf hp = SBUF_INIT;
	sbuf_adds(&hp, host);
	if (!default_port)
		sbuf_addf(&hp, ":%s", port);
	for (char *p = hp.buf; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	c->scheme = xstrdup(scheme);
	c->hostport = sbuf_detach(&hp);
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_free(user);
	curl_url_cleanup(u);
	return rc;
}

int s3_client_new(const struct s3_config *cfg, s3_client **out, char *err, size_t errlen)
{
	*out = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		seterr(err, errlen, "curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
		return -EIO;
	}
	if (!cfg->bucket || !*cfg->bucket || !clean_token(cfg->bucket) || strlen(cfg->bucket) > 63) {
		seterr(err, errlen, "bucket name \"%.70s\" is missing or not valid",
		       cfg->bucket ? cfg->bucket : "");
		return -EINVAL;
	}
	if (!cfg->access_key_id || !*cfg->access_key_id || !cfg->secret_access_key ||
	    !*cfg->secret_access_key) {
		seterr(err, errlen, "no credentials given (access key id and secret access key)");
		return -EINVAL;
	}
	const char *region = cfg->region && *cfg->region ? cfg->region : DEFAULT_REGION;
	if (!clean_token(region)) {
		seterr(err, errlen, "region \"%.40s\" is not valid", region);
		return -EINVAL;
	}

	s3_client *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->bucket = xstrdup(cfg->bucket);
	c->region = xstrdup(region);
	int rc;
	if (cfg->endpoint && *cfg->endpoint) {
		rc = parse_endpoint(c, cfg->endpoint, err, errlen);
	} else {
		sbuf e = SBUF_INIT;
		sbuf_addf(&e, "https://s3.%s.amazonaws.com", region);
		rc = parse_endpoint(c, sbuf_str(&e), err, errlen);
		sbuf_free(&e);
	}
	if (rc)
		goto fail;

	bool https = strcmp(c->scheme, "https") == 0;
	switch (cfg->addressing) {
	case S3_ADDRESSING_PATH:
		c->path_style = true;
		break;
	case S3_ADDRESSING_VIRTUAL:
		if (is_ip_literal(c->hostport) || !dns_bucket(c->bucket, https)) {
			seterr(err, errlen, "virtual-host addressing needs a host name endpoint and a "
			       "DNS-compatible bucket name (\"%s\" at %s)", c->bucket, c->hostport);
			rc = -EINVAL;
			goto fail;
		}
		c->path_style = false;
		break;
	default:
		/*
		 * Virtual-host only where it is known to work: AWS itself. Every
		 * self-hosted server (radosgw, MinIO) is reachable path-style,
		 * most are not set up for bucket sub-domains.
		 */
		c->path_style = !(ends_with(c->hostport, ".amazonaws.com") && dns_bucket(c->bucket, https));
		break;
	}

	struct sigv4_credentials cred = {
		.access_key_id = cfg->access_key_id,
		.secret_access_key = cfg->secret_access_key,
		.session_token = cfg->session_token,
	};
	char serr[256];
	rc = sigv4_signer_new(&cred, c->region, "s3", &c->signer, serr, sizeof(serr));
	if (rc) {
		seterr(err, errlen, "%s", serr);
		goto fail;
	}
	c->ca_bundle = cfg->ca_bundle && *cfg->ca_bundle ? xstrdup(cfg->ca_bundle) : NULL;
	c->user_agent = xstrdup(cfg->user_agent && *cfg->user_agent ? cfg->user_agent
								    : "snapfs/" SNAPFS_VERSION);
	c->retry.max_attempts = cfg->retry.max_attempts ? cfg->retry.max_attempts : 8;
	c->retry.base_ms = cfg->retry.base_ms ? cfg->retry.base_ms : 200;
	c->retry.cap_ms = cfg->retry.cap_ms ? cfg->retry.cap_ms : 20000;
	c->connect_timeout_s = cfg->connect_timeout_s ? (long)cfg->connect_timeout_s : 10;
	c->low_speed_limit = cfg->low_speed_limit ? (long)cfg->low_speed_limit : 1024;
	c->low_speed_time_s = cfg->low_speed_time_s ? (long)cfg->low_speed_time_s : 30;
	*out = c;
	return 0;
fail:
	s3_client_free(c);
	return rc;
}

void s3_client_free(s3_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	free(c->idle);
	sigv4_signer_free(c->signer);
	pthread_mutex_destroy(&c->mu);
	free(c->scheme);
	free(c->hostport);
	free(c->bucket);
	free(c->region);
	free(c->ca_bundle);
	free(c->user_agent);
	free(c);
}

void s3_client_stats(s3_client *c, struct s3_stats *out)
{
	out->requests = atomic_load(&c->requests);
	out->retries = atomic_load(&c->retries);
	out->failures = atomic_load(&c->failures);
	out->bytes_sent = atomic_load(&c->bytes_sent);
	out->bytes_received = atomic_load(&c->bytes_received);
}

const char *s3_client_bucket(const s3_client *c)
{
	return c->bucket;
}

/* Host header value for this client's requests. */
static void host_of(const s3_client *c, sbuf *out)
{
	if (!c->path_style)
		sbuf_addf(out, "%s.", c->bucket);
	sbuf_adds(out, c->hostport);
}

/* The unencoded request path: what the signer takes (it encodes it, once, as S3 wants). */
static void raw_path_of(const s3_client *c, const char *key, sbuf *out)
{
	if (c->path_style)
		sbuf_addf(out, "/%s", c->bucket);
	if (key) {
		sbuf_adds(out, "/");
		sbuf_adds(out, key);
	} else if (!c->path_style) {
		sbuf_adds(out, "/");
	}
}

char *s3_client_url(const s3_client *c, const char *key)
{
	sbuf raw = SBUF_INIT, url = SBUF_INIT;
	raw_path_of(c, key, &raw);
	char *enc = sigv4_uri_encode(sbuf_str(&raw), true);
	sbuf_addf(&url, "%s://", c->scheme);
	host_of(c, &url);
	sbuf_adds(&url, enc);
	free(enc);
	sbuf_free(&raw);
	return sbuf_detach(&url);
}

/* ---- curl handle pool --------------------------------------------------- */

static CURL *handle_get(s3_client *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->n_idle)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->mu);
	if (!h && !(h = curl_easy_init()))
		oom();
	return h;
}

static void handle_put(s3_client *c, CURL *h)
{
	/* reset drops the options (and our pointers in them) but keeps the connections. */
	curl_easy_reset(h);
	pthread_mutex_lock(&c->mu);
	if (c->n_idle == c->cap_idle) {
		size_t cap = c->cap_idle ? c->cap_idle * 2 : 8;
		CURL **n = realloc(c->idle, cap * sizeof(*n));
		if (!n)
			oom();
		c->idle = n;
		c->cap_idle = cap;
	}
	c->idle[c->n_idle++] = h;
	pthread_mutex_unlock(&c->mu);
}

/* ---- errors ------------------------------------------------------------- */

static const char *status_code_name(int status)
{
	switch (status) {
	case 301: return "PermanentRedirect";
	case 304: return "NotModified";
	case 400: return "BadRequest";
	case 403: return "Forbidden";
	case 404: return "NotFound";
	case 405: return "MethodNotAllowed";
	case 409: return "Conflict";
	case 411: return "MissingContentLength";
	case 412: return "PreconditionFailed";
	case 416: return "InvalidRange";
	case 429: return "TooManyRequests";
	case 500: return "InternalError";
	case 501: return "NotImplemented";
	case 502: return "BadGateway";
	case 503: return "ServiceUnavailable";
	case 504: return "GatewayTimeout";
	default: return "HTTPError";
	}
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

bool s3_error_retryable(const struct s3_error *e)
{
	static const char *const never[] = {
		"AccessDenied", "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "SignatureDoesNotMatch",
		"InvalidAccessKeyId", "PreconditionFailed", "InvalidArgument", "InvalidRequest",
		"EntityTooSmall", "EntityTooLarge", "InvalidPart", "InvalidPartOrder", "InvalidBucketName",
		"AllAccessDisabled", "AccountProblem", "InvalidObjectState", "NotImplemented",
		"MethodNotAllowed", "ExpiredToken", "InvalidToken", "MalformedXML", NULL};
	static const char *const transient[] = {
		"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
		"TooManyRequests", "TooManyRequestsException", "RequestLimitExceeded",
		"BandwidthLimitExceeded", "InternalError", "ServiceUnavailable", "OperationAborted",
		"ConditionalRequestConflict",
		/* The body was damaged on the way: sending it again is the cure. */
		"BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", NULL};

	if (e->sys_errno)
		return false;
	if (e->curl_code) {
		switch ((CURLcode)e->curl_code) {
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_WEIRD_SERVER_REPLY:
		case CURLE_PARTIAL_FILE:
		case CURLE_UPLOAD_FAILED:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_FAIL_REWIND:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_AGAIN:
			return true;
		default:
			return false;
		}
	}
	if (e->precondition_failed)
		return false;
	if (e->code[0] && in_list(e->code, never))
		return false;
	if (e->code[0] && in_list(e->code, transient))
		return true;
	return e->http_status == 429 || (e->http_status >= 500 && e->http_status != 501);
}

void s3_error_format(const struct s3_error *e, char *buf, size_t len)
{
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "%s s3://%s/%s", e->method[0] ? e->method : "?", e->bucket, e->key);
	if (e->detail[0])
		sbuf_addf(&b, " (%s)", e->detail);
	sbuf_adds(&b, ": ");
	if (e->sys_errno)
		sbuf_addf(&b, "%s%s%s", e->transport, e->transport[0] ? ": " : "", strerror(e->sys_errno));
	else if (e->curl_code)
		sbuf_addf(&b, "transport error: %s", e->transport[0] ? e->transport
						      : curl_easy_strerror((CURLcode)e->curl_code));
	else if (e->http_status || e->code[0]) {
		sbuf_addf(&b, "%d %s", e->http_status, e->code[0] ? e->code : status_code_name(e->http_status));
		if (e->message[0])
			sbuf_addf(&b, ": %s", e->message);
		if (e->transport[0])
			sbuf_addf(&b, " [%s]", e->transport);
	} else
		sbuf_adds(&b, e->transport[0] ? e->transport : "failed");
	if (e->request_id[0] || e->attempts > 1) {
		sbuf_adds(&b, " (");
		if (e->request_id[0])
			sbuf_addf(&b, "request id %s%s", e->request_id, e->attempts > 1 ? ", " : "");
		if (e->attempts > 1)
			sbuf_addf(&b, "%u attempts", e->attempts);
		sbuf_adds(&b, ")");
	}
	copy_str(buf, len, sbuf_str(&b));
	sbuf_free(&b);
}

/* The errno a failed request returns. */
static int error_rc(const struct s3_error *e)
{
	if (e->sys_errno)
		return -e->sys_errno;
	if (e->precondition_failed)
		return -ESTALE;
	if (e->curl_code)
		return -EIO;
	if (e->http_status == 404)
		return -ENOENT;
	if (e->http_status == 403)
		return -EACCES;
	return -EIO;
}

/* ---- the request engine ------------------------------------------------- */

enum body_kind { BODY_NONE, BODY_MEM, BODY_FD };

/* A request body: where it is, and its digests (computed once, before the first attempt). */
struct body {
	enum body_kind kind;
	const unsigned char *mem;
	int fd;
	uint64_t off, len;
	uint64_t pos; /* bytes handed to curl in this attempt */
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
	const char *detail; /* for messages; NULL or "part 3" */
	const char *key;    /* NULL: a bucket-level request */
	const char *query;  /* wire form, NULL: none */
	struct sigv4_header hdrs[MAX_HEADERS]; /* besides Host and what the signer adds */
	size_t n_hdrs;
	bool if_match; /* a 404 then means "precondition failed" */
	struct body body;
	struct sink sink;
	bool want_meta;
	const atomic_bool *cancel[2];
	check_fn *check; /* NULL, or vets a 2xx answer (a 200 can carry an error) */
	bool slow_answer; /* the server may think for minutes, sending a byte now and then */
	void *check_arg;
	unsigned retries; /* out: attempts beyond the first */
};

static bool cancelled(const struct req *rq)
{
	for (int i = 0; i < 2; i++)
		if (rq->cancel[i] && atomic_load(rq->cancel[i]))
			return true;
	return false;
}

static void resp_clear(struct resp *rs)
{
	for (size_t i = 0; i < rs->n_meta; i++) {
		free((char *)rs->meta[i].name);
		free((char *)rs->meta[i].value);
	}
	free(rs->meta);
	sbuf_free(&rs->errbody);
	memset(rs, 0, sizeof(*rs));
}

static void add_header(struct req *rq, const char *name, const char *value)
{
	if (rq->n_hdrs == MAX_HEADERS) {
		fprintf(stderr, "snapfs: s3: too many request headers\n");
		abort();
	}
	rq->hdrs[rq->n_hdrs].name = name;
	rq->hdrs[rq->n_hdrs].value = value;
	rq->n_hdrs++;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
	struct body *b = ud;
	size_t want = size * nitems;
	uint64_t left = b->len - b->pos;
	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (b->kind == BODY_MEM) {
		memcpy(buf, b->mem + b->pos, want);
		b->pos += want;
		return want;
	}
	ssize_t n;
	do
		n = pread(b->fd, buf, want, (off_t)(b->off + b->pos));
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		b->read_errno = n < 0 ? errno : ENODATA; /* 0: the file is shorter than it was */
		return CURL_READFUNC_ABORT;
	}
	b->pos += (uint64_t)n;
	return (size_t)n;
}

/* curl rewinds the body when it must send it again on the same attempt. */
static int seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct body *b = ud;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > b->len)
		return CURL_SEEKFUNC_FAIL;
	b->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

struct xfer {
	struct req *rq;
	struct resp *rs;
};

static size_t write_cb(char *data, size_t size, size_t nitems, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * nitems;
	if (x->rs->status < 200 || x->rs->status >= 300) {
		if (x->rs->errbody.len + len <= ERRBODY_MAX)
			sbuf_add(&x->rs->errbody, data, len);
		return len;
	}
	struct sink *s = &x->rq->sink;
	if (s->kind == SINK_MEM) {
		if (s->mem.len + len > s->max) {
			s->too_big = true;
			return 0;
		}
		sbuf_add(&s->mem, data, len);
	} else {
		size_t done = 0;
		while (done < len) {
			ssize_t n = pwrite(s->fd, data + done, len - done, (off_t)(s->written + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				s->write_errno = n < 0 ? errno : EIO;
				return 0;
			}
			done += (size_t)n;
		}
		if (s->sha)
			EVP_DigestUpdate(s->sha, data, len);
	}
	s->written += len;
	return len;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
		      size_t *vlen)
{
	size_t n = strlen(name);
	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return false;
	const char *v = line + n + 1, *e = line + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*value = v;
	*vlen = (size_t)(e - v);
	return true;
}

static bool parse_u64n(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *ud)
{
	struct xfer *x = ud;
	struct resp *rs = x->rs;
	size_t len = size * nitems;
	const char *v;
	size_t vlen;

	if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A new status line (after a 100 Continue, say): forget the headers before it. */
		const char *sp = memchr(line, ' ', len);
		long status = 0;
		if (sp && (size_t)(line + len - sp) >= 4)
			status = strtol(sp + 1, NULL, 10);
		resp_clear(rs);
		rs->status = status;
		return len;
	}
	if (header_is(line, len, "etag", &v, &vlen)) {
		etag_copy(rs->etag, v, vlen);
	} else if (header_is(line, len, "content-length", &v, &vlen)) {
		rs->have_length = parse_u64n(v, vlen, &rs->content_length);
	} else if (header_is(line, len, "content-range", &v, &vlen)) {
		const char *slash = memchr(v, '/', vlen);
		if (slash)
			rs->have_total = parse_u64n(slash + 1, (size_t)(v + vlen - slash - 1), &rs->total);
	} else if (header_is(line, len, "x-amz-request-id", &v, &vlen)) {
		snprintf(rs->request_id, sizeof(rs->request_id), "%.*s", (int)vlen, v);
	} else if (header_is(line, len, "last-modified", &v, &vlen)) {
		snprintf(rs->last_modified, sizeof(rs->last_modified), "%.*s", (int)vlen, v);
	} else if (header_is(line, len, "content-type", &v, &vlen)) {
		snprintf(rs->content_type, sizeof(rs->content_type), "%.*s", (int)vlen, v);
	} else if (x->rq->want_meta && len > 11 && strncasecmp(line, "x-amz-meta-", 11) == 0) {
		const char *colon = memchr(line, ':', len);
		if (colon && colon > line + 11) {
			sbuf name = SBUF_INIT, val = SBUF_INIT;
			sbuf_add(&name, line + 11, (size_t)(colon - line - 11));
			for (char *p = name.buf; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
			v = colon + 1;
			const char *e = line + len;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			sbuf_add(&val, v, (size_t)(e - v));
			struct s3_meta *m = realloc(rs->meta, (rs->n_meta + 1) * sizeof(*m));
			if (!m)
				oom();
			rs->meta = m;
			rs->meta[rs->n_meta].name = sbuf_detach(&name);
			rs->meta[rs->n_meta].value = sbuf_detach(&val);
			rs->n_meta++;
		}
	}
	return len;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	struct xfer *x = ud;
	return cancelled(x->rq) ? 1 : 0;
}

/* MD5 as base64 for Content-MD5. */
static void md5_b64(const unsigned char md5[16], char out[32])
{
	EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * Computes the body's SHA-256 and MD5 in one pass (pread, 1 MiB at a
 * time). For a file, this is the pass that decides what the server
 * must receive: if the file changes before the body is sent, the server
 * refuses it.
 */
static int body_digest(struct body *b, const atomic_bool *cancel, struct s3_error *e)
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	unsigned char *buf = NULL;
	int rc = 0;
	if (!sha || !md5 || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(md5, EVP_md5(), NULL)) {
		copy_str(e->transport, sizeof(e->transport), "OpenSSL cannot hash (SHA-256/MD5)");
		rc = -EIO;
		goto out;
	}
	if (b->kind == BODY_MEM) {
		EVP_DigestUpdate(sha, b->mem, b->len);
		EVP_DigestUpdate(md5, b->mem, b->len);
	} else if (b->kind == BODY_FD) {
		buf = xcalloc(1, HASH_BUF);
		uint64_t done = 0;
		while (done < b->len) {
			if (cancel && atomic_load(cancel)) {
				rc = -ECANCELED;
				goto out;
			}
			size_t want = b->len - done < HASH_BUF ? (size_t)(b->len - done) : HASH_BUF;
			ssize_t n = pread(b->fd, buf, want, (off_t)(b->off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				e->sys_errno = n < 0 ? errno : ENODATA;
				copy_str(e->transport, sizeof(e->transport),
					 n < 0 ? "reading the file" : "the file is shorter than the range to send");
				rc = -e->sys_errno;
				goto out;
			}
			EVP_DigestUpdate(sha, buf, (size_t)n);
			EVP_DigestUpdate(md5, buf, (size_t)n);
			done += (uint64_t)n;
		}
	}
	unsigned char d[32];
	unsigned int dl = 0;
	EVP_DigestFinal_ex(sha, d, &dl);
	hex(d, 32, b->sha256);
	EVP_DigestFinal_ex(md5, b->md5, &dl);
	md5_b64(b->md5, b->md5_b64);
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	return rc;
}

/*
 * What an error code means, for servers (radosgw) that send the code
 * without a <Message>. Ours, so marked by the caller as not the server's.
 */
static const char *code_hint(const char *code)
{
	static const char *const hints[][2] = {
		{"SignatureDoesNotMatch", "the server computed another signature for this request: "
					  "check the secret access key"},
		{"InvalidAccessKeyId", "the server does not know this access key id"},
		{"AccessDenied", "these credentials may not do this"},
		{"NoSuchBucket", "the bucket does not exist"},
		{"NoSuchKey", "the key does not exist"},
		{"NoSuchUpload", "the multipart upload does not exist (completed or aborted)"},
		{"PreconditionFailed", "the object's current version does not satisfy If-Match / If-None-Match"},
		{"RequestTimeTooSkewed", "the local clock is too far from the server's"},
		{"EntityTooSmall", "a part other than the last is smaller than the server's minimum"},
		{"InvalidPart", "a part is missing or its ETag does not match"},
		{"BadDigest", "the body did not match its Content-MD5"},
		{"XAmzContentSHA256Mismatch", "the body did not match its x-amz-content-sha256"},
		{"SlowDown", "the server asks to slow down"},
	};
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strcmp(code, hints[i][0]) == 0)
			return hints[i][1];
	return NULL;
}

/* Fills e from an HTTP answer that is not a success. */
static void error_from_answer(struct req *rq, struct resp *rs, struct s3_error *e)
{
	e->http_status = (int)rs->status;
	copy_str(e->request_id, sizeof(e->request_id), rs->request_id);
	struct s3xml_error x;
	if (rs->errbody.len && s3xml_parse_error(rs->errbody.buf, rs->errbody.len, &x) == 0) {
		copy_str(e->code, sizeof(e->code), x.code);
		copy_str(e->message, sizeof(e->message), x.message);
		if (x.request_id[0])
			copy_str(e->request_id, sizeof(e->request_id), x.request_id);
	}
	if (!e->code[0])
		copy_str(e->code, sizeof(e->code), status_code_name(e->http_status));
	if (!e->message[0]) {
		const char *hint = code_hint(e->code);
		if (hint)
			snprintf(e->message, sizeof(e->message), "(%s)", hint);
		else if (!rs->errbody.len && strcmp(rq->method, "HEAD") == 0 && rs->status == 404)
			copy_str(e->message, sizeof(e->message),
				 "(no such key or no such bucket: a HEAD answer has no error document)");
		else if (!rs->errbody.len)
			copy_str(e->message, sizeof(e->message), "(no error document in the answer)");
	}
	e->precondition_failed = rs->status == 412 || (rq->if_match && rs->status == 404);
}

/* One attempt. 0 on a 2xx answer; else e says why and the result is negative. */
static int attempt(s3_client *c, CURL *h, struct req *rq, struct resp *rs, struct s3_error *e)
{
	sbuf host = SBUF_INIT, raw = SBUF_INIT, url = SBUF_INIT, line = SBUF_INIT;
	struct curl_slist *list = NULL;
	sigv4_signed *sig = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char serr[256];
	int rc;

	host_of(c, &host);
	raw_path_of(c, rq->key, &raw);
	struct sigv4_header hdrs[MAX_HEADERS + 1];
	hdrs[0].name = "host";
	hdrs[0].value = sbuf_str(&host);
	memcpy(hdrs + 1, rq->hdrs, rq->n_hdrs * sizeof(hdrs[0]));
	struct sigv4_request sr = {
		.method = rq->method,
		.path = sbuf_str(&raw),
		.query = rq->query,
		.headers = hdrs,
		.n_headers = rq->n_hdrs + 1,
		.payload_sha256 = rq->body.kind == BODY_NONE ? SIGV4_EMPTY_SHA256 : rq->body.sha256,
		.when = time(NULL),
		.flags = SIGV4_CONTENT_SHA256,
	};
	rc = sigv4_sign(c->signer, &sr, &sig, serr, sizeof(serr));
	if (rc) {
		copy_str(e->transport, sizeof(e->transport), serr);
		goto out;
	}
	sbuf_addf(&url, "%s://%s%s", c->scheme, sbuf_str(&host), sigv4_signed_canonical_path(sig));
	if (*sigv4_signed_canonical_query(sig))
		sbuf_addf(&url, "?%s", sigv4_signed_canonical_query(sig));

	for (size_t i = 0; i < rq->n_hdrs + 1; i++) {
		sbuf_reset(&line);
		sbuf_addf(&line, "%s: %s", i == 0 ? "Host" : hdrs[i].name, hdrs[i].value);
		list = curl_slist_append(list, sbuf_str(&line));
	}
	size_t n_added;
	const struct sigv4_header *added = sigv4_signed_added_headers(sig, &n_added);
	for (size_t i = 0; i < n_added; i++) {
		sbuf_reset(&line);
		sbuf_addf(&line, "%s: %s", added[i].name, added[i].value);
		list = curl_slist_append(list, sbuf_str(&line));
	}
	sbuf_reset(&line);
	sbuf_addf(&line, "Authorization: %s", sigv4_signed_authorization(sig));
	list = curl_slist_append(list, sbuf_str(&line));
	/* curl would add "Accept: * / *"; S3 ignores it, and fewer unsigned headers is better. */
	list = curl_slist_append(list, "Accept:");
	if (!list)
		oom();

	struct xfer x = {rq, rs};
	curl_easy_setopt(h, CURLOPT_URL, sbuf_str(&url));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* S3 keys are not paths: no dot-segment removal */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, rq->slow_answer ? 1L : c->low_speed_limit);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
			 rq->slow_answer && c->low_speed_time_s < 600 ? 600L : c->low_speed_time_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)IO_BUF);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)IO_BUF);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
	if (c->ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
	if (strcmp(rq->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body.len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, &rq->body);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, &rq->body);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(rq->method, "POST") == 0 ? "POST" : NULL);
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
				 strcmp(rq->method, "GET") == 0 ? NULL : rq->method);
	}

	atomic_fetch_add(&c->requests, 1);
	CURLcode cc = curl_easy_perform(h);
	curl_off_t dl = 0;
	curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &dl);
	atomic_fetch_add(&c->bytes_received, (uint64_t)(dl > 0 ? dl : 0));
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	rs->status = status;

	if (cc == CURLE_ABORTED_BY_CALLBACK && cancelled(rq)) {
		copy_str(e->transport, sizeof(e->transport), "cancelled");
		rc = -ECANCELED;
	} else if (cc == CURLE_READ_ERROR && rq->body.read_errno) {
		e->sys_errno = rq->body.read_errno;
		copy_str(e->transport, sizeof(e->transport),
			 e->sys_errno == ENODATA ? "the file became shorter while being sent"
						 : "reading the file to send");
		rc = -EIO;
	} else if (cc == CURLE_WRITE_ERROR && rq->sink.write_errno) {
		e->sys_errno = rq->sink.write_errno;
		copy_str(e->transport, sizeof(e->transport), "writing what was received");
		rc = -EIO;
	} else if (cc == CURLE_WRITE_ERROR && rq->sink.too_big) {
		e->sys_errno = EFBIG;
		copy_str(e->transport, sizeof(e->transport), "the answer is larger than the buffer allowed");
		rc = -EFBIG;
	} else if (cc != CURLE_OK) {
		e->curl_code = (int)cc;
		copy_str(e->transport, sizeof(e->transport), errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = -EIO;
	} else if (status < 200 || status >= 300) {
		error_from_answer(rq, rs, e);
		rc = -EIO;
	} else {
		rc = 0;
		if (rq->body.kind != BODY_NONE)
			atomic_fetch_add(&c->bytes_sent, rq->body.len);
	}
	log_debug("s3: %s %s%s%s -> %ld%s%s", rq->method, c->bucket, rq->key ? "/" : "",
		  rq->key ? rq->key : "", status, cc ? " " : "", cc ? curl_easy_strerror(cc) : "");
out:
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(list);
	sigv4_signed_free(sig);
	sbuf_free(&host);
	sbuf_free(&raw);
	sbuf_free(&url);
	sbuf_free(&line);
	return rc;
}

static uint32_t random_u32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (uint32_t)rand();
	return v;
}

/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
static unsigned backoff_ms(const struct s3_retry *r, unsigned attempt)
{
	uint64_t ceil_ms = r->base_ms;
	for (unsigned i = 1; i < attempt && ceil_ms < r->cap_ms; i++)
		ceil_ms *= 2;
	if (ceil_ms > r->cap_ms)
		ceil_ms = r->cap_ms;
	return (unsigned)(random_u32() % (ceil_ms + 1));
}

/* Sleeps ms, waking early (false) if the request is cancelled. */
static bool pause_ms(const struct req *rq, unsigned ms)
{
	while (ms) {
		if (cancelled(rq))
			return false;
		unsigned step = ms < 50 ? ms : 50;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !cancelled(rq);
}

static void sink_reset(struct sink *s)
{
	sbuf_reset(&s->mem);
	s->too_big = false;
	s->written = 0;
	s->write_errno = 0;
	if (s->sha)
		EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL);
}

static void error_init(s3_client *c, const struct req *rq, struct s3_error *e)
{
	memset(e, 0, sizeof(*e));
	copy_str(e->method, sizeof(e->method), rq->method);
	copy_str(e->detail, sizeof(e->detail), rq->detail);
	copy_str(e->bucket, sizeof(e->bucket), c->bucket);
	copy_str(e->key, sizeof(e->key), rq->key);
}

/*
 * Runs rq with retries. On return rs holds the last answer (the caller
 * clears it) and, on failure, *err the last error.
 */
static int request(s3_client *c, struct req *rq, struct resp *rs, struct s3_error *err)
{
	struct s3_error e;
	CURL *h = handle_get(c);
	int rc;
	for (unsigned n = 1;; n++) {
		error_init(c, rq, &e);
		resp_clear(rs);
		rq->body.pos = 0;
		rq->body.read_errno = 0;
		sink_reset(&rq->sink);
		rc = cancelled(rq) ? -ECANCELED : attempt(c, h, rq, rs, &e);
		if (rc == 0 && rq->check)
			rc = rq->check(rs, rq->check_arg, &e);
		e.attempts = n;
		if (rc == 0 || rc == -ECANCELED || !s3_error_retryable(&e) || n >= c->retry.max_attempts)
			break;
		unsigned ms = backoff_ms(&c->retry, n);
		char msg[1024];
		s3_error_format(&e, msg, sizeof(msg));
		log_warn("%s; retrying in %u ms (attempt %u of %u)", msg, ms, n + 1,
			 c->retry.max_attempts);
		rq->retries++;
		atomic_fetch_add(&c->retries, 1);
		if (!pause_ms(rq, ms)) {
			rc = -ECANCELED;
			copy_str(e.transport, sizeof(e.transport), "cancelled");
			break;
		}
	}
	handle_put(c, h);
	if (rc == -EIO)
		rc = error_rc(&e);
	if (rc && rc != -ECANCELED)
		atomic_fetch_add(&c->failures, 1);
	if (err)
		*err = e;
	return rc;
}

/* Sets up rq for method on key, and fails early on a key S3 cannot take. */
static int req_init(s3_client *c, struct req *rq, const char *method, const char *key,
		    struct s3_error *err)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->key = key;
	rq->sink.kind = SINK_MEM;
	rq->sink.max = XMLBODY_MAX;
	if (key && (!*key || strlen(key) > S3_KEY_MAX)) {
		if (err) {
			error_init(c, rq, err);
			copy_str(err->transport, sizeof(err->transport),
				 *key ? "key longer than 1024 bytes" : "empty key");
		}
		return -EINVAL;
	}
	return 0;
}

static void req_free(struct req *rq)
{
	sbuf_free(&rq->sink.mem);
}

/* An invalid-argument failure found before any request was sent. */
static int bad_arg(s3_client *c, const struct req *rq, struct s3_error *err, const char *why)
{
	if (err) {
		error_init(c, rq, err);
		copy_str(err->transport, sizeof(err->transport), why);
	}
	return -EINVAL;
}

/* Appends "name=value" (value encoded) to a wire-form query. */
static void query_add(sbuf *q, const char *name, const char *value)
{
	if (q->len)
		sbuf_adds(q, "&");
	sbuf_adds(q, name);
	if (value) {
		char *enc = sigv4_uri_encode(value, false);
		sbuf_addf(q, "=%s", enc);
		free(enc);
	}
}

/* ---- objects ------------------------------------------------------------ */

/* Adds the headers of a PUT's options; their storage (sb) lives as long as the request. */
static int put_headers(s3_client *c, struct req *rq, const struct s3_put_opts *o, sbuf *sb,
		       size_t n_sb, struct s3_error *err)
{
	if (!o)
		return 0;
	if (o->if_none_match && o->if_match)
		return bad_arg(c, rq, err, "If-None-Match and If-Match together");
	if (o->if_none_match)
		add_header(rq, "if-none-match", "*");
	if (o->if_match) {
		char etag[S3_ETAG_MAX];
		etag_copy(etag, o->if_match, strlen(o->if_match));
		if (!*etag || !clean_value(etag))
			return bad_arg(c, rq, err, "If-Match ETag is empty or not printable");
		/* radosgw matches only the bare ETag; AWS takes either form. */
		sbuf_adds(&sb[0], etag);
		add_header(rq, "if-match", sbuf_str(&sb[0]));
		rq->if_match = true;
	}
	if (o->content_type) {
		if (!clean_value(o->content_type))
			return bad_arg(c, rq, err, "content type is not printable");
		add_header(rq, "content-type", o->content_type);
	}
	if (o->n_meta + rq->n_hdrs + 8 > MAX_HEADERS || o->n_meta + 1 > n_sb)
		return bad_arg(c, rq, err, "too many metadata entries");
	for (size_t i = 0; i < o->n_meta; i++) {
		if (!clean_token(o->meta[i].name) || !clean_value(o->meta[i].value))
			return bad_arg(c, rq, err, "metadata name or value is not valid in a header");
		sbuf_addf(&sb[i + 1], "x-amz-meta-%s", o->meta[i].name);
		add_header(rq, sbuf_str(&sb[i + 1]), o->meta[i].value);
	}
	return 0;
}

#define META_MAX 32

static int put_body(s3_client *c, const char *key, struct body *body, const struct s3_put_opts *o,
		    struct s3_put_result *res, unsigned char md5[16], struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf sb[META_MAX + 1];
	memset(sb, 0, sizeof(sb));
	int rc = req_init(c, &rq, "PUT", key, err);
	if (rc)
		return rc;
	rq.body = *body;
	rq.cancel[0] = o ? o->cancel : NULL;
	rc = put_headers(c, &rq, o, sb, META_MAX + 1, err);
	if (!rc) {
		struct s3_error e;
		error_init(c, &rq, &e);
		rc = body_digest(&rq.body, rq.cancel[0], &e);
		if (rc && err)
			*err = e;
	}
	if (!rc) {
		add_header(&rq, "content-md5", rq.body.md5_b64);
		rc = request(c, &rq, &rs, err);
	}
	if (res) {
		memset(res, 0, sizeof(*res));
		res->retries = rq.retries;
		if (!rc)
			copy_str(res->etag, sizeof(res->etag), rs.etag);
	}
	if (md5 && !rc)
		memcpy(md5, rq.body.md5, 16);
	resp_clear(&rs);
	req_free(&rq);
	for (size_t i = 0; i <= META_MAX; i++)
		sbuf_free(&sb[i]);
	return rc;
}

int s3_put_buf(s3_client *c, const char *key, const void *data, size_t len,
	       const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err)
{
	struct body b = {.kind = BODY_MEM, .mem = data, .len = len};
	return put_body(c, key, &b, opts, res, NULL, err);
}

int s3_put_file(s3_client *c, const char *key, int fd, uint64_t off, uint64_t len,
		const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err)
{
	struct body b = {.kind = BODY_FD, .fd = fd, .off = off, .len = len};
	return put_body(c, key, &b, opts, res, NULL, err);
}

void s3_object_info_free(struct s3_object_info *info)
{
	if (!info)
		return;
	for (size_t i = 0; i < info->n_meta; i++) {
		free((char *)info->meta[i].name);
		free((char *)info->meta[i].value);
	}
	free(info->meta);
	info->meta = NULL;
	info->n_meta = 0;
}

/* Moves what an answer says about the object into info. */
static void info_fill(struct s3_object_info *info, struct resp *rs, uint64_t body_len,
		      unsigned retries)
{
	memset(info, 0, sizeof(*info));
	info->length = body_len;
	info->size = rs->have_total ? rs->total : rs->have_length ? rs->content_length : body_len;
	copy_str(info->etag, sizeof(info->etag), rs->etag);
	copy_str(info->content_type, sizeof(info->content_type), rs->content_type);
	info->last_modified = rs->last_modified[0] ? curl_getdate(rs->last_modified, NULL) : 0;
	if (info->last_modified < 0)
		info->last_modified = 0;
	info->meta = rs->meta;
	info->n_meta = rs->n_meta;
	rs->meta = NULL;
	rs->n_meta = 0;
	info->retries = retries;
}

int s3_head(s3_client *c, const char *key, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = req_init(c, &rq, "HEAD", key, err);
	if (rc)
		return rc;
	rq.want_meta = true;
	rc = request(c, &rq, &rs, err);
	if (!rc && info) {
		info_fill(info, &rs, 0, rq.retries);
		info->length = 0;
	}
	resp_clear(&rs);
	req_free(&rq);
	return rc;
}

/* Checks a GET's body against what the headers promised. */
static int check_length(struct resp *rs, void *arg, struct s3_error *e)
{
	struct req *rq = arg;
	if (rs->have_length && rq->sink.written != rs->content_length) {
		/* curl catches this too (PARTIAL_FILE); a retry is the answer either way. */
		e->curl_code = CURLE_PARTIAL_FILE;
		snprintf(e->transport, sizeof(e->transport),
			 "received %" PRIu64 " bytes of %" PRIu64, rq->sink.written, rs->content_length);
		return -EIO;
	}
	return 0;
}

static int get_common(s3_client *c, const char *key, const struct s3_range *range, struct req *rq,
		      struct resp *rs, struct s3_error *err)
{
	char rbuf[64];
	if (range) {
		if (range->last < range->first)
			return bad_arg(c, rq, err, "range ends before it starts");
		snprintf(rbuf, sizeof(rbuf), "bytes=%" PRIu64 "-%" PRIu64, range->first, range->last);
		add_header(rq, "range", rbuf);
	}
	rq->want_meta = true;
	rq->check = check_length;
	rq->check_arg = rq;
	(void)key;
	return request(c, rq, rs, err);
}

int s3_get_buf(s3_client *c, const char *key, const struct s3_range *range, size_t max,
	       void **data, size_t *len, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	*data = NULL;
	*len = 0;
	int rc = req_init(c, &rq, "GET", key, err);
	if (rc)
		return rc;
	rq.sink.max = max;
	rc = get_common(c, key, range, &rq, &rs, err);
	if (!rc) {
		*len = rq.sink.mem.len;
		*data = sbuf_detach(&rq.sink.mem);
		if (info)
			info_fill(info, &rs, *len, rq.retries);
	}
	resp_clear(&rs);
	req_free(&rq);
	return rc;
}

int s3_get_fd(s3_client *c, const char *key, const struct s3_range *range, int fd,
	      char *sha256_hex, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = req_init(c, &rq, "GET", key, err);
	if (rc)
		return rc;
	rq.sink.kind = SINK_FD;
	rq.sink.fd = fd;
	rq.sink.sha = EVP_MD_CTX_new();
	if (!rq.sink.sha)
		oom();
	rc = get_common(c, key, range, &rq, &rs, err);
	if (!rc && ftruncate(fd, (off_t)rq.sink.written) != 0) {
		if (err) {
			error_init(c, &rq, err);
			err->sys_errno = errno;
			copy_str(err->transport, sizeof(err->transport), "truncating the output file");
		}
		rc = -errno;
	}
	if (!rc) {
		if (sha256_hex) {
			unsigned char d[32];
			unsigned int dl = 0;
			EVP_DigestFinal_ex(rq.sink.sha, d, &dl);
			hex(d, 32, sha256_hex);
		}
		if (info)
			info_fill(info, &rs, rq.sink.written, rq.retries);
	}
	EVP_MD_CTX_free(rq.sink.sha);
	resp_clear(&rs);
	req_free(&rq);
	return rc;
}

int s3_delete(s3_client *c, const char *key, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = req_init(c, &rq, "DELETE", key, err);
	if (!rc)
		rc = request(c, &rq, &rs, err);
	resp_clear(&rs);
	req_free(&rq);
	return rc;
}

/* ---- listings ----------------------------------------------------------- */

/* A 2xx answer whose body does not parse: not retried, reported as EPROTO. */
static int protocol_error(s3_client *c, const struct req *rq, struct s3_error *err, const char *why)
{
	if (err) {
		error_init(c, rq, err);
		err->http_status = 200;
		copy_str(err->transport, sizeof(err->transport), why);
	}
	atomic_fetch_add(&c->failures, 1);
	return -EPROTO;
}

int s3_list(s3_client *c, const char *prefix, const char *delimiter, s3_list_fn *fn, void *arg,
	    struct s3_error *err)
{
	char *token = NULL;
	int rc = 0;
	for (;;) {
		struct req rq;
		struct resp rs = {0};
		sbuf q = SBUF_INIT;
		req_init(c, &rq, "GET", NULL, err);
		rq.detail = "ListObjectsV2";
		query_add(&q, "list-type", "2");
		query_add(&q, "encoding-type", "url");
		if (prefix && *prefix)
			query_add(&q, "prefix", prefix);
		if (delimiter && *delimiter)
			query_add(&q, "delimiter", delimiter);
		if (token)
			query_add(&q, "continuation-token", token);
		rq.query = sbuf_str(&q);
		rc = request(c, &rq, &rs, err);
		struct s3xml_list page = {0};
		if (!rc) {
			char why[256];
			if (s3xml_parse_list(rq.sink.mem.buf, rq.sink.mem.len, &page, why, sizeof(why)))
				rc = protocol_error(c, &rq, err, why);
			else if (page.truncated && token && strcmp(token, page.next_token) == 0)
				rc = protocol_error(c, &rq, err, "the same continuation token twice");
		}
		for (size_t i = 0; !rc && i < page.n; i++) {
			struct s3xml_object *x = &page.items[i];
			struct s3_object o = {x->key, x->etag, x->size, x->last_modified, x->is_prefix};
			rc = fn(arg, &o);
		}
		free(token);
		token = NULL;
		if (!rc && page.truncated) {
			token = page.next_token;
			page.next_token = NULL;
		}
		s3xml_list_free(&page);
		resp_clear(&rs);
		req_free(&rq);
		sbuf_free(&q);
		if (rc || !token)
			break;
	}
	free(token);
	return rc;
}

struct collect {
	struct s3_object *items;
	size_t n, cap;
};

static int collect_one(void *arg, const struct s3_object *o)
{
	struct collect *col = arg;
	if (col->n == col->cap) {
		col->cap = col->cap ? col->cap * 2 : 256;
		struct s3_object *n = realloc(col->items, col->cap * sizeof(*n));
		if (!n)
			oom();
		col->items = n;
	}
	struct s3_object *d = &col->items[col->n++];
	*d = *o;
	d->key = xstrdup(o->key);
	d->etag = xstrdup(o->etag);
	return 0;
}

int s3_list_all(s3_client *c, const char *prefix, struct s3_object **out, size_t *n,
		struct s3_error *err)
{
	struct collect col = {0};
	int rc = s3_list(c, prefix, NULL, collect_one, &col, err);
	if (rc) {
		s3_objects_free(col.items, col.n);
		col.items = NULL;
		col.n = 0;
	}
	*out = col.items;
	*n = col.n;
	return rc;
}

void s3_objects_free(struct s3_object *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)o[i].key);
		free((char *)o[i].etag);
	}
	free(o);
}

/* ---- multipart ---------------------------------------------------------- */

int s3_multipart_create(s3_client *c, const char *key, const struct s3_put_opts *opts,
			char **upload_id, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf sb[META_MAX + 1];
	memset(sb, 0, sizeof(sb));
	*upload_id = NULL;
	int rc = req_init(c, &rq, "POST", key, err);
	if (rc)
		return rc;
	rq.detail = "CreateMultipartUpload";
	rq.query = "uploads=";
	rq.body.kind = BODY_MEM;
	rq.body.mem = (const unsigned char *)"";
	if (opts) {
		struct s3_put_opts o = *opts;
		o.if_match = NULL;
		o.if_none_match = false;
		rq.cancel[0] = opts->cancel;
		rc = put_headers(c, &rq, &o, sb, META_MAX + 1, err);
	}
	if (!rc) {
		struct s3_error e;
		rc = body_digest(&rq.body, NULL, &e);
		if (rc && err)
			*err = e;
	}
	if (!rc)
		rc = request(c, &rq, &rs, err);
	if (!rc) {
		char why[256];
		if (s3xml_parse_initiate(rq.sink.mem.buf, rq.sink.mem.len, upload_id, why, sizeof(why)))
			rc = protocol_error(c, &rq, err, why);
	}
	resp_clear(&rs);
	req_free(&rq);
	for (size_t i = 0; i <= META_MAX; i++)
		sbuf_free(&sb[i]);
	return rc;
}

/* One part; cancel2 lets the upload stop its other parts once one has failed. */
static int upload_part(s3_client *c, const char *key, const char *upload_id, unsigned number,
		       int fd, uint64_t off, uint64_t len, const atomic_bool *cancel,
		       const atomic_bool *cancel2, struct s3_part *part, unsigned char md5[16],
		       unsigned *retries, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	char detail[48];
	sbuf q = SBUF_INIT;
	int rc = req_init(c, &rq, "PUT", key, err);
	if (rc)
		return rc;
	if (number < 1 || number > S3_MAX_PARTS || !upload_id || !*upload_id)
		return bad_arg(c, &rq, err, "part number out of 1..10000 or no upload id");
	snprintf(detail, sizeof(detail), "part %u", number);
	rq.detail = detail;
	sbuf_addf(&q, "partNumber=%u", number);
	query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rq.body.kind = BODY_FD;
	rq.body.fd = fd;
	rq.body.off = off;
	rq.body.len = len;
	rq.cancel[0] = cancel;
	rq.cancel[1] = cancel2;
	struct s3_error e;
	error_init(c, &rq, &e);
	rc = body_digest(&rq.body, cancel2, &e);
	if (rc) {
		if (err)
			*err = e;
	} else {
		add_header(&rq, "content-md5", rq.body.md5_b64);
		rc = request(c, &rq, &rs, err);
	}
	if (!rc && !rs.etag[0])
		rc = protocol_error(c, &rq, err, "UploadPart answer has no ETag");
	if (!rc) {
		part->number = number;
		part->size = len;
		copy_str(part->etag, sizeof(part->etag), rs.etag);
		if (md5)
			memcpy(md5, rq.body.md5, 16);
	}
	if (retries)
		*retries += rq.retries;
	resp_clear(&rs);
	req_free(&rq);
	sbuf_free(&q);
	return rc;
}

int s3_multipart_upload_part(s3_client *c, const char *key, const char *upload_id, unsigned number,
			     int fd, uint64_t off, uint64_t len, const atomic_bool *cancel,
			     struct s3_part *part, unsigned *retries, struct s3_error *err)
{
	return upload_part(c, key, upload_id, number, fd, off, len, cancel, NULL, part, NULL, retries,
			   err);
}

/* CompleteMultipartUpload may answer 200 with an <Error> inside: that is a failure. */
static int check_complete(struct resp *rs, void *arg, struct s3_error *e)
{
	struct req *rq = arg;
	struct s3xml_error x;
	char tag[S3_ETAG_MAX], why[256];
	int rc = s3xml_parse_complete(rq->sink.mem.buf, rq->sink.mem.len, tag, sizeof(tag), &x, why,
				      sizeof(why));
	if (rc == -EAGAIN) {
		e->http_status = (int)rs->status;
		copy_str(e->code, sizeof(e->code), x.code[0] ? x.code : "InternalError");
		copy_str(e->message, sizeof(e->message), x.message);
		copy_str(e->request_id, sizeof(e->request_id), x.request_id[0] ? x.request_id : rs->request_id);
		return -EIO;
	}
	if (rc) {
		e->http_status = (int)rs->status;
		copy_str(e->transport, sizeof(e->transport), why);
		return -EPROTO;
	}
	copy_str(rs->etag, sizeof(rs->etag), tag);
	return 0;
}

static void xml_escape(sbuf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': sbuf_adds(b, "&amp;"); break;
		case '<': sbuf_adds(b, "&lt;"); break;
		case '>': sbuf_adds(b, "&gt;"); break;
		default: sbuf_add(b, s, 1);
		}
	}
}

int s3_multipart_complete(s3_client *c, const char *key, const char *upload_id,
			  const struct s3_part *parts, size_t n, char etag[S3_ETAG_MAX],
			  struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf q = SBUF_INIT, xml = SBUF_INIT;
	etag[0] = '\0';
	int rc = req_init(c, &rq, "POST", key, err);
	if (rc)
		return rc;
	rq.detail = "CompleteMultipartUpload";
	if (!n || n > S3_MAX_PARTS || !upload_id || !*upload_id)
		return bad_arg(c, &rq, err, "no parts, too many parts, or no upload id");
	sbuf_adds(&xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (size_t i = 0; i < n; i++) {
		if (i && parts[i].number <= parts[i - 1].number) {
			sbuf_free(&xml);
			return bad_arg(c, &rq, err, "part numbers are not ascending");
		}
		/* The quoted form, as S3 hands ETags out: AWS and radosgw both take it. */
		char bare[S3_ETAG_MAX];
		etag_copy(bare, parts[i].etag, strlen(parts[i].etag));
		sbuf_addf(&xml, "<Part><PartNumber>%u</PartNumber><ETag>\"", parts[i].number);
		xml_escape(&xml, bare);
		sbuf_adds(&xml, "\"</ETag></Part>");
	}
	sbuf_adds(&xml, "</CompleteMultipartUpload>");
	query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rq.body.kind = BODY_MEM;
	rq.body.mem = (const unsigned char *)xml.buf;
	rq.body.len = xml.len;
	add_header(&rq, "content-type", "application/xml");
	struct s3_error e;
	error_init(c, &rq, &e);
	rc = body_digest(&rq.body, NULL, &e);
	if (rc) {
		if (err)
			*err = e;
	} else {
		add_header(&rq, "content-md5", rq.body.md5_b64);
		rq.check = check_complete;
		rq.check_arg = &rq;
		/* S3 may take minutes to assemble a large object, sending spaces meanwhile. */
		rq.slow_answer = true;
		rc = request(c, &rq, &rs, err);
	}
	if (!rc)
		copy_str(etag, S3_ETAG_MAX, rs.etag);
	resp_clear(&rs);
	req_free(&rq);
	sbuf_free(&q);
	sbuf_free(&xml);
	return rc;
}

int s3_multipart_abort(s3_client *c, const char *key, const char *upload_id, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf q = SBUF_INIT;
	struct s3_error e;
	int rc = req_init(c, &rq, "DELETE", key, err);
	if (rc)
		return rc;
	rq.detail = "AbortMultipartUpload";
	if (!upload_id || !*upload_id)
		return bad_arg(c, &rq, err, "no upload id");
	query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rc = request(c, &rq, &rs, &e);
	if (rc == -ENOENT && strcmp(e.code, "NoSuchUpload") == 0)
		rc = 0;
	if (rc && err)
		*err = e;
	resp_clear(&rs);
	req_free(&rq);
	sbuf_free(&q);
	return rc;
}

int s3_multipart_list(s3_client *c, const char *prefix, struct s3_multipart **out, size_t *n,
		      struct s3_error *err)
{
	struct s3_multipart *items = NULL;
	size_t count = 0, cap = 0;
	char *key_marker = NULL, *id_marker = NULL;
	int rc = 0;
	for (;;) {
		struct req rq;
		struct resp rs = {0};
		sbuf q = SBUF_INIT;
		req_init(c, &rq, "GET", NULL, err);
		rq.detail = "ListMultipartUploads";
		/*
		 * No encoding-type=url here: radosgw 16 then encodes the keys but
		 * leaves out <EncodingType>, so the answer cannot be read right.
		 */
		query_add(&q, "uploads", NULL);
		if (prefix && *prefix)
			query_add(&q, "prefix", prefix);
		if (key_marker)
			query_add(&q, "key-marker", key_marker);
		if (id_marker)
			query_add(&q, "upload-id-marker", id_marker);
		rq.query = sbuf_str(&q);
		rc = request(c, &rq, &rs, err);
		struct s3xml_uploads page = {0};
		if (!rc) {
			char why[256];
			if (s3xml_parse_uploads(rq.sink.mem.buf, rq.sink.mem.len, &page, why, sizeof(why)))
				rc = protocol_error(c, &rq, err, why);
		}
		for (size_t i = 0; !rc && i < page.n; i++) {
			if (count == cap) {
				cap = cap ? cap * 2 : 16;
				struct s3_multipart *m = realloc(items, cap * sizeof(*m));
				if (!m)
					oom();
				items = m;
			}
			items[count].key = page.items[i].key;
			items[count].upload_id = page.items[i].upload_id;
			items[count].initiated = page.items[i].initiated;
			page.items[i].key = page.items[i].upload_id = NULL;
			count++;
		}
		bool more = !rc && page.truncated;
		if (more && key_marker && strcmp(key_marker, page.next_key_marker) == 0 && id_marker &&
		    page.next_upload_id_marker && strcmp(id_marker, page.next_upload_id_marker) == 0) {
			rc = protocol_error(c, &rq, err, "the same upload markers twice");
			more = false;
		}
		free(key_marker);
		free(id_marker);
		key_marker = id_marker = NULL;
		if (more) {
			key_marker = page.next_key_marker;
			id_marker = page.next_upload_id_marker;
			page.next_key_marker = page.next_upload_id_marker = NULL;
		}
		s3xml_uploads_free(&page);
		resp_clear(&rs);
		req_free(&rq);
		sbuf_free(&q);
		if (!more)
			break;
	}
	free(key_marker);
	free(id_marker);
	if (rc) {
		s3_multipart_list_free(items, count);
		items = NULL;
		count = 0;
	}
	*out = items;
	*n = count;
	return rc;
}

void s3_multipart_list_free(struct s3_multipart *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].key);
		free(u[i].upload_id);
	}
	free(u);
}

/* ---- whole-file upload -------------------------------------------------- */

/* State shared by the part threads of one upload. */
struct upload {
	s3_client *c;
	const char *key;
	const char *upload_id;
	int fd;
	uint64_t size, part_size;
	unsigned n_parts;
	const struct s3_upload_opts *opts;
	struct s3_part *parts;    /* parts[i] written only by the thread that took part i+1 */
	unsigned char (*md5)[16]; /* likewise */
	atomic_bool stop;         /* set when a part failed: the others stop too */
	atomic_uint retries;

	pthread_mutex_t mu;
	unsigned next;        /* index of the next part to send; protected by mu */
	uint64_t done;        /* bytes acknowledged; protected by mu */
	int rc;               /* first failure; protected by mu */
	struct s3_error err;  /* its error; protected by mu */
};

static void *upload_worker(void *arg)
{
	struct upload *u = arg;
	for (;;) {
		pthread_mutex_lock(&u->mu);
		unsigned i = u->next;
		bool go = i < u->n_parts && !atomic_load(&u->stop);
		if (go)
			u->next++;
		pthread_mutex_unlock(&u->mu);
		if (!go)
			break;
		uint64_t off = (uint64_t)i * u->part_size;
		uint64_t len = u->size - off < u->part_size ? u->size - off : u->part_size;
		struct s3_error e;
		unsigned retries = 0;
		int rc = upload_part(u->c, u->key, u->upload_id, i + 1, u->fd, off, len, u->opts->cancel,
				     &u->stop, &u->parts[i], u->md5[i], &retries, &e);
		atomic_fetch_add(&u->retries, retries);
		pthread_mutex_lock(&u->mu);
		if (rc) {
			/* A part stopped because another failed is not the story: keep the first. */
			if (!u->rc && !(rc == -ECANCELED && atomic_load(&u->stop))) {
				u->rc = rc;
				u->err = e;
			}
			atomic_store(&u->stop, true);
		} else {
			u->done += len;
			if (u->opts->progress)
				u->opts->progress(u->opts->progress_arg, u->done, u->size);
		}
		pthread_mutex_unlock(&u->mu);
	}
	return NULL;
}

/* The ETag S3 gives a multipart object: MD5 of the parts' MD5s, "-", the part count. */
static void multipart_etag(unsigned char (*md5)[16], unsigned n, char out[S3_ETAG_MAX])
{
	unsigned char d[16];
	unsigned int dl = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		oom();
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	for (unsigned i = 0; i < n; i++)
		EVP_DigestUpdate(ctx, md5[i], 16);
	EVP_DigestFinal_ex(ctx, d, &dl);
	EVP_MD_CTX_free(ctx);
	char h[33];
	hex(d, 16, h);
	snprintf(out, S3_ETAG_MAX, "%s-%u", h, n);
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static int upload_multipart(s3_client *c, const char *key, int fd, uint64_t size,
			    uint64_t part_size, const struct s3_upload_opts *o,
			    struct s3_upload_result *res, char expect[S3_ETAG_MAX],
			    char complete_etag[S3_ETAG_MAX], struct s3_error *err)
{
	struct s3_put_opts po = {.content_type = o->content_type, .meta = o->meta,
				 .n_meta = o->n_meta, .cancel = o->cancel};
	char *upload_id = NULL;
	struct s3_error ce = {0};
	int rc = s3_multipart_create(c, key, &po, &upload_id, &ce);
	res->retries += ce.attempts > 1 ? ce.attempts - 1 : 0;
	if (rc) {
		if (err)
			*err = ce;
		return rc;
	}

	struct upload u = {.c = c, .key = key, .upload_id = upload_id, .fd = fd, .size = size,
			   .part_size = part_size, .opts = o};
	u.n_parts = (unsigned)((size + part_size - 1) / part_size);
	u.parts = xcalloc(u.n_parts, sizeof(*u.parts));
	u.md5 = xcalloc(u.n_parts, sizeof(*u.md5));
	pthread_mutex_init(&u.mu, NULL);
	unsigned nthreads = o->parallel ? o->parallel : DEFAULT_PARALLEL;
	if (nthreads > MAX_PARALLEL)
		nthreads = MAX_PARALLEL;
	if (nthreads > u.n_parts)
		nthreads = u.n_parts;
	pthread_t tids[MAX_PARALLEL];
	unsigned started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, upload_worker, &u) != 0)
			break;
	if (!started)
		upload_worker(&u); /* no thread to be had: do it here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	rc = u.rc;
	if (!rc && o->cancel && atomic_load(o->cancel))
		rc = -ECANCELED;
	if (rc && err)
		*err = u.err;
	res->retries += atomic_load(&u.retries);

	if (!rc) {
		struct s3_error e;
		rc = s3_multipart_complete(c, key, upload_id, u.parts, u.n_parts, complete_etag, &e);
		res->retries += e.attempts > 1 ? e.attempts - 1 : 0;
		if (rc == -ENOENT && strcmp(e.code, "NoSuchUpload") == 0 && e.attempts > 1) {
			/*
			 * An earlier attempt completed the upload but its answer was
			 * lost: the object is there. The HEAD that follows decides.
			 */
			log_info("s3: CompleteMultipartUpload of s3://%s/%s answered NoSuchUpload on a retry; "
				 "checking the object", c->bucket, key);
			complete_etag[0] = '\0';
			rc = 0;
		} else if (rc && err) {
			*err = e;
		}
	}
	if (rc) {
		/* Leave no orphan: parts of an unfinished upload cost storage until aborted. */
		struct s3_error ae;
		if (s3_multipart_abort(c, key, upload_id, &ae)) {
			char msg[1024];
			s3_error_format(&ae, msg, sizeof(msg));
			log_warn("s3: could not abort the unfinished upload %s: %s", upload_id, msg);
		}
	} else {
		multipart_etag(u.md5, u.n_parts, expect);
		res->parts = u.n_parts;
	}
	pthread_mutex_destroy(&u.mu);
	free(u.parts);
	free(u.md5);
	free(upload_id);
	return rc;
}

int s3_upload_file(s3_client *c, const char *key, const char *path,
		   const struct s3_upload_opts *opts, struct s3_upload_result *res,
		   struct s3_error *err)
{
	struct s3_upload_opts o = opts ? *opts : (struct s3_upload_opts){0};
	struct s3_upload_result r = {0};
	struct req rq;
	if (req_init(c, &rq, "PUT", key, err))
		return -EINVAL;
	uint64_t part_size = o.part_size ? o.part_size : DEFAULT_PART_SIZE;
	if (part_size < S3_MIN_PART_SIZE || part_size > S3_MAX_PART_SIZE)
		return bad_arg(c, &rq, err, "part size must be between 5 MiB and 5 GiB");
	uint64_t threshold = o.multipart_threshold ? o.multipart_threshold : part_size;
	if (threshold > S3_MAX_PART_SIZE)
		threshold = S3_MAX_PART_SIZE;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int saved = 0;
	if (fd < 0 || fstat(fd, &st) != 0)
		saved = errno;
	else if (!S_ISREG(st.st_mode))
		saved = EINVAL;
	if (saved) {
		if (fd >= 0)
			close(fd);
		if (err) {
			error_init(c, &rq, err);
			err->sys_errno = saved;
			snprintf(err->transport, sizeof(err->transport), "opening %.200s", path);
		}
		return -saved;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t size = (uint64_t)st.st_size;
	char expect[S3_ETAG_MAX] = "", sent_etag[S3_ETAG_MAX] = "";
	int rc;
	if (size <= threshold) {
		struct s3_put_opts po = {.content_type = o.content_type, .meta = o.meta,
					 .n_meta = o.n_meta, .cancel = o.cancel};
		struct body b = {.kind = BODY_FD, .fd = fd, .off = 0, .len = size};
		struct s3_put_result pr;
		unsigned char md5[16];
		rc = put_body(c, key, &b, &po, &pr, md5, err);
		r.retries += pr.retries;
		if (!rc) {
			/* The MD5 of what was sent is the ETag of an object stored unencrypted. */
			hex(md5, 16, expect);
			copy_str(sent_etag, sizeof(sent_etag), pr.etag);
			if (o.progress)
				o.progress(o.progress_arg, size, size);
		}
	} else {
		if (size > part_size * S3_MAX_PARTS)
			part_size = round_up((size + S3_MAX_PARTS - 1) / S3_MAX_PARTS, 1u << 20);
		rc = upload_multipart(c, key, fd, size, part_size, &o, &r, expect, sent_etag, err);
	}
	close(fd);

	if (!rc) {
		/* Confirm what S3 now holds: size, and the ETag the upload produced. */
		struct s3_object_info info;
		struct s3_error e;
		rc = s3_head(c, key, &info, &e);
		if (rc) {
			if (err)
				*err = e;
		} else {
			r.retries += info.retries;
			r.size = info.size;
			copy_str(r.etag, sizeof(r.etag), info.etag);
			r.etag_is_md5 = strcmp(info.etag, expect) == 0;
			const char *why = NULL;
			if (info.size != size)
				why = "the object's size is not the file's";
			else if (sent_etag[0] && strcmp(sent_etag, info.etag) != 0)
				why = "the object's ETag is not the one the upload answered (overwritten?)";
			else if (!sent_etag[0] && !r.etag_is_md5 &&
				 !(r.parts && strchr(expect, '-') && ends_with(info.etag, strchr(expect, '-'))))
				/* Encrypted objects have other ETags, but still "-N" for N parts. */
				why = "the object's ETag does not match what was sent";
			if (why) {
				if (err) {
					error_init(c, &rq, err);
					copy_str(err->method, sizeof(err->method), "HEAD");
					snprintf(err->transport, sizeof(err->transport),
						 "%s: %" PRIu64 " bytes, ETag %s; sent %" PRIu64 " bytes, ETag %s",
						 why, info.size, info.etag, size, sent_etag[0] ? sent_etag : expect);
				}
				rc = -EIO;
			}
			s3_object_info_free(&info);
		}
	}
	if (res)
		*res = r;
	return rc;
}
