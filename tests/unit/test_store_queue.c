/*
 * Unit tests for store's delta queue: adding, listing and taking deltas,
 * sequence numbers under concurrent adders, and rejection with its
 * reason. Each case works in its own fresh temporary directory.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "store.h"
#include "storetest.h"
#include "tap.h"

static void test_queue(void)
{
	char *base = fresh_dir(), p[PATH_MAX];
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	CHECK(store_collection_create(s, "words") == 0);
	uint64_t a, b, c, w;
	putf(s, "lines", STORE_AREA_INCOMING, "d1", "one");
	putf(s, "lines", STORE_AREA_INCOMING, "d2", "two");
	putf(s, "lines", STORE_AREA_INCOMING, "d3", "three");
	putf(s, "words", STORE_AREA_INCOMING, "w", "w");
	CHECK(store_queue_add(s, "lines", "d2", &a) == 0);
	CHECK(store_queue_add(s, "words", "w", &w) == 0);
	CHECK(store_queue_add(s, "lines", "d1", &b) == 0);
	CHECK(store_queue_add(s, "lines", "d3", &c) == 0);
	CHECK(a >= 1 && a < w && w < b && b < c);
	CHECK(!exists_in(s, "lines", STORE_AREA_INCOMING, "d1"));
	snprintf(p, sizeof(p), "%016llu-d2", (unsigned long long)a);
	CHECK(exists_in(s, "lines", STORE_AREA_QUEUE, p));

	/* refused: dot-files, names with '/', missing files, non-files */
	putf(s, "lines", STORE_AREA_INCOMING, ".tmp", "x");
	CHECK(store_queue_add(s, "lines", ".tmp", NULL) == -EINVAL);
	CHECK(store_queue_add(s, "lines", "../queue", NULL) == -EINVAL);
	CHECK(store_queue_add(s, "lines", "", NULL) == -EINVAL);
	CHECK(store_queue_add(s, "lines", "missing", NULL) == -ENOENT);
	CHECK(store_queue_add(s, "nope", "d1", NULL) == -ENOENT);
	CHECK(store_queue_add(s, "../x", "d1", NULL) == -EINVAL);
	CHECK(store_path(s, "lines", STORE_AREA_INCOMING, "adir", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(store_queue_add(s, "lines", "adir", NULL) == -EINVAL);

	/* not ours: ignored by the listing */
	putf(s, "lines", STORE_AREA_QUEUE, "junk", "x");
	putf(s, "lines", STORE_AREA_QUEUE, "123-short", "x");
	putf(s, "lines", STORE_AREA_QUEUE, "0000000000000009-.dot", "x");
	putf(s, "lines", STORE_AREA_QUEUE, "000000000000000x-bad", "x");
	putf(s, "lines", STORE_AREA_QUEUE, "0000000000000009-", "x");

	store_delta *d;
	size_t n;
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 3);
	if (n == 3) {
		CHECK(d[0].seq == a && !strcmp(d[0].name, "d2"));
		CHECK(d[1].seq == b && !strcmp(d[1].name, "d1"));
		CHECK(d[2].seq == c && !strcmp(d[2].name, "d3"));
		CHECK(d[0].path[0] == '/' && file_is(d[0].path, "two"));
		CHECK(store_queue_remove(s, "lines", &d[1]) == 0);
		CHECK(store_queue_remove(s, "lines", &d[1]) == -ENOENT);
	}
	store_deltas_free(d, n);
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 2);
	if (n == 2)
		CHECK(!strcmp(d[0].name, "d2") && !strcmp(d[1].name, "d3"));
	store_deltas_free(d, n);

	/* after a restart the sequence continues above what is queued */
	store_close(s);
	s = open_ok(base);
	putf(s, "words", STORE_AREA_INCOMING, "later", "x");
	uint64_t e;
	CHECK(store_queue_add(s, "words", "later", &e) == 0 && e == c + 1);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

struct adder {
	store *s;
	int t;
	int failures;
};

static void *adder_run(void *arg)
{
	struct adder *a = arg;
	for (int i = 0; i < 25; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%d-%d", a->t, i);
		putf(a->s, "lines", STORE_AREA_INCOMING, name, name);
		if (store_queue_add(a->s, "lines", name, NULL) != 0)
			a->failures++;
	}
	return NULL;
}

static void test_queue_threads(void)
{
	char *base = fresh_dir();
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	struct adder ad[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		ad[i] = (struct adder){s, i, 0};
		CHECK(pthread_create(&th[i], NULL, adder_run, &ad[i]) == 0);
	}
	int failures = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		failures += ad[i].failures;
	}
	CHECK(failures == 0);
	store_delta *d;
	size_t n;
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 100);
	bool increasing = true;
	for (size_t i = 1; i < n; i++)
		if (d[i].seq <= d[i - 1].seq)
			increasing = false;
	CHECK(increasing);
	store_deltas_free(d, n);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static void test_reject(void)
{
	char *base = fresh_dir(), p[PATH_MAX];
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	const char *reasons[] = {"not a SQLite database", "integrity_check failed",
				 "table t: primary key\ndiffers"};
	for (int i = 0; i < 3; i++) {
		putf(s, "lines", STORE_AREA_INCOMING, "bad", "garbage");
		CHECK(store_queue_add(s, "lines", "bad", NULL) == 0);
		store_delta *d;
		size_t n;
		CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 1);
		if (n == 1)
			CHECK(store_reject(s, "lines", &d[0], reasons[i]) == 0);
		store_deltas_free(d, n);
	}
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "bad", p, sizeof(p)) == 0 &&
	      file_is(p, "garbage"));
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "bad.reason", p, sizeof(p)) == 0 &&
	      file_is(p, "not a SQLite database\n"));
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "bad.1.reason", p, sizeof(p)) == 0 &&
	      file_is(p, "integrity_check failed\n"));
	/* one line, always: a newline inside is escaped */
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "bad.2.reason", p, sizeof(p)) == 0 &&
	      file_is(p, "table t: primary key\\x0adiffers\n"));
	CHECK(exists_in(s, "lines", STORE_AREA_REJECTED, "bad.2"));
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, NULL, p, sizeof(p)) == 0 && entries(p) == 0);
	uint64_t cnt;
	CHECK(store_rejected_count(s, "lines", &cnt) == 0 && cnt == 3);

	/* a delta whose name looks like a reason never counts as one */
	putf(s, "lines", STORE_AREA_INCOMING, "x.reason", "x");
	CHECK(store_queue_add(s, "lines", "x.reason", NULL) == 0);
	store_delta *d;
	size_t n;
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 1);
	if (n == 1)
		CHECK(store_reject(s, "lines", &d[0], "bad") == 0);
	store_deltas_free(d, n);
	CHECK(exists_in(s, "lines", STORE_AREA_REJECTED, "x.reason.1"));
	CHECK(exists_in(s, "lines", STORE_AREA_REJECTED, "x.reason.1.reason"));
	CHECK(store_rejected_count(s, "lines", &cnt) == 0 && cnt == 4);

	/* a reason is one line of text: control bytes and bytes that are not UTF-8 are escaped */
	putf(s, "lines", STORE_AREA_INCOMING, "esc", "x");
	CHECK(store_queue_add(s, "lines", "esc", NULL) == 0);
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 1);
	if (n == 1)
		CHECK(store_reject(s, "lines", &d[0], "name \"a\nb\x1b[31m\xff\" caf\xc3\xa9") == 0);
	store_deltas_free(d, n);
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "esc.reason", p, sizeof(p)) == 0 &&
	      file_is(p, "name \"a\\x0ab\\x1b[31m\\xff\" caf\xc3\xa9\n"));

	/* pruning keeps the newest max, reasons go with their deltas */
	uint64_t removed = 0;
	CHECK(store_rejected_count(s, "lines", &cnt) == 0 && cnt == 5);
	CHECK(store_rejected_prune(s, "lines", 10, &removed) == 0 && removed == 0);
	CHECK(store_rejected_prune(s, "lines", 2, &removed) == 0 && removed == 3);
	CHECK(store_rejected_count(s, "lines", &cnt) == 0 && cnt == 2);
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, NULL, p, sizeof(p)) == 0 && entries(p) == 4);

	/* a delta name must fit in queue/ */
	char longname[240];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	putf(s, "lines", STORE_AREA_INCOMING, longname, "x");
	CHECK(store_queue_move(s, "lines", longname, NULL) == -ENAMETOOLONG);
	longname[STORE_DELTA_NAME_MAX] = '\0';
	putf(s, "lines", STORE_AREA_INCOMING, longname, "x");
	CHECK(store_queue_move(s, "lines", longname, NULL) == 0);

	/*
	 * Crash states of a rejection, repaired by recovery: a reason whose
	 * delta never came (the delta is still queued), the crumb of a reason
	 * being written, and a delta without its reason (the order of older
	 * versions).
	 */
	putf(s, "lines", STORE_AREA_REJECTED, "orphan.db.reason", "why\n");
	putf(s, "lines", STORE_AREA_REJECTED, "w.db.reason.tmp", "wh");
	putf(s, "lines", STORE_AREA_REJECTED, "lost.db", "junk");
	uint64_t quarantined;
	CHECK_EQ(store_recover(s, "lines", false, &quarantined), 0);
	CHECK(!exists_in(s, "lines", STORE_AREA_REJECTED, "orphan.db.reason"));
	CHECK(!exists_in(s, "lines", STORE_AREA_REJECTED, "w.db.reason.tmp"));
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, "lost.db.reason", p, sizeof(p)) == 0 &&
	      file_is(p, "rejected, but its reason was lost when snapfs stopped in the middle of writing it; the log "
			 "of that run says why\n"));
	CHECK(store_rejected_count(s, "lines", &cnt) == 0 && cnt == 3);

	/* rejecting a delta that is no longer queued fails and creates nothing */
	store_delta ghost = {99, (char *)"ghost", (char *)"/nowhere"};
	CHECK(store_reject(s, "lines", &ghost, "gone") == -ENOENT);
	CHECK(!exists_in(s, "lines", STORE_AREA_REJECTED, "ghost.reason"));
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

int main(void)
{
	test_queue();
	test_queue_threads();
	test_reject();
	return tap_done();
}
