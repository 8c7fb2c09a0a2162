/*
 * sbuf — a growable, always NUL-terminated byte buffer, used to build
 * text (paths, messages, metrics) and to hold dumped JSON (jsonx).
 *
 * Allocation failure aborts the process: every caller would otherwise
 * have to handle ENOMEM on a few hundred bytes, and none could recover.
 */
#ifndef SNAPFS_SBUF_H
#define SNAPFS_SBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sbuf {
	char *buf;  /* NUL-terminated; NULL until the first append */
	size_t len; /* bytes used, excluding the NUL */
	size_t cap;
} sbuf;

#define SBUF_INIT                                                                                  \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

void sbuf_add(sbuf *b, const void *data, size_t len);
void sbuf_adds(sbuf *b, const char *s);
void sbuf_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Appends s as one line of text for a log or a reason: control
 * characters and bytes that are not well-formed UTF-8 become "\xNN", so
 * a name can neither forge a line nor carry raw bytes.
 */
void sbuf_add_text(sbuf *b, const char *s);
/* Length of the well-formed UTF-8 sequence (RFC 3629) at p, before end; 0 if none. */
size_t sbuf_utf8_len(const unsigned char *p, const unsigned char *end);
/* Returns b->buf, or "" if nothing was appended; never NULL. */
const char *sbuf_str(const sbuf *b);
/* Gives the buffer to the caller (who frees it) and resets b. Never NULL. */
char *sbuf_detach(sbuf *b);
void sbuf_reset(sbuf *b);
void sbuf_free(sbuf *b);

#endif
