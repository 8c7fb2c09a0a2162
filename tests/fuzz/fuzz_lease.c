/*
 * fuzz_lease — the lease and pointer documents (lease.h) that every host
 * sharing a bucket reads from S3: lease_json_read, lease_pointer_parse,
 * and the writer lease_pointer_json.
 *
 * The input is read as a pointer (lease_pointer_parse), as a lease (the
 * field table lease_read uses) and against a table of every field kind
 * (nested object, optional fields, a 4-byte string) through
 * lease_json_read. Each answer is compared with json_oracle.h, an
 * independent RFC 8259 reader:
 *  - accepted: the document is JSON (UTF-8 included), every required
 *    field is there exactly once with its type, and each value returned
 *    is the document's;
 *  - refused although the oracle finds every field there once, in range
 *    and fitting, nothing nested deeper than 8 and no string the reader
 *    is documented to refuse (\u0000, lone surrogates): a wrong refusal.
 * A pointer read is written back with lease_pointer_json and must read
 * back the same, byte for byte on a second round. Pointers made from the
 * input bytes (any host, keys, ETag) must survive the same round trip.
 *
 * Integers: the reader keeps LEASE_J_U64 within [0, 2^63-1] and
 * LEASE_J_I64 within [-(2^63-1), 2^63-1]; the oracle uses those ranges.
 */
#include "fuzz.h"
#include "json_oracle.h"
#include "lease.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>

#define LEASE_FUZZ_DEPTH 8

/*
 * Whether o satisfies fields: every required field once, no field
 * twice, each of its type, in range, fitting its buffer. With
 * check_values, also that each value equals what the reader stored in
 * the field's dst. NULL if so, else what differs (static text).
 */
static const char *match(const struct lease_jfield *f, size_t n, const struct jo_object *o, bool check_values,
			 char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		size_t count;
		const struct jo_member *m = jo_find(o, f[i].name, &count);
		if (count > 1) {
			snprintf(why, whylen, "field %s appears %zu times", f[i].name, count);
			return why;
		}
		if (!count) {
			if (f[i].optional)
				continue;
			snprintf(why, whylen, "field %s is missing", f[i].name);
			return why;
		}
		__int128 v;
		bool negz;
		switch (f[i].type) {
		case LEASE_J_STR: {
			size_t len;
			char *s = jo_as_string(m, &len);
			bool ok = s && len < f[i].cap && memchr(s, '\0', len) == NULL;
			if (ok && check_values)
				ok = !strcmp(s, (const char *)f[i].dst);
			if (!ok)
				snprintf(why, whylen, "string field %s: document has %.*s, read \"%s\"", f[i].name,
					 (int)(m->vlen > 200 ? 200 : m->vlen), m->v, (const char *)f[i].dst);
			free(s);
			if (!ok)
				return why;
			break;
		}
		case LEASE_J_U64:
			if (!jo_as_int(m, &v, &negz) || v < 0 || v > INT64_MAX ||
			    (check_values && *(const uint64_t *)f[i].dst != (uint64_t)v)) {
				snprintf(why, whylen, "unsigned field %s: document has %.*s, read %" PRIu64, f[i].name,
					 (int)(m->vlen > 60 ? 60 : m->vlen), m->v, *(const uint64_t *)f[i].dst);
				return why;
			}
			break;
		case LEASE_J_I64:
			if (!jo_as_int(m, &v, &negz) || v < -INT64_MAX || v > INT64_MAX ||
			    (check_values && *(const int64_t *)f[i].dst != (int64_t)v)) {
				snprintf(why, whylen, "signed field %s: document has %.*s, read %" PRId64, f[i].name,
					 (int)(m->vlen > 60 ? 60 : m->vlen), m->v, *(const int64_t *)f[i].dst);
				return why;
			}
			break;
		case LEASE_J_OBJ: {
			struct jo_object sub;
			if (!m->vlen || m->v[0] != '{' || !jo_parse_object_ex(m->v, m->vlen, true, &sub)) {
				snprintf(why, whylen, "field %s is not an object", f[i].name);
				return why;
			}
			const char *r = match(f[i].sub, f[i].nsub, &sub, check_values, why, whylen);
			jo_object_free(&sub);
			if (r)
				return r;
			break;
		}
		}
	}
	return NULL;
}

/*
 * Compares the reader's answer rc for json and fields with the oracle.
 * extra_ok: the checks the caller adds on top of the field table (the
 * pointer's sha256 and non-empty keys), as the oracle sees them.
 */
static void judge(const char *what, const char *json, int rc, const struct lease_jfield *f, size_t n,
		  bool extra_ok)
{
	char why[400];
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "%s returned %d", what, rc);
	struct jo_object o;
	bool valid = jo_parse_object(json, strlen(json), &o);
	if (rc == 0) {
		/*
		 * Open finding (RFC 8259 8.1, tests/fuzz/open/lease/): the reader
		 * takes bytes that are not UTF-8 inside strings, and
		 * lease_pointer_json and the status writer hand them on raw.
		 */
		FUZZ_OPEN(valid, "%s accepted a document whose strings are not UTF-8", what);
		if (!valid)
			valid = jo_parse_object_ex(json, strlen(json), true, &o);
		FUZZ_CHECK(valid, "%s accepted a document that is not a JSON object", what);
		const char *r = match(f, n, &o, true, why, sizeof(why));
		FUZZ_CHECK(!r, "%s accepted the document, but %s", what, r);
	} else if (valid && o.max_depth <= LEASE_FUZZ_DEPTH && !o.lone_surrogate && !o.nul_escape && extra_ok) {
		const char *r = match(f, n, &o, false, why, sizeof(why));
		FUZZ_CHECK(r, "%s refused a well-formed document", what);
	}
	if (valid)
		jo_object_free(&o);
}

static void pointer_fields(struct lease_pointer *p, struct lease_jfield keys[2], struct lease_jfield f[9])
{
	keys[0] = (struct lease_jfield){"db", LEASE_J_STR, p->db_key, sizeof(p->db_key), NULL, 0, false};
	keys[1] = (struct lease_jfield){"manifest", LEASE_J_STR, p->manifest_key, sizeof(p->manifest_key), NULL, 0,
					false};
	f[0] = (struct lease_jfield){"generation", LEASE_J_U64, &p->generation, 0, NULL, 0, false};
	f[1] = (struct lease_jfield){"id", LEASE_J_U64, &p->id, 0, NULL, 0, false};
	f[2] = (struct lease_jfield){"host", LEASE_J_STR, p->host, sizeof(p->host), NULL, 0, false};
	f[3] = (struct lease_jfield){"keys", LEASE_J_OBJ, NULL, 0, keys, 2, false};
	f[4] = (struct lease_jfield){"sha256", LEASE_J_STR, p->sha256, sizeof(p->sha256), NULL, 0, false};
	f[5] = (struct lease_jfield){"size", LEASE_J_U64, &p->size, 0, NULL, 0, false};
	f[6] = (struct lease_jfield){"etag", LEASE_J_STR, p->etag, sizeof(p->etag), NULL, 0, false};
	f[7] = (struct lease_jfield){"lease_token", LEASE_J_U64, &p->lease_token, 0, NULL, 0, false};
	f[8] = (struct lease_jfield){"written_at", LEASE_J_I64, &p->written_at, 0, NULL, 0, false};
}

/* The pointer's own rules on top of the field table, as the oracle reads the document. */
static bool oracle_pointer_extra(const char *json)
{
	struct jo_object o, k;
	if (!jo_parse_object(json, strlen(json), &o))
		return false;
	size_t c1, c2;
	const struct jo_member *sha = jo_find(&o, "sha256", &c1);
	const struct jo_member *keys = jo_find(&o, "keys", &c2);
	bool ok = false;
	size_t len;
	char *s = sha ? jo_as_string(sha, &len) : NULL;
	if (s && len == 64 && fuzz_is_lower_hex(s, 64) && keys && keys->v[0] == '{' &&
	    jo_parse_object(keys->v, keys->vlen, &k)) {
		const struct jo_member *db = jo_find(&k, "db", &c1);
		const struct jo_member *man = jo_find(&k, "manifest", &c2);
		size_t l1 = 0, l2 = 0;
		char *s1 = db ? jo_as_string(db, &l1) : NULL, *s2 = man ? jo_as_string(man, &l2) : NULL;
		ok = s1 && s2 && l1 && l2;
		free(s1);
		free(s2);
		jo_object_free(&k);
	}
	free(s);
	jo_object_free(&o);
	return ok;
}

static bool pointer_same(const struct lease_pointer *a, const struct lease_pointer *b)
{
	return a->generation == b->generation && a->id == b->id && !strcmp(a->host, b->host) &&
	       !strcmp(a->db_key, b->db_key) && !strcmp(a->manifest_key, b->manifest_key) &&
	       !strcmp(a->sha256, b->sha256) && a->size == b->size && !strcmp(a->etag, b->etag) &&
	       a->lease_token == b->lease_token && a->written_at == b->written_at;
}

/* Writes p, reads it back, writes again: same pointer, same bytes. */
static void pointer_round_trip(const struct lease_pointer *p)
{
	sbuf a = SBUF_INIT, b = SBUF_INIT;
	lease_pointer_json(p, &a);
	FUZZ_CHECK(a.len == strlen(sbuf_str(&a)), "lease_pointer_json wrote a NUL byte");
	bool utf8 = fuzz_utf8_valid(p->host, strlen(p->host)) && fuzz_utf8_valid(p->db_key, strlen(p->db_key)) &&
		    fuzz_utf8_valid(p->manifest_key, strlen(p->manifest_key)) &&
		    fuzz_utf8_valid(p->etag, strlen(p->etag));
	/* Non-UTF-8 bytes are written raw (only a non-UTF-8 s3_prefix gets there): no JSON then. */
	FUZZ_CHECK(!utf8 || jo_valid(a.buf, a.len), "lease_pointer_json wrote a document that is not JSON:\n%s", a.buf);
	struct lease_pointer q;
	int rc = lease_pointer_parse(sbuf_str(&a), &q);
	FUZZ_CHECK(rc == 0, "lease_pointer_parse refused what lease_pointer_json wrote (%d):\n%s", rc, a.buf);
	FUZZ_CHECK(pointer_same(p, &q), "lease_pointer_json then lease_pointer_parse changed the pointer:\n%s", a.buf);
	lease_pointer_json(&q, &b);
	FUZZ_CHECK(a.len == b.len && !memcmp(a.buf, b.buf, a.len), "a second round wrote other bytes:\n%s\n%s", a.buf,
		   b.buf);
	sbuf_free(&a);
	sbuf_free(&b);
}

static void check_pointer(const char *json)
{
	struct lease_pointer p;
	memset(&p, 0x5a, sizeof(p));
	int rc = lease_pointer_parse(json, &p);
	struct lease_pointer zero;
	memset(&zero, 0, sizeof(zero));
	if (rc) {
		FUZZ_CHECK(!memcmp(&p, &zero, sizeof(p)), "lease_pointer_parse failed but left data in the pointer");
	} else {
		FUZZ_CHECK(fuzz_is_lower_hex(p.sha256, 64), "lease_pointer_parse accepted sha256 \"%s\"", p.sha256);
		FUZZ_CHECK(p.db_key[0] && p.manifest_key[0], "lease_pointer_parse accepted an empty key");
	}
	struct lease_jfield keys[2], f[9];
	pointer_fields(&p, keys, f);
	judge("lease_pointer_parse", json, rc, f, 9, oracle_pointer_extra(json));
	if (rc == 0)
		pointer_round_trip(&p);
}

static void check_lease(const char *json)
{
	struct lease_state st;
	memset(&st, 0, sizeof(st));
	const struct lease_jfield f[] = {
		{"owner", LEASE_J_STR, st.owner, sizeof(st.owner), NULL, 0, false},
		{"token", LEASE_J_U64, &st.token, 0, NULL, 0, false},
		{"expires", LEASE_J_I64, &st.expires, 0, NULL, 0, false},
		{"acquired_at", LEASE_J_I64, &st.acquired_at, 0, NULL, 0, true},
		{"ttl", LEASE_J_U64, &st.ttl, 0, NULL, 0, true},
	};
	int rc = lease_json_read(json, f, 5);
	judge("lease_json_read (lease)", json, rc, f, 5, true);
	if (rc)
		return;
	/* As lease.c writes it: a lease read must read back the same. */
	sbuf b = SBUF_INIT;
	sbuf_adds(&b, "{\"owner\": ");
	sbuf_add_json_str(&b, st.owner);
	sbuf_addf(&b, ", \"token\": %" PRIu64 ", \"expires\": %" PRId64 ", \"acquired_at\": %" PRId64 ", \"ttl\": %" PRIu64 "}\n",
		  st.token, st.expires, st.acquired_at, st.ttl);
	struct lease_state again = st;
	memset(&st, 0, sizeof(st));
	FUZZ_CHECK(lease_json_read(sbuf_str(&b), f, 5) == 0, "lease_json_read refused a lease written back:\n%s", b.buf);
	FUZZ_CHECK(!strcmp(st.owner, again.owner) && st.token == again.token && st.expires == again.expires &&
			   st.acquired_at == again.acquired_at && st.ttl == again.ttl,
		   "a lease written back reads differently:\n%s", b.buf);
	sbuf_free(&b);
}

/* Every field kind, a string that barely fits, optional fields, a nested object. */
static void check_generic(const char *json)
{
	struct {
		char a[4];
		uint64_t b;
		int64_t c, x;
		char y[16];
	} d;
	memset(&d, 0, sizeof(d));
	const struct lease_jfield sub[] = {
		{"x", LEASE_J_I64, &d.x, 0, NULL, 0, false},
		{"y", LEASE_J_STR, d.y, sizeof(d.y), NULL, 0, true},
	};
	const struct lease_jfield f[] = {
		{"a", LEASE_J_STR, d.a, sizeof(d.a), NULL, 0, false},
		{"b", LEASE_J_U64, &d.b, 0, NULL, 0, false},
		{"n", LEASE_J_OBJ, NULL, 0, sub, 2, false},
		{"c", LEASE_J_I64, &d.c, 0, NULL, 0, true},
	};
	int rc = lease_json_read(json, f, 4);
	judge("lease_json_read (generic)", json, rc, f, 4, true);
	/* No field table at all: any object is fine, anything else is not. */
	rc = lease_json_read(json, NULL, 0);
	judge("lease_json_read (no fields)", json, rc, NULL, 0, true);
}

/* Pointers made of the input's bytes, cut to fit, must survive writing and reading. */
static void check_made(const uint8_t *data, size_t size)
{
	struct lease_pointer p;
	memset(&p, 0, sizeof(p));
	uint64_t h = fuzz_hash(data, size);
	char *fieldv[4] = {p.host, p.db_key, p.manifest_key, p.etag};
	size_t caps[4] = {sizeof(p.host), sizeof(p.db_key), sizeof(p.manifest_key), sizeof(p.etag)};
	size_t at = 0;
	for (int i = 0; i < 4; i++) {
		size_t k = 0;
		while (at < size && data[at] != '\n' && k + 1 < caps[i]) {
			if (data[at])
				fieldv[i][k++] = (char)data[at];
			at++;
		}
		fieldv[i][k] = '\0';
		if (at < size && data[at] == '\n')
			at++;
	}
	if (!p.db_key[0])
		snprintf(p.db_key, sizeof(p.db_key), "k");
	if (!p.manifest_key[0])
		snprintf(p.manifest_key, sizeof(p.manifest_key), "m");
	for (int i = 0; i < 4; i++)
		snprintf(p.sha256 + 16 * i, 17, "%016" PRIx64, h * (uint64_t)(2 * i + 1));
	p.generation = h >> 1;
	p.id = (h >> 7) ^ 1;
	p.size = h >> (h & 63) >> 1;
	p.lease_token = h & 1 ? (uint64_t)INT64_MAX : h >> 2;
	p.written_at = h & 2 ? -(int64_t)(h >> 3) : (int64_t)(h >> 1);
	pointer_round_trip(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = fuzz_strndup(data, size);
	check_pointer(json);
	check_lease(json);
	check_generic(json);
	check_made(data, size);
	free(json);
	return 0;
}
