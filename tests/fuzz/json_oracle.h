/*
 * json_oracle — an independent, strict RFC 8259 reader for the fuzz
 * targets of snapfs's own JSON readers (manifest, lease and pointer).
 *
 * It is the reference those readers are compared against: whatever they
 * accept must be JSON here (UTF-8 included), and the fields they return
 * must be the ones this reader finds. It is written for clarity, not
 * speed, and shares no code with src/. Lone surrogate escapes are
 * allowed, as RFC 8259's grammar allows them; snapfs's readers refuse
 * them, which is stricter and fine.
 */
#ifndef SNAPFS_FUZZ_JSON_ORACLE_H
#define SNAPFS_FUZZ_JSON_ORACLE_H

#include "fuzz.h"

#define JO_MAX_DEPTH 256

struct jo {
	const unsigned char *p, *end;
	int depth;      /* containers open now */
	int max_depth;  /* deepest nesting seen (the top-level object counts 1) */
	bool any_bytes; /* lax: bytes >= 0x80 in strings need not be UTF-8 */
	bool lone_surrogate; /* a \uD800-\uDFFF escape outside a pair was seen */
	bool nul_escape;     /* a \u0000 was seen */
};

static inline void jo_ws(struct jo *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static inline bool jo_hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	if (end - p < 4)
		return false;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		v = v << 4 | d;
	}
	*out = v;
	return true;
}

/* Appends code point cp as UTF-8 to out (may be NULL: count only). */
static inline void jo_put_cp(char *out, size_t *n, unsigned cp)
{
	unsigned char b[4];
	size_t k;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (out)
		memcpy(out + *n, b, k);
	*n += k;
}

/*
 * A string at j->p (its opening quote). If out is not NULL it receives
 * the decoded bytes (at most as many as the token is long) and *len
 * their count; a \u0000 decodes to a NUL byte inside.
 */
static inline bool jo_string(struct jo *j, char *out, size_t *len)
{
	size_t n = 0;
	if (j->p >= j->end || *j->p != '"')
		return false;
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return false;
		unsigned c = *j->p;
		if (c == '"') {
			j->p++;
			break;
		}
		if (c < 0x20)
			return false;
		if (c != '\\') {
			size_t k = j->any_bytes && c >= 0x80 ? 1 : fuzz_utf8_len(j->p, j->end);
			if (!k)
				return false;
			if (out)
				memcpy(out + n, j->p, k);
			n += k;
			j->p += k;
			continue;
		}
		if (j->end - j->p < 2)
			return false;
		unsigned e = j->p[1];
		j->p += 2;
		static const char esc[] = "\"\\/bfnrt", dec[] = "\"\\/\b\f\n\r\t";
		const char *simple = e ? strchr(esc, (int)e) : NULL;
		if (simple) {
			if (out)
				out[n] = dec[simple - esc];
			n++;
			continue;
		}
		if (e != 'u')
			return false;
		unsigned cp, lo;
		if (!jo_hex4(j->p, j->end, &cp))
			return false;
		j->p += 4;
		if (cp >= 0xd800 && cp <= 0xdbff && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
		    jo_hex4(j->p + 2, j->end, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
			j->p += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		} else if (cp >= 0xd800 && cp <= 0xdfff) {
			j->lone_surrogate = true;
		}
		if (cp == 0)
			j->nul_escape = true;
		jo_put_cp(out, &n, cp); /* a lone surrogate encodes as its 3 bytes */
	}
	if (len)
		*len = n;
	return true;
}

static inline bool jo_number(struct jo *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return false;
	if (*j->p == '0')
		j->p++;
	else
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return false;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return false;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	return true;
}

static inline bool jo_word(struct jo *j, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n))
		return false;
	j->p += n;
	return true;
}

static inline bool jo_value(struct jo *j)
{
	jo_ws(j);
	if (j->p >= j->end)
		return false;
	unsigned c = *j->p;
	if (c == '"')
		return jo_string(j, NULL, NULL);
	if (c == 't')
		return jo_word(j, "true");
	if (c == 'f')
		return jo_word(j, "false");
	if (c == 'n')
		return jo_word(j, "null");
	if (c != '{' && c != '[')
		return jo_number(j);
	if (++j->depth > JO_MAX_DEPTH)
		return false;
	if (j->depth > j->max_depth)
		j->max_depth = j->depth;
	unsigned close = c == '{' ? '}' : ']';
	j->p++;
	jo_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		jo_ws(j);
		if (close == '}') {
			if (!jo_string(j, NULL, NULL))
				return false;
			jo_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return false;
			j->p++;
		}
		if (!jo_value(j))
			return false;
		jo_ws(j);
		if (j->p >= j->end)
			return false;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != close)
			return false;
		j->p++;
		j->depth--;
		return true;
	}
}

/* One member of an object: the decoded key, and the value's text. */
struct jo_member {
	char *key;
	size_t klen;
	const char *v;
	size_t vlen;
};

struct jo_object {
	struct jo_member *m;
	size_t n;
	int max_depth;	     /* nesting of the whole document, this object counting 1 */
	bool lone_surrogate; /* somewhere in the document, as in struct jo */
	bool nul_escape;
};

static inline void jo_object_free(struct jo_object *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->m[i].key);
	free(o->m);
	memset(o, 0, sizeof(*o));
}

/*
 * Reads text[0..len) as one JSON document (white space around it) whose
 * value is an object, and lists its members in order. False if it is
 * not JSON or not an object. any_bytes: strings may hold bytes that are
 * not UTF-8 (to tell that fault from others).
 */
static inline bool jo_parse_object_ex(const char *text, size_t len, bool any_bytes, struct jo_object *o)
{
	memset(o, 0, sizeof(*o));
	struct jo j = {(const unsigned char *)text, (const unsigned char *)text + len, 1, 1, any_bytes, false, false};
	size_t cap = 0;
	jo_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return false;
	j.p++;
	jo_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
	} else {
		for (;;) {
			jo_ws(&j);
			const unsigned char *ks = j.p;
			if (!jo_string(&j, NULL, NULL))
				goto bad;
			size_t klen = 0;
			char *key = malloc((size_t)(j.p - ks) + 1);
			FUZZ_SETUP(key, "out of memory");
			struct jo k2 = {ks, j.end, 0, 0, any_bytes, false, false};
			jo_string(&k2, key, &klen);
			key[klen] = '\0';
			if (o->n == cap) {
				cap = cap ? cap * 2 : 8;
				struct jo_member *m = realloc(o->m, cap * sizeof(*m));
				FUZZ_SETUP(m, "out of memory");
				o->m = m;
			}
			o->m[o->n] = (struct jo_member){key, klen, NULL, 0};
			o->n++;
			jo_ws(&j);
			if (j.p >= j.end || *j.p != ':')
				goto bad;
			j.p++;
			jo_ws(&j);
			const unsigned char *vs = j.p;
			if (!jo_value(&j))
				goto bad;
			o->m[o->n - 1].v = (const char *)vs;
			o->m[o->n - 1].vlen = (size_t)(j.p - vs);
			jo_ws(&j);
			if (j.p >= j.end)
				goto bad;
			if (*j.p == ',') {
				j.p++;
				continue;
			}
			if (*j.p != '}')
				goto bad;
			j.p++;
			break;
		}
	}
	jo_ws(&j);
	if (j.p != j.end)
		goto bad;
	o->max_depth = j.max_depth;
	o->lone_surrogate = j.lone_surrogate;
	o->nul_escape = j.nul_escape;
	return true;
bad:
	jo_object_free(o);
	return false;
}

static inline bool jo_parse_object(const char *text, size_t len, struct jo_object *o)
{
	return jo_parse_object_ex(text, len, false, o);
}

/* Whether text[0..len) is one JSON document of any value. */
static inline bool jo_valid(const char *text, size_t len)
{
	struct jo j = {(const unsigned char *)text, (const unsigned char *)text + len, 0, 0, false, false, false};
	if (!jo_value(&j))
		return false;
	jo_ws(&j);
	return j.p == j.end;
}

/* The members named key (exact bytes); *count how many there are. */
static inline const struct jo_member *jo_find(const struct jo_object *o, const char *key, size_t *count)
{
	const struct jo_member *first = NULL;
	*count = 0;
	for (size_t i = 0; i < o->n; i++) {
		if (o->m[i].klen == strlen(key) && !memcmp(o->m[i].key, key, o->m[i].klen)) {
			if (!first)
				first = &o->m[i];
			(*count)++;
		}
	}
	return first;
}

/* A value that is a string: its decoded bytes (malloc'd, NUL added) and length; NULL if not a string. */
static inline char *jo_as_string(const struct jo_member *m, size_t *len)
{
	if (!m->vlen || m->v[0] != '"')
		return NULL;
	char *s = malloc(m->vlen + 1);
	FUZZ_SETUP(s, "out of memory");
	struct jo j = {(const unsigned char *)m->v, (const unsigned char *)m->v + m->vlen, 0, 0, true, false, false};
	size_t n = 0;
	jo_string(&j, s, &n);
	s[n] = '\0';
	*len = n;
	return s;
}

/*
 * A value that is a whole number: no fraction, no exponent, within
 * [-2^127, 2^127). *neg_zero says it was spelled "-0". False otherwise.
 */
static inline bool jo_as_int(const struct jo_member *m, __int128 *out, bool *neg_zero)
{
	const char *s = m->v, *end = m->v + m->vlen;
	bool neg = s < end && *s == '-';
	if (neg)
		s++;
	if (s >= end || *s < '0' || *s > '9')
		return false;
	unsigned __int128 v = 0;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > ((unsigned __int128)1 << 126) / 10)
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*out = neg ? -(__int128)v : (__int128)v;
	*neg_zero = neg && v == 0;
	return true;
}

#endif
