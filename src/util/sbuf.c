/*
 * sbuf — growable string buffer. Invariant: when buf is not NULL,
 * buf[len] == '\0' and len < cap.
 */
#include "sbuf.h"

#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sbuf_grow(sbuf *b, size_t extra)
{
	if (b->buf && b->len + extra < b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap <= b->len + extra)
		cap *= 2;
	b->buf = xreallocarray(b->buf, cap, 1);
	b->cap = cap;
}

void sbuf_add(sbuf *b, const void *data, size_t len)
{
	sbuf_grow(b, len);
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
}

void sbuf_adds(sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addf(sbuf *b, const char *fmt, ...)
{
	/* Most pieces are short: format into the stack first, retry only when it did not fit. */
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		sbuf_add(b, small, (size_t)n);
		return;
	}
	sbuf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
size_t sbuf_utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t n;
	unsigned lo = 0x80, hi = 0xbf;
	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2;
	else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		if (*p == 0xe0)
			lo = 0xa0;
		else if (*p == 0xed)
			hi = 0x9f; /* no UTF-16 surrogates */
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		if (*p == 0xf0)
			lo = 0x90;
		else if (*p == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

void sbuf_add_text(sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *end = (const unsigned char *)s + strlen(s);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = *p < 0x20 || *p == 0x7f ? 0 : sbuf_utf8_len(p, end);
		if (n == 0) {
			char e[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
			sbuf_add(b, e, 4);
			n = 1;
		} else {
			sbuf_add(b, p, n);
		}
		p += n;
	}
}

const char *sbuf_str(const sbuf *b)
{
	return b->buf ? b->buf : "";
}

char *sbuf_detach(sbuf *b)
{
	char *s = b->buf ? b->buf : xstrdup("");
	b->buf = NULL;
	b->len = b->cap = 0;
	return s;
}

void sbuf_reset(sbuf *b)
{
	b->len = 0;
	if (b->buf)
		b->buf[0] = '\0';
}

void sbuf_free(sbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}
