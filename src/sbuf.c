/*
 * sbuf — growable string buffer. Invariant: when buf is not NULL,
 * buf[len] == '\0' and len < cap.
 */
#include "sbuf.h"

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
	char *n = realloc(b->buf, cap);
	if (!n) {
		fprintf(stderr, "snapfs: out of memory growing a buffer to %zu bytes\n", cap);
		abort();
	}
	b->buf = n;
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

void sbuf_add_json_str(sbuf *b, const char *s)
{
	sbuf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			sbuf_adds(b, "\\\"");
			break;
		case '\\':
			sbuf_adds(b, "\\\\");
			break;
		case '\n':
			sbuf_adds(b, "\\n");
			break;
		case '\r':
			sbuf_adds(b, "\\r");
			break;
		case '\t':
			sbuf_adds(b, "\\t");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				sbuf_addf(b, "\\u%04x", *p);
			else
				sbuf_add(b, p, 1);
		}
	}
	sbuf_add(b, "\"", 1);
}

const char *sbuf_str(const sbuf *b)
{
	return b->buf ? b->buf : "";
}

char *sbuf_detach(sbuf *b)
{
	char *s = b->buf ? b->buf : strdup("");
	if (!s)
		abort();
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
