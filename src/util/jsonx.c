/*
 * jsonx — jansson with snapfs's rules (see jsonx.h): strings valid
 * whatever bytes they hold, escapes spelled as before, one strict loader.
 *
 * Allocation failure aborts, as in sbuf: the trees are small and built
 * under locks by callers that could not recover from ENOMEM.
 */
#include "jsonx.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define JSONX_REAL_DIGITS 15 /* reals are display values, rounded by jsonx_real */

/*
 * jansson seeds the hash function of its objects when the first object is
 * made, by reading /dev/urandom. Seeded here when the program starts, from
 * getrandom(), so that whoever makes the first object (a status read, which
 * must not touch the disk) never opens a file for it.
 */
__attribute__((constructor)) static void jsonx_seed(void)
{
	size_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed) || seed == 0)
		seed = ((size_t)time(NULL) ^ ((size_t)getpid() << 16)) | 1;
	json_object_seed(seed);
}

static void jsonx_oom(void)
{
	fprintf(stderr, "snapfs: out of memory building a JSON document\n");
	abort();
}

/*
 * s with every byte that does not begin a well-formed UTF-8 sequence
 * replaced by U+FFFD (as sbuf_add_text and the writer before jansson
 * did), malloc'd; NULL if s is well-formed already.
 */
static char *jsonx_utf8_fix(const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s), *q = p;
	size_t n;
	while (q < end && (n = sbuf_utf8_len(q, end)) != 0)
		q += n;
	if (q == end)
		return NULL;
	sbuf b = SBUF_INIT;
	sbuf_add(&b, p, (size_t)(q - p));
	while (q < end) {
		n = sbuf_utf8_len(q, end);
		if (n) {
			sbuf_add(&b, q, n);
			q += n;
		} else {
			sbuf_adds(&b, "\xef\xbf\xbd");
			q++;
		}
	}
	return sbuf_detach(&b);
}

static json_t *jsonx_check(json_t *v)
{
	if (!v)
		jsonx_oom();
	return v;
}

json_t *jsonx_str(const char *s)
{
	if (!s)
		return json_null();
	char *fixed = jsonx_utf8_fix(s);
	json_t *v = json_string(fixed ? fixed : s);
	free(fixed);
	return jsonx_check(v);
}

json_t *jsonx_str_or_null(const char *s)
{
	return s && *s ? jsonx_str(s) : json_null();
}

json_t *jsonx_int(int64_t v)
{
	return jsonx_check(json_integer((json_int_t)v));
}

json_t *jsonx_u64(uint64_t v)
{
	return jsonx_int(v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

json_t *jsonx_real(double v, int decimals)
{
	if (!isfinite(v))
		return json_null();
	double scale = 1, scaled;
	for (int i = 0; i < decimals; i++)
		scale *= 10;
	scaled = v * scale;
	/* Rounded half away from zero, where the scaled value fits an integer exactly. */
	if (scaled > -1e15 && scaled < 1e15)
		v = (double)(int64_t)(scaled < 0 ? scaled - 0.5 : scaled + 0.5) / scale;
	return jsonx_check(json_real(v));
}

void jsonx_set(json_t *obj, const char *key, json_t *v)
{
	char *fixed = jsonx_utf8_fix(key);
	int rc = json_object_set_new(obj, fixed ? fixed : key, v);
	free(fixed);
	if (rc < 0)
		jsonx_oom();
}

void jsonx_push(json_t *arr, json_t *v)
{
	if (json_array_append_new(arr, v) < 0)
		jsonx_oom();
}

void jsonx_dump(const json_t *v, size_t flags, sbuf *out)
{
	char *s = json_dumps(v, flags | JSON_REAL_PRECISION(JSONX_REAL_DIGITS));
	if (!s)
		jsonx_oom();
	/*
	 * jansson writes \b, \f, \u001F and a raw DEL; snapfs wrote \u0008,
	 * \u000c, \u001f and \u007f. A backslash in jansson's output always
	 * begins an escape, and a DEL byte is always inside a string.
	 */
	for (const char *p = s; *p;) {
		size_t run = strcspn(p, "\\\x7f");
		sbuf_add(out, p, run);
		p += run;
		if (*p == 0x7f) {
			sbuf_adds(out, "\\u007f");
			p++;
		} else if (*p == '\\') {
			char e = p[1];
			if (e == 'b') {
				sbuf_adds(out, "\\u0008");
			} else if (e == 'f') {
				sbuf_adds(out, "\\u000c");
			} else if (e == 'u' && strnlen(p, 6) == 6) {
				char hex[6];
				memcpy(hex, p, 6);
				for (int i = 2; i < 6; i++)
					if (hex[i] >= 'A' && hex[i] <= 'F')
						hex[i] = (char)(hex[i] - 'A' + 'a');
				sbuf_add(out, hex, 6);
				p += 4;
			} else if (e) {
				sbuf_add(out, p, 2);
			} else {
				break; /* never: jansson does not end on a backslash */
			}
			p += 2;
		}
	}
	free(s);
}

/* Whether v nests at most left levels of objects and arrays. */
static bool jsonx_depth_ok(json_t *v, int left)
{
	const char *key;
	json_t *m;
	size_t i;
	if (!json_is_object(v) && !json_is_array(v))
		return true;
	if (left <= 0)
		return false;
	if (json_is_object(v)) {
		json_object_foreach(v, key, m) if (!jsonx_depth_ok(m, left - 1)) return false;
	} else {
		json_array_foreach(v, i, m) if (!jsonx_depth_ok(m, left - 1)) return false;
	}
	return true;
}

int jsonx_load(const char *text, int max_depth, json_t **out)
{
	json_error_t e;
	*out = NULL;
	if (!text)
		return -EINVAL;
	json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	if (!v)
		return -EINVAL;
	if (!json_is_object(v) || !jsonx_depth_ok(v, max_depth)) {
		json_decref(v);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int jsonx_copy(char *buf, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n >= cap)
		return -EINVAL;
	memcpy(buf, s, n + 1);
	return 0;
}
