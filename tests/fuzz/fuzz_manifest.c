/*
 * fuzz_manifest — MANIFEST.json, read and written (manifest.h).
 *
 * manifest_read_basic reads the manifests snapfs-ctl verifies and
 * restores from S3: untrusted text. The input is read as such a
 * document and compared with json_oracle.h, an independent RFC 8259
 * reader: an accepted document must be JSON (UTF-8 included) with
 * exactly one "size", "id" and "sha256" at its top level, and the values
 * returned must be theirs; a document the oracle finds well formed, with
 * those three fields of the right type, nothing nested too deep and no
 * lone surrogate escape (refused on purpose), must not be refused.
 *
 * The same bytes then fill a manifest (collection, table and delta names
 * are any bytes, as directory and file names are) for
 * manifest_write_json: its output must be JSON by the oracle and read
 * back with the size, sha256 and id written, whatever the names hold
 * (a table called "sha256" included).
 */
#include "fuzz.h"
#include "json_oracle.h"
#include "manifest.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>

/* Nesting the reader must take (it refuses past 32 levels, by design). */
#define MANIFEST_FUZZ_DEPTH 16

/* The oracle's reading of the three fields; false if they are not all there once, with their types. */
static bool oracle_fields(const struct jo_object *o, uint64_t *size, char sha[65], uint64_t *id)
{
	size_t n1, n2, n3;
	const struct jo_member *ms = jo_find(o, "size", &n1);
	const struct jo_member *mi = jo_find(o, "id", &n2);
	const struct jo_member *mh = jo_find(o, "sha256", &n3);
	if (n1 != 1 || n2 != 1 || n3 != 1)
		return false;
	__int128 v;
	bool negz;
	if (!jo_as_int(ms, &v, &negz) || negz || v < 0 || v > (__int128)UINT64_MAX)
		return false;
	*size = (uint64_t)v;
	if (!jo_as_int(mi, &v, &negz) || negz || v < 0 || v > (__int128)UINT64_MAX)
		return false;
	*id = (uint64_t)v;
	size_t len;
	char *s = jo_as_string(mh, &len);
	bool ok = s && len == 64 && fuzz_is_lower_hex(s, 64);
	if (ok)
		memcpy(sha, s, 65);
	free(s);
	return ok;
}

static void check_read(const char *json)
{
	uint64_t size = 7, id = 7;
	char sha[65] = "untouched";
	int rc = manifest_read_basic(json, &size, sha, &id);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL, "manifest_read_basic returned %d", rc);

	struct jo_object o;
	bool valid = jo_parse_object(json, strlen(json), &o);
	uint64_t osize = 0, oid = 0;
	char osha[65] = "";
	bool fields = valid && oracle_fields(&o, &osize, osha, &oid);
	if (rc == 0) {
		FUZZ_CHECK(valid, "manifest_read_basic accepted a document that is not a JSON object");
		FUZZ_CHECK(fields, "manifest_read_basic accepted a document without exactly one size, id and sha256");
		FUZZ_CHECK(size == osize && id == oid && !strcmp(sha, osha),
			   "manifest_read_basic read size %" PRIu64 " id %" PRIu64 " sha256 %s; the document says %" PRIu64
			   " %" PRIu64 " %s",
			   size, id, sha, osize, oid, osha);
	} else {
		FUZZ_CHECK(size == 7 && id == 7 && !strcmp(sha, "untouched"),
			   "manifest_read_basic failed but wrote its outputs");
		/* Lone surrogate escapes are refused on purpose (they are not Unicode). */
		FUZZ_CHECK(!fields || o.max_depth > MANIFEST_FUZZ_DEPTH || o.lone_surrogate,
			   "manifest_read_basic refused a well-formed manifest (size %" PRIu64 ", id %" PRIu64 ")", osize,
			   oid);
	}
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
			tables[nt++] = (struct manifest_table){piece[i], (int64_t)(h >> i) - (int64_t)i};
		else if (nd < 8)
			deltas[nd++] = (struct manifest_delta){(int64_t)(h << i), piece[i], i % 3 ? sha : piece[i]};
	}
	struct manifest m = {
		.collection = piece[0],
		.id = h % 3 ? h : UINT64_MAX,
		.created = (time_t)(h & 1 ? -(int64_t)(h >> ((h & 62) | 2)) : (int64_t)(h >> ((h & 62) | 2))),
		.file = np > 1 ? piece[1] : NULL,
		.size = h >> 3,
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
	FUZZ_CHECK(out.len >= 3 && !strcmp(doc + out.len - 2, "}\n"), "manifest_write_json: no final \"}\\n\"");
	FUZZ_CHECK(jo_valid(doc, out.len), "manifest_write_json wrote a document that is not JSON:\n%s", doc);
	uint64_t rsize = 0, rid = 0;
	char rsha[65] = "";
	int rc = manifest_read_basic(doc, &rsize, rsha, &rid);
	FUZZ_CHECK(rc == 0, "manifest_read_basic refused what manifest_write_json wrote (%d):\n%s", rc, doc);
	FUZZ_CHECK(rsize == m.size && rid == m.id && !strcmp(rsha, sha),
		   "manifest_write_json then manifest_read_basic: size %" PRIu64 "->%" PRIu64 ", id %" PRIu64
		   "->%" PRIu64 ", sha256 %s->%s",
		   m.size, rsize, m.id, rid, sha, rsha);
	sbuf_free(&out);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	check_read(text);
	check_write(data, size, text);
	free(text);
	return 0;
}
