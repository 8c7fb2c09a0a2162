/*
 * fuzz_manifest — MANIFEST.json, read and written (core/manifest.h), and
 * the one strict loader every JSON document goes through (util/jsonx.h).
 *
 * manifest_read_basic and manifest_read_file read the manifests
 * snapfs-ctl verifies and restores from S3: untrusted text. The input is
 * read as such a document and compared with json_oracle.h, an
 * independent RFC 8259 reader, both ways:
 *  - accepted: the document is JSON (UTF-8 included), with nothing the
 *    reader refuses on purpose (a key twice anywhere, \u0000, a lone
 *    surrogate, a number past 64 bits), nested at most 32 deep, with
 *    "size" and "id" whole numbers in [0, 2^63-1] and "sha256" 64
 *    lowercase hex digits at its top level; and the values returned are
 *    the document's ("file" too, when it fits the buffer);
 *  - refused: the oracle finds one of those wrong, and the outputs are
 *    left alone.
 * jsonx_load itself is held to the same rule at a depth the input
 * chooses: it accepts exactly the objects the oracle finds well formed,
 * free of what it refuses on purpose and nested no deeper.
 *
 * The same bytes then fill a manifest (collection, file, table and
 * delta names are any bytes, as directory and file names are) for
 * manifest_write_json: its output must be JSON by the oracle, free of
 * what the reader refuses, and say what was written: names not UTF-8
 * with U+FFFD for each stray byte (jsonx.h), integers past INT64_MAX as
 * INT64_MAX (manifest.h); read back, size, id, sha256 and file are the
 * ones written, whatever the names hold (a table called "sha256"
 * included).
 */
#include "fuzz.h"
#include "json_oracle.h"
#include "jsonx.h"
#include "manifest.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>

/* Nesting the reader takes (MANIFEST_MAX_DEPTH in manifest.c: "at most", per jsonx_load). */
#define MANIFEST_FUZZ_DEPTH 32

static uint64_t clamp63(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v;
}

/* The oracle's reading of a whole number in [0, 2^63-1]; false if it is not one. */
static bool oracle_u63(const struct jo_member *m, uint64_t *out)
{
	__int128 v;
	bool negz;
	if (!m || !jo_as_int(m, &v, &negz) || v < 0 || v > (__int128)INT64_MAX)
		return false;
	*out = (uint64_t)v;
	return true;
}

/* The member key of o, if it is there exactly once; NULL otherwise. */
static const struct jo_member *oracle_once(const struct jo_object *o, const char *key)
{
	size_t n;
	const struct jo_member *m = jo_find(o, key, &n);
	return n == 1 ? m : NULL;
}

/* The oracle's reading of the three fields; false if one is missing or wrong. */
static bool oracle_fields(const struct jo_object *o, uint64_t *size, char sha[65], uint64_t *id)
{
	const struct jo_member *mh = oracle_once(o, "sha256");
	if (!oracle_u63(oracle_once(o, "size"), size) || !oracle_u63(oracle_once(o, "id"), id) || !mh)
		return false;
	size_t len;
	char *s = jo_as_string(mh, &len);
	bool ok = s && len == 64 && fuzz_is_lower_hex(s, 64);
	if (ok)
		memcpy(sha, s, 65);
	free(s);
	return ok;
}

/* Whether the oracle finds json a document the reader must take (fields aside). */
static bool oracle_strict(const struct jo_object *o, bool valid, int depth)
{
	return valid && !jo_refusable(o) && o->max_depth <= depth;
}

static void check_load(const char *json, int depth)
{
	json_t *v = NULL;
	int rc = jsonx_load(json, depth, &v);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "jsonx_load returned %d", rc);
	FUZZ_CHECK(rc == 0 ? v && json_is_object(v) : !v, "jsonx_load returned %d with %s", rc,
		   v ? "a tree" : "no tree");
	struct jo_object o;
	bool valid = jo_parse_object(json, strlen(json), &o);
	bool want = oracle_strict(&o, valid, depth);
	if (rc == 0) {
		FUZZ_CHECK(valid, "jsonx_load accepted a document that is not a JSON object");
		FUZZ_CHECK(!o.dup_key, "jsonx_load accepted a key given twice");
		FUZZ_CHECK(!o.nul_escape, "jsonx_load accepted \\u0000");
		FUZZ_CHECK(!o.lone_surrogate, "jsonx_load accepted a lone surrogate");
		FUZZ_CHECK(!o.num_range, "jsonx_load accepted a number out of range");
		FUZZ_CHECK(o.max_depth <= depth, "jsonx_load accepted nesting %d, past %d",
			   o.max_depth, depth);
		FUZZ_CHECK(json_object_size(v) == o.n,
			   "jsonx_load found %zu members, the document has %zu",
			   json_object_size(v), o.n);
		json_decref(v);
	} else {
		FUZZ_CHECK(!want,
			   "jsonx_load refused a well-formed object nested %d deep (at most %d)",
			   o.max_depth, depth);
	}
	if (valid)
		jo_object_free(&o);
}

static void check_read(const char *json, size_t file_cap)
{
	uint64_t size = 7, id = 7;
	char sha[65] = "untouched";
	int rc = manifest_read_basic(json, &size, sha, &id);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "manifest_read_basic returned %d", rc);

	struct jo_object o;
	bool valid = jo_parse_object(json, strlen(json), &o);
	uint64_t osize = 0, oid = 0;
	char osha[65] = "";
	bool strict = oracle_strict(&o, valid, MANIFEST_FUZZ_DEPTH);
	bool fields = valid && oracle_fields(&o, &osize, osha, &oid);
	if (rc == 0) {
		FUZZ_CHECK(valid,
			   "manifest_read_basic accepted a document that is not a JSON object");
		FUZZ_CHECK(strict,
			   "manifest_read_basic accepted what it must refuse (key twice %d, \\u0000 %d, lone surrogate "
			   "%d, number out of range %d, depth %d)",
			   o.dup_key, o.nul_escape, o.lone_surrogate, o.num_range, o.max_depth);
		FUZZ_CHECK(fields,
			   "manifest_read_basic accepted a document without size, id and sha256 as they must be");
		FUZZ_CHECK(size == osize && id == oid && !strcmp(sha, osha),
			   "manifest_read_basic read size %" PRIu64 " id %" PRIu64
			   " sha256 %s; the document says %" PRIu64 " %" PRIu64 " %s",
			   size, id, sha, osize, oid, osha);
	} else {
		FUZZ_CHECK(size == 7 && id == 7 && !strcmp(sha, "untouched"),
			   "manifest_read_basic failed but wrote its outputs");
		FUZZ_CHECK(!strict || !fields,
			   "manifest_read_basic refused a well-formed manifest (size %" PRIu64
			   ", id %" PRIu64 ")",
			   osize, oid);
	}

	/* "file", into a buffer of file_cap bytes: only from a manifest the basic read takes. */
	char *file = malloc(file_cap);
	FUZZ_SETUP(file, "out of memory");
	memset(file, 0x5a, file_cap);
	int frc = manifest_read_file(json, file, file_cap);
	FUZZ_CHECK(frc == 0 || frc == -EINVAL, "manifest_read_file returned %d", frc);
	const struct jo_member *mf = rc == 0 ? oracle_once(&o, "file") : NULL;
	size_t flen = 0;
	char *ofile = mf ? jo_as_string(mf, &flen) : NULL;
	bool fits = ofile && flen < file_cap;
	if (frc == 0) {
		FUZZ_CHECK(rc == 0,
			   "manifest_read_file accepted a manifest manifest_read_basic refuses");
		FUZZ_CHECK(fits,
			   "manifest_read_file accepted a \"file\" that is missing, not a string or too long");
		FUZZ_CHECK(!strcmp(file, ofile),
			   "manifest_read_file read \"%s\"; the document says \"%s\"", file, ofile);
	} else {
		FUZZ_CHECK(!fits,
			   "manifest_read_file refused a manifest whose \"file\" (%zu bytes) fits %zu",
			   flen, file_cap);
	}
	free(ofile);
	free(file);
	if (valid)
		jo_object_free(&o);
}

/* Splits s on '\n' into at most max pieces (pointing into s, which is changed). */
static size_t split_lines(char *s, char **out, size_t max)
{
	size_t n = 0;
	char *p = s;
	while (n < max) {
		out[n++] = p;
		char *nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

/* The member key of o is the string want, as the writer makes it of any bytes (NULL: JSON null). */
static void expect_string(const struct jo_object *o, const char *key, const char *want,
			  const char *doc)
{
	const struct jo_member *m = oracle_once(o, key);
	FUZZ_CHECK(m, "manifest_write_json: \"%s\" missing or given twice:\n%s", key, doc);
	if (!want) {
		FUZZ_CHECK(m->vlen == 4 && !memcmp(m->v, "null", 4),
			   "manifest_write_json: \"%s\" is not null:\n%s", key, doc);
		return;
	}
	char *fixed = fuzz_utf8_fix(want);
	size_t len;
	char *s = jo_as_string(m, &len);
	FUZZ_CHECK(s && len == strlen(fixed) && !strcmp(s, fixed),
		   "manifest_write_json: \"%s\" is %.*s, not \"%s\":\n%s", key, (int)m->vlen, m->v,
		   fixed, doc);
	free(s);
	free(fixed);
}

/* The member key of o is the whole number want. */
static void expect_int(const struct jo_object *o, const char *key, __int128 want, const char *doc)
{
	const struct jo_member *m = oracle_once(o, key);
	__int128 v;
	bool negz;
	FUZZ_CHECK(m && jo_as_int(m, &v, &negz) && !negz && v == want,
		   "manifest_write_json: \"%s\" is not %lld:\n%s", key, (long long)want, doc);
}

/* The written "tables": one member for each distinct name (made UTF-8), the last one's rows. */
static void expect_tables(const struct jo_object *o, const struct manifest *m, const char *doc)
{
	const struct jo_member *mt = oracle_once(o, "tables");
	struct jo_object t;
	FUZZ_CHECK(mt && mt->v[0] == '{' && jo_parse_object(mt->v, mt->vlen, &t),
		   "manifest_write_json: no \"tables\":\n%s", doc);
	size_t distinct = 0;
	for (size_t i = 0; i < m->ntables; i++) {
		char *fixed = fuzz_utf8_fix(m->tables[i].name);
		bool last = true;
		for (size_t k = i + 1; k < m->ntables && last; k++) {
			char *other = fuzz_utf8_fix(m->tables[k].name);
			last = strcmp(fixed, other) != 0;
			free(other);
		}
		if (last) {
			distinct++;
			expect_int(&t, fixed, m->tables[i].rows, doc);
		}
		free(fixed);
	}
	FUZZ_CHECK(t.n == distinct, "manifest_write_json: %zu tables written for %zu names:\n%s",
		   t.n, distinct, doc);
	jo_object_free(&t);
}

/* The written "deltas": the manifest's, in order. */
static void expect_deltas(const struct jo_object *o, const struct manifest *m, const char *doc)
{
	const struct jo_member *md = oracle_once(o, "deltas");
	struct jo_object a;
	FUZZ_CHECK(md && md->v[0] == '[' && jo_parse_array(md->v, md->vlen, &a),
		   "manifest_write_json: no \"deltas\":\n%s", doc);
	FUZZ_CHECK(a.n == m->ndeltas, "manifest_write_json: %zu deltas written for %zu:\n%s", a.n,
		   m->ndeltas, doc);
	for (size_t i = 0; i < a.n; i++) {
		struct jo_object d;
		FUZZ_CHECK(a.m[i].v[0] == '{' && jo_parse_object(a.m[i].v, a.m[i].vlen, &d),
			   "manifest_write_json: delta %zu is not an object:\n%s", i, doc);
		FUZZ_CHECK(d.n == 3, "manifest_write_json: delta %zu has %zu members:\n%s", i, d.n,
			   doc);
		expect_int(&d, "seq", m->deltas[i].seq, doc);
		expect_string(&d, "name", m->deltas[i].name, doc);
		expect_string(&d, "sha256", m->deltas[i].sha256, doc);
		jo_object_free(&d);
	}
	jo_object_free(&a);
}

static void check_write(const uint8_t *data, size_t size, const char *text)
{
	uint64_t h = fuzz_hash(data, size);
	char *copy = strdup(text);
	FUZZ_SETUP(copy, "out of memory");
	char *piece[16];
	size_t np = split_lines(copy, piece, 16);

	char sha[65];
	for (int i = 0; i < 4; i++)
		snprintf(sha + 16 * i, 17, "%016" PRIx64, h * (uint64_t)(2 * i + 1));
	struct manifest_table tables[8];
	struct manifest_delta deltas[8];
	size_t nt = 0, nd = 0;
	for (size_t i = 1; i < np; i++) {
		if (i % 2 && nt < 8)
			tables[nt++] =
				(struct manifest_table){piece[i], (int64_t)(h >> i) - (int64_t)i};
		else if (nd < 8)
			deltas[nd++] = (struct manifest_delta){(int64_t)(h << i), piece[i],
							       i % 3 ? sha : piece[i]};
	}
	struct manifest m = {
		.collection = piece[0],
		.id = h % 3 ? h : UINT64_MAX,
		.created = (time_t)(h & 1 ? -(int64_t)(h >> ((h & 62) | 2))
					  : (int64_t)(h >> ((h & 62) | 2))),
		.file = np > 1 ? piece[1] : NULL,
		.size = h >> (h & 7),
		.sha256 = sha,
		.page_size = 4096,
		.page_count = h >> 12,
		.integrity = h & 64 ? "ok" : piece[np - 1],
		.ledger_max = (int64_t)h,
		.tables = tables,
		.ntables = nt,
		.deltas = deltas,
		.ndeltas = nd,
	};
	sbuf out = SBUF_INIT;
	manifest_write_json(&m, &out);
	const char *doc = sbuf_str(&out);
	FUZZ_CHECK(out.len == strlen(doc), "manifest_write_json wrote a NUL byte");
	FUZZ_CHECK(out.len >= 3 && !strcmp(doc + out.len - 2, "}\n"),
		   "manifest_write_json: no final \"}\\n\"");
	struct jo_object o;
	FUZZ_CHECK(jo_parse_object(doc, out.len, &o),
		   "manifest_write_json wrote a document that is not JSON:\n%s", doc);
	FUZZ_CHECK(!jo_refusable(&o) && o.max_depth <= MANIFEST_FUZZ_DEPTH,
		   "manifest_write_json wrote what the reader refuses:\n%s", doc);
	expect_int(&o, "format", 1, doc);
	expect_string(&o, "collection", m.collection, doc);
	expect_int(&o, "id", clamp63(m.id), doc);
	expect_int(&o, "created_unix", (int64_t)m.created, doc);
	expect_string(&o, "file", m.file, doc);
	expect_int(&o, "size", clamp63(m.size), doc);
	expect_string(&o, "sha256", m.sha256, doc);
	expect_int(&o, "page_size", clamp63(m.page_size), doc);
	expect_int(&o, "page_count", clamp63(m.page_count), doc);
	expect_string(&o, "integrity_check", m.integrity, doc);
	expect_int(&o, "ledger_max", m.ledger_max, doc);
	expect_tables(&o, &m, doc);
	expect_deltas(&o, &m, doc);
	jo_object_free(&o);

	uint64_t rsize = 0, rid = 0;
	char rsha[65] = "";
	int rc = manifest_read_basic(doc, &rsize, rsha, &rid);
	FUZZ_CHECK(rc == 0, "manifest_read_basic refused what manifest_write_json wrote (%d):\n%s",
		   rc, doc);
	FUZZ_CHECK(rsize == clamp63(m.size) && rid == clamp63(m.id) && !strcmp(rsha, sha),
		   "manifest_write_json then manifest_read_basic: size %" PRIu64 "->%" PRIu64
		   ", id %" PRIu64 "->%" PRIu64 ", sha256 %s->%s",
		   m.size, rsize, m.id, rid, sha, rsha);
	char file[4096];
	rc = manifest_read_file(doc, file, sizeof(file));
	if (m.file) {
		char *fixed = fuzz_utf8_fix(m.file);
		FUZZ_CHECK(rc == 0 && !strcmp(file, fixed),
			   "manifest_write_json then manifest_read_file: \"%s\" read as %d \"%s\":\n%s",
			   fixed, rc, rc ? "" : file, doc);
		free(fixed);
	} else {
		FUZZ_CHECK(rc == -EINVAL, "manifest_read_file took a null \"file\" (%d):\n%s", rc,
			   doc);
	}
	sbuf_free(&out);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	uint64_t h = fuzz_hash(data, size);
	check_load(text, 1 + (int)(h % 40));
	check_read(text, 1 + (size_t)(h >> 8) % 80);
	check_write(data, size, text);
	free(text);
	return 0;
}
