/*
 * Unit tests for manifest: the JSON layout and escaping of the writer,
 * the round trip through manifest_read_basic (and of every field through
 * a JSON parser), and the reader's refusal of malformed or ambiguous
 * documents.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "manifest.h"
#include "sbuf.h"
#include "tap.h"

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SHA_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = {0};
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return timegm(&tm);
}

static bool has(const char *doc, const char *needle)
{
	bool ok = strstr(doc, needle) != NULL;
	if (!ok)
		fprintf(stderr, "missing %s in:\n%s", needle, doc);
	return ok;
}

static int read_basic(const char *doc)
{
	uint64_t size, id;
	char sha[65];
	return manifest_read_basic(doc, &size, sha, &id);
}

static void test_fields_and_round_trip(void)
{
	struct manifest_table tables[] = {{"_snapfs_ledger", 3}, {"vectors", 1000}};
	struct manifest_delta deltas[] = {{1, "a.db", SHA_B}, {3, "b.db", SHA_B}};
	struct manifest m = {
		.collection = "lines",
		.id = 42,
		.created = utc(2026, 11, 26, 13, 0, 0),
		.file = "lines.sqlite3",
		.size = 123456789012ULL,
		.sha256 = SHA_A,
		.page_size = 4096,
		.page_count = 30141,
		.integrity = "ok",
		.ledger_max = 3,
		.tables = tables,
		.ntables = 2,
		.deltas = deltas,
		.ndeltas = 2,
	};
	sbuf b = SBUF_INIT;
	manifest_write_json(&m, &b);
	const char *doc = sbuf_str(&b);
	CHECK(doc[0] == '{');
	CHECK(b.len > 2 && doc[b.len - 1] == '\n' && doc[b.len - 2] == '}');
	CHECK(has(doc, "{\n  \"format\": 1,\n"));
	CHECK(has(doc, "\n  \"snapfs_version\": \"" SNAPFS_VERSION "\",\n"));
	CHECK(has(doc, "\n  \"collection\": \"lines\",\n"));
	CHECK(has(doc, "\n  \"id\": 42,\n"));
	CHECK(has(doc, "\n  \"snapshot\": \"00000042\",\n"));
	CHECK(has(doc, "\n  \"created\": \"2026-11-26T13:00:00Z\",\n"));
	CHECK(has(doc, "\n  \"created_unix\": 1795698000,\n"));
	CHECK(has(doc, "\n  \"file\": \"lines.sqlite3\",\n"));
	CHECK(has(doc, "\n  \"size\": 123456789012,\n"));
	CHECK(has(doc, "\n  \"sha256\": \"" SHA_A "\",\n"));
	CHECK(has(doc, "\n  \"page_size\": 4096,\n  \"page_count\": 30141,\n"));
	CHECK(has(doc, "\n  \"integrity_check\": \"ok\",\n"));
	CHECK(has(doc, "\n  \"ledger_max\": 3,\n"));
	CHECK(has(doc,
		  "\n  \"tables\": {\n    \"_snapfs_ledger\": 3,\n    \"vectors\": 1000\n  },\n"));
	CHECK(has(doc, "\n  \"deltas\": [\n    {\"seq\": 1, \"name\": \"a.db\", \"sha256\": \"" SHA_B
		       "\"},\n"
		       "    {\"seq\": 3, \"name\": \"b.db\", \"sha256\": \"" SHA_B "\"}\n  ]\n}\n"));

	uint64_t size = 0, id = 0;
	char sha[65] = "";
	CHECK(manifest_read_basic(doc, &size, sha, &id) == 0);
	CHECK(size == 123456789012ULL);
	CHECK(id == 42);
	CHECK(strcmp(sha, SHA_A) == 0);
	sbuf_free(&b);
}

static void test_empty_lists_and_wide_ids(void)
{
	struct manifest m = {
		.collection = "c",
		.id = 123456789,
		.created = 0,
		.file = "c.sqlite3",
		.size = 0,
		.sha256 = SHA_A,
		.integrity = "ok",
	};
	sbuf b = SBUF_INIT;
	manifest_write_json(&m, &b);
	const char *doc = sbuf_str(&b);
	CHECK(has(doc, "\"snapshot\": \"123456789\""));
	CHECK(has(doc, "\"created\": \"1970-01-01T00:00:00Z\""));
	CHECK(has(doc, "\n  \"tables\": {},\n  \"deltas\": []\n}\n"));
	uint64_t size = 1, id = 0;
	char sha[65];
	CHECK(manifest_read_basic(doc, &size, sha, &id) == 0);
	CHECK(size == 0 && id == 123456789);

	/* Missing strings come out as null, not as a crash or "(null)". */
	sbuf_reset(&b);
	m.collection = NULL;
	m.sha256 = NULL;
	manifest_write_json(&m, &b);
	CHECK(has(sbuf_str(&b), "\"collection\": null,"));
	CHECK(has(sbuf_str(&b), "\"sha256\": null,"));
	CHECK(read_basic(sbuf_str(&b)) == -EINVAL); /* no sha256: not verifiable */
	sbuf_free(&b);
}

static void test_escaping(void)
{
	/* Quotes, backslash, control bytes, DEL, slash and UTF-8 (2, 3 and 4 bytes). */
	const char *odd = "we\"ird\\na\tme\n\x01\x1f\x7f/\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80";
	struct manifest_table tables[] = {{odd, 7}, {"sha256", 1}};
	struct manifest_delta deltas[] = {{9, odd, SHA_B}, {10, "\"size\": 1, \"id\": 2", SHA_B}};
	struct manifest m = {
		.collection = odd,
		.id = 7,
		.created = utc(2030, 1, 2, 3, 4, 5),
		.file = "x.sqlite3",
		.size = 4096,
		.sha256 = SHA_A,
		.page_size = 4096,
		.page_count = 1,
		.integrity = "ok",
		.tables = tables,
		.ntables = 2,
		.deltas = deltas,
		.ndeltas = 2,
	};
	sbuf b = SBUF_INIT;
	manifest_write_json(&m, &b);
	const char *doc = sbuf_str(&b);
	const char *esc =
		"\"we\\\"ird\\\\na\\tme\\n\\u0001\\u001f\\u007f/\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80\"";
	CHECK(has(doc, esc));
	/* No raw control byte anywhere but the newlines of the layout. */
	bool clean = true;
	for (const unsigned char *p = (const unsigned char *)doc; *p; p++)
		if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
			clean = false;
	CHECK(clean);
	CHECK(has(doc, "{\"seq\": 10, \"name\": \"\\\"size\\\": 1, \\\"id\\\": 2\""));

	/* The reader takes top-level keys only, never the lookalikes inside. */
	uint64_t size = 0, id = 0;
	char sha[65] = "";
	CHECK(manifest_read_basic(doc, &size, sha, &id) == 0);
	CHECK(size == 4096);
	CHECK(id == 7);
	CHECK(strcmp(sha, SHA_A) == 0);

	/* A delta file name that is not UTF-8 still gives a valid manifest. */
	sbuf_reset(&b);
	deltas[0].name = "bad\xff\xc3(\xed\xa0\x80.db";
	manifest_write_json(&m, &b);
	CHECK(has(sbuf_str(&b),
		  "\"name\": \"bad\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd.db\""));
	CHECK(read_basic(sbuf_str(&b)) == 0);
	sbuf_free(&b);
}

#define MIN_DOC(size, sha, id) "{\"size\": " size ", \"sha256\": \"" sha "\", \"id\": " id "}"
/* MIN_DOC("1", SHA_A, "2") without its opening brace, to put other keys in front. */
#define TAIL "\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\": 2}"

static void test_reader_accepts(void)
{
	uint64_t size = 0, id = 0;
	char sha[65] = "";
	CHECK(manifest_read_basic(MIN_DOC("1", SHA_A, "2"), &size, sha, &id) == 0);
	CHECK(size == 1 && id == 2 && strcmp(sha, SHA_A) == 0);
	/* Any order, any JSON whitespace, escaped key spelling, other keys of every type. */
	CHECK(manifest_read_basic(" \r\n\t{\"x\":[1,-2.5e+3,true,false,null,{\"sha256\":\"zz\"},[]],"
				  "\"\\u0069d\"\t:\n9223372036854775807,\"sha256\":\"" SHA_B "\","
				  "\"size\":0,\"n\":{}}\n ",
				  &size, sha, &id) == 0);
	CHECK(size == 0 && id == INT64_MAX && strcmp(sha, SHA_B) == 0);
	/* Out-parameters are optional. */
	CHECK(manifest_read_basic(MIN_DOC("1", SHA_A, "2"), NULL, NULL, NULL) == 0);
}

static void test_reader_rejects(void)
{
	CHECK(manifest_read_basic(NULL, NULL, NULL, NULL) == -EINVAL);
	const char *bad[] = {
		"",
		"   ",
		"[]",
		"null",
		"{}",
		"{\"size\": 1, \"id\": 2}",
		"{\"size\": 1, \"sha256\": \"" SHA_A "\"}",
		"{\"sha256\": \"" SHA_A "\", \"id\": 2}",
		/* Needed keys only nested: not the snapshot's. */
		"{\"t\": {\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\": 2}}",
		"[{\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\": 2}]",
		/* Wrong types and ranges. */
		MIN_DOC("-1", SHA_A, "2"),
		MIN_DOC("1.5", SHA_A, "2"),
		MIN_DOC("1e3", SHA_A, "2"),
		MIN_DOC("18446744073709551616", SHA_A, "2"),
		/* jansson's integers are signed 64-bit: past INT64_MAX is not a number it holds. */
		MIN_DOC("9223372036854775808", SHA_A, "2"),
		MIN_DOC("1", SHA_A, "18446744073709551615"),
		MIN_DOC("\"1\"", SHA_A, "2"),
		MIN_DOC("1", SHA_A, "null"),
		MIN_DOC("01", SHA_A, "2"),
		MIN_DOC("1", "0123", "2"),
		MIN_DOC("1", SHA_A "0", "2"),
		MIN_DOC("1", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "2"),
		MIN_DOC("1", "0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef", "2"),
		"{\"size\": 1, \"sha256\": 5, \"id\": 2}",
		/* The same key twice is ambiguous. */
		"{\"size\": 1, \"size\": 2, \"sha256\": \"" SHA_A "\", \"id\": 2}",
		"{\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\": 2, \"\\u0069d\": 3}",
		/* NUL in a key must not shorten it into a match. */
		"{\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\\u0000x\": 2}",
		/* Syntax. */
		"{\"size\": 1, \"sha256\": \"" SHA_A "\", \"id\": 2,}",
		"{\"size\": 1 \"sha256\": \"" SHA_A "\", \"id\": 2}",
		"{\"size\" 1, \"sha256\": \"" SHA_A "\", \"id\": 2}",
		"{size: 1, \"sha256\": \"" SHA_A "\", \"id\": 2}",
		"{'size': 1, \"sha256\": \"" SHA_A "\", \"id\": 2}",
		MIN_DOC("1", SHA_A, "2") "x",
		MIN_DOC("1", SHA_A, "2") "{}",
		"{\"x\": [1,], " TAIL,
		"{\"x\": tru, " TAIL,
		"{\"x\": nul, " TAIL,
		"{\"x\": -, " TAIL,
		"{\"x\": 1., " TAIL,
		"{\"x\": .5, " TAIL,
		"{\"x\": 1e, " TAIL,
		"{\"x\": +1, " TAIL,
		"{\"x\": {\"a\" 1}, " TAIL,
		"{\"x\": {1: 1}, " TAIL,
		"{\"x\": [1 2], " TAIL,
		"{\"x\": [1}, " TAIL,
		/* Strings: raw control byte, bad escapes, lone surrogates, bad UTF-8. */
		"{\"x\": \"a\tb\", " TAIL,
		"{\"x\": \"\\x41\", " TAIL,
		"{\"x\": \"\\u12\", " TAIL,
		"{\"x\": \"\\ud800\", " TAIL,
		"{\"x\": \"\\udc00\", " TAIL,
		"{\"x\": \"\\ud800\\u0041\", " TAIL,
		"{\"x\": \"\xff\", " TAIL,
		"{\"x\": \"\xc3\", " TAIL,
		"{\"x\": \"\xc0\xaf\", " TAIL,
		"{\"x\": \"\xed\xa0\x80\", " TAIL,
		"{\"x\": \"\xf4\x90\x80\x80\", " TAIL,
		"{\"x\": \"abc, " TAIL,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = read_basic(bad[i]);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted bad manifest #%zu: %s\n", i, bad[i]);
		CHECK(rc == -EINVAL);
	}
	/* The well-formed variants of the syntax cases above are fine. */
	CHECK(read_basic("{\"x\": [1, \"\\ud83d\\ude00\", -0.5E-2, \"\\/\"], " TAIL) == 0);
}

/* Every proper prefix of a real manifest is malformed: a torn write is never read as valid. */
static void test_truncated(void)
{
	struct manifest_table tables[] = {{"vectors", 5}};
	struct manifest_delta deltas[] = {{1, "a.db", SHA_B}};
	struct manifest m = {.collection = "lines",
			     .id = 3,
			     .created = 1,
			     .file = "lines.sqlite3",
			     .size = 8192,
			     .sha256 = SHA_A,
			     .page_size = 4096,
			     .page_count = 2,
			     .integrity = "ok",
			     .ledger_max = 1,
			     .tables = tables,
			     .ntables = 1,
			     .deltas = deltas,
			     .ndeltas = 1};
	sbuf b = SBUF_INIT;
	manifest_write_json(&m, &b);
	char *copy = malloc(b.len + 1);
	size_t accepted = 0;
	for (size_t n = 0; n < b.len; n++) {
		memcpy(copy, b.buf, n);
		copy[n] = '\0';
		/* Only dropping trailing whitespace may still be valid. */
		if (read_basic(copy) == 0 && strspn(b.buf + n, " \n") != b.len - n)
			accepted++;
	}
	CHECK(accepted == 0);
	free(copy);
	sbuf_free(&b);
}

static void test_deep_nesting(void)
{
	size_t depth = 100000;
	char *doc = malloc(2 * depth + 64);
	size_t n = 0;
	doc[n++] = '{';
	memcpy(doc + n, "\"x\":", 4);
	n += 4;
	for (size_t i = 0; i < depth; i++)
		doc[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		doc[n++] = ']';
	doc[n++] = '}';
	doc[n] = '\0';
	CHECK(read_basic(doc) == -EINVAL); /* bounded recursion, no stack overflow */
	free(doc);
}

/* Every field comes back from a JSON parser as written; names that are not UTF-8 as U+FFFD. */
static void test_whole_round_trip(void)
{
	struct manifest_table tables[] = {{"t\xff", 5}, {"q\"\\\x01", -1}};
	struct manifest_delta deltas[] = {{1, "a\xc3.db", SHA_B}, {2, "\xe2\x9c\x93\x7f", SHA_A}};
	struct manifest m = {.collection = "c\xfe",
			     .id = 9,
			     .created = utc(2026, 1, 2, 3, 4, 5),
			     .file = "c.sqlite3",
			     .size = 4096,
			     .sha256 = SHA_A,
			     .page_size = 4096,
			     .page_count = 1,
			     .integrity = "ok",
			     .ledger_max = 2,
			     .tables = tables,
			     .ntables = 2,
			     .deltas = deltas,
			     .ndeltas = 2};
	sbuf b = SBUF_INIT;
	manifest_write_json(&m, &b);
	json_t *root = NULL, *t = NULL, *d = NULL;
	CHECK(jsonx_load(sbuf_str(&b), 32, &root) == 0);
	json_int_t format = 0, id = 0, created_unix = 0, size = 0, psize = 0, pcount = 0, lmax = 0;
	const char *ver = "", *coll = "", *snap = "", *created = "", *file = "", *sha = "", *ic = "";
	CHECK(json_unpack(root,
			  "{s:I, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:I, s:s, s:I, s:o, s:o}",
			  "format", &format, "snapfs_version", &ver, "collection", &coll, "id", &id,
			  "snapshot", &snap, "created", &created, "created_unix", &created_unix,
			  "file", &file, "size", &size, "sha256", &sha, "page_size", &psize,
			  "page_count", &pcount, "integrity_check", &ic, "ledger_max", &lmax,
			  "tables", &t, "deltas", &d) == 0);
	CHECK(json_object_size(root) == 16);
	CHECK(format == 1 && id == 9 && size == 4096 && psize == 4096 && pcount == 1 && lmax == 2);
	CHECK(created_unix == (json_int_t)m.created);
	CHECK_STR(ver, SNAPFS_VERSION);
	CHECK_STR(coll, "c\xef\xbf\xbd");
	CHECK_STR(snap, "00000009");
	CHECK_STR(created, "2026-01-02T03:04:05Z");
	CHECK_STR(file, "c.sqlite3");
	CHECK_STR(sha, SHA_A);
	CHECK_STR(ic, "ok");
	CHECK(json_object_size(t) == 2);
	CHECK(json_integer_value(json_object_get(t, "t\xef\xbf\xbd")) == 5);
	CHECK(json_integer_value(json_object_get(t, "q\"\\\x01")) == -1);
	CHECK(json_array_size(d) == 2);
	json_int_t seq = 0;
	const char *name = "", *dsha = "";
	CHECK(json_unpack(json_array_get(d, 1), "{s:I, s:s, s:s}", "seq", &seq, "name", &name,
			  "sha256", &dsha) == 0);
	CHECK(seq == 2);
	CHECK_STR(name, "\xe2\x9c\x93\x7f");
	CHECK_STR(dsha, SHA_A);
	CHECK(json_unpack(json_array_get(d, 0), "{s:s}", "name", &name) == 0);
	CHECK_STR(name, "a\xef\xbf\xbd.db");
	json_decref(root);
	sbuf_free(&b);
}

static void test_read_file(void)
{
	char file[16] = "";
	CHECK(manifest_read_file("{\"file\": \"c.sqlite3\", " TAIL, file, sizeof(file)) == 0);
	CHECK_STR(file, "c.sqlite3");
	CHECK(manifest_read_file("{\"file\": \"0123456789abcdef\", " TAIL, file, sizeof(file)) ==
	      -EINVAL);
	CHECK(manifest_read_file("{\"file\": 1, " TAIL, file, sizeof(file)) == -EINVAL);
	CHECK(manifest_read_file(MIN_DOC("1", SHA_A, "2"), file, sizeof(file)) == -EINVAL);
	CHECK(manifest_read_file("{\"file\": \"a\", \"file\": \"b\", " TAIL, file, sizeof(file)) ==
	      -EINVAL);
	/* Not a manifest (no sha256): no file either. */
	CHECK(manifest_read_file("{\"file\": \"c.sqlite3\", \"size\": 1, \"id\": 2}", file,
				 sizeof(file)) == -EINVAL);
}

/* A key given twice anywhere, even where the reader does not look, refuses the document. */
static void test_duplicates_refused(void)
{
	CHECK(read_basic("{\"tables\": {\"a\": 1, \"a\": 2}, " TAIL) == -EINVAL);
	CHECK(read_basic("{\"deltas\": [{\"seq\": 1, \"seq\": 1}], " TAIL) == -EINVAL);
	CHECK(read_basic("{\"file\": \"a\", \"file\": \"a\", " TAIL) == -EINVAL);
	CHECK(read_basic("{\"tables\": {\"a\": 1, \"b\": 2}, " TAIL) == 0);
}

int main(void)
{
	test_fields_and_round_trip();
	test_empty_lists_and_wide_ids();
	test_escaping();
	test_reader_accepts();
	test_reader_rejects();
	test_truncated();
	test_deep_nesting();
	test_whole_round_trip();
	test_read_file();
	test_duplicates_refused();
	return tap_done();
}
