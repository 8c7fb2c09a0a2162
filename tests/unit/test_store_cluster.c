/*
 * test_store_cluster — a cluster member's store (store_cluster.c):
 * deltas acknowledged into outbox/ (and recovered there), imports into
 * queue/, queue/ handed to outbox/ on entering cluster mode (imports
 * dropped), ids reserved, the live database replaced.
 */
#include "fsx.h"
#include "storetest.h"
#include "tap.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define REMOTE "@h2@00112233aabbccdd-0000000000000007-" SHA

static void test_remote_names(void)
{
	CHECK(store_remote_name(REMOTE));
	CHECK(store_remote_name("@a@00112233aabbccdd-0000000000000007-" SHA));
	CHECK(!store_remote_name("h2@00112233aabbccdd-0000000000000007-" SHA));
	CHECK(!store_remote_name("@@00112233aabbccdd-0000000000000007-" SHA));
	CHECK(!store_remote_name("@h/2@00112233aabbccdd-0000000000000007-" SHA));
	CHECK(!store_remote_name("@h2@00112233aabbccdd-0000000000000007-" SHA "0"));
	CHECK(!store_remote_name("@h2@00112233AABBCCDD-0000000000000007-" SHA));
	CHECK(!store_remote_name("@h2@00112233aabbccdd-000000000000000x-" SHA));
	CHECK(!store_remote_name("@user.db"));
	CHECK(!store_remote_name("d1.db"));
}

static void test_outbox_intake(void)
{
	char *base = fresh_dir(), p[PATH_MAX];
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "c") == 0);
	/* a single-host queue: one delta of a user, one imported from the cluster */
	uint64_t a, r, b;
	putf(s, "c", STORE_AREA_INCOMING, "mine.db", "mine");
	CHECK(store_queue_add(s, "c", "mine.db", &a) == 0);
	CHECK(store_path(s, "c", STORE_AREA_STAGING, "dl", p, sizeof(p)) == 0);
	put(p, "remote");
	CHECK(store_queue_import(s, "c", p, REMOTE, &r) == 0);
	CHECK(r > a && !exists(p));
	CHECK(store_queue_import(s, "c", p, "../x", NULL) == -EINVAL);

	store_set_outbox_intake(s, true);
	CHECK(store_queue_to_outbox(s, "c") == 0);
	store_delta *d;
	size_t n;
	CHECK(store_queue_list(s, "c", &d, &n) == 0);
	CHECK_EQ(n, 0);
	store_deltas_free(d, n);
	CHECK(store_area_list(s, "c", STORE_AREA_OUTBOX, &d, &n) == 0);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_STR(d[0].name, "mine.db");
		CHECK_EQ(d[0].seq, a);
	}
	store_deltas_free(d, n);

	/* new deltas go to outbox/, and so do incoming/ leftovers at recovery */
	putf(s, "c", STORE_AREA_INCOMING, "new.db", "new");
	CHECK(store_queue_add(s, "c", "new.db", &b) == 0);
	putf(s, "c", STORE_AREA_INCOMING, "left.db", "left");
	uint64_t q = 0;
	CHECK(store_recover(s, "c", true, &q) == 0);
	CHECK(store_area_list(s, "c", STORE_AREA_OUTBOX, &d, &n) == 0);
	CHECK_EQ(n, 3);
	if (n == 3) {
		CHECK_STR(d[1].name, "new.db");
		CHECK_STR(d[2].name, "left.db");
		CHECK(store_area_remove(s, "c", STORE_AREA_OUTBOX, &d[0]) == 0);
	}
	store_deltas_free(d, n);
	CHECK(store_area_list(s, "c", STORE_AREA_OUTBOX, &d, &n) == 0);
	CHECK_EQ(n, 2);
	store_deltas_free(d, n);
	CHECK(store_queue_list(s, "c", &d, &n) == 0);
	CHECK_EQ(n, 0);
	store_deltas_free(d, n);
	/* a collection with unshipped deltas is not removed */
	CHECK(store_collection_remove(s, "c") == -ENOTEMPTY);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static void test_ids_and_live(void)
{
	char *base = fresh_dir(), live[PATH_MAX], p[PATH_MAX + 8];
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "c") == 0);
	uint64_t id;
	CHECK(store_id_reserve(s, "c", 41) == 0);
	CHECK(store_id_alloc(s, "c", &id) == 0);
	CHECK_EQ(id, 42);
	CHECK(store_id_reserve(s, "c", 10) == 0); /* never lowers */
	CHECK(store_id_alloc(s, "c", &id) == 0);
	CHECK_EQ(id, 43);

	CHECK(store_path(s, "c", STORE_AREA_LIVE_DB, NULL, live, sizeof(live)) == 0);
	put(live, "old");
	snprintf(p, sizeof(p), "%s-wal", live);
	put(p, "wal");
	CHECK(store_path(s, "c", STORE_AREA_STAGING, "snap", p, sizeof(p)) == 0);
	put(p, "snapshot bytes");
	CHECK(store_live_replace(s, "c", p) == 0);
	CHECK(file_is(live, "snapshot bytes"));
	CHECK(file_is(p, "snapshot bytes"));
	snprintf(p, sizeof(p), "%s-wal", live);
	CHECK(!exists(p));
	CHECK(store_live_replace(s, "c", NULL) == 0);
	CHECK(!exists(live));
	CHECK(store_live_replace(s, "c", "/nonexistent/x") == -ENOENT);
	CHECK(!exists(live));
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

int main(void)
{
	test_remote_names();
	test_outbox_intake();
	test_ids_and_live();
	return tap_done();
}
