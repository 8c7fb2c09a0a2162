/*
 * sigv4test — see sigv4test.h.
 */
#include "sigv4test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsx.h"
#include "tap.h"

/* ---- small helpers ---------------------------------------------------- */

void *sigt_xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		perror("calloc");
		exit(2);
	}
	return p;
}

char *sigt_strndup(const char *s, size_t n)
{
	char *d = sigt_xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* Whole file, NUL-terminated; NULL (errno set) if it cannot be read. */
char *sigt_read_file(const char *path, size_t *len)
{
	char *buf;
	size_t n;
	int rc = fsx_read_all(path, &buf, &n);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	if (len)
		*len = n;
	return buf;
}

bool sigt_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void sigt_rstrip(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* Prints s[0..len) with control and non-ASCII bytes escaped. */
static void sigt_put_escaped(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\' || c == '"')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
}

/*
 * Compares got with want; on a difference prints one line naming the
 * case, what differs and the first differing line of each. True if equal.
 */
bool sigt_same(const char *cas, const char *what, const char *want, const char *got)
{
	if (want && got && strcmp(want, got) == 0)
		return true;
	if (!want || !got) {
		tap_note("FAIL %s: %s: %s\n", cas, what,
			 !want ? "no expected value" : "nothing produced");
		return false;
	}
	const char *w = want, *g = got;
	int line = 1;
	for (;;) {
		const char *we = strchr(w, '\n'), *ge = strchr(g, '\n');
		size_t wl = we ? (size_t)(we - w) : strlen(w), gl = ge ? (size_t)(ge - g) : strlen(g);
		if (wl != gl || memcmp(w, g, wl) != 0 || !we != !ge) {
			/* Say which one ends here only when that is (part of) the difference. */
			bool ends = !we != !ge;
			tap_note("FAIL %s: %s line %d: want \"", cas, what, line);
			sigt_put_escaped(stdout, w, wl);
			tap_note("\"%s got \"", ends && !we ? " (its last line)" : "");
			sigt_put_escaped(stdout, g, gl);
			tap_note("\"%s\n", ends && !ge ? " (its last line)" : "");
			return false;
		}
		w = we + 1;
		g = ge + 1;
		line++;
	}
}

bool sigt_parse_time(const char *s, const char *fmt, time_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, fmt, &tm);
	if (!end || *end)
		return false;
	*out = timegm(&tm);
	return true;
}

/* ---- request.txt ------------------------------------------------------ */

void sigt_req_free(struct sigt_req *r)
{
	free(r->method);
	free(r->path);
	free(r->query);
	for (size_t i = 0; i < r->nh; i++) {
		free((char *)r->h[i].name);
		free((char *)r->h[i].value);
	}
	free(r->h);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Next line of *p without its "\n" (and "\r"); NULL at the end. */
char *sigt_next_line(const char **p, const char *end)
{
	if (*p >= end)
		return NULL;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *e = nl ? nl : end;
	char *line = sigt_strndup(*p, (size_t)(e - *p));
	*p = nl ? nl + 1 : end;
	sigt_rstrip(line); /* "\r" only matters; values are trimmed by the signer anyway */
	return line;
}

/*
 * "METHOD TARGET HTTP/1.1", headers (a line starting with white space
 * continues the previous value: kept with its line break, as the signer
 * must fold it), an empty line, then the body verbatim. TARGET may hold
 * spaces (get-space-*), so it runs from the first to the last space.
 */
int sigt_req_parse(const char *text, size_t len, struct sigt_req *r, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	const char *p = text, *end = text + len;
	char *first = sigt_next_line(&p, end);
	if (!first) {
		snprintf(why, whylen, "empty request");
		return -1;
	}
	char *sp1 = strchr(first, ' '), *sp2 = strrchr(first, ' ');
	if (!sp1 || sp1 == sp2 || strncmp(sp2 + 1, "HTTP/", 5) != 0) {
		snprintf(why, whylen, "request line \"%.80s\" is not METHOD TARGET HTTP/x", first);
		free(first);
		return -1;
	}
	r->method = sigt_strndup(first, (size_t)(sp1 - first));
	char *target = sigt_strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	char *q = strchr(target, '?');
	if (q) {
		r->query = sigt_strndup(q + 1, strlen(q + 1));
		*q = '\0';
	}
	r->path = target;
	free(first);

	size_t cap = 8;
	r->h = sigt_xmalloc(cap * sizeof(*r->h));
	char *line;
	while ((line = sigt_next_line(&p, end))) {
		if (!*line) {
			free(line);
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			if (!r->nh) {
				snprintf(why, whylen, "continuation line before any header");
				free(line);
				return -1;
			}
			size_t ol = strlen(r->h[r->nh - 1].value), ll = strlen(line);
			char *v = sigt_xmalloc(ol + 1 + ll + 1);
			memcpy(v, r->h[r->nh - 1].value, ol);
			v[ol] = '\n';
			memcpy(v + ol + 1, line, ll + 1);
			free((char *)r->h[r->nh - 1].value);
			r->h[r->nh - 1].value = v;
			free(line);
			continue;
		}
		char *colon = strchr(line, ':');
		if (!colon) {
			snprintf(why, whylen, "header line \"%.80s\" has no ':'", line);
			free(line);
			return -1;
		}
		if (r->nh == cap) {
			cap *= 2;
			r->h = realloc(r->h, cap * sizeof(*r->h));
			if (!r->h) {
				perror("realloc");
				exit(2);
			}
		}
		r->h[r->nh].name = sigt_strndup(line, (size_t)(colon - line));
		r->h[r->nh].value = sigt_strndup(colon + 1, strlen(colon + 1));
		r->nh++;
		free(line);
	}
	r->body_len = (size_t)(end - p);
	r->body = sigt_strndup(p, r->body_len);
	return 0;
}

const char *sigt_req_header(const struct sigt_req *r, const char *name)
{
	for (size_t i = 0; i < r->nh; i++)
		if (strcasecmp(r->h[i].name, name) == 0)
			return r->h[i].value;
	return NULL;
}
