/*
 * s3 — the S3 client: configuration, the curl handle pool and the
 * request engine; the operations are in s3_object.c and s3_upload.c,
 * error rules in s3_error.c (see s3.h for what the client guarantees).
 *
 * The engine (s3i_request()) turns a struct req into signed HTTP attempts
 * on a curl easy handle borrowed from the client's pool, and retries what
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
#include "mono.h"
#include "s3_int.h"
#include "xalloc.h"
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
#define ERRBODY_MAX (64 * 1024)   /* error documents are small; keep no more */
#define HASH_BUF (1u << 20)
#define IO_BUF (512 * 1024)

/* ---- small helpers ------------------------------------------------------ */

void s3i_oom(void)
{
	xalloc_die("in the S3 client");
}

void *s3i_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		s3i_oom();
	return p;
}

char *s3i_strdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		s3i_oom();
	return d;
}

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "s3", __VA_ARGS__)

void s3i_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* Copies an ETag without its quotes (S3 sends "abc", with quotes, in headers). */
void s3i_etag_copy(char dst[S3_ETAG_MAX], const char *src, size_t len)
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
bool s3i_clean_value(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

void s3i_xml_escape(sbuf *b, const char *s)
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

bool s3i_clean_token(const char *v)
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

bool s3i_ends_with(const char *s, const char *suffix)
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
		s3i_oom();
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
	c->scheme = s3i_strdup(scheme);
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
	if (!cfg->bucket || !*cfg->bucket || !s3i_clean_token(cfg->bucket) || strlen(cfg->bucket) > 63) {
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
	if (!s3i_clean_token(region)) {
		seterr(err, errlen, "region \"%.40s\" is not valid", region);
		return -EINVAL;
	}

	s3_client *c = s3i_calloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->bucket = s3i_strdup(cfg->bucket);
	c->region = s3i_strdup(region);
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
		c->path_style = !(s3i_ends_with(c->hostport, ".amazonaws.com") && dns_bucket(c->bucket, https));
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
	c->ca_bundle = cfg->ca_bundle && *cfg->ca_bundle ? s3i_strdup(cfg->ca_bundle) : NULL;
	c->user_agent = s3i_strdup(cfg->user_agent && *cfg->user_agent ? cfg->user_agent
								    : "snapfs/" SNAPFS_VERSION);
	c->diag = cfg->diag;
	c->retry.max_attempts = cfg->retry.max_attempts ? cfg->retry.max_attempts : 8;
	c->retry.base_ms = cfg->retry.base_ms ? cfg->retry.base_ms : 200;
	c->retry.cap_ms = cfg->retry.cap_ms ? cfg->retry.cap_ms : 20000;
	c->connect_timeout_s = cfg->connect_timeout_s ? (long)cfg->connect_timeout_s : 10;
	c->timeout_ms = (cfg->timeout_s ? cfg->timeout_s : 60) * 1000u;
	c->slow_timeout_ms = (cfg->slow_timeout_s ? cfg->slow_timeout_s : 600) * 1000u;
	atomic_init(&c->cancelled, false);
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
	for (size_t i = 0; i < c->n_idle; i++) {
		curl_multi_cleanup(c->idle[i].m);
		curl_easy_cleanup(c->idle[i].h);
	}
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

static struct s3i_conn conn_get(s3_client *c)
{
	struct s3i_conn k = {NULL, NULL};
	pthread_mutex_lock(&c->mu);
	if (c->n_idle)
		k = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->mu);
	if (!k.h && (!(k.h = curl_easy_init()) || !(k.m = curl_multi_init())))
		s3i_oom();
	return k;
}

static void conn_put(s3_client *c, struct s3i_conn k)
{
	/* reset drops the options (and our pointers in them); the multi handle keeps the connections. */
	curl_easy_reset(k.h);
	pthread_mutex_lock(&c->mu);
	if (c->n_idle == c->cap_idle) {
		size_t cap = c->cap_idle ? c->cap_idle * 2 : 8;
		struct s3i_conn *n = realloc(c->idle, cap * sizeof(*n));
		if (!n)
			s3i_oom();
		c->idle = n;
		c->cap_idle = cap;
	}
	c->idle[c->n_idle++] = k;
	pthread_mutex_unlock(&c->mu);
}

void s3_client_cancel(s3_client *c, unsigned linger_ms)
{
	if (atomic_load(&c->cancelled))
		return;
	c->cancel_end = mono_now() + (double)linger_ms / 1000.0;
	atomic_store(&c->cancelled, true); /* seq_cst: cancel_end is visible to whoever sees this */
}

/* Should rq stop now? Its own flags, or the client's cancel (unless rq began after it). */
static bool cancelled(s3_client *c, const struct req *rq)
{
	for (int i = 0; i < 2; i++)
		if (rq->cancel[i] && atomic_load(rq->cancel[i]))
			return true;
	return !rq->after_cancel && atomic_load(&c->cancelled);
}

void s3i_resp_clear(struct resp *rs)
{
	for (size_t i = 0; i < rs->n_meta; i++) {
		free((char *)rs->meta[i].name);
		free((char *)rs->meta[i].value);
	}
	free(rs->meta);
	sbuf_free(&rs->errbody);
	memset(rs, 0, sizeof(*rs));
}

void s3i_add_header(struct req *rq, const char *name, const char *value)
{
	if (rq->n_hdrs == S3I_MAX_HEADERS) {
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
		s3i_resp_clear(rs);
		rs->status = status;
		return len;
	}
	if (header_is(line, len, "etag", &v, &vlen)) {
		s3i_etag_copy(rs->etag, v, vlen);
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
				s3i_oom();
			rs->meta = m;
			rs->meta[rs->n_meta].name = sbuf_detach(&name);
			rs->meta[rs->n_meta].value = sbuf_detach(&val);
			rs->n_meta++;
		}
	}
	return len;
}

/* MD5 as base64 for Content-MD5. */
static void md5_b64(const unsigned char md5[16], char out[32])
{
	EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

void s3i_hex(const unsigned char *in, size_t n, char *out)
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
int s3i_body_digest(struct body *b, const atomic_bool *cancel, struct s3_error *e)
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	unsigned char *buf = NULL;
	int rc = 0;
	if (!sha || !md5 || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
	    !EVP_DigestInit_ex(md5, EVP_md5(), NULL)) {
		s3i_copy(e->transport, sizeof(e->transport), "OpenSSL cannot hash (SHA-256/MD5)");
		rc = -EIO;
		goto out;
	}
	if (b->kind == BODY_MEM) {
		EVP_DigestUpdate(sha, b->mem, b->len);
		EVP_DigestUpdate(md5, b->mem, b->len);
	} else if (b->kind == BODY_FD) {
		buf = s3i_calloc(1, HASH_BUF);
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
				s3i_copy(e->transport, sizeof(e->transport),
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
	s3i_hex(d, 32, b->sha256);
	EVP_DigestFinal_ex(md5, b->md5, &dl);
	md5_b64(b->md5, b->md5_b64);
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	return rc;
}

/* A body streams through this request: the low-speed limit applies and the deadline grows. */
static bool streams_body(const struct req *rq)
{
	return rq->body.kind == BODY_FD || rq->sink.kind == SINK_FD;
}

/*
 * Runs the transfer on k's multi handle, waking at least every 100 ms to
 * look at the cancel flags and the deadline (curl_easy_perform would
 * only look at them through the progress callback, about once a second
 * on an idle connection). *stop says why it was left unfinished: 0 done,
 * 'c' cancelled, 'd' deadline.
 */
static CURLcode perform(s3_client *c, struct s3i_conn k, const struct req *rq, int *stop)
{
	CURLcode cc = CURLE_OK;
	int running = 1;
	*stop = 0;
	if (curl_multi_add_handle(k.m, k.h) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		if (curl_multi_perform(k.m, &running) != CURLM_OK) {
			cc = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (!running) {
			int q;
			CURLMsg *msg;
			while ((msg = curl_multi_info_read(k.m, &q)))
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == k.h)
					cc = msg->data.result;
			break;
		}
		if (cancelled(c, rq)) {
			*stop = 'c';
			break;
		}
		double left = rq->deadline - mono_now();
		if (left <= 0) {
			*stop = 'd';
			break;
		}
		int wait = left < 0.1 ? (int)(left * 1000) + 1 : 100;
		curl_multi_poll(k.m, NULL, 0, wait, NULL);
	}
	/* Removing an unfinished transfer closes its connection: nothing half-sent is reused. */
	curl_multi_remove_handle(k.m, k.h);
	return cc;
}

/* One attempt. 0 on a 2xx answer; else e says why and the result is negative. */
static int attempt(s3_client *c, struct s3i_conn k, struct req *rq, struct resp *rs,
		   struct s3_error *e)
{
	CURL *h = k.h;
	sbuf host = SBUF_INIT, raw = SBUF_INIT, url = SBUF_INIT, line = SBUF_INIT;
	struct curl_slist *list = NULL;
	sigv4_signed *sig = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char serr[256];
	int rc;

	host_of(c, &host);
	raw_path_of(c, rq->key, &raw);
	struct sigv4_header hdrs[S3I_MAX_HEADERS + 1];
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
		s3i_copy(e->transport, sizeof(e->transport), serr);
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
		s3i_oom();

	struct xfer x = {rq, rs};
	curl_easy_setopt(h, CURLOPT_URL, sbuf_str(&url));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* S3 keys are not paths: no dot-segment removal */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	if (streams_body(rq)) {
		/* A body that stops moving mid-transfer is a stall; an answer being thought about is not. */
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	}
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)IO_BUF);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)IO_BUF);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
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
	int stop;
	CURLcode cc = perform(c, k, rq, &stop);
	curl_off_t dl = 0;
	curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &dl);
	atomic_fetch_add(&c->bytes_received, (uint64_t)(dl > 0 ? dl : 0));
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	rs->status = status;

	if (stop == 'c') {
		s3i_copy(e->transport, sizeof(e->transport), "cancelled");
		rc = -ECANCELED;
	} else if (stop == 'd') {
		rc = -ETIMEDOUT;
	} else if (cc == CURLE_READ_ERROR && rq->body.read_errno) {
		e->sys_errno = rq->body.read_errno;
		s3i_copy(e->transport, sizeof(e->transport),
			 e->sys_errno == ENODATA ? "the file became shorter while being sent"
						 : "reading the file to send");
		rc = -EIO;
	} else if (cc == CURLE_WRITE_ERROR && rq->sink.write_errno) {
		e->sys_errno = rq->sink.write_errno;
		s3i_copy(e->transport, sizeof(e->transport), "writing what was received");
		rc = -EIO;
	} else if (cc == CURLE_WRITE_ERROR && rq->sink.too_big) {
		e->sys_errno = EFBIG;
		s3i_copy(e->transport, sizeof(e->transport), "the answer is larger than the buffer allowed");
		rc = -EFBIG;
	} else if (cc != CURLE_OK) {
		e->curl_code = (int)cc;
		s3i_copy(e->transport, sizeof(e->transport), errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = -EIO;
	} else if (status < 200 || status >= 300) {
		s3i_error_from_answer(rq, rs, e);
		rc = -EIO;
	} else {
		rc = 0;
		if (rq->body.kind != BODY_NONE)
			atomic_fetch_add(&c->bytes_sent, rq->body.len);
	}
	diag_say(&c->diag, LOG_DEBUG, "s3: %s %s%s%s -> %ld%s%s%s", rq->method, c->bucket, rq->key ? "/" : "",
		  rq->key ? rq->key : "", status, cc ? " " : "", cc ? curl_easy_strerror(cc) : "",
		  stop == 'c' ? " cancelled" : stop == 'd' ? " deadline" : "");
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
static bool pause_ms(s3_client *c, const struct req *rq, unsigned ms)
{
	while (ms) {
		if (cancelled(c, rq))
			return false;
		unsigned step = ms < 50 ? ms : 50;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !cancelled(c, rq);
}

/* The call's total deadline, in ms, when the caller did not give one. */
static unsigned timeout_of(const s3_client *c, const struct req *rq)
{
	if (rq->timeout_ms)
		return rq->timeout_ms;
	if (rq->slow)
		return c->slow_timeout_ms;
	if (!streams_body(rq))
		return c->timeout_ms;
	uint64_t bytes = rq->body.kind == BODY_FD ? rq->body.len : 0;
	if (rq->sink.kind == SINK_FD)
		bytes += 1ull << 30; /* the size of a download is not known before: allow 1 GiB */
	uint64_t ms = c->timeout_ms + bytes * 1000 / S3_MIN_RATE;
	return ms > UINT32_MAX ? UINT32_MAX : (unsigned)ms;
}

/* Which of the deadlines above, for the message that says it expired. */
static const char *timeout_kind(const struct req *rq)
{
	if (rq->after_cancel)
		return "stopping";
	if (rq->slow)
		return "slow-call";
	return streams_body(rq) ? "transfer" : "call";
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

void s3i_error_init(s3_client *c, const struct req *rq, struct s3_error *e)
{
	memset(e, 0, sizeof(*e));
	s3i_copy(e->method, sizeof(e->method), rq->method);
	s3i_copy(e->detail, sizeof(e->detail), rq->detail);
	s3i_copy(e->bucket, sizeof(e->bucket), c->bucket);
	s3i_copy(e->key, sizeof(e->key), rq->key);
}

/*
 * Runs rq with retries. On return rs holds the last answer (the caller
 * clears it) and, on failure, *err the last error.
 */
int s3i_request(s3_client *c, struct req *rq, struct resp *rs, struct s3_error *err)
{
	struct s3_error e;
	unsigned timeout = timeout_of(c, rq);
	double t0 = mono_now();
	rq->deadline = t0 + (double)timeout / 1000.0;
	rq->after_cancel = atomic_load(&c->cancelled);
	if (rq->after_cancel && c->cancel_end < rq->deadline) {
		/* Clean-up while stopping: it gets what is left of the linger, no more. */
		rq->deadline = c->cancel_end;
		timeout = c->cancel_end > t0 ? (unsigned)((c->cancel_end - t0) * 1000) : 0;
	}
	struct s3i_conn k = conn_get(c);
	int rc;
	for (unsigned n = 1;; n++) {
		s3i_error_init(c, rq, &e);
		s3i_resp_clear(rs);
		rq->body.pos = 0;
		rq->body.read_errno = 0;
		sink_reset(&rq->sink);
		rc = cancelled(c, rq) ? -ECANCELED : attempt(c, k, rq, rs, &e);
		if (rc == 0 && rq->check)
			rc = rq->check(rs, rq->check_arg, &e);
		e.attempts = n;
		if (rc == -ECANCELED && !e.transport[0])
			s3i_copy(e.transport, sizeof(e.transport), "cancelled");
		if (rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT || !s3_error_retryable(&e) ||
		    n >= c->retry.max_attempts)
			break;
		unsigned ms = backoff_ms(&c->retry, n);
		if (mono_now() + (double)ms / 1000.0 >= rq->deadline)
			break; /* no time left for another attempt: this error is the answer */
		char msg[1024];
		s3_error_format(&e, msg, sizeof(msg));
		diag_say(&c->diag, LOG_WARNING, "%s; retrying in %u ms (attempt %u of %u)", msg, ms, n + 1,
			 c->retry.max_attempts);
		rq->retries++;
		atomic_fetch_add(&c->retries, 1);
		if (!pause_ms(c, rq, ms)) {
			rc = -ECANCELED;
			s3i_copy(e.transport, sizeof(e.transport), "cancelled");
			break;
		}
	}
	conn_put(c, k);
	if (rc == -ETIMEDOUT) {
		e.deadline_ms = timeout;
		snprintf(e.transport, sizeof(e.transport),
			 "the %s deadline of %.1f s for this call passed without an answer",
			 timeout_kind(rq), (double)timeout / 1000.0);
	}
	if (rc == -EIO)
		rc = s3i_error_rc(&e);
	if (rc && rc != -ECANCELED)
		atomic_fetch_add(&c->failures, 1);
	if (err)
		*err = e;
	return rc;
}

int s3i_request_xml(s3_client *c, struct req *rq, const sbuf *xml, struct resp *rs,
		    struct s3_error *err)
{
	rq->body.kind = BODY_MEM;
	rq->body.mem = (const unsigned char *)sbuf_str(xml);
	rq->body.len = xml->len;
	s3i_add_header(rq, "content-type", "application/xml");
	struct s3_error e;
	s3i_error_init(c, rq, &e);
	int rc = s3i_body_digest(&rq->body, NULL, &e);
	if (rc) {
		if (err)
			*err = e;
		return rc;
	}
	s3i_add_header(rq, "content-md5", rq->body.md5_b64);
	return s3i_request(c, rq, rs, err);
}

/* Sets up rq for method on key, and fails early on a key S3 cannot take. */
int s3i_req_init(s3_client *c, struct req *rq, const char *method, const char *key,
		 struct s3_error *err)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->key = key;
	rq->sink.kind = SINK_MEM;
	rq->sink.max = S3I_XMLBODY_MAX;
	if (key && (!*key || strlen(key) > S3_KEY_MAX)) {
		if (err) {
			s3i_error_init(c, rq, err);
			s3i_copy(err->transport, sizeof(err->transport),
				 *key ? "key longer than 1024 bytes" : "empty key");
		}
		return -EINVAL;
	}
	return 0;
}

void s3i_req_free(struct req *rq)
{
	sbuf_free(&rq->sink.mem);
}

/* An invalid-argument failure found before any request was sent. */
int s3i_bad_arg(s3_client *c, const struct req *rq, struct s3_error *err, const char *why)
{
	if (err) {
		s3i_error_init(c, rq, err);
		s3i_copy(err->transport, sizeof(err->transport), why);
	}
	return -EINVAL;
}

/* Appends "name=value" (value encoded) to a wire-form query. */
void s3i_query_add(sbuf *q, const char *name, const char *value)
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
