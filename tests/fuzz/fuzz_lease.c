/*
 * fuzz_lease — the lease and pointer documents (upload/lease.h) that
 * every host sharing a bucket reads from S3: lease_state_parse,
 * lease_pointer_parse (with and without its history), their writers
 * lease_state_json and lease_pointer_json, and lease_history_next.
 *
 * The input is read as a pointer and as a lease, and each answer is
 * compared with json_oracle.h, an independent RFC 8259 reader, both
 * ways:
 *  - accepted: the document is JSON (UTF-8 included) with nothing the
 *    reader refuses on purpose (a key twice anywhere, \u0000, a lone
 *    surrogate, a number past 64 bits), nested at most 16 deep, with
 *    every field lease.h names there with its type, in range and
 *    fitting its buffer (integers >= 0 but expires, acquired_at and
 *    written_at; keys not empty; sha256 64 lowercase hex digits; a
 *    history, if there, an array of entries with their own fields) and
 *    each value returned is the document's; read with a history, that
 *    history is the document's (its first LEASE_HISTORY_MAX entries),
 *    strictly descending below the pointer's generation;
 *  - refused: the oracle finds one of those wrong, and the outputs are
 *    cleared.
 * What is read is written back and must read back the same, and write
 * the same bytes a second time. Pointers (with a history made by
 * lease_history_next) and leases made from the input bytes (any host,
 * keys, ETag, owner) must survive the same round trip, the way jsonx.h
 * promises: a string not UTF-8 comes back with U+FFFD for each stray
 * byte, an integer past INT64_MAX as INT64_MAX; the written document
 * must say so to the oracle too.
 */
#include "fuzz.h"
#include "json_oracle.h"
#include "lease.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>

#define LEASE_FUZZ_DEPTH 16 /* LEASE_DOC_DEPTH in lease.c: the top object counts 1 */

static uint64_t clamp63(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v;
}

/* ---- the oracle's reading ---- */

/* The member key of o if it is there exactly once, else NULL. */
static const struct jo_member *once(const struct jo_object *o, const char *key)
{
	size_t n;
	const struct jo_member *m = jo_find(o, key, &n);
	return n == 1 ? m : NULL;
}

static bool o_u63(const struct jo_member *m, uint64_t *out)
{
	__int128 v;
	bool negz;
	if (!m || !jo_as_int(m, &v, &negz) || v < 0 || v > (__int128)INT64_MAX)
		return false;
	*out = (uint64_t)v;
	return true;
}

static bool o_i64(const struct jo_member *m, int64_t *out)
{
	__int128 v;
	bool negz;
	if (!m || !jo_as_int(m, &v, &negz) || v < (__int128)INT64_MIN || v > (__int128)INT64_MAX)
		return false;
	*out = (int64_t)v;
	return true;
}

/* A string that fits dst[cap] with its NUL (not empty if nonempty), copied there. */
static bool o_str(const struct jo_member *m, char *dst, size_t cap, bool nonempty)
{
	size_t len = 0;
	char *s = m ? jo_as_string(m, &len) : NULL;
	bool ok = s && len < cap && !memchr(s, '\0', len) && (!nonempty || len);
	if (ok)
		memcpy(dst, s, len + 1);
	free(s);
	return ok;
}

/* {"db": ..., "manifest": ...} (other members allowed): both strings, not empty, fitting. */
static bool o_keys(const struct jo_member *m, char *db, char *manifest)
{
	struct jo_object k;
	if (!m || m->v[0] != '{' || !jo_parse_object(m->v, m->vlen, &k))
		return false;
	bool ok = o_str(once(&k, "db"), db, S3_KEY_MAX + 1, true) &&
		  o_str(once(&k, "manifest"), manifest, S3_KEY_MAX + 1, true);
	jo_object_free(&k);
	return ok;
}

/* Whether the oracle finds text strict JSON the reader must take (fields aside); o is then filled. */
static bool o_strict(const char *text, struct jo_object *o)
{
	if (!jo_parse_object(text, strlen(text), o))
		return false;
	if (jo_refusable(o) || o->max_depth > LEASE_FUZZ_DEPTH) {
		jo_object_free(o);
		return false;
	}
	return true;
}

struct o_pointer {
	bool strict;       /* strict JSON the reader takes, fields aside */
	bool fields;       /* and every field there with its type (history entries too) */
	bool kept_ordered; /* the first LEASE_HISTORY_MAX entries strictly descend below generation */
	bool all_ordered;       /* every entry does */
	struct lease_pointer p; /* the fields, if fields */
	struct lease_prev *h;   /* the history (nh entries), if fields */
	size_t nh;
};

static void o_pointer_free(struct o_pointer *w)
{
	free(w->h);
	w->h = NULL;
}

static void o_pointer(const char *json, struct o_pointer *w)
{
	memset(w, 0, sizeof(*w));
	struct jo_object o;
	if (!(w->strict = o_strict(json, &o)))
		return;
	struct lease_pointer *p = &w->p;
	w->fields = o_u63(once(&o, "generation"), &p->generation) && o_u63(once(&o, "id"), &p->id) &&
		    o_str(once(&o, "host"), p->host, sizeof(p->host), false) &&
		    o_keys(once(&o, "keys"), p->db_key, p->manifest_key) &&
		    o_str(once(&o, "sha256"), p->sha256, sizeof(p->sha256), false) &&
		    fuzz_is_lower_hex(p->sha256, 64) && o_u63(once(&o, "size"), &p->size) &&
		    o_str(once(&o, "etag"), p->etag, sizeof(p->etag), false) &&
		    o_u63(once(&o, "lease_token"), &p->lease_token) &&
		    o_i64(once(&o, "written_at"), &p->written_at);
	const struct jo_member *hm = once(&o, "history");
	struct jo_object a = {0};
	if (w->fields && hm && (hm->v[0] != '[' || !jo_parse_array(hm->v, hm->vlen, &a)))
		w->fields = false;
	if (w->fields && a.n) {
		w->h = calloc(a.n, sizeof(*w->h));
		FUZZ_SETUP(w->h, "out of memory");
	}
	w->kept_ordered = w->all_ordered = true;
	for (size_t i = 0; w->fields && i < a.n; i++) {
		struct jo_object e;
		struct lease_prev *v = &w->h[i];
		if (a.m[i].v[0] != '{' || !jo_parse_object(a.m[i].v, a.m[i].vlen, &e)) {
			w->fields = false;
			break;
		}
		w->fields = o_u63(once(&e, "generation"), &v->generation) &&
			    o_keys(once(&e, "keys"), v->db_key, v->manifest_key) &&
			    o_i64(once(&e, "written_at"), &v->written_at);
		jo_object_free(&e);
		uint64_t above = i ? w->h[i - 1].generation : p->generation;
		if (w->fields && v->generation >= above) {
			w->all_ordered = false;
			if (i < LEASE_HISTORY_MAX)
				w->kept_ordered = false;
		}
		w->nh++;
	}
	jo_object_free(&a);
	jo_object_free(&o);
	if (!w->fields)
		o_pointer_free(w);
}

struct o_lease {
	bool strict, fields;
	struct lease_state st;
};

static void o_lease(const char *json, struct o_lease *w)
{
	memset(w, 0, sizeof(*w));
	struct jo_object o;
	if (!(w->strict = o_strict(json, &o)))
		return;
	const struct jo_member *acq = once(&o, "acquired_at"), *ttl = once(&o, "ttl");
	w->fields = o_str(once(&o, "owner"), w->st.owner, sizeof(w->st.owner), false) &&
		    o_u63(once(&o, "token"), &w->st.token) &&
		    o_i64(once(&o, "expires"), &w->st.expires) &&
		    (!acq || o_i64(acq, &w->st.acquired_at)) && (!ttl || o_u63(ttl, &w->st.ttl));
	jo_object_free(&o);
}

/* ---- comparisons ---- */

static bool pointer_same(const struct lease_pointer *a, const struct lease_pointer *b)
{
	return a->generation == b->generation && a->id == b->id && !strcmp(a->host, b->host) &&
	       !strcmp(a->db_key, b->db_key) && !strcmp(a->manifest_key, b->manifest_key) &&
	       !strcmp(a->sha256, b->sha256) && a->size == b->size && !strcmp(a->etag, b->etag) &&
	       a->lease_token == b->lease_token && a->written_at == b->written_at;
}

static bool prev_same(const struct lease_prev *a, const struct lease_prev *b)
{
	return a->generation == b->generation && !strcmp(a->db_key, b->db_key) &&
	       !strcmp(a->manifest_key, b->manifest_key) && a->written_at == b->written_at;
}

static bool history_same(const struct lease_prev *a, size_t na, const struct lease_prev *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!prev_same(&a[i], &b[i]))
			return false;
	return true;
}

static bool lease_same(const struct lease_state *a, const struct lease_state *b)
{
	return !strcmp(a->owner, b->owner) && a->token == b->token && a->expires == b->expires &&
	       a->acquired_at == b->acquired_at && a->ttl == b->ttl;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/*
 * src made UTF-8 as the writer does, into dst[cap]; false if it no
 * longer fits (then the document written cannot be read back).
 */
static bool fixed_into(char *dst, size_t cap, const char *src)
{
	char *f = fuzz_utf8_fix(src);
	size_t n = strlen(f);
	bool fits = n < cap;
	if (fits)
		memcpy(dst, f, n + 1);
	free(f);
	return fits;
}

/* ---- round trips ---- */

/*
 * Writes p and h (may be NULL), and checks that the oracle reads in the
 * document what was written (strings made UTF-8, integers clamped), and
 * that lease_pointer_parse reads it back as that, or refuses it exactly
 * when a string made UTF-8 no longer fits; then that a second round
 * writes the same bytes.
 */
static void pointer_round_trip(const struct lease_pointer *p, const struct lease_history *h)
{
	struct lease_pointer e = *p;
	struct lease_prev *eh = h && h->n ? calloc(h->n, sizeof(*eh)) : NULL;
	FUZZ_SETUP(!(h && h->n) || eh, "out of memory");
	bool fits = fixed_into(e.host, sizeof(e.host), p->host) &&
		    fixed_into(e.db_key, sizeof(e.db_key), p->db_key) &&
		    fixed_into(e.manifest_key, sizeof(e.manifest_key), p->manifest_key) &&
		    fixed_into(e.sha256, sizeof(e.sha256), p->sha256) &&
		    fixed_into(e.etag, sizeof(e.etag), p->etag);
	e.generation = clamp63(p->generation);
	e.id = clamp63(p->id);
	e.size = clamp63(p->size);
	e.lease_token = clamp63(p->lease_token);
	for (size_t i = 0; h && i < h->n; i++) {
		eh[i] = h->prev[i];
		eh[i].generation = clamp63(h->prev[i].generation);
		fits = fits && fixed_into(eh[i].db_key, sizeof(eh[i].db_key), h->prev[i].db_key) &&
		       fixed_into(eh[i].manifest_key, sizeof(eh[i].manifest_key),
				  h->prev[i].manifest_key);
	}
	size_t ehn = h ? h->n : 0;

	sbuf a = SBUF_INIT, b = SBUF_INIT;
	lease_pointer_json(p, h, &a);
	const char *doc = sbuf_str(&a);
	FUZZ_CHECK(a.len == strlen(doc), "lease_pointer_json wrote a NUL byte");
	FUZZ_CHECK(a.len && doc[a.len - 1] == '\n', "lease_pointer_json: no final newline");
	struct o_pointer w;
	o_pointer(doc, &w);
	FUZZ_CHECK(w.strict, "lease_pointer_json wrote a document the reader must refuse:\n%s", doc);
	if (fits) {
		FUZZ_CHECK(w.fields && pointer_same(&w.p, &e) && history_same(w.h, w.nh, eh, ehn),
			   "lease_pointer_json wrote other fields than the pointer's:\n%s", doc);
		struct jo_object o;
		FUZZ_SETUP(jo_parse_object(doc, a.len, &o), "parse again");
		FUZZ_CHECK(h ? once(&o, "history") != NULL
			     : jo_find(&o, "history", &(size_t){0}) == NULL,
			   "lease_pointer_json: a history %s:\n%s", h ? "missing" : "not asked for",
			   doc);
		jo_object_free(&o);
	}
	o_pointer_free(&w);

	struct lease_pointer q;
	struct lease_history qh;
	int rc = lease_pointer_parse(doc, &q, &qh);
	if (!fits) {
		FUZZ_CHECK(rc == -EINVAL,
			   "lease_pointer_parse took a string made UTF-8 past its buffer (%d):\n%s",
			   rc, doc);
		goto out;
	}
	FUZZ_CHECK(rc == 0, "lease_pointer_parse refused what lease_pointer_json wrote (%d):\n%s",
		   rc, doc);
	FUZZ_CHECK(pointer_same(&q, &e),
		   "lease_pointer_json then lease_pointer_parse changed the pointer:\n%s", doc);
	FUZZ_CHECK(history_same(qh.prev, qh.n, eh, ehn),
		   "lease_pointer_json then lease_pointer_parse changed the history (%zu entries read, %zu written):\n%s",
		   qh.n, ehn, doc);
	lease_pointer_json(&q, h ? &qh : NULL, &b);
	FUZZ_CHECK(a.len == b.len && !memcmp(a.buf, b.buf, a.len),
		   "a second round wrote other bytes:\n%s\n%s", a.buf, b.buf);
	lease_history_free(&qh);
out:
	free(eh);
	sbuf_free(&a);
	sbuf_free(&b);
}

/* Writes st, reads it back: what was written (owner made UTF-8, integers clamped); the same bytes again. */
static void lease_round_trip(const struct lease_state *st)
{
	struct lease_state e = *st;
	bool fits = fixed_into(e.owner, sizeof(e.owner), st->owner);
	e.token = clamp63(st->token);
	e.ttl = clamp63(st->ttl);
	sbuf a = SBUF_INIT, b = SBUF_INIT;
	lease_state_json(st, &a);
	const char *doc = sbuf_str(&a);
	FUZZ_CHECK(a.len == strlen(doc) && a.len && doc[a.len - 1] == '\n',
		   "lease_state_json: a NUL byte or no newline");
	struct o_lease w;
	o_lease(doc, &w);
	FUZZ_CHECK(w.strict, "lease_state_json wrote a document the reader must refuse:\n%s", doc);
	FUZZ_CHECK(!fits || (w.fields && lease_same(&w.st, &e)),
		   "lease_state_json wrote other fields than the lease's:\n%s", doc);
	struct lease_state q;
	int rc = lease_state_parse(doc, &q);
	if (!fits) {
		FUZZ_CHECK(rc == -EINVAL,
			   "lease_state_parse took an owner made UTF-8 past its buffer (%d):\n%s",
			   rc, doc);
	} else {
		FUZZ_CHECK(rc == 0, "lease_state_parse refused what lease_state_json wrote (%d):\n%s",
			   rc, doc);
		FUZZ_CHECK(lease_same(&q, &e),
			   "lease_state_json then lease_state_parse changed the lease:\n%s", doc);
		lease_state_json(&q, &b);
		FUZZ_CHECK(a.len == b.len && !memcmp(a.buf, b.buf, a.len),
			   "a second round wrote other bytes:\n%s\n%s", a.buf, b.buf);
	}
	sbuf_free(&a);
	sbuf_free(&b);
}

/* ---- the input as a document ---- */

static void check_pointer(const char *json)
{
	struct o_pointer w;
	o_pointer(json, &w);
	for (int with_h = 0; with_h < 2; with_h++) {
		struct lease_pointer p;
		memset(&p, 0x5a, sizeof(p));
		struct lease_history h = {(struct lease_prev *)&p,
					  99}; /* garbage: the parser must set it */
		int rc = lease_pointer_parse(json, &p, with_h ? &h : NULL);
		const char *what =
			with_h ? "lease_pointer_parse (with the history)" : "lease_pointer_parse";
		FUZZ_CHECK(rc == 0 || rc == -EINVAL, "%s returned %d", what, rc);
		bool ok = w.strict && w.fields;
		bool must = ok && (!with_h || w.all_ordered);
		bool may = ok && (!with_h || w.kept_ordered);
		if (rc == 0) {
			FUZZ_CHECK(w.strict,
				   "%s accepted a document it must refuse (not JSON, a key twice, \\u0000, a "
				   "lone surrogate, a number out of range or nested past %d)",
				   what, LEASE_FUZZ_DEPTH);
			FUZZ_CHECK(w.fields,
				   "%s accepted a document without every field as it must be", what);
			FUZZ_CHECK(may,
				   "%s accepted a history that does not descend below the pointer's generation",
				   what);
			FUZZ_CHECK(pointer_same(&p, &w.p),
				   "%s read other values than the document's", what);
			if (with_h) {
				size_t keep = w.nh < LEASE_HISTORY_MAX ? w.nh : LEASE_HISTORY_MAX;
				FUZZ_CHECK(history_same(h.prev, h.n, w.h, keep),
					   "%s read another history than the document's (%zu entries of %zu)",
					   what, h.n, w.nh);
				pointer_round_trip(&p, &h);
				lease_history_free(&h);
			} else {
				pointer_round_trip(&p, NULL);
			}
		} else {
			FUZZ_CHECK(!must, "%s refused a well-formed pointer", what);
			FUZZ_CHECK(all_zero(&p, sizeof(p)),
				   "%s failed but left data in the pointer", what);
			FUZZ_CHECK(!with_h || (!h.prev && !h.n), "%s failed but left a history",
				   what);
		}
	}
	o_pointer_free(&w);
}

static void check_lease(const char *json)
{
	struct o_lease w;
	o_lease(json, &w);
	struct lease_state st;
	memset(&st, 0x5a, sizeof(st));
	int rc = lease_state_parse(json, &st);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "lease_state_parse returned %d", rc);
	if (rc == 0) {
		FUZZ_CHECK(w.strict,
			   "lease_state_parse accepted a document it must refuse (not JSON, a key twice, "
			   "\\u0000, a lone surrogate, a number out of range or nested past %d)",
			   LEASE_FUZZ_DEPTH);
		FUZZ_CHECK(w.fields,
			   "lease_state_parse accepted a document without every field as it must be");
		FUZZ_CHECK(lease_same(&st, &w.st),
			   "lease_state_parse read owner \"%s\" token %" PRIu64 " expires %" PRId64
			   " acquired_at %" PRId64 " ttl %" PRIu64
			   "; the document says \"%s\" %" PRIu64 " %" PRId64 " %" PRId64 " %" PRIu64,
			   st.owner, st.token, st.expires, st.acquired_at, st.ttl, w.st.owner,
			   w.st.token, w.st.expires, w.st.acquired_at, w.st.ttl);
		lease_round_trip(&st);
	} else {
		FUZZ_CHECK(!(w.strict && w.fields), "lease_state_parse refused a well-formed lease");
		FUZZ_CHECK(all_zero(&st, sizeof(st)),
			   "lease_state_parse failed but left data in the lease");
	}
}

/* ---- documents made of the input's bytes ---- */

/* The next line of data[*at..size) into dst[cap], NUL bytes left out, cut to fit. */
static void next_line(const uint8_t *data, size_t size, size_t *at, char *dst, size_t cap)
{
	size_t k = 0;
	while (*at < size && data[*at] != '\n' && k + 1 < cap) {
		if (data[*at])
			dst[k++] = (char)data[*at];
		(*at)++;
	}
	while (*at < size && data[*at] != '\n')
		(*at)++;
	dst[k] = '\0';
	if (*at < size)
		(*at)++;
}

/*
 * lease_history_next(cur, cur_h, max): cur first, then entries of cur_h
 * in their order, strictly descending, at most max (and
 * LEASE_HISTORY_MAX); all of cur_h's first ones when cur_h already
 * descends below cur.
 */
static void check_history_next(const struct lease_pointer *cur, const struct lease_history *cur_h,
			       size_t max, struct lease_history *out)
{
	int rc = lease_history_next(cur, cur_h, max, out);
	FUZZ_CHECK(rc == 0, "lease_history_next returned %d", rc);
	size_t cap = max < LEASE_HISTORY_MAX ? max : LEASE_HISTORY_MAX;
	FUZZ_CHECK(out->n <= cap, "lease_history_next kept %zu entries, max %zu", out->n, max);
	if (!cap) {
		FUZZ_CHECK(!out->n, "lease_history_next kept entries with max 0");
		return;
	}
	struct lease_prev head = {cur->generation, "", "", cur->written_at};
	snprintf(head.db_key, sizeof(head.db_key), "%s", cur->db_key);
	snprintf(head.manifest_key, sizeof(head.manifest_key), "%s", cur->manifest_key);
	FUZZ_CHECK(out->n >= 1 && prev_same(&out->prev[0], &head),
		   "lease_history_next: the current pointer is not first");
	bool descends = true;
	size_t from = 0;
	for (size_t i = 1; i < out->n; i++) {
		FUZZ_CHECK(out->prev[i].generation < out->prev[i - 1].generation,
			   "lease_history_next: generation %" PRIu64 " after %" PRIu64,
			   out->prev[i].generation, out->prev[i - 1].generation);
		while (from < cur_h->n && !prev_same(&cur_h->prev[from], &out->prev[i]))
			from++;
		FUZZ_CHECK(from < cur_h->n,
			   "lease_history_next: entry %zu is not one of the old history's, in order",
			   i);
		from++;
	}
	for (size_t i = 0; i < cur_h->n; i++)
		descends = descends && cur_h->prev[i].generation <
					       (i ? cur_h->prev[i - 1].generation : cur->generation);
	if (descends) {
		size_t want = 1 + cur_h->n < cap ? 1 + cur_h->n : cap;
		FUZZ_CHECK(out->n == want &&
				   history_same(out->prev + 1, out->n - 1, cur_h->prev, want - 1),
			   "lease_history_next kept %zu of a descending history (%zu, max %zu)",
			   out->n, cur_h->n, max);
	}
}

/* A pointer, its successor with a history, and a lease, all made of the input bytes. */
static void check_made(const uint8_t *data, size_t size)
{
	uint64_t h = fuzz_hash(data, size);
	size_t at = 0;
	struct lease_pointer cur;
	memset(&cur, 0, sizeof(cur));
	next_line(data, size, &at, cur.host, sizeof(cur.host));
	next_line(data, size, &at, cur.db_key, sizeof(cur.db_key));
	next_line(data, size, &at, cur.manifest_key, sizeof(cur.manifest_key));
	next_line(data, size, &at, cur.etag, sizeof(cur.etag));
	if (!cur.db_key[0])
		snprintf(cur.db_key, sizeof(cur.db_key), "k");
	if (!cur.manifest_key[0])
		snprintf(cur.manifest_key, sizeof(cur.manifest_key), "m");
	for (int i = 0; i < 4; i++)
		snprintf(cur.sha256 + 16 * i, 17, "%016" PRIx64, h * (uint64_t)(2 * i + 1));
	cur.generation = 60 + (h >> 20) % 1000;
	cur.id = h & 4 ? h : (h >> 7) ^ 1; /* past INT64_MAX half the time: written as INT64_MAX */
	cur.size = h >> (h & 63) >> 1;
	cur.lease_token = h & 1 ? (uint64_t)INT64_MAX : h >> 2;
	cur.written_at = h & 2 ? -(int64_t)(h >> 3) : (int64_t)(h >> 1);
	if (h % 5 == 0)
		cur.written_at = INT64_MIN;

	/* The old history: the lines that follow, generations in any order. */
	struct lease_prev olds[12];
	struct lease_history old = {olds, 0};
	memset(olds, 0, sizeof(olds));
	while (at < size && old.n < 12) {
		struct lease_prev *e = &olds[old.n];
		next_line(data, size, &at, e->db_key, sizeof(e->db_key));
		if (!e->db_key[0])
			snprintf(e->db_key, sizeof(e->db_key), "k%zu", old.n);
		/* The manifest beside the database: the same key, /m added every other time (if it fits). */
		size_t kl = strlen(e->db_key);
		memcpy(e->manifest_key, e->db_key, kl + 1);
		if (old.n % 2 && kl + 2 < sizeof(e->manifest_key))
			memcpy(e->manifest_key + kl, "/m", 3);
		uint64_t g = h >> (old.n * 5 % 60);
		e->generation = h & 8 ? cur.generation - 1 - old.n * (1 + g % 3) : g % 80;
		int64_t when = (int64_t)((g ^ (uint64_t)old.n) >> 1);
		e->written_at = h & 16 ? -when : when;
		old.n++;
	}
	pointer_round_trip(&cur, NULL);
	/* The old history, written with the pointer it came with: read back only if it descends (else refused). */
	bool old_descends = true;
	for (size_t i = 0; i < old.n; i++)
		old_descends = old_descends &&
			       olds[i].generation < (i ? olds[i - 1].generation : cur.generation);
	if (old_descends)
		pointer_round_trip(&cur, &old);

	/* The next pointer: its history is lease_history_next's. */
	size_t max = h & 32 ? LEASE_HISTORY_MAX + 5 : (h >> 40) % 6;
	struct lease_history next;
	check_history_next(&cur, &old, max, &next);
	struct lease_pointer p = cur;
	p.generation = cur.generation + 1;
	p.id = cur.id + 1;
	pointer_round_trip(&p, &next);
	lease_history_free(&next);

	/* A lease: the owner is the first line (a host, pid and random part: any bytes), cut to fit. */
	struct lease_state st;
	memset(&st, 0, sizeof(st));
	at = 0;
	next_line(data, size, &at, st.owner, sizeof(st.owner));
	st.token = h & 64 ? h : h >> 3; /* past INT64_MAX: written as INT64_MAX */
	st.expires = h & 128 ? 0 : (int64_t)(h >> 2) * (h & 256 ? -1 : 1);
	st.acquired_at = h % 7 == 0 ? INT64_MIN : (int64_t)(h >> 5);
	st.ttl = h & 512 ? UINT64_MAX : h % 3600;
	lease_round_trip(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = fuzz_strndup(data, size);
	check_pointer(json);
	check_lease(json);
	check_made(data, size);
	free(json);
	return 0;
}
