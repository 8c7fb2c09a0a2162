/*
 * Unit tests for lease (no network): the lease and pointer documents'
 * bytes, round trips and refusals (the cases of the JSON reader they
 * used to have are in test_jsonx.c). The protocol itself runs against
 * radosgw in tests/s3/test_upload*.py.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "sbuf.h"
#include "tap.h"

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

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
	CHECK(lease_history_next(&p2, &h1, 3, &h2) == 0 && h2.n == 2 &&
	      h2.prev[0].generation == 43 && h2.prev[1].generation == 42);
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
	CHECK(lease_pointer_parse(
		      "{\"generation\": 2, \"id\": 1, \"host\": \"h\", \"keys\": {\"db\": "
		      "\"a\", \"manifest\": \"b\"}, \"sha256\": \"" SHA_A "\", \"size\": 1, "
		      "\"etag\": \"e\", \"lease_token\": 1, \"written_at\": 1, \"history\": "
		      "[{\"generation\": 1, \"keys\": {\"db\": \"x\"}, \"written_at\": 1}]}",
		      &q, NULL) == -EINVAL); /* an entry without its manifest key */
}

/* The lease document: its bytes, its round trip and what the reader refuses. */
static void test_lease_document(void)
{
	struct lease_state st = {.token = 3,
				 .expires = 1700000060,
				 .acquired_at = 1700000000,
				 .ttl = 60},
			   back;
	strcpy(st.owner, "web1/123/0a1b2c");
	sbuf b = SBUF_INIT;
	lease_state_json(&st, &b);
	CHECK_STR(sbuf_str(&b),
		  "{\"owner\": \"web1/123/0a1b2c\", \"token\": 3, \"expires\": 1700000060, "
		  "\"acquired_at\": 1700000000, \"ttl\": 60}\n");
	CHECK(lease_state_parse(b.buf, &back) == 0);
	CHECK(memcmp(&st, &back, sizeof(st)) == 0);
	sbuf_free(&b);

	/* An owner that is not UTF-8 still makes valid JSON, read back with U+FFFD. */
	strcpy(st.owner, "h\xff\"q\\\x01");
	lease_state_json(&st, &b);
	CHECK_STR(sbuf_str(&b),
		  "{\"owner\": \"h\xef\xbf\xbd\\\"q\\\\\\u0001\", \"token\": 3, \"expires\": "
		  "1700000060, \"acquired_at\": 1700000000, \"ttl\": 60}\n");
	CHECK(lease_state_parse(b.buf, &back) == 0);
	CHECK_STR(back.owner, "h\xef\xbf\xbd\"q\\\x01");
	sbuf_free(&b);

	/* acquired_at and ttl may be missing (0); other keys are allowed. */
	CHECK(lease_state_parse("{\"owner\": \"o\", \"token\": 1, \"expires\": 0, \"new\": [1]}",
				&back) == 0);
	CHECK(back.token == 1 && back.expires == 0 && back.ttl == 0 && back.acquired_at == 0);
	CHECK(lease_state_parse("{\"owner\": \"o\", \"token\": 1, \"expires\": -5}", &back) == 0 &&
	      back.expires == -5);
	char long_owner[LEASE_OWNER_MAX + 64];
	int n = snprintf(long_owner, sizeof(long_owner),
			 "{\"owner\": \"%0*d\", \"token\": 1, \"expires\": 0}", LEASE_OWNER_MAX - 1,
			 0);
	CHECK(n > 0 && lease_state_parse(long_owner, &back) == 0);
	n = snprintf(long_owner, sizeof(long_owner),
		     "{\"owner\": \"%0*d\", \"token\": 1, \"expires\": 0}", LEASE_OWNER_MAX, 0);
	CHECK(n > 0);
	static const char *bad[] = {
		"{\"token\": 1, \"expires\": 0}",
		"{\"owner\": \"o\", \"expires\": 0}",
		"{\"owner\": \"o\", \"token\": 1}",
		"{\"owner\": \"o\", \"token\": -1, \"expires\": 0}",
		"{\"owner\": \"o\", \"token\": 1, \"expires\": 0, \"ttl\": -1}",
		"{\"owner\": \"o\", \"token\": 1.0, \"expires\": 0}",
		"{\"owner\": 1, \"token\": 1, \"expires\": 0}",
		"{\"owner\": \"o\", \"token\": 1, \"expires\": 0, \"ttl\": null}",
		/* The same key twice: which token would count? */
		"{\"owner\": \"o\", \"token\": 1, \"token\": 9, \"expires\": 0}",
		"{\"owner\": \"o\", \"token\": 1, \"expires\": 0, \"x\": {\"a\": 1, \"a\": 1}}",
		"{\"owner\": \"o\", \"token\": 1, \"expires\": 0}{}",
		"not json",
		"",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = lease_state_parse(bad[k], &back);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted lease: %s\n", bad[k]);
		CHECK(rc == -EINVAL);
	}
	CHECK(lease_state_parse(long_owner, &back) == -EINVAL); /* does not fit */
	CHECK(lease_state_parse(NULL, &back) == -EINVAL);
}

/* The pointer document's exact bytes; duplicate keys and bad UTF-8. */
static void test_pointer_document(void)
{
	struct lease_pointer p = {.generation = 2,
				  .id = 7,
				  .size = 10,
				  .lease_token = 1,
				  .written_at = 5},
			     q;
	strcpy(p.host, "h");
	strcpy(p.db_key, "k/db");
	strcpy(p.manifest_key, "k/m");
	strcpy(p.sha256, SHA_A);
	strcpy(p.etag, "\"e\"");
	struct lease_prev prev = {.generation = 1,
				  .db_key = "k0/db",
				  .manifest_key = "k0/m",
				  .written_at = 4};
	struct lease_history h = {&prev, 1}, back = {0};
	sbuf b = SBUF_INIT;
	lease_pointer_json(&p, &h, &b);
	CHECK_STR(sbuf_str(&b),
		  "{\"generation\": 2, \"id\": 7, \"host\": \"h\", \"keys\": {\"db\": \"k/db\", "
		  "\"manifest\": \"k/m\"}, \"sha256\": \"" SHA_A "\", \"size\": 10, \"etag\": "
		  "\"\\\"e\\\"\", \"lease_token\": 1, \"written_at\": 5, \"history\": [{\"generation\": "
		  "1, \"keys\": {\"db\": \"k0/db\", \"manifest\": \"k0/m\"}, \"written_at\": 4}]}\n");
	CHECK(lease_pointer_parse(b.buf, &q, &back) == 0 && back.n == 1);
	CHECK(memcmp(&p, &q, sizeof(p)) == 0);
	CHECK(back.prev[0].generation == 1 && strcmp(back.prev[0].manifest_key, "k0/m") == 0 &&
	      back.prev[0].written_at == 4);
	lease_history_free(&back);
	sbuf_free(&b);

	/* A host or key that is not UTF-8 still makes a valid document. */
	strcpy(p.host, "h\xc3");
	lease_pointer_json(&p, NULL, &b);
	CHECK(lease_pointer_parse(b.buf, &q, NULL) == 0);
	CHECK_STR(q.host, "h\xef\xbf\xbd");
	sbuf_free(&b);

#define PTR_HEAD                                                                                   \
	"{\"generation\": 2, \"id\": 1, \"host\": \"h\", \"sha256\": \"" SHA_A "\", \"size\": 1, " \
	"\"etag\": \"e\", \"lease_token\": 1, \"written_at\": 1, "
	CHECK(lease_pointer_parse(PTR_HEAD "\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}}", &q,
				  NULL) == 0);
	static const char *dup[] = {
		PTR_HEAD "\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}, \"generation\": 3}",
		PTR_HEAD "\"keys\": {\"db\": \"a\", \"db\": \"x\", \"manifest\": \"b\"}}",
		PTR_HEAD
		"\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}, \"history\": [{\"generation\": 1, "
		"\"generation\": 1, \"keys\": {\"db\": \"x\", \"manifest\": \"y\"}, \"written_at\": 1}]}",
		/* and the other refusals: history not an array, an entry not an object, too long a key */
		PTR_HEAD "\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}, \"history\": null}",
		PTR_HEAD "\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}, \"history\": [1]}",
		PTR_HEAD "\"keys\": {\"db\": \"\", \"manifest\": \"b\"}}",
		PTR_HEAD
		"\"keys\": {\"db\": \"a\", \"manifest\": \"b\"}, \"history\": [{\"generation\": 2, "
		"\"keys\": {\"db\": \"x\", \"manifest\": \"y\"}, \"written_at\": 1}]}",
	};
	for (size_t k = 0; k < sizeof(dup) / sizeof(dup[0]); k++) {
		struct lease_history hh = {0};
		int rc = lease_pointer_parse(dup[k], &q, &hh);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted pointer #%zu: %s\n", k, dup[k]);
		CHECK(rc == -EINVAL && hh.n == 0 && hh.prev == NULL && q.generation == 0);
	}
	char big[S3_KEY_MAX + 256];
	snprintf(big, sizeof(big), PTR_HEAD "\"keys\": {\"db\": \"%0*d\", \"manifest\": \"b\"}}",
		 S3_KEY_MAX + 1, 0);
	CHECK(lease_pointer_parse(big, &q, NULL) == -EINVAL);
#undef PTR_HEAD
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
	test_no_pointer_without_lease();
	test_pointer_roundtrip();
	test_lease_document();
	test_pointer_document();
	return tap_done();
}
