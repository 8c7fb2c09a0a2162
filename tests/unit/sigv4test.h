/*
 * sigv4test — what the signer's vector tests share: reading the vector
 * files, comparing expected and produced texts line by line (a failure
 * names the first differing line), and parsing an aws-sigv4 request.txt.
 */
#ifndef SNAPFS_TEST_SIGV4TEST_H
#define SNAPFS_TEST_SIGV4TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "sigv4.h"

/* A request.txt: method, target split at '?', headers, body. */
struct sigt_req {
	char *method, *path, *query; /* query NULL if the target has no '?' */
	struct sigv4_header *h;
	size_t nh;
	char *body;
	size_t body_len;
};

void *sigt_xmalloc(size_t n);
char *sigt_strndup(const char *s, size_t n);
/* Whole file, NUL-terminated; NULL (errno set) if it cannot be read. */
char *sigt_read_file(const char *path, size_t *len);
bool sigt_is_dir(const char *path);
void sigt_rstrip(char *s);
/*
 * Compares got with want; on a difference prints one line naming the
 * case, what differs and the first differing line of each. True if equal.
 */
bool sigt_same(const char *cas, const char *what, const char *want, const char *got);
bool sigt_parse_time(const char *s, const char *fmt, time_t *out);
/* Next line of *p without its "\n" (and "\r"); NULL at the end. */
char *sigt_next_line(const char **p, const char *end);
void sigt_req_free(struct sigt_req *r);
/*
 * "METHOD TARGET HTTP/1.1", headers (a line starting with white space
 * continues the previous value: kept with its line break, as the signer
 * must fold it), an empty line, then the body verbatim. TARGET may hold
 * spaces (get-space-*), so it runs from the first to the last space.
 */
int sigt_req_parse(const char *text, size_t len, struct sigt_req *r, char *why, size_t whylen);
const char *sigt_req_header(const struct sigt_req *r, const char *name);

#endif
