/*
 * Unit tests for store: opening and refusing stores, collections, the
 * delta queue, rejection, snapshot ids, publishing and crash recovery.
 * Each case works in its own fresh temporary directory.
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
#include "tap.h"

/* The store's reports, on stderr beside the test's own output. */
static void to_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "store [%d]: %s\n", level, msg);
}

static const struct diag test_sink = {to_stderr, NULL};

static char *fresh_dir(void)
{
	char *d = strdup(tap_tmpdir()); /* tap_tmpdir reuses one buffer */
	if (!d)
		abort();
	return d;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		abort();
	}
	fputs(text, f);
	fclose(f);
}

static void putf(const store *s, const char *coll, enum store_area area, const char *leaf,
		 const char *text)
{
	char p[PATH_MAX];
	if (store_path(s, coll, area, leaf, p, sizeof(p)) != 0)
		abort();
	put(p, text);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static bool exists_in(const store *s, const char *coll, enum store_area area, const char *leaf)
{
	char p[PATH_MAX];
	return store_path(s, coll, area, leaf, p, sizeof(p)) == 0 && exists(p);
}

static bool file_is(const char *path, const char *want)
{
	char *text = NULL;
	size_t len;
	bool ok = fsx_read_all(path, &text, &len) == 0 && strcmp(text, want) == 0;
	free(text);
	return ok;
}

static store *open_ok(const char *root)
{
	store *s = NULL;
	char err[512];
	int rc = store_open(root, 0, &test_sink, &s, err, sizeof(err));
	CHECK(rc == 0 && s != NULL);
	if (rc != 0) {
		fprintf(stderr, "store_open(%s): %s\n", root, err);
		exit(1);
	}
	return s;
}

static size_t entries(const char *dir)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	FILE *p = popen(cmd, "r");
	unsigned long n = 0;
	if (!p || fscanf(p, "%lu", &n) != 1)
		abort();
	pclose(p);
	return n;
}

static void test_open_create(void)
{
	char *base = fresh_dir(), root[PATH_MAX], p[PATH_MAX + 32];
	snprintf(root, sizeof(root), "%s/a/b/store", base);
	store *s = open_ok(root); /* missing parents too */
	CHECK(store_root(s)[0] == '/');
	snprintf(p, sizeof(p), "%s/SNAPFS-STORE", root);
	char want[64], inst[STORE_INSTANCE_LEN + 1];
	snprintf(inst, sizeof(inst), "%s", store_instance(s));
	CHECK(strlen(inst) == STORE_INSTANCE_LEN && strspn(inst, "0123456789abcdef") == STORE_INSTANCE_LEN);
	snprintf(want, sizeof(want), "snapfs-store\nformat 1\ninstance %s\n", inst);
	CHECK(file_is(p, want));
	snprintf(p, sizeof(p), "%s/collections", root);
	CHECK(exists(p) && entries(p) == 0);
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	snprintf(p, sizeof(p), "%s/.lock", root);
	CHECK(file_is(p, pid));
	store_close(s);
	s = open_ok(root); /* reopening our own store: same instance */
	CHECK(strcmp(store_instance(s), inst) == 0);
	store_close(s);

	/* A store made before instance ids gets one, kept from then on. */
	snprintf(p, sizeof(p), "%s/SNAPFS-STORE", root);
	CHECK(fsx_write_atomic(p, "snapfs-store\nformat 1\n", 22) == 0);
	s = open_ok(root);
	snprintf(inst, sizeof(inst), "%s", store_instance(s));
	CHECK(strlen(inst) == STORE_INSTANCE_LEN);
	snprintf(want, sizeof(want), "snapfs-store\nformat 1\ninstance %s\n", inst);
	CHECK(file_is(p, want));
	store_close(s);
	/* A mangled instance line is not ours to guess at. */
	CHECK(fsx_write_atomic(p, "snapfs-store\nformat 1\ninstance xyz\n", 35) == 0);
	store *bad = NULL;
	char err[512];
	CHECK(store_open(root, 0, &test_sink, &bad, err, sizeof(err)) == -EINVAL && !bad);
	CHECK(fsx_write_atomic(p, want, strlen(want)) == 0);

	/* A relative root comes back absolute (daemons chdir to /). */
	char cwd[PATH_MAX];
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK(chdir(base) == 0);
	s = open_ok("a/b/store");
	CHECK(strcmp(store_root(s), root) == 0);
	store_close(s);
	CHECK(chdir(cwd) == 0);

	/* A crash during initialisation may leave only our crumbs: still empty. */
	snprintf(root, sizeof(root), "%s/crumbs", base);
	CHECK(mkdir(root, 0755) == 0);
	snprintf(p, sizeof(p), "%s/SNAPFS-STORE.tmp", root);
	put(p, "snap");
	snprintf(p, sizeof(p), "%s/.lock", root);
	put(p, "123\n");
	s = open_ok(root);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static void make_snapshot(store *s, const char *coll, uint64_t *id);

static mode_t mode_of(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* The STORE is its owner's (or, with STORE_OPEN_GROUP, its group's too): nobody else reads the data. */
static void test_modes(void)
{
	char *base = fresh_dir(), root[PATH_MAX], p[2 * PATH_MAX];
	snprintf(root, sizeof(root), "%s/store", base);
	CHECK(mkdir(root, 0755) == 0);
	snprintf(p, sizeof(p), "%s/.lock", root);
	FILE *f = fopen(p, "w"); /* a world-readable lock file left by an older snapfs */
	CHECK(f && fclose(f) == 0);
	CHECK(chmod(p, 0644) == 0);
	store *s = open_ok(root);
	CHECK(mode_of(root) == 0700);
	CHECK(mode_of(p) == 0600);
	CHECK(store_collection_create(s, "lines") == 0);
	uint64_t id;
	make_snapshot(s, "lines", &id);
	char name[24];
	store_id_format(id, name, sizeof(name));
	snprintf(p, sizeof(p), "%s/collections/lines", root);
	CHECK(mode_of(p) == 0700);
	snprintf(p, sizeof(p), "%s/collections/lines/snapshots/%s/lines.sqlite3", root, name);
	CHECK(mode_of(p) == 0400);
	store_close(s);

	/* group access: the root, the collection and the sealed files open up to the group */
	store *g = NULL;
	char err[256];
	uint64_t q = 0;
	CHECK(store_open(root, STORE_OPEN_GROUP, &test_sink, &g, err, sizeof(err)) == 0);
	CHECK(g && store_recover(g, "lines", true, &q) == 0);
	CHECK(mode_of(root) == 0750);
	CHECK(mode_of(p) == 0440);
	snprintf(p, sizeof(p), "%s/collections/lines", root);
	CHECK(mode_of(p) == 0750);
	store_close(g);
	fsx_rm_rf(base);
	free(base);
}

static void test_open_refusals(void)
{
	char *base = fresh_dir(), root[PATH_MAX], p[PATH_MAX + 32], err[512];
	store *s = NULL;

	/* Someone else's directory is left alone. */
	snprintf(root, sizeof(root), "%s/foreign", base);
	CHECK(mkdir(root, 0755) == 0);
	snprintf(p, sizeof(p), "%s/photos", root);
	put(p, "x");
	CHECK(store_open(root, 0, &test_sink, &s, err, sizeof(err)) == -ENOTEMPTY && s == NULL);
	CHECK(strstr(err, "is not a snapfs store (no SNAPFS-STORE marker) and is not empty; "
			  "refusing to take it over") != NULL);
	CHECK(strstr(err, root) != NULL);
	CHECK(entries(root) == 1); /* no marker, no .lock, nothing */

	/* A newer format names both formats. */
	snprintf(root, sizeof(root), "%s/newer", base);
	CHECK(mkdir(root, 0755) == 0);
	snprintf(p, sizeof(p), "%s/SNAPFS-STORE", root);
	put(p, "snapfs-store\nformat 2\n");
	CHECK(store_open(root, 0, &test_sink, &s, err, sizeof(err)) < 0 && s == NULL);
	CHECK(strstr(err, "format 2") != NULL && strstr(err, "format 1") != NULL);

	/* A marker that is not ours. */
	put(p, "something else\n");
	CHECK(store_open(root, 0, &test_sink, &s, err, sizeof(err)) == -EINVAL && s == NULL);
	CHECK(strstr(err, "not a snapfs store") != NULL);

	/* A store can be open once: flock is per open file description. */
	snprintf(root, sizeof(root), "%s/locked", base);
	store *first = open_ok(root);
	CHECK(store_open(root, 0, &test_sink, &s, err, sizeof(err)) == -EBUSY && s == NULL);
	char want[64];
	snprintf(want, sizeof(want), "already mounted by another snapfs process (pid %ld)",
		 (long)getpid());
	CHECK(strstr(err, want) != NULL);
	store_close(first);
	s = open_ok(root); /* released on close */
	store_close(s);

	/* A store path that is a file. */
	snprintf(root, sizeof(root), "%s/file", base);
	put(root, "x");
	CHECK(store_open(root, 0, &test_sink, &s, err, sizeof(err)) < 0 && s == NULL && err[0]);
	fsx_rm_rf(base);
	free(base);
}

static void test_names(void)
{
	char n64[65], n65[66];
	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'a', 65);
	n65[65] = '\0';
	CHECK(!store_name_valid(""));
	CHECK(!store_name_valid(NULL));
	CHECK(!store_name_valid(".x"));
	CHECK(!store_name_valid("a/b"));
	CHECK(!store_name_valid(".."));
	CHECK(!store_name_valid("_a"));
	CHECK(!store_name_valid("-a"));
	CHECK(!store_name_valid("a b"));
	CHECK(!store_name_valid("caf\xc3\xa9"));
	CHECK(!store_name_valid(n65));
	CHECK(store_name_valid(n64));
	CHECK(store_name_valid("ok_name-1"));
	CHECK(store_name_valid("9"));
}

static void test_paths(void)
{
	char *base = fresh_dir(), p[PATH_MAX], want[PATH_MAX + 64];
	store *s = open_ok(base);
	snprintf(want, sizeof(want), "%s/collections/lines/queue/x", store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, "x", p, sizeof(p)) == 0 && !strcmp(p, want));
	snprintf(want, sizeof(want), "%s/collections/lines/live.db", store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_LIVE_DB, NULL, p, sizeof(p)) == 0 &&
	      !strcmp(p, want));
	snprintf(want, sizeof(want), "%s/collections/lines", store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, NULL, p, sizeof(p)) == 0 &&
	      !strcmp(p, want));
	snprintf(want, sizeof(want), "%s/collections/lines/snapshots/00000001/MANIFEST.json",
		 store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_SNAPSHOTS, "00000001/MANIFEST.json", p,
			 sizeof(p)) == 0 &&
	      !strcmp(p, want));
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, "x", p, 10) == -ENAMETOOLONG);
	CHECK(store_path(s, "../etc", STORE_AREA_QUEUE, NULL, p, sizeof(p)) == -EINVAL);
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, "../../x", p, sizeof(p)) == -EINVAL);
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, "/etc/passwd", p, sizeof(p)) == -EINVAL);
	CHECK(store_path(s, "lines", STORE_AREA_QUEUE, "", p, sizeof(p)) == -EINVAL);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static void test_collections(void)
{
	char *base = fresh_dir(), p[PATH_MAX];
	store *s = open_ok(base);
	char **names;
	size_t n;

	CHECK(store_collections(s, &names, &n) == 0 && n == 0);
	store_names_free(names, n);
	CHECK(store_collection_create(s, "words") == 0);
	CHECK(store_collection_create(s, "lines") == 0);
	CHECK(store_collection_create(s, "lines") == -EEXIST);
	CHECK(store_collection_create(s, "") == -EINVAL);
	CHECK(store_collection_create(s, ".x") == -EINVAL);
	CHECK(store_collection_create(s, "a/b") == -EINVAL);
	char n65[66];
	memset(n65, 'a', 65);
	n65[65] = '\0';
	CHECK(store_collection_create(s, n65) == -EINVAL);
	CHECK(store_collection_create(s, "ok_name-1") == 0);
	CHECK(exists_in(s, "lines", STORE_AREA_INCOMING, NULL));
	CHECK(exists_in(s, "lines", STORE_AREA_QUEUE, NULL));
	CHECK(exists_in(s, "lines", STORE_AREA_STAGING, NULL));
	CHECK(exists_in(s, "lines", STORE_AREA_SNAPSHOTS, NULL));
	CHECK(exists_in(s, "lines", STORE_AREA_REJECTED, NULL));

	/* Sorted, valid names only: junk and work in progress are hidden. */
	snprintf(p, sizeof(p), "%s/collections/.creating-zz-1-0", store_root(s));
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof(p), "%s/collections/not valid", store_root(s));
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof(p), "%s/collections/afile", store_root(s));
	put(p, "x");
	CHECK(store_collections(s, &names, &n) == 0 && n == 3);
	if (n == 3)
		CHECK(!strcmp(names[0], "lines") && !strcmp(names[1], "ok_name-1") &&
		      !strcmp(names[2], "words"));
	store_names_free(names, n);

	/* Remove: refused while it holds snapshots or queued deltas. */
	CHECK(store_collection_remove(s, "nope") == -ENOENT);
	CHECK(store_collection_remove(s, "a/b") == -EINVAL);
	CHECK(store_path(s, "words", STORE_AREA_SNAPSHOTS, "00000001", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(store_collection_remove(s, "words") == -ENOTEMPTY);
	CHECK(rmdir(p) == 0);
	putf(s, "words", STORE_AREA_INCOMING, "d", "delta");
	CHECK(store_queue_add(s, "words", "d", NULL) == 0);
	CHECK(store_collection_remove(s, "words") == -ENOTEMPTY);
	store_delta *d;
	CHECK(store_queue_list(s, "words", &d, &n) == 0 && n == 1);
	CHECK(store_queue_remove(s, "words", &d[0]) == 0);
	store_deltas_free(d, n);
	/* staging/, incoming/ and rejected/ do not keep it alive */
	CHECK(store_path(s, "words", STORE_AREA_STAGING, "00000007", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	putf(s, "words", STORE_AREA_INCOMING, "half", "x");
	putf(s, "words", STORE_AREA_COLLECTION, "next-id", "8\n");
	CHECK(store_collection_remove(s, "words") == 0);
	CHECK(!exists_in(s, "words", STORE_AREA_COLLECTION, NULL));
	CHECK(store_collection_remove(s, "words") == -ENOENT);
	CHECK(store_collections(s, &names, &n) == 0 && n == 2);
	store_names_free(names, n);
	snprintf(p, sizeof(p), "%s/collections", store_root(s));
	CHECK(entries(p) == 5); /* lines, ok_name-1, .creating-zz-1-0, not valid, afile */
	/* and a name can be used again */
	CHECK(store_collection_create(s, "words") == 0);
	CHECK(!exists_in(s, "words", STORE_AREA_COLLECTION, "next-id"));

	/* Leftovers of an interrupted create or remove go at the next open. */
	snprintf(p, sizeof(p), "%s/collections/.removing-old-1-2", store_root(s));
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof(p), "%s/collections/.removing-old-1-2/snapshots", store_root(s));
	CHECK(mkdir(p, 0755) == 0);
	store_close(s);
	s = open_ok(base);
	snprintf(p, sizeof(p), "%s/collections/.removing-old-1-2", store_root(s));
	CHECK(!exists(p));
	snprintf(p, sizeof(p), "%s/collections/.creating-zz-1-0", store_root(s));
	CHECK(!exists(p));
	CHECK(store_collections(s, &names, &n) == 0 && n == 3);
	store_names_free(names, n);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

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

static void test_ids(void)
{
	char *base = fresh_dir(), p[PATH_MAX], buf[32];
	uint64_t id = 0;

	store_id_format(42, buf, sizeof(buf));
	CHECK(!strcmp(buf, "00000042"));
	store_id_format(123456789, buf, sizeof(buf));
	CHECK(!strcmp(buf, "123456789"));
	store_id_format(UINT64_MAX, buf, sizeof(buf));
	CHECK(!strcmp(buf, "18446744073709551615"));
	CHECK(store_id_parse("00000042", &id) && id == 42);
	CHECK(store_id_parse("123456789", &id) && id == 123456789);
	CHECK(store_id_parse("18446744073709551615", &id) && id == UINT64_MAX);
	CHECK(!store_id_parse("18446744073709551616", &id));
	CHECK(!store_id_parse("0000042", &id));
	CHECK(!store_id_parse("000000042", &id));
	CHECK(!store_id_parse("0000004a", &id));
	CHECK(!store_id_parse("+0000042", &id));
	CHECK(!store_id_parse("", &id));
	CHECK(!store_id_parse(".removing-00000001", &id));

	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	CHECK(store_collection_create(s, "words") == 0);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 1);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 2);
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, "next-id", p, sizeof(p)) == 0 &&
	      file_is(p, "3\n"));
	CHECK(store_id_alloc(s, "words", &id) == 0 && id == 1); /* per collection */
	store_close(s);

	/* across a restart */
	s = open_ok(base);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 3);
	/* never below a snapshot on disk (next-id lost or behind) */
	CHECK(store_path(s, "lines", STORE_AREA_SNAPSHOTS, "00000010", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 11);
	/* and not reused when the snapshots are deleted */
	CHECK(rmdir(p) == 0);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 12);
	/* above a stale staging dir larger than next-id */
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, "00000050", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 51);
	CHECK(rmdir(p) == 0);
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 52);
	/* a missing next-id with nothing on disk starts at 1 again only when truly empty */
	CHECK(store_path(s, "words", STORE_AREA_COLLECTION, "next-id", p, sizeof(p)) == 0);
	CHECK(unlink(p) == 0);
	CHECK(store_id_alloc(s, "words", &id) == 0 && id == 1);
	/* a next-id we cannot read is an error, not a guess */
	put(p, "banana\n");
	CHECK(store_id_alloc(s, "words", &id) == -EINVAL);
	put(p, "7");
	CHECK(store_id_alloc(s, "words", &id) == 0 && id == 7);
	CHECK(store_id_alloc(s, "nope", &id) < 0);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static bool latest_is(const store *s, const char *coll, const char *target)
{
	char p[PATH_MAX], t[64];
	if (store_path(s, coll, STORE_AREA_COLLECTION, "latest", p, sizeof(p)) != 0)
		return false;
	ssize_t r = readlink(p, t, sizeof(t) - 1);
	if (r < 0)
		return false;
	t[r] = '\0';
	return !strcmp(t, target);
}

static void make_snapshot(store *s, const char *coll, uint64_t *id)
{
	char dir[PATH_MAX], f[PATH_MAX + 32];
	CHECK(store_id_alloc(s, coll, id) == 0);
	CHECK(store_staging_create(s, coll, *id, dir, sizeof(dir)) == 0);
	snprintf(f, sizeof(f), "%s/%s.sqlite3", dir, coll);
	put(f, "db");
	snprintf(f, sizeof(f), "%s/MANIFEST.json", dir);
	put(f, "{}");
	CHECK(store_publish(s, coll, *id) == 0);
}

static void test_publish(void)
{
	char *base = fresh_dir(), p[PATH_MAX], dir[PATH_MAX];
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	uint64_t a, b, c, *ids;
	size_t n;
	make_snapshot(s, "lines", &a);
	CHECK(a == 1);
	CHECK(latest_is(s, "lines", "snapshots/00000001"));
	CHECK(exists_in(s, "lines", STORE_AREA_SNAPSHOTS, "00000001/lines.sqlite3"));
	CHECK(exists_in(s, "lines", STORE_AREA_SNAPSHOTS, "00000001/MANIFEST.json"));
	CHECK(!exists_in(s, "lines", STORE_AREA_STAGING, "00000001"));
	CHECK(!exists_in(s, "lines", STORE_AREA_COLLECTION, "latest.tmp"));
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, "latest/lines.sqlite3", p, sizeof(p)) ==
		      0 &&
	      file_is(p, "db"));
	make_snapshot(s, "lines", &b);
	CHECK(b == 2 && latest_is(s, "lines", "snapshots/00000002"));

	/* a staging dir for an id that is already published is refused */
	CHECK(store_staging_create(s, "lines", 1, dir, sizeof(dir)) == 0);
	CHECK(store_publish(s, "lines", 1) == -EEXIST);
	CHECK(latest_is(s, "lines", "snapshots/00000002"));
	CHECK(rmdir(dir) == 0);
	/* an empty snapshots/ID is not silently replaced either */
	CHECK(store_id_alloc(s, "lines", &c) == 0);
	CHECK(store_staging_create(s, "lines", c, dir, sizeof(dir)) == 0);
	CHECK(store_staging_create(s, "lines", c, dir, sizeof(dir)) == -EEXIST);
	char name[24];
	store_id_format(c, name, sizeof(name));
	CHECK(store_path(s, "lines", STORE_AREA_SNAPSHOTS, name, p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	CHECK(store_publish(s, "lines", c) == -EEXIST);
	CHECK(rmdir(p) == 0);
	/* a snapshot holds files only */
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	CHECK(mkdir(sub, 0755) == 0);
	CHECK(store_publish(s, "lines", c) == -EINVAL);
	CHECK(rmdir(sub) == 0);
	CHECK(store_publish(s, "lines", c) == 0 && latest_is(s, "lines", "snapshots/00000003"));
	/* latest never moves backwards */
	CHECK(store_staging_create(s, "lines", 2000, dir, sizeof(dir)) == 0);
	CHECK(store_publish(s, "lines", 2000) == 0 && latest_is(s, "lines", "snapshots/00002000"));
	CHECK(store_staging_create(s, "lines", 1000, dir, sizeof(dir)) == 0);
	CHECK(store_publish(s, "lines", 1000) == 0 && latest_is(s, "lines", "snapshots/00002000"));
	CHECK(store_publish(s, "lines", 77) < 0); /* nothing staged */

	CHECK(store_snapshots(s, "lines", &ids, &n) == 0 && n == 5);
	if (n == 5)
		CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3 && ids[3] == 1000 &&
		      ids[4] == 2000);
	free(ids);

	/* retention */
	CHECK(store_snapshot_remove(s, "lines", 2000) == -EBUSY); /* latest */
	CHECK(store_snapshot_remove(s, "lines", 1) == 0);
	CHECK(store_snapshot_remove(s, "lines", 1) == -ENOENT);
	CHECK(!exists_in(s, "lines", STORE_AREA_SNAPSHOTS, "00000001"));
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, NULL, p, sizeof(p)) == 0 &&
	      entries(p) == 0);
	CHECK(store_snapshots(s, "lines", &ids, &n) == 0 && n == 4 && ids[0] == 2);
	free(ids);
	/* ids stay above everything ever published */
	CHECK(store_id_alloc(s, "lines", &c) == 0 && c == 2001);
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

static void test_recover(void)
{
	char *base = fresh_dir(), p[PATH_MAX];
	uint64_t quarantined = 0;
	store *s = open_ok(base);
	CHECK(store_collection_create(s, "lines") == 0);
	uint64_t a, id;
	make_snapshot(s, "lines", &a);

	/* Leave the mess a kill -9 could leave. */
	char dir[PATH_MAX];
	CHECK(store_staging_create(s, "lines", 90, dir, sizeof(dir)) == 0);
	putf(s, "lines", STORE_AREA_STAGING, "00000090/lines.sqlite3", "half");
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, ".removing-00000005", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	putf(s, "lines", STORE_AREA_STAGING, "stray", "x");
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, "latest.tmp", p, sizeof(p)) == 0);
	CHECK(symlink("snapshots/00000099", p) == 0);
	putf(s, "lines", STORE_AREA_INCOMING, "first", "1");
	usleep(20000);
	putf(s, "lines", STORE_AREA_INCOMING, "second", "2");
	putf(s, "lines", STORE_AREA_INCOMING, ".partial", "p");
	/* A name too long for queue/ (16 digits + "-" + name > 255): quarantined, not fatal. */
	char longname[251];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	putf(s, "lines", STORE_AREA_INCOMING, longname, "long");
	/* a snapshot renamed into place before latest moved */
	CHECK(store_path(s, "lines", STORE_AREA_SNAPSHOTS, "00000002", p, sizeof(p)) == 0);
	CHECK(mkdir(p, 0755) == 0);
	store_close(s);

	s = open_ok(base);
	CHECK(store_recover(s, "lines", true, &quarantined) == 0);
	CHECK(quarantined == 1);
	uint64_t nrej = 0;
	CHECK(store_rejected_count(s, "lines", &nrej) == 0 && nrej == 1);
	char reason[512];
	/* rejected/ names keep room for ".N" and ".reason.tmp": the first 233 bytes */
	snprintf(reason, sizeof(reason), "%.233s.reason", longname);
	CHECK(store_path(s, "lines", STORE_AREA_REJECTED, reason, p, sizeof(p)) == 0 &&
	      file_is(p, "left in incoming/ by an earlier run and could not be queued: its name is 250 bytes, "
			 "and a delta name has at most 238\n"));
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, NULL, p, sizeof(p)) == 0 &&
	      entries(p) == 0);
	CHECK(!exists_in(s, "lines", STORE_AREA_COLLECTION, "latest.tmp"));
	CHECK(latest_is(s, "lines", "snapshots/00000002"));
	CHECK(store_path(s, "lines", STORE_AREA_INCOMING, NULL, p, sizeof(p)) == 0 &&
	      entries(p) == 1);
	CHECK(exists_in(s, "lines", STORE_AREA_INCOMING, ".partial"));
	store_delta *d;
	size_t n;
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 2);
	if (n == 2)
		CHECK(!strcmp(d[0].name, "first") && !strcmp(d[1].name, "second"));
	store_deltas_free(d, n);
	/* next-id was raised above the half-made staging/00000090 before it went */
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, "next-id", p, sizeof(p)) == 0 &&
	      file_is(p, "91\n"));
	CHECK(store_id_alloc(s, "lines", &id) == 0 && id == 91);
	/* running it again changes nothing */
	CHECK(store_recover(s, "lines", true, &quarantined) == 0 && quarantined == 0);
	CHECK(store_queue_list(s, "lines", &d, &n) == 0 && n == 2);
	store_deltas_free(d, n);
	CHECK(store_recover(s, "nope", true, &quarantined) == -ENOENT);
	CHECK(store_recover(s, "../x", true, &quarantined) == -EINVAL);

	/* no snapshot left: a dangling latest goes */
	CHECK(store_collection_create(s, "words") == 0);
	CHECK(store_path(s, "words", STORE_AREA_COLLECTION, "latest", p, sizeof(p)) == 0);
	CHECK(symlink("snapshots/00000004", p) == 0);
	CHECK(store_recover(s, "words", true, &quarantined) == 0);
	CHECK(!exists(p));
	store_close(s);
	fsx_rm_rf(base);
	free(base);
}

int main(void)
{
	test_open_create();
	test_modes();
	test_open_refusals();
	test_names();
	test_paths();
	test_collections();
	test_queue();
	test_queue_threads();
	test_reject();
	test_ids();
	test_publish();
	test_recover();
	return tap_done();
}
