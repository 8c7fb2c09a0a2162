/*
 * errbuf — fills a caller's error buffer: "PREFIX: message".
 *
 * Modules that report errors into a char buffer (the S3 client, the
 * signer, credential loading) share this so that every message is
 * formatted and truncated the same way. A NULL or empty buffer is left
 * alone.
 */
#ifndef SNAPFS_ERRBUF_H
#define SNAPFS_ERRBUF_H

#include <stddef.h>

void errbuf_set(char *err, size_t len, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Formats into err as one line of UTF-8 (reasons, SQLite messages):
 * control characters become spaces, and bytes that are not well-formed
 * UTF-8 (raw bytes in a text, a character the length cut) become '?'.
 */
void errbuf_line(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
