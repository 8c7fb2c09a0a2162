/*
 * Unit tests for lease (no network): the strict JSON object reader, the
 * pointer document's round trip and refusals. The protocol itself runs
 * against radosgw in tests/s3/test_upload*.py.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jread.h"
#include "lease.h"
#include "sbuf.h"
#include "tap.h"

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_json_reader(void)
{
	char s[16] = "";
	uint64_t u = 0;
	int64_t i = 0;
	char inner[8] = "";
	const struct jread_field sub[] = {{"x", JREAD_STR, inner, sizeof(inner), NULL, 0, false, NULL, NULL}};
	const struct jread_field f[] = {
		{"s", JREAD_STR, s, sizeof(s), NULL, 0, false, NULL, NULL},
		{"u", JREAD_U64, &u, 0, NULL, 0, false, NULL, NULL},
		{"i", JREAD_I64, &i, 0, NULL, 0, true, NULL, NULL},
		{"o", JREAD_OBJ, NULL, 0, sub, 1, true, NULL, NULL},
	};
	size_t n = sizeof(f) / sizeof(f[0]);

	CHECK(jread_object("{\"s\": \"a\\\"b\\u00e9\", \"u\": 7, \"i\": -3, \"o\": {\"x\": \"y\"}, "
			      "\"other\": [1, {\"s\": 2}, null, true, 1.5e3]}",
			      f, n) == 0);
	CHECK(strcmp(s, "a\"b\xc3\xa9") == 0);
	CHECK(u == 7 && i == -3 && strcmp(inner, "y") == 0);
	/* A nested "s" inside an unknown key is not the top-level one. */
	CHECK(jread_object("{\"z\": {\"s\": \"no\"}, \"s\": \"yes\", \"u\": 1}", f, n) == 0);
	CHECK(strcmp(s, "yes") == 0);
	/* Surrogate pair. */
	CHECK(jread_object("{\"s\": \"\\ud83d\\ude00\", \"u\": 0}", f, n) == 0);
	CHECK(strcmp(s, "\xf0\x9f\x98\x80") == 0);

	static const char *bad[] = {
		"",
		"[]",
		"{\"s\": \"a\"}",                    /* u missing */
		"{\"s\": \"a\", \"u\": -1}",         /* negative u64 */
		"{\"s\": \"a\", \"u\": 1.5}",        /* not an integer */
		"{\"s\": \"a\", \"u\": 1e2}",
		"{\"s\": \"a\", \"u\": 99999999999999999999}",
		"{\"s\": \"a\", \"u\": 01}",
		"{\"s\": 1, \"u\": 1}",              /* wrong type */
		"{\"s\": \"a\", \"u\": 1, \"u\": 2}", /* repeated */
		"{\"s\": \"0123456789abcdefX\", \"u\": 1}", /* does not fit */
		"{\"s\": \"a\", \"u\": 1,}",
		"{\"s\": \"a\" \"u\": 1}",
		"{\"s\": \"a\", \"u\": 1} x",
		"{\"s\": \"a\\u0000\", \"u\": 1}",   /* NUL */
		"{\"s\": \"\\ud83d\", \"u\": 1}",    /* lone surrogate */
		"{\"s\": \"a\\q\", \"u\": 1}",
		"{\"s\": \"a\tb\", \"u\": 1}",       /* raw control byte */
		"{\"s\": \"a\", \"u\": 1, \"o\": {\"y\": 1}}", /* nested field missing */
		"{\"s\": \"a\", \"u\": 1, \"z\": [1,]}",
		"{\"s\": \"a\", \"u\": 1, \"z\": tru}",
		"{\"s\": \"a\", \"u\": 1, \"z\": "
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = jread_object(bad[k], f, n);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted: %s\n", bad[k]);
		CHECK(rc == -EINVAL);
	}
	CHECK(jread_object(NULL, f, n) == -EINVAL);
}

static void test_pointer_roundtrip(void)
{
	struct lease_pointer p = {0}, q;
	p.generation = 42;
	p.id = 7;
	strcpy(p.host, "host-1.example");
	strcpy(p.db_key, "snapfs/c/snapshots/00000007-host-1.example/c.sqlite3");
	strcpy(p.manifest_key, "snapfs/c/snapshots/00000007-host-1.example/MANIFEST.json");
	strcpy(p.sha256, SHA_A);
	p.size = 1ull << 40;
	strcpy(p.etag, "0123abcd-3");
	p.lease_token = 9;
	p.written_at = 1700000000;
	sbuf b = SBUF_INIT;
	lease_pointer_json(&p, NULL, &b);
	CHECK(b.len > 0 && b.buf[b.len - 1] == '\n');
	struct lease_history h = {(struct lease_prev *)&h, 7};
	CHECK(lease_pointer_parse(b.buf, &q, &h) == 0);
	CHECK(memcmp(&p, &q, sizeof(p)) == 0);
	CHECK(h.n == 0 && h.prev == NULL); /* an older document without a history */
	sbuf_free(&b);

	/* The history: the replaced pointer first, then its own, newest first, cut at max. */
	struct lease_history h1 = {0}, h2 = {0}, h3 = {0};
	struct lease_pointer p2 = p;
	p2.generation = 43;
	strcpy(p2.db_key, "snapfs/c/snapshots/00000008-host-1.example/c.sqlite3");
	p2.written_at = 1700000100;
	CHECK(lease_history_next(&p, NULL, 3, &h1) == 0 && h1.n == 1);
	CHECK(h1.prev[0].generation == 42 && strcmp(h1.prev[0].db_key, p.db_key) == 0 &&
	      h1.prev[0].written_at == 1700000000);
	CHECK(lease_history_next(&p2, &h1, 3, &h2) == 0 && h2.n == 2 && h2.prev[0].generation == 43 &&
	      h2.prev[1].generation == 42);
	struct lease_pointer p3 = p2;
	p3.generation = 44;
	CHECK(lease_history_next(&p3, &h2, 2, &h3) == 0 && h3.n == 2 && h3.prev[1].generation == 43);
	struct lease_pointer p4 = p3;
	p4.generation = 45;
	lease_pointer_json(&p4, &h3, &b);
	CHECK(strstr(b.buf, "\"history\": [{\"generation\": 44") != NULL);
	struct lease_history back = {0};
	CHECK(lease_pointer_parse(b.buf, &q, &back) == 0 && back.n == 2);
	CHECK(back.prev[0].generation == 44 && back.prev[1].generation == 43 &&
	      strcmp(back.prev[1].db_key, p2.db_key) == 0 && back.prev[1].written_at == 1700000100);
	CHECK(lease_pointer_parse(b.buf, &q, NULL) == 0); /* the history may be skipped */
	lease_history_free(&back);
	sbuf_free(&b);
	/* A history out of order, or not older than the pointer, is refused. */
	lease_pointer_json(&p2, &h3, &b); /* generation 43 with a history starting at 44 */
	CHECK(lease_pointer_parse(b.buf, &q, &back) == -EINVAL && back.n == 0);
	sbuf_free(&b);
	CHECK(lease_history_next(&p, NULL, 0, &back) == 0 && back.n == 0);
	lease_history_free(&h1);
	lease_history_free(&h2);
	lease_history_free(&h3);

	/* A pointer without sha256 or keys, or with a bad sha, is refused. */
	CHECK(lease_pointer_parse("{\"generation\": 1}", &q, NULL) == -EINVAL);
	CHECK(lease_pointer_parse("{\"generation\": 1, \"id\": 1, \"host\": \"h\", \"keys\": {\"db\": "
				  "\"a\", \"manifest\": \"b\"}, \"sha256\": \"XYZ\", \"size\": 1, "
				  "\"etag\": \"e\", \"lease_token\": 1, \"written_at\": 1}",
				  &q, NULL) == -EINVAL);
	CHECK(lease_pointer_parse("{\"generation\": 1, \"id\": 1, \"host\": \"h\", \"keys\": {\"db\": "
				  "\"a\", \"manifest\": \"b\"}, \"sha256\": \"" SHA_A "\", \"size\": 1, "
				  "\"etag\": \"e\", \"lease_token\": 1, \"written_at\": 1, \"new\": {}}",
				  &q, NULL) == 0);
	CHECK(strcmp(q.db_key, "a") == 0 && q.generation == 1);
	CHECK(lease_pointer_parse("{\"generation\": 2, \"id\": 1, \"host\": \"h\", \"keys\": {\"db\": "
				  "\"a\", \"manifest\": \"b\"}, \"sha256\": \"" SHA_A "\", \"size\": 1, "
				  "\"etag\": \"e\", \"lease_token\": 1, \"written_at\": 1, \"history\": "
				  "[{\"generation\": 1, \"keys\": {\"db\": \"x\"}, \"written_at\": 1}]}",
				  &q, NULL) == -EINVAL); /* an entry without its manifest key */
}

/* Without the lease (never taken, or run out) the pointer is not written: nothing is sent. */
static void test_no_pointer_without_lease(void)
{
	struct s3_config cfg = {
		.endpoint = "http://127.0.0.1:9", /* discard: nothing may be sent there */
		.bucket = "b",
		.access_key_id = "AKIDEXAMPLE",
		.secret_access_key = "secret",
		.retry = {.max_attempts = 1},
	};
	s3_client *c = NULL;
	char err[256];
	CHECK(s3_client_new(&cfg, &c, err, sizeof(err)) == 0);
	if (!c)
		return;
	lease *l = NULL;
	CHECK(lease_new(c, "p/c/lease.json", "h1/1/abc", 60, &l) == 0);
	CHECK(lease_remaining(l) <= 0);
	struct lease_pointer p = {.generation = 1, .id = 1};
	strcpy(p.host, "h1");
	strcpy(p.db_key, "k");
	strcpy(p.manifest_key, "m");
	strcpy(p.sha256, SHA_A);
	struct s3_error e;
	CHECK(lease_pointer_swap(l, "p/c/pointer.json", &p, NULL, NULL, 20, NULL, &e) == -ENOLCK);
	CHECK(strstr(e.transport, "lease") != NULL);
	CHECK(strcmp(e.key, "p/c/pointer.json") == 0);
	struct s3_stats st;
	s3_client_stats(c, &st);
	CHECK(st.requests == 0);
	/* Dropping a hold never taken sends nothing either. */
	CHECK(lease_drop(l, &e) == 0);
	s3_client_stats(c, &st);
	CHECK(st.requests == 0);
	lease_free(l);
	lease *l2 = (lease *)&l2;
	CHECK(lease_new(c, "k", "", 60, &l2) == -EINVAL && l2 == NULL);
	CHECK(lease_new(c, "k", "owner", 0, &l2) == -EINVAL && l2 == NULL);
	s3_client_free(c);
}

int main(void)
{
	test_json_reader();
	test_no_pointer_without_lease();
	test_pointer_roundtrip();
	return tap_done();
}
