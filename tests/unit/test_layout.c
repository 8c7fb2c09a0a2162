/*
 * Unit tests for layout (no network): keys built and read back, the old
 * ID-HOST form still read, and everything that is not a snapshot object
 * of ours refused (the sweep deletes only what parses here).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "s3.h"
#include "tap.h"

#define INST "0123456789abcdef"

static void test_names(void)
{
	char buf[S3_KEY_MAX + 1];
	CHECK(layout_prefix_normalize(NULL, buf, sizeof(buf)) == 0 && strcmp(buf, "snapfs/") == 0);
	CHECK(layout_prefix_normalize("", buf, sizeof(buf)) == 0 && strcmp(buf, "") == 0);
	CHECK(layout_prefix_normalize("a/b", buf, sizeof(buf)) == 0 && strcmp(buf, "a/b/") == 0);
	CHECK(layout_prefix_normalize("a/b/", buf, sizeof(buf)) == 0 && strcmp(buf, "a/b/") == 0);
	CHECK(layout_prefix_normalize("/a", buf, sizeof(buf)) == -EINVAL);
	CHECK(layout_prefix_normalize("a//b", buf, sizeof(buf)) == -EINVAL);
	CHECK(layout_prefix_normalize("a\nb", buf, sizeof(buf)) == -EINVAL);

	CHECK(layout_host_id_valid("h1"));
	CHECK(layout_host_id_valid("web-01.example.com"));
	CHECK(!layout_host_id_valid(""));
	CHECK(!layout_host_id_valid("-h"));
	CHECK(!layout_host_id_valid("a/b"));
	CHECK(!layout_host_id_valid("a b"));
	char longid[80];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	CHECK(!layout_host_id_valid(longid));
	longid[64] = '\0';
	CHECK(layout_host_id_valid(longid));
}

static void test_keys(void)
{
	char dir[LAYOUT_DIR_MAX], buf[S3_KEY_MAX + 1];
	CHECK(layout_snapshot_dir(42, "h1", INST, dir, sizeof(dir)) == 0);
	CHECK(strcmp(dir, "00000042-h1-" INST) == 0);
	CHECK(layout_snapshot_key("p/", "lines", dir, "lines.sqlite3", buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "p/lines/snapshots/00000042-h1-" INST "/lines.sqlite3") == 0);
	CHECK(layout_snapshot_key("", "c", dir, NULL, buf, sizeof(buf)) == 0);
	CHECK(strcmp(buf, "c/snapshots/00000042-h1-" INST "/") == 0);
	CHECK(layout_snapshot_dir(123456789, "h", NULL, dir, sizeof(dir)) == 0);
	CHECK(strcmp(dir, "123456789-h") == 0);
	CHECK(layout_snapshots_prefix("p/", "c", buf, sizeof(buf)) == 0 &&
	      strcmp(buf, "p/c/snapshots/") == 0);
	CHECK(layout_pointer_key("p/", "c", buf, sizeof(buf)) == 0 &&
	      strcmp(buf, "p/c/pointer.json") == 0);
	CHECK(layout_lease_key("p/", "c", buf, sizeof(buf)) == 0 &&
	      strcmp(buf, "p/c/lease.json") == 0);
	char small[8];
	CHECK(layout_pointer_key("p/", "collection", small, sizeof(small)) == -ENAMETOOLONG);
	/* The largest directory fits its buffer. */
	char host[LAYOUT_HOST_ID_MAX + 1];
	memset(host, 'h', LAYOUT_HOST_ID_MAX);
	host[LAYOUT_HOST_ID_MAX] = '\0';
	CHECK(layout_snapshot_dir(UINT64_MAX, host, INST, dir, sizeof(dir)) == 0);
}

static void test_parse(void)
{
	struct layout_snap s;
	/* What is built is read back. */
	CHECK(layout_parse_snapshot_key("p/", "lines",
					"p/lines/snapshots/00000042-h1-" INST "/lines.sqlite3", &s));
	CHECK(s.id == 42 && strcmp(s.host, "h1") == 0 && strcmp(s.inst, INST) == 0 &&
	      s.leaf == LAYOUT_LEAF_DB && strcmp(s.dir, "00000042-h1-" INST) == 0);
	CHECK(layout_parse_snapshot_key("p/", "lines",
					"p/lines/snapshots/00000042-h1-" INST "/MANIFEST.json", &s));
	CHECK(s.leaf == LAYOUT_LEAF_MANIFEST);
	/* A host id with dashes, with and without an instance. */
	CHECK(layout_parse_dir("00000007-web-01-" INST, &s) && strcmp(s.host, "web-01") == 0 &&
	      strcmp(s.inst, INST) == 0);
	CHECK(layout_parse_dir("00000007-web-01", &s) && strcmp(s.host, "web-01") == 0 && !s.inst[0]);
	/* The old form ID-HOST, as older snapfs wrote it. */
	CHECK(layout_parse_snapshot_key("snapfs/", "c", "snapfs/c/snapshots/00000001-h1/c.sqlite3",
					&s));
	CHECK(s.id == 1 && strcmp(s.host, "h1") == 0 && !s.inst[0]);
	CHECK(layout_parse_snapshot_key("", "c", "c/snapshots/123456789-h-" INST "/c.sqlite3", &s));

	/* Not ours: other leaves, other collections, other shapes. */
	static const char *no[] = {
		"p/c/snapshots/00000001-h1-" INST "/other.sqlite3",
		"p/c/snapshots/00000001-h1-" INST "/c.sqlite3.tmp",
		"p/c/snapshots/00000001-h1-" INST "/",
		"p/c/snapshots/00000001-h1-" INST,
		"p/c/snapshots/00000001-h1-" INST "/sub/c.sqlite3",
		"p/c/snapshots/x0000001-h1/c.sqlite3",
		"p/c/snapshots/0000001-h1/c.sqlite3",   /* 7 digits: not an id */
		"p/c/snapshots/000000001-h1/c.sqlite3", /* a leading zero past 8 digits */
		"p/c/snapshots/00000001-/c.sqlite3",
		"p/c/snapshots/00000001/c.sqlite3",
		"p/c/snapshots/00000001-h 1/c.sqlite3",
		"p/c/snapshots/00000001--h1/c.sqlite3",
		"p/c/deltas/h1/00000001-h1/c.sqlite3",
		"p/d/snapshots/00000001-h1/d.sqlite3",
		"p/c/pointer.json",
		"q/c/snapshots/00000001-h1/c.sqlite3",
		"p/c/snapshots/00000001-h1/MANIFEST.json.bak",
	};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		bool ok = layout_parse_snapshot_key("p/", "c", no[i], &s);
		if (ok)
			fprintf(stderr, "accepted: %s\n", no[i]);
		CHECK(!ok);
	}
}

static void test_cluster_keys(void)
{
	char buf[1100];
	CHECK(layout_marker_key("snapfs/", "c", buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "snapfs/c/collection.json");
	CHECK(layout_host_key("snapfs/", "h1", buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "snapfs/.cluster/hosts/h1.json");
	CHECK(layout_deltas_prefix("", "c", "deltas", NULL, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "c/deltas/");
	CHECK(layout_deltas_prefix("p/", "c", "rejected", "h2", buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "p/c/rejected/h2/");
	struct layout_delta d = {
		.host = "h2",
		.inst = "00112233aabbccdd",
		.seq = 7,
		.sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
	CHECK(layout_delta_key("p/", "c", "deltas", &d, buf, sizeof(buf)) == 0);
	CHECK_STR(buf, "p/c/deltas/h2/00112233aabbccdd-0000000000000007-"
		       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	struct layout_delta back;
	CHECK(layout_parse_delta_key("p/", "c", "deltas", buf, &back));
	CHECK_STR(back.host, "h2");
	CHECK_STR(back.inst, d.inst);
	CHECK_EQ(back.seq, 7);
	CHECK_STR(back.sha256, d.sha256);
	CHECK(!layout_parse_delta_key("p/", "c", "rejected", buf, &back));
	CHECK(!layout_parse_delta_key("p/", "d", "deltas", buf, &back));
	buf[strlen(buf) - 1] = 'X';
	CHECK(!layout_parse_delta_key("p/", "c", "deltas", buf, &back));
	CHECK(!layout_parse_delta_key("p/", "c", "deltas", "p/c/deltas/h2/short", &back));
	CHECK(!layout_parse_delta_key("p/", "c", "deltas",
				      "p/c/deltas/.x/00112233aabbccdd-0000000000000007-"
				      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				      &back));
}

int main(void)
{
	test_names();
	test_keys();
	test_parse();
	test_cluster_keys();
	return tap_done();
}
