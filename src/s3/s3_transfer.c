/*
 * s3_transfer — what moves the bytes of one attempt: the curl callbacks
 * that feed a request body (from memory, or with pread from a file:
 * never a copy, so memory stays flat whatever the size) and take in the
 * answer (headers into struct resp, a 2xx body into the request's sink,
 * any other body into resp.errbody), and the one-pass digest of a body.
 *
 * Everything here runs on the thread that runs the request (see
 * s3_i.h); nothing is shared.
 */
#include "s3_i.h"

#include "hex.h"
#include "sbuf.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define ERRBODY_MAX (64 * 1024) /* error documents are small; keep no more */
#define HASH_BUF (1u << 20)

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

static size_t write_cb(char *data, size_t size, size_t nitems, void *ud)
{
	struct s3i_xfer *x = ud;
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
			ssize_t n = pwrite(s->fd, data + done, len - done,
					   (off_t)(s->base + s->written + done));
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

static bool header_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen)
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
	struct s3i_xfer *x = ud;
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
			rs->have_total =
				parse_u64n(slash + 1, (size_t)(v + vlen - slash - 1), &rs->total);
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
			while (e > v &&
			       (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			sbuf_add(&val, v, (size_t)(e - v));
			rs->meta = xreallocarray(rs->meta, rs->n_meta + 1, sizeof(*rs->meta));
			rs->meta[rs->n_meta].name = sbuf_detach(&name);
			rs->meta[rs->n_meta].value = sbuf_detach(&val);
			rs->n_meta++;
		}
	}
	return len;
}

void s3i_xfer_bind(CURL *h, struct s3i_xfer *x)
{
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	/* Used only when the handle uploads (PUT, POST). */
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, &x->rq->body);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, &x->rq->body);
}

void s3i_sink_reset(struct sink *s)
{
	sbuf_reset(&s->mem);
	s->too_big = false;
	s->written = 0;
	s->write_errno = 0;
	if (s->sha)
		EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL);
}

/* MD5 as base64 for Content-MD5. */
static void md5_b64(const unsigned char md5[16], char out[32])
{
	EVP_EncodeBlock((unsigned char *)out, md5, 16);
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
				s3i_copy(e->transport, sizeof(e->transport),
					 n < 0 ? "reading the file"
					       : "the file is shorter than the range to send");
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
	hex_encode(d, 32, b->sha256);
	EVP_DigestFinal_ex(md5, b->md5, &dl);
	md5_b64(b->md5, b->md5_b64);
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	return rc;
}
