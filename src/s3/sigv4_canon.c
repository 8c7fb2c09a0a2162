/*
 * sigv4_canon — the canonical forms SigV4 signs: URI encoding, path
 * normalisation, the canonical query (decoded, re-encoded, sorted) and
 * canonical headers (lower-case names, folded values, equal names
 * joined). Pure functions of their input; header values may hold the
 * session token, so they are wiped when freed.
 */
#include "sigv4.h"

#include "sigv4_i.h"

#include "errbuf.h"
#include "hex.h"
#include "sbuf.h"
#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "sigv4", __VA_ARGS__)

struct qparam {
	char *key;   /* encoded */
	char *value; /* encoded */
};

void sigv4i_free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void sigv4i_uri_encode_to(sbuf *b, const char *s, size_t len, bool keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c) || (keep_slash && c == '/')) {
			sbuf_add(b, &s[i], 1);
		} else {
			char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
			sbuf_add(b, esc, 3);
		}
	}
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
	sbuf b = SBUF_INIT;
	sigv4i_uri_encode_to(&b, s, strlen(s), keep_slash);
	return sbuf_detach(&b);
}

void sigv4i_normalize_path(sbuf *out, const char *path)
{
	/* Where each kept segment begins in out, so ".." can drop the last one. */
	size_t *starts = xcalloc(strlen(path) + 1, sizeof(*starts));
	size_t n = 0;
	bool dir = false;
	const char *p = path;
	while (*p) {
		if (*p == '/') {
			p++;
			dir = true;
			continue;
		}
		const char *seg = p;
		while (*p && *p != '/')
			p++;
		size_t len = (size_t)(p - seg);
		if (len == 1 && seg[0] == '.') {
			dir = true;
		} else if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			if (n) {
				out->len = starts[--n];
				out->buf[out->len] = '\0';
			}
			dir = true;
		} else {
			starts[n++] = out->len;
			sbuf_add(out, "/", 1);
			sbuf_add(out, seg, len);
			dir = false;
		}
	}
	if (out->len == 0 || dir)
		sbuf_add(out, "/", 1);
	free(starts);
}

/* Percent-decodes s[0..len) into out; -EINVAL on a '%' not followed by two hex digits. */
static int uri_decode_to(sbuf *out, const char *s, size_t len, const char *whole, char *err,
			 size_t errlen)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			sbuf_add(out, &s[i], 1);
			continue;
		}
		int hi = i + 1 < len ? hex_value((unsigned char)s[i + 1]) : -1;
		int lo = i + 2 < len ? hex_value((unsigned char)s[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			/* Offset only: a presigned query may hold a session token. */
			seterr(err, errlen,
			       "query string: '%%' at offset %zu is not followed by two hex digits",
			       (size_t)(s + i - whole));
			return -EINVAL;
		}
		char c = (char)(hi << 4 | lo);
		sbuf_add(out, &c, 1);
		i += 2;
	}
	return 0;
}

/* Decodes then re-encodes one query name or value into a malloc'd string. */
static int query_part(const char *s, size_t len, const char *whole, char **out, char *err,
		      size_t errlen)
{
	sbuf raw = SBUF_INIT, enc = SBUF_INIT;
	int rc = uri_decode_to(&raw, s, len, whole, err, errlen);
	if (rc == 0) {
		sigv4i_uri_encode_to(&enc, sbuf_str(&raw), raw.len, false);
		*out = sbuf_detach(&enc);
	}
	sbuf_free(&raw);
	return rc;
}

static int qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->value, y->value);
}

int sigv4i_canonical_query(sbuf *out, const char *query, char *err, size_t errlen)
{
	if (!query || !*query)
		return 0;
	if (query[0] == '?') {
		seterr(err, errlen, "query string starts with '?': pass it without");
		return -EINVAL;
	}
	size_t cap = 1;
	for (const char *p = query; *p; p++)
		cap += *p == '&';
	struct qparam *q = xcalloc(cap, sizeof(*q));
	size_t n = 0;
	int rc = 0;
	for (const char *p = query; *p && rc == 0;) {
		const char *end = strchr(p, '&');
		if (!end)
			end = p + strlen(p);
		if (end > p) { /* "a=1&&b=2": empty parameters do not exist */
			const char *eq = memchr(p, '=', (size_t)(end - p));
			const char *kend = eq ? eq : end;
			rc = query_part(p, (size_t)(kend - p), query, &q[n].key, err, errlen);
			if (rc == 0) {
				if (eq)
					rc = query_part(eq + 1, (size_t)(end - eq - 1), query,
							&q[n].value, err, errlen);
				else
					q[n].value = xstrdup(""); /* "acl" signs as "acl=" */
				n++; /* the key is set: freed below even if the value failed */
			}
		}
		p = *end ? end + 1 : end;
	}
	if (rc == 0) {
		qsort(q, n, sizeof(*q), qparam_cmp);
		for (size_t i = 0; i < n; i++)
			sbuf_addf(out, "%s%s=%s", i ? "&" : "", q[i].key, q[i].value);
	}
	for (size_t i = 0; i < n; i++) {
		free(q[i].key);
		free(q[i].value);
	}
	free(q);
	return rc;
}

char *sigv4i_fold_value(const char *v)
{
	sbuf b = SBUF_INIT;
	bool gap = false;
	for (const char *p = v; *p; p++) {
		if (is_space((unsigned char)*p)) {
			gap = true;
			continue;
		}
		if (gap && b.len)
			sbuf_add(&b, " ", 1);
		gap = false;
		sbuf_add(&b, p, 1);
	}
	return sbuf_detach(&b);
}

static int hdr_cmp(const void *a, const void *b)
{
	const struct sigv4i_hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

size_t sigv4i_hdr_merge(struct sigv4i_hdr *h, size_t n)
{
	qsort(h, n, sizeof(*h), hdr_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && strcmp(h[k - 1].name, h[i].name) == 0) {
			sbuf b = SBUF_INIT;
			sbuf_addf(&b, "%s,%s", h[k - 1].value, h[i].value);
			sigv4i_free_secret(h[k - 1].value);
			h[k - 1].value = sbuf_detach(&b);
			free(h[i].name);
			sigv4i_free_secret(h[i].value);
		} else {
			h[k++] = h[i];
		}
	}
	for (size_t i = k; i < n; i++)
		h[i] = (struct sigv4i_hdr){0};
	return k;
}

struct sigv4i_hdr *sigv4i_hdr_find(struct sigv4i_hdr *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(h[i].name, name) == 0)
			return &h[i];
	return NULL;
}

void sigv4i_hdrs_free(struct sigv4i_hdr *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		sigv4i_free_secret(h[i].value); /* one of them may be the session token */
	}
	free(h);
}
