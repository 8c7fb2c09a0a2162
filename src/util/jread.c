/*
 * jread — a small strict reader for the JSON documents snapfs writes and
 * reads back (lease, pointer, upload record, manifest fields): see
 * jread.h. Recursive descent over a NUL-terminated string; depth bounded
 * by JREAD_DEPTH so that hostile nesting cannot exhaust the stack.
 */
#include "jread.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define JREAD_DEPTH 16

struct jread_cur {
	const char *p;
};

static void jread_ws(struct jread_cur *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static int jread_hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*out = v;
	return 0;
}

/* Appends byte b to out (cap bytes with the NUL); *n counts; overflow sets *fits false. */
static void jread_put(char *out, size_t cap, size_t *n, char b, bool *fits)
{
	if (out && *n + 1 < cap)
		out[*n] = b;
	else
		*fits = false;
	(*n)++;
}

/* A string at j->p (the opening quote) into out (may be NULL: skip). */
static int jread_string(struct jread_cur *j, char *out, size_t cap, bool *fits)
{
	size_t n = 0;
	*fits = true;
	if (*j->p != '"')
		return -EINVAL;
	j->p++;
	for (;;) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			j->p++;
			break;
		}
		if (c < 0x20) /* control bytes and the terminating NUL */
			return -EINVAL;
		if (c != '\\') {
			jread_put(out, cap, &n, (char)c, fits);
			j->p++;
			continue;
		}
		char e = j->p[1];
		j->p += 2;
		switch (e) {
		case '"':
		case '\\':
		case '/':
			jread_put(out, cap, &n, e, fits);
			break;
		case 'b':
			jread_put(out, cap, &n, '\b', fits);
			break;
		case 'f':
			jread_put(out, cap, &n, '\f', fits);
			break;
		case 'n':
			jread_put(out, cap, &n, '\n', fits);
			break;
		case 'r':
			jread_put(out, cap, &n, '\r', fits);
			break;
		case 't':
			jread_put(out, cap, &n, '\t', fits);
			break;
		case 'u': {
			unsigned cp, lo;
			if (jread_hex4(j->p, &cp) < 0)
				return -EINVAL;
			j->p += 4;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return -EINVAL;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->p[0] != '\\' || j->p[1] != 'u' || jread_hex4(j->p + 2, &lo) < 0 ||
				    lo < 0xdc00 || lo > 0xdfff)
					return -EINVAL;
				j->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return -EINVAL; /* would cut the C string short */
			if (cp < 0x80) {
				jread_put(out, cap, &n, (char)cp, fits);
			} else if (cp < 0x800) {
				jread_put(out, cap, &n, (char)(0xc0 | (cp >> 6)), fits);
				jread_put(out, cap, &n, (char)(0x80 | (cp & 0x3f)), fits);
			} else if (cp < 0x10000) {
				jread_put(out, cap, &n, (char)(0xe0 | (cp >> 12)), fits);
				jread_put(out, cap, &n, (char)(0x80 | ((cp >> 6) & 0x3f)), fits);
				jread_put(out, cap, &n, (char)(0x80 | (cp & 0x3f)), fits);
			} else {
				jread_put(out, cap, &n, (char)(0xf0 | (cp >> 18)), fits);
				jread_put(out, cap, &n, (char)(0x80 | ((cp >> 12) & 0x3f)), fits);
				jread_put(out, cap, &n, (char)(0x80 | ((cp >> 6) & 0x3f)), fits);
				jread_put(out, cap, &n, (char)(0x80 | (cp & 0x3f)), fits);
			}
			break;
		}
		default:
			return -EINVAL;
		}
	}
	if (out && cap)
		out[n < cap ? n : cap - 1] = '\0';
	return 0;
}

/*
 * A number at j->p. *is_int: an integer that fits *iv (signed 64-bit);
 * fractions and exponents are valid JSON but not integers.
 */
static int jread_number(struct jread_cur *j, int64_t *iv, bool *is_int)
{
	const char *s = j->p;
	bool neg = false, overflow = false;
	uint64_t v = 0;
	*is_int = true;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (*s == '0') {
		s++;
	} else if (*s >= '1' && *s <= '9') {
		while (*s >= '0' && *s <= '9') {
			unsigned d = (unsigned)(*s - '0');
			if (v > (UINT64_MAX - d) / 10)
				overflow = true;
			else
				v = v * 10 + d;
			s++;
		}
	} else {
		return -EINVAL;
	}
	if (*s == '.') {
		*is_int = false;
		s++;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		*is_int = false;
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	j->p = s;
	if (overflow || v > (uint64_t)INT64_MAX)
		*is_int = false;
	if (*is_int)
		*iv = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

static int jread_literal(struct jread_cur *j, const char *word)
{
	size_t n = strlen(word);
	if (strncmp(j->p, word, n) != 0)
		return -EINVAL;
	j->p += n;
	return 0;
}

static int jread_obj(struct jread_cur *j, const struct jread_field *fields, size_t n, int depth);

/* Checks and skips any value. */
static int jread_skip(struct jread_cur *j, int depth)
{
	bool fits;
	int64_t iv;
	bool is_int;
	if (depth > JREAD_DEPTH)
		return -EINVAL;
	switch (*j->p) {
	case '"':
		return jread_string(j, NULL, 0, &fits);
	case '{':
		return jread_obj(j, NULL, 0, depth + 1);
	case '[':
		j->p++;
		jread_ws(j);
		if (*j->p == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			jread_ws(j);
			if (jread_skip(j, depth + 1) < 0)
				return -EINVAL;
			jread_ws(j);
			if (*j->p == ']') {
				j->p++;
				return 0;
			}
			if (*j->p != ',')
				return -EINVAL;
			j->p++;
		}
	case 't':
		return jread_literal(j, "true");
	case 'f':
		return jread_literal(j, "false");
	case 'n':
		return jread_literal(j, "null");
	default:
		return jread_number(j, &iv, &is_int);
	}
}

static int jread_field(struct jread_cur *j, const struct jread_field *f, int depth)
{
	bool fits, is_int;
	int64_t iv;
	switch (f->type) {
	case JREAD_STR:
		if (jread_string(j, f->dst, f->cap, &fits) < 0 || !fits)
			return -EINVAL;
		return 0;
	case JREAD_U64:
		if (jread_number(j, &iv, &is_int) < 0 || !is_int || iv < 0)
			return -EINVAL;
		*(uint64_t *)f->dst = (uint64_t)iv;
		return 0;
	case JREAD_I64:
		if (jread_number(j, &iv, &is_int) < 0 || !is_int)
			return -EINVAL;
		*(int64_t *)f->dst = iv;
		return 0;
	case JREAD_OBJ:
		if (*j->p != '{')
			return -EINVAL;
		return jread_obj(j, f->sub, f->nsub, depth + 1);
	case JREAD_ARR:
		if (*j->p != '[' || depth + 1 > JREAD_DEPTH)
			return -EINVAL;
		j->p++;
		jread_ws(j);
		if (*j->p == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			jread_ws(j);
			if (*j->p != '{' || jread_obj(j, f->sub, f->nsub, depth + 2) < 0)
				return -EINVAL;
			if (f->each && f->each(f->each_arg) < 0)
				return -EINVAL;
			jread_ws(j);
			if (*j->p == ']') {
				j->p++;
				return 0;
			}
			if (*j->p != ',')
				return -EINVAL;
			j->p++;
		}
	}
	return -EINVAL;
}

/* An object at j->p; fields NULL: check and skip. */
static int jread_obj(struct jread_cur *j, const struct jread_field *fields, size_t n, int depth)
{
	uint64_t seen = 0;
	char key[64];
	bool fits;
	if (depth > JREAD_DEPTH || n > 64 || *j->p != '{')
		return -EINVAL;
	j->p++;
	jread_ws(j);
	if (*j->p == '}') {
		j->p++;
		goto check;
	}
	for (;;) {
		jread_ws(j);
		if (jread_string(j, key, sizeof(key), &fits) < 0)
			return -EINVAL;
		jread_ws(j);
		if (*j->p != ':')
			return -EINVAL;
		j->p++;
		jread_ws(j);
		size_t i = n;
		if (fits)
			for (i = 0; i < n; i++)
				if (strcmp(fields[i].name, key) == 0)
					break;
		if (i < n) {
			if (seen & (1ull << i))
				return -EINVAL; /* repeated */
			seen |= 1ull << i;
			if (jread_field(j, &fields[i], depth) < 0)
				return -EINVAL;
		} else if (jread_skip(j, depth) < 0) {
			return -EINVAL;
		}
		jread_ws(j);
		if (*j->p == '}') {
			j->p++;
			break;
		}
		if (*j->p != ',')
			return -EINVAL;
		j->p++;
	}
check:
	for (size_t i = 0; i < n; i++)
		if (!(seen & (1ull << i)) && !fields[i].optional)
			return -EINVAL;
	return 0;
}

int jread_object(const char *json, const struct jread_field *fields, size_t n)
{
	if (!json)
		return -EINVAL;
	struct jread_cur j = {.p = json};
	jread_ws(&j);
	if (jread_obj(&j, fields, n, 0) < 0)
		return -EINVAL;
	jread_ws(&j);
	return *j.p ? -EINVAL : 0;
}
