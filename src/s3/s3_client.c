/*
 * s3_client — the S3 client's configuration (endpoint, addressing,
 * credentials, deadlines), its URLs, the curl handle pool and
 * s3_client_cancel; the request engine is s3_request.c, the transfer
 * callbacks s3_transfer.c, the operations s3_object.c and s3_upload.c,
 * the error rules s3_error.c (see s3.h for what the client guarantees).
 *
 * Ownership: a curl handle is used by one thread at a time, the one
 * that took it from the pool (c->idle, protected by c->mu, a leaf lock:
 * nothing else is taken while it is held); curl keeps the handle's
 * connections open between requests. Everything else in the client is
 * read-only after s3_client_new, or an atomic.
 */
#include "s3.h"

#include "errbuf.h"
#include "mono.h"
#include "s3_i.h"
#include "sbuf.h"
#include "sigv4.h"
#include "xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#ifndef SNAPFS_VERSION
#define SNAPFS_VERSION "0"
#endif

#define DEFAULT_REGION "us-east-1"

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "s3", __VA_ARGS__)

void s3i_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

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
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
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
		xalloc_die("in the S3 client");
	if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK) {
		seterr(err, errlen,
		       "endpoint \"%s\" is not a URL (want http://host:port or https://host)",
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
	if (!cfg->bucket || !*cfg->bucket || !s3i_clean_token(cfg->bucket) ||
	    strlen(cfg->bucket) > 63) {
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
	case S3_ADDRESSING_PATH: c->path_style = true; break;
	case S3_ADDRESSING_VIRTUAL:
		if (is_ip_literal(c->hostport) || !dns_bucket(c->bucket, https)) {
			seterr(err, errlen,
			       "virtual-host addressing needs a host name endpoint and a "
			       "DNS-compatible bucket name (\"%s\" at %s)",
			       c->bucket, c->hostport);
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
		c->path_style = !(s3i_ends_with(c->hostport, ".amazonaws.com") &&
				  dns_bucket(c->bucket, https));
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

void s3i_host_of(const s3_client *c, sbuf *out)
{
	if (!c->path_style)
		sbuf_addf(out, "%s.", c->bucket);
	sbuf_adds(out, c->hostport);
}

void s3i_raw_path_of(const s3_client *c, const char *key, sbuf *out)
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
	s3i_raw_path_of(c, key, &raw);
	char *enc = sigv4_uri_encode(sbuf_str(&raw), true);
	sbuf_addf(&url, "%s://", c->scheme);
	s3i_host_of(c, &url);
	sbuf_adds(&url, enc);
	free(enc);
	sbuf_free(&raw);
	return sbuf_detach(&url);
}

/* ---- curl handle pool --------------------------------------------------- */

struct s3i_conn s3i_conn_get(s3_client *c)
{
	struct s3i_conn k = {NULL, NULL};
	pthread_mutex_lock(&c->mu);
	if (c->n_idle)
		k = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->mu);
	if (!k.h && (!(k.h = curl_easy_init()) || !(k.m = curl_multi_init())))
		xalloc_die("in the S3 client");
	return k;
}

void s3i_conn_put(s3_client *c, struct s3i_conn k)
{
	/* reset drops the options (and our pointers in them); the multi handle keeps the connections. */
	curl_easy_reset(k.h);
	pthread_mutex_lock(&c->mu);
	if (c->n_idle == c->cap_idle) {
		size_t cap = c->cap_idle ? c->cap_idle * 2 : 8;
		c->idle = xreallocarray(c->idle, cap, sizeof(*c->idle));
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

bool s3i_cancelled(s3_client *c, const struct req *rq)
{
	for (int i = 0; i < 2; i++)
		if (rq->cancel[i] && atomic_load(rq->cancel[i]))
			return true;
	return !rq->after_cancel && atomic_load(&c->cancelled);
}
