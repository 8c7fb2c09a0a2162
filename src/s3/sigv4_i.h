/*
 * sigv4_i — what sigv4.c (signing) takes from sigv4_canon.c (canonical
 * forms); nobody else sees it. Prefix sigv4i_.
 */
#ifndef SNAPFS_SIGV4_I_H
#define SNAPFS_SIGV4_I_H

#include <stdbool.h>
#include <stddef.h>

#include "sbuf.h"

/* One canonical header: lower-case name, folded value. */
struct sigv4i_hdr {
	char *name;
	char *value;
	size_t order; /* position in the caller's list, to keep duplicates in order */
};

/* Wipes then frees a NUL-terminated secret (NULL: nothing). */
void sigv4i_free_secret(char *s);
/* Appends s[0..len) percent-encoded (unreserved characters kept, and '/' if keep_slash). */
void sigv4i_uri_encode_to(sbuf *b, const char *s, size_t len, bool keep_slash);
/*
 * Writes path without "." and ".." segments and without empty segments
 * ("//"). The result keeps a trailing '/' if the path ended in one or in
 * a dot segment (RFC 3986 5.2.4), and is "/" rather than empty.
 */
void sigv4i_normalize_path(sbuf *out, const char *path);
/* Appends the canonical form of a wire-form query (NULL or "": nothing). */
int sigv4i_canonical_query(sbuf *out, const char *query, char *err, size_t errlen);
/* Trims value and turns every run of white space inside it into one space. */
char *sigv4i_fold_value(const char *v);
/*
 * Sorts h by name and joins the values of equal names with ',' in their
 * original order. Returns the new count; the slots after it are zeroed.
 */
size_t sigv4i_hdr_merge(struct sigv4i_hdr *h, size_t n);
struct sigv4i_hdr *sigv4i_hdr_find(struct sigv4i_hdr *h, size_t n, const char *name);
/* Frees n headers (zeroed slots allowed) and the array. */
void sigv4i_hdrs_free(struct sigv4i_hdr *h, size_t n);

#endif
