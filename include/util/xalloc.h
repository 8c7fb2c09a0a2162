/*
 * xalloc — allocation that cannot fail: on out of memory the process
 * says so on stderr and aborts.
 *
 * For the small, bounded allocations (names, lists of a few thousand
 * entries, buffers of a request) that every caller would otherwise have
 * to turn into ENOMEM and none could recover from. Allocations whose size
 * comes from outside (a body, a file) keep their error path.
 */
#ifndef SNAPFS_XALLOC_H
#define SNAPFS_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
/* Never NULL, even for n or size 0. */
void *xcalloc(size_t n, size_t size);
/* realloc of n elements of size bytes; checks the product for overflow. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
/* The first n bytes of s (or fewer, up to its NUL), NUL-terminated. */
char *xstrndup(const char *s, size_t n);
/* Says what could not be allocated and aborts. */
void xalloc_die(const char *what) __attribute__((noreturn));

#endif
