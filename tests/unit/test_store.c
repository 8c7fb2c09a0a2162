/*
 * Unit tests for store: opening and refusing stores, modes, names and
 * paths, collections, snapshot ids, publishing and crash recovery (the
 * queue and rejection: test_store_queue.c). Each case works in its own
 * fresh temporary directory.
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

static void test_open_create(void)
{
	char *base = fresh_dir(), root[PATH_MAX], p[PATH_MAX + 32];
	snprintf(root, sizeof(root), "%s/a/b/store", base);
	store *s = open_ok(root); /* missing parents too */
	CHECK(store_root(s)[0] == '/');
	snprintf(p, sizeof(p), "%s/SNAPFS-STORE", root);
	char want[64], inst[STORE_INSTANCE_LEN + 1];
	snprintf(inst, sizeof(inst), "%s", store_instance(s));
	CHECK(strlen(inst) == STORE_INSTANCE_LEN &&
	      strspn(inst, "0123456789abcdef") == STORE_INSTANCE_LEN);
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
	CHECK(store_path(s, "lines", STORE_AREA_LIVE_DB, NULL, p, sizeof(p)) == 0 && !strcmp(p, want));
	snprintf(want, sizeof(want), "%s/collections/lines", store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_COLLECTION, NULL, p, sizeof(p)) == 0 &&
	      !strcmp(p, want));
	snprintf(want, sizeof(want), "%s/collections/lines/snapshots/00000001/MANIFEST.json",
		 store_root(s));
	CHECK(store_path(s, "lines", STORE_AREA_SNAPSHOTS, "00000001/MANIFEST.json", p, sizeof(p)) ==
		      0 &&
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
		CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3 && ids[3] == 1000 && ids[4] == 2000);
	free(ids);

	/* retention */
	CHECK(store_snapshot_remove(s, "lines", 2000) == -EBUSY); /* latest */
	CHECK(store_snapshot_remove(s, "lines", 1) == 0);
	CHECK(store_snapshot_remove(s, "lines", 1) == -ENOENT);
	CHECK(!exists_in(s, "lines", STORE_AREA_SNAPSHOTS, "00000001"));
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, NULL, p, sizeof(p)) == 0 && entries(p) == 0);
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
	CHECK(store_path(s, "lines", STORE_AREA_STAGING, NULL, p, sizeof(p)) == 0 && entries(p) == 0);
	CHECK(!exists_in(s, "lines", STORE_AREA_COLLECTION, "latest.tmp"));
	CHECK(latest_is(s, "lines", "snapshots/00000002"));
	CHECK(store_path(s, "lines", STORE_AREA_INCOMING, NULL, p, sizeof(p)) == 0 && entries(p) == 1);
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
	test_ids();
	test_publish();
	test_recover();
	return tap_done();
}
