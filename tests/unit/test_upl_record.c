/*
 * Unit tests for the uploader's local record (upload.json): its bytes,
 * its round trip, names that are not UTF-8, and what the reader refuses.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lease.h"
#include "sbuf.h"
#include "tap.h"
#include "uploader.h"

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_round_trip(void)
{
	struct lease_pointer p = {.id = 42, .size = 1ull << 40, .written_at = 1700000000}, q;
	strcpy(p.host, "web1");
	strcpy(p.db_key, "snapfs/c/snapshots/00000042-web1-0011223344556677/c.sqlite3");
	strcpy(p.manifest_key, "snapfs/c/snapshots/00000042-web1-0011223344556677/MANIFEST.json");
	strcpy(p.etag, "\"abc-2\"");
	strcpy(p.sha256, SHA_A);
	sbuf b = SBUF_INIT;
	upl_record_json(&p, "pending", 7, &b);
	CHECK_STR(sbuf_str(&b),
		  "{\"format\": 1, \"pointer\": \"pending\", \"pointer_generation\": 7, \"id\": 42, \"host\": "
		  "\"web1\", \"key\": \"snapfs/c/snapshots/00000042-web1-0011223344556677/c.sqlite3\", "
		  "\"manifest_key\": \"snapfs/c/snapshots/00000042-web1-0011223344556677/MANIFEST.json\", "
		  "\"size\": 1099511627776, \"etag\": \"\\\"abc-2\\\"\", \"sha256\": \"" SHA_A
		  "\", \"at\": "
		  "1700000000}\n");
	bool done = true;
	uint64_t gen = 0;
	CHECK(upl_record_parse(b.buf, &q, &done, &gen) == 0);
	CHECK(!done && gen == 7);
	CHECK(memcmp(&p, &q, sizeof(p)) == 0);
	sbuf_free(&b);

	upl_record_json(&p, "swapped", 0, &b);
	CHECK(upl_record_parse(b.buf, &q, &done, &gen) == 0 && done && gen == 0);
	sbuf_free(&b);

	/* A host that is not UTF-8 still makes a valid record, read back with U+FFFD. */
	strcpy(p.host, "w\xe2\x9c");
	upl_record_json(&p, "conflict", 3, &b);
	CHECK(upl_record_parse(b.buf, &q, &done, &gen) == 0 && done);
	CHECK_STR(q.host, "w\xef\xbf\xbd\xef\xbf\xbd");
	sbuf_free(&b);
}

#define REC(fmt, ptr, extra)                                                                                \
	"{\"format\": " fmt ", \"pointer\": " ptr                                                           \
	", \"pointer_generation\": 1, \"id\": 1, \"host\": "                                                \
	"\"h\", \"key\": \"k\", \"manifest_key\": \"m\", \"size\": 1, \"etag\": \"e\", \"sha256\": \"s\", " \
	"\"at\": 1" extra "}"

static void test_refused(void)
{
	struct lease_pointer q;
	bool done;
	uint64_t gen;
	CHECK(upl_record_parse(REC("1", "\"swapped\"", ""), &q, &done, &gen) == 0);
	CHECK(upl_record_parse(REC("1", "\"swapped\"", ", \"new\": {\"x\": [1]}"), &q, &done,
			       &gen) == 0);
	static const char *bad[] = {
		REC("2", "\"swapped\"", ""),                  /* another format */
		REC("1", "\"a pointer state too long\"", ""), /* does not fit */
		REC("1", "null", ""),
		REC("1", "\"swapped\"", ", \"id\": 2"), /* a key twice */
		REC("1", "\"swapped\"", ", \"x\": {\"a\": 1, \"a\": 2}"),
		"{\"format\": 1, \"pointer\": \"swapped\"}", /* fields missing */
		"{\"format\": 1, \"pointer\": \"swapped\", \"pointer_generation\": -1, \"id\": 1, \"host\": \"h\", "
		"\"key\": \"k\", \"manifest_key\": \"m\", \"size\": 1, \"etag\": \"e\", \"sha256\": \"s\", \"at\": 1}",
		"{\"format\": 1.0, \"pointer\": \"swapped\", \"pointer_generation\": 1, \"id\": 1, \"host\": \"h\", "
		"\"key\": \"k\", \"manifest_key\": \"m\", \"size\": 1, \"etag\": \"e\", \"sha256\": \"s\", \"at\": 1}",
		"",
		"{",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = upl_record_parse(bad[i], &q, &done, &gen);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted record #%zu: %s\n", i, bad[i]);
		CHECK(rc == -EINVAL && q.id == 0);
	}
}

int main(void)
{
	test_round_trip();
	test_refused();
	return tap_done();
}
