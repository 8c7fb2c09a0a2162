/*
 * json_oracle — an independent, strict RFC 8259 reader for the fuzz
 * targets of snapfs's own JSON readers (manifest, lease and pointer).
 *
 * It is the reference those readers are compared against: whatever they
 * accept must be JSON here (UTF-8 included), and the fields they return
 * must be the ones this reader finds. It is written for clarity, not
 * speed, and shares no code with src/ nor with jansson, which snapfs
 * reads JSON with (util/jsonx). RFC 8259's grammar allows some things
 * snapfs's reader refuses on purpose (jsonx.h), which is stricter and
 * fine; the oracle accepts them and says it saw them, so that a target
 * can tell a documented refusal from a wrong one:
 *  - a lone surrogate escape (\uD800-\uDFFF outside a pair): not Unicode;
 *  - \u0000: no NUL inside a C string;
 *  - a key twice in one object, at any depth (RFC 8259 4: "SHOULD be
 *    unique");
 *  - a number out of range (RFC 8259 6 lets implementations limit it):
 *    a whole number (no fraction, no exponent) outside the signed 64
 *    bits, or any number whose magnitude is past what a double holds.
 */
#ifndef SNAPFS_FUZZ_JSON_ORACLE_H
#define SNAPFS_FUZZ_JSON_ORACLE_H

#include "fuzz.h"

#include <math.h>

#define JO_MAX_DEPTH 256

struct jo {
	const unsigned char *p, *end;
	int depth;           /* containers open now */
	int max_depth;       /* deepest nesting seen (the top-level object counts 1) */
	bool any_bytes;      /* lax: bytes >= 0x80 in strings need not be UTF-8 */
	bool lone_surrogate; /* a \uD800-\uDFFF escape outside a pair was seen */
	bool nul_escape;     /* a \u0000 was seen */
	bool dup_key;        /* an object had a key twice (decoded, byte for byte) */
	bool num_range;      /* a number out of range (see the top of this file) */
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
		if (cp >= 0xd800 && cp <= 0xdbff && j->end - j->p >= 6 && j->p[0] == '\\' &&
		    j->p[1] == 'u' && jo_hex4(j->p + 2, j->end, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
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

/*
 * Whether the number token s[0..n) is in range: a whole number within
 * [-2^63, 2^63-1], any other number finite as a double.
 */
static inline bool jo_number_in_range(const unsigned char *s, size_t n)
{
	bool whole = !memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n);
	if (whole) {
		bool neg = n && s[0] == '-';
		unsigned __int128 v = 0;
		for (size_t i = neg; i < n; i++) {
			v = v * 10 + (unsigned)(s[i] - '0');
			if (v > (unsigned __int128)1 << 64)
				return false;
		}
		return neg ? v <= (unsigned __int128)1 << 63 : v < (unsigned __int128)1 << 63;
	}
	char *copy = malloc(n + 1);
	FUZZ_SETUP(copy, "out of memory");
	memcpy(copy, s, n);
	copy[n] = '\0';
	double d = strtod(copy, NULL);
	free(copy);
	return isfinite(d);
}

static inline bool jo_number(struct jo *j)
{
	const unsigned char *start = j->p;
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
	if (!jo_number_in_range(start, (size_t)(j->p - start)))
		j->num_range = true;
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

/* A key as decoded, to look for one given twice. */
struct jo_key {
	char *s;
	size_t n;
};

static inline int jo_key_cmp(const void *a, const void *b)
{
	const struct jo_key *x = a, *y = b;
	size_t n = x->n < y->n ? x->n : y->n;
	int c = n ? memcmp(x->s, y->s, n) : 0;
	return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Whether two of keys[0..n) are the same bytes; frees them. */
static inline bool jo_keys_dup(struct jo_key *keys, size_t n)
{
	bool dup = false;
	if (n > 1) {
		qsort(keys, n, sizeof(*keys), jo_key_cmp);
		for (size_t i = 1; i < n && !dup; i++)
			dup = !jo_key_cmp(&keys[i - 1], &keys[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i].s);
	free(keys);
	return dup;
}

/* Decodes the key string at j->p into *keys (grown), moving past it as jo_string does. */
static inline bool jo_key(struct jo *j, struct jo_key **keys, size_t *n, size_t *cap)
{
	const unsigned char *ks = j->p;
	if (!jo_string(j, NULL, NULL))
		return false;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		struct jo_key *k = realloc(*keys, *cap * sizeof(*k));
		FUZZ_SETUP(k, "out of memory");
		*keys = k;
	}
	char *s = malloc((size_t)(j->p - ks) + 1);
	FUZZ_SETUP(s, "out of memory");
	struct jo k2 = {ks, j->end, 0, 0, j->any_bytes, false, false, false, false};
	size_t len = 0;
	jo_string(&k2, s, &len);
	(*keys)[(*n)++] = (struct jo_key){s, len};
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
	struct jo_key *keys = NULL;
	size_t nkeys = 0, cap = 0;
	bool ok = false;
	for (;;) {
		jo_ws(j);
		if (close == '}') {
			if (!jo_key(j, &keys, &nkeys, &cap))
				break;
			jo_ws(j);
			if (j->p >= j->end || *j->p != ':')
				break;
			j->p++;
		}
		if (!jo_value(j))
			break;
		jo_ws(j);
		if (j->p >= j->end)
			break;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != close)
			break;
		j->p++;
		j->depth--;
		ok = true;
		break;
	}
	if (jo_keys_dup(keys, nkeys))
		j->dup_key = true;
	return ok;
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
	int max_depth;       /* nesting of the whole document, this object counting 1 */
	bool lone_surrogate; /* somewhere in the document, as in struct jo */
	bool nul_escape;
	bool dup_key;
	bool num_range;
};

/* Whether the oracle saw any of the things snapfs's reader refuses on purpose (see the top). */
static inline bool jo_refusable(const struct jo_object *o)
{
	return o->lone_surrogate || o->nul_escape || o->dup_key || o->num_range;
}

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
static inline bool jo_parse_object_ex(const char *text, size_t len, bool any_bytes,
				      struct jo_object *o)
{
	memset(o, 0, sizeof(*o));
	struct jo j = {(const unsigned char *)text,
		       (const unsigned char *)text + len,
		       1,
		       1,
		       any_bytes,
		       false,
		       false,
		       false,
		       false};
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
			struct jo k2 = {ks, j.end, 0, 0, any_bytes, false, false, false, false};
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
	o->num_range = j.num_range;
	/* The top level's keys, as jo_value looks at those of nested objects. */
	struct jo_key *keys = o->n ? malloc(o->n * sizeof(*keys)) : NULL;
	FUZZ_SETUP(!o->n || keys, "out of memory");
	for (size_t i = 0; i < o->n; i++) {
		keys[i].s = malloc(o->m[i].klen + 1);
		FUZZ_SETUP(keys[i].s, "out of memory");
		memcpy(keys[i].s, o->m[i].key, o->m[i].klen + 1);
		keys[i].n = o->m[i].klen;
	}
	bool top_dup = jo_keys_dup(keys, o->n); /* frees keys: called whatever j.dup_key says */
	o->dup_key = j.dup_key || top_dup;
	return true;
bad:
	jo_object_free(o);
	return false;
}

static inline bool jo_parse_object(const char *text, size_t len, struct jo_object *o)
{
	return jo_parse_object_ex(text, len, false, o);
}

/*
 * The elements of the array whose text is v[0..vlen) (a member's value),
 * in order, as members without a key. False if it is not an array.
 */
static inline bool jo_parse_array(const char *v, size_t vlen, struct jo_object *o)
{
	memset(o, 0, sizeof(*o));
	struct jo j = {(const unsigned char *)v,
		       (const unsigned char *)v + vlen,
		       1,
		       1,
		       true,
		       false,
		       false,
		       false,
		       false};
	size_t cap = 0;
	jo_ws(&j);
	if (j.p >= j.end || *j.p != '[')
		return false;
	j.p++;
	jo_ws(&j);
	if (j.p < j.end && *j.p == ']') {
		j.p++;
	} else {
		for (;;) {
			jo_ws(&j);
			const unsigned char *vs = j.p;
			if (!jo_value(&j))
				goto bad;
			if (o->n == cap) {
				cap = cap ? cap * 2 : 8;
				struct jo_member *m = realloc(o->m, cap * sizeof(*m));
				FUZZ_SETUP(m, "out of memory");
				o->m = m;
			}
			o->m[o->n++] =
				(struct jo_member){NULL, 0, (const char *)vs, (size_t)(j.p - vs)};
			jo_ws(&j);
			if (j.p >= j.end)
				goto bad;
			if (*j.p == ',') {
				j.p++;
				continue;
			}
			if (*j.p != ']')
				goto bad;
			j.p++;
			break;
		}
	}
	jo_ws(&j);
	if (j.p != j.end)
		goto bad;
	return true;
bad:
	jo_object_free(o);
	return false;
}

/* Whether text[0..len) is one JSON document of any value. */
static inline bool jo_valid(const char *text, size_t len)
{
	struct jo j = {(const unsigned char *)text,
		       (const unsigned char *)text + len,
		       0,
		       0,
		       false,
		       false,
		       false,
		       false,
		       false};
	if (!jo_value(&j))
		return false;
	jo_ws(&j);
	return j.p == j.end;
}

/* The members named key (exact bytes); *count how many there are. */
static inline const struct jo_member *jo_find(const struct jo_object *o, const char *key,
					      size_t *count)
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
	struct jo j = {(const unsigned char *)m->v,
		       (const unsigned char *)m->v + m->vlen,
		       0,
		       0,
		       true,
		       false,
		       false,
		       false,
		       false};
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
