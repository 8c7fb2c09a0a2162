/* errbuf — see errbuf.h. */
#include "errbuf.h"
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void errbuf_set(char *err, size_t len, const char *prefix, const char *fmt, ...)
{
	if (!err || !len)
		return;
	int n = snprintf(err, len, "%s: ", prefix);
	if (n < 0 || (size_t)n >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, len - (size_t)n, fmt, ap);
	va_end(ap);
}

void errbuf_line(char *err, size_t len, const char *fmt, ...)
{
	if (!err || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	unsigned char *p = (unsigned char *)err, *end = p + strlen(err);
	while (p < end) {
		if (*p < 0x20 || *p == 0x7f) {
			*p++ = ' ';
			continue;
		}
		/* A byte that starts no well-formed UTF-8 character, or one the length cut. */
		size_t n = sbuf_utf8_len(p, end);
		if (n == 0) {
			*p = '?';
			n = 1;
		}
		p += n;
	}
}
