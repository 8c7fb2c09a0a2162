/*
 * Unit tests for vfs, through its operations, in milliseconds: a real
 * store in a temporary directory and a fake compactor (below) that only
 * records what the vfs tells it. Covers the namespace rules (what may be
 * written where), queueing on last close and on rename, name lengths,
 * failed writes, rmdir's answers, setattr through a handle, rm in
 * rejected/, the retirement of snapshots still in use, which way each
 * open of a sealed file is read, and the status files as one JSON tree
 * the compactor and the status hook add to.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compactor.h"
#include "fsx.h"
#include "jsonx.h"
#include "store.h"
#include "tap.h"
#include "vfs.h"

/* ---- the fake compactor: the vfs's only view of it is these calls ---- */

struct compactor {
	int kicks, adds, reports, rejected_removed;
	int hashes;        /* compactor_delta_hash calls */
	uint64_t hash_seq; /* the newest one's delta */
	trailhash *hash;   /* and its hash (ours to put) */
	int remove_rc;     /* what compactor_remove answers (after the store removal when 0) */
	store *st;
	char last_report[512];
};

static struct compactor fake;

int compactor_add(compactor *c, const char *coll)
{
	uint64_t q;
	c->adds++;
	return store_recover(c->st, coll, true, &q);
}

int compactor_remove(compactor *c, const char *coll)
{
	return c->remove_rc ? c->remove_rc : store_collection_remove(c->st, coll);
}

void compactor_kick(compactor *c, const char *coll)
{
	c->kicks++;
}

void compactor_delta_hash(compactor *c, const char *coll, uint64_t seq, trailhash *t)
{
	trailhash_put(c->hash);
	c->hash = t;
	c->hash_seq = seq;
	c->hashes++;
}

void compactor_report(compactor *c, const char *coll, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->last_report, sizeof(c->last_report), fmt, ap);
	va_end(ap);
	c->reports++;
}

void compactor_rejected_removed(compactor *c, const char *coll, uint64_t n)
{
	c->rejected_removed += (int)n;
}

int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, json_t *status)
{
	json_object_set_new(status, "collection", json_string(coll));
	json_object_set_new(status, "snapshots", json_integer((json_int_t)snapshots));
	return 0;
}

void compactor_metrics(compactor *c, sbuf *out)
{
}

/* ---- helpers ---- */

static vfs *v;
static store *st;
static struct vfs_open_info oi; /* what the last vfs_create_file said */

static uint64_t lookup(uint64_t parent, const char *name)
{
	struct vfs_entry e;
	int rc = vfs_lookup(v, parent, name, &e);
	return rc == 0 ? e.ino : 0;
}

/* Creates incoming/name, writes text, flushes; the handle stays open. */
static vfs_file *create(uint64_t incoming, const char *name, const char *text, uint64_t *ino)
{
	struct vfs_entry e;
	vfs_file *f = NULL;
	int rc = vfs_create_file(v, incoming, name, 0644, O_WRONLY | O_CREAT | O_TRUNC, &e, &f, &oi);
	CHECK_EQ(rc, 0);
	if (rc)
		return NULL;
	*ino = e.ino;
	CHECK(oi.direct_io && oi.sealed_fd == -1 && !oi.passthrough); /* a delta: direct I/O */
	CHECK_EQ(vfs_write(v, f, text, strlen(text), 0), (ssize_t)strlen(text));
	CHECK_EQ(vfs_flush(v, f), 0);
	return f;
}

static size_t queued(const char *coll)
{
	store_delta *d;
	size_t n = 0;
	if (store_queue_list(st, coll, &d, &n) == 0)
		store_deltas_free(d, n);
	return n;
}

static bool in_store(const char *coll, enum store_area area, const char *leaf)
{
	char p[PATH_MAX];
	struct stat s;
	return store_path(st, coll, area, leaf, p, sizeof(p)) == 0 && lstat(p, &s) == 0;
}

/* A published snapshot with two small files, as the compactor would leave it. */
static uint64_t publish(const char *coll)
{
	uint64_t id;
	char dir[PATH_MAX], f[PATH_MAX + 32];
	CHECK_EQ(store_id_alloc(st, coll, &id), 0);
	CHECK_EQ(store_staging_create(st, coll, id, dir, sizeof(dir)), 0);
	snprintf(f, sizeof(f), "%s/%s.sqlite3", dir, coll);
	CHECK_EQ(fsx_write_atomic(f, "db", 2), 0);
	snprintf(f, sizeof(f), "%s/MANIFEST.json", dir);
	CHECK_EQ(fsx_write_atomic(f, "{}", 2), 0);
	CHECK_EQ(store_publish(st, coll, id), 0);
	vfs_published(v, coll, id);
	return id;
}

static void test_namespace(uint64_t coll, uint64_t incoming)
{
	struct vfs_entry e;
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "c", &e), -EEXIST);
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "bad name", &e), -EINVAL);
	CHECK_EQ(vfs_mkdir(v, coll, "sub", &e), -EROFS);
	CHECK_EQ(vfs_refuse_create(v, coll), -EROFS);
	CHECK_EQ(vfs_refuse_create(v, incoming), -EPERM);
	vfs_file *f = NULL;
	CHECK_EQ(vfs_create_file(v, coll, "x", 0644, O_WRONLY | O_CREAT, &e, &f, &oi), -EROFS);
	CHECK(lookup(coll, "incoming") == incoming);
	CHECK(lookup(coll, "snapshots") != 0 && lookup(coll, "rejected") != 0 &&
	      lookup(coll, "status") != 0);
	CHECK(lookup(coll, "latest") == 0); /* no snapshot yet */
	CHECK(lookup(VFS_ROOT_INO, ".snapfs") != 0);
}

static void test_queueing(uint64_t incoming)
{
	uint64_t ino;
	int k0 = fake.kicks;
	/* Queued at the last writer's release, not before. */
	vfs_file *f = create(incoming, "a.db", "delta a", &ino);
	CHECK_EQ(queued("c"), 0u);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), 1u);
	CHECK_EQ(fake.kicks, k0 + 1);
	CHECK(!in_store("c", STORE_AREA_INCOMING, "a.db"));
	/* A dot-file is never queued; renamed to a final name with no writer, it is. */
	f = create(incoming, ".b.tmp", "delta b", &ino);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), 1u);
	CHECK_EQ(vfs_rename(v, incoming, ".b.tmp", incoming, "b.db", 0), 0);
	CHECK_EQ(queued("c"), 2u);
	/* Renamed while a writer has it open: queued at that writer's release. */
	f = create(incoming, ".c.tmp", "delta c", &ino);
	CHECK_EQ(vfs_rename(v, incoming, ".c.tmp", incoming, "c.db", 0), 0);
	CHECK_EQ(queued("c"), 2u);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), 3u);
	/* Names: a delta must fit queue/ (238 bytes); a dot-file may use 255. */
	char name[256];
	memset(name, 'n', sizeof(name) - 1);
	name[STORE_DELTA_NAME_MAX + 1] = '\0';
	struct vfs_entry e;
	CHECK_EQ(vfs_create_file(v, incoming, name, 0644, O_WRONLY | O_CREAT, &e, &f, &oi),
		 -ENAMETOOLONG);
	name[0] = '.';
	name[255] = '\0';
	memset(name + 1, 'n', 254);
	f = create(incoming, name, "x", &ino);
	vfs_release(v, f);
	char final[256];
	memset(final, 'f', STORE_DELTA_NAME_MAX + 1);
	final[STORE_DELTA_NAME_MAX + 1] = '\0';
	CHECK_EQ(vfs_rename(v, incoming, name, incoming, final, 0), -ENAMETOOLONG);
	final[STORE_DELTA_NAME_MAX] = '\0';
	CHECK_EQ(vfs_rename(v, incoming, name, incoming, final, 0), 0);
	CHECK_EQ(queued("c"), 4u);
}

/* The newest queued delta of c: its path and seq. */
static bool newest_queued(char *path, size_t len, uint64_t *seq)
{
	store_delta *d;
	size_t n = 0;
	if (store_queue_list(st, "c", &d, &n) != 0 || n == 0)
		return false;
	snprintf(path, len, "%s", d[n - 1].path);
	*seq = d[n - 1].seq;
	store_deltas_free(d, n);
	return true;
}

/*
 * What the compactor was handed for the delta just queued: 1 if it is
 * the queued file's hash (same bytes, same file), 0 if the hash was given
 * up, -1 if nothing (or not this delta's) was handed over.
 */
static int handed_hash(int hashes_before)
{
	char path[PATH_MAX];
	uint64_t seq;
	if (fake.hashes != hashes_before + 1 || !newest_queued(path, sizeof(path), &seq) ||
	    fake.hash_seq != seq)
		return -1;
	struct trailhash_result r;
	if (trailhash_result(fake.hash, &r) != 0)
		return 0;
	unsigned char want[FSX_SHA256_LEN];
	uint64_t size;
	struct stat sb;
	return fsx_sha256_file(path, want, &size) == 0 && memcmp(want, r.sha256, sizeof(want)) == 0 &&
			       lstat(path, &sb) == 0 && trailhash_same_file(&r, &sb)
		       ? 1
		       : -1;
}

/*
 * A delta's hash is taken while it is written and handed to the compactor
 * when it is queued, but only if every write followed on from the last:
 * any other write, a truncate or a failed write gives it up.
 */
static void test_hash_while_written(uint64_t incoming)
{
	uint64_t ino;
	struct vfs_entry e;
	int h = fake.hashes;
	/* In order, through two handles of the same file. */
	vfs_file *f = create(incoming, "h1.db", "0123456789", &ino), *g = NULL;
	struct vfs_open_info info;
	CHECK_EQ(vfs_open(v, ino, O_WRONLY, &g, &info), 0);
	CHECK_EQ(vfs_write(v, g, "abcdef", 6, 10), 6);
	CHECK_EQ(vfs_write(v, f, "ghi", 3, 16), 3);
	vfs_release(v, g);
	vfs_release(v, f);
	CHECK_EQ(handed_hash(h), 1);
	/* Written by rsync's way: a dot-file, closed, renamed. */
	h = fake.hashes;
	f = create(incoming, ".h2.tmp", "rsync'd", &ino);
	vfs_release(v, f);
	CHECK_EQ(vfs_rename(v, incoming, ".h2.tmp", incoming, "h2.db", 0), 0);
	CHECK_EQ(handed_hash(h), 1);
	/* A gap, then the start: given up. */
	h = fake.hashes;
	f = create(incoming, "h3.db", "abc", &ino);
	CHECK_EQ(vfs_write(v, f, "xyz", 3, 10), 3);
	CHECK_EQ(vfs_write(v, f, "def", 3, 3), 3);
	vfs_release(v, f);
	CHECK_EQ(handed_hash(h), 0);
	/* An overwrite of what was hashed: given up. */
	h = fake.hashes;
	f = create(incoming, "h4.db", "abc", &ino);
	CHECK_EQ(vfs_write(v, f, "X", 1, 1), 1);
	vfs_release(v, f);
	CHECK_EQ(handed_hash(h), 0);
	/* Truncated: given up. */
	h = fake.hashes;
	f = create(incoming, "h5.db", "abcdef", &ino);
	struct stat want = {.st_size = 2}, out;
	double timeout;
	CHECK_EQ(vfs_setattr(v, ino, f, VFS_SET_SIZE, &want, &out, &timeout), 0);
	vfs_release(v, f);
	CHECK_EQ(handed_hash(h), 0);
	/* A write refused (over max_delta_size): given up, and never queued anyway. */
	h = fake.hashes;
	size_t q = queued("c");
	f = create(incoming, "h6.db", "abc", &ino);
	char big[128] = {0};
	CHECK_EQ(vfs_write(v, f, big, sizeof(big), 3), -EFBIG);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), q);
	CHECK_EQ(fake.hashes, h);
	CHECK_EQ(vfs_unlink(v, incoming, "h6.db"), 0);
	/* Truncated by an open (O_TRUNC) after its writer closed it: given up. */
	f = create(incoming, ".h7.tmp", "abc", &ino);
	vfs_release(v, f);
	h = fake.hashes;
	CHECK_EQ(vfs_open(v, ino, O_WRONLY | O_TRUNC, &f, &info), 0);
	CHECK_EQ(vfs_write(v, f, "abc", 3, 0), 3);
	vfs_release(v, f);
	CHECK_EQ(vfs_rename(v, incoming, ".h7.tmp", incoming, "h7.db", 0), 0);
	CHECK_EQ(handed_hash(h), 0);
	(void)e;
}

static void test_failed_write(uint64_t incoming)
{
	uint64_t ino;
	int r0 = fake.reports;
	size_t q0 = queued("c");
	/* Past max_delta_size (64): EFBIG, and the file is never queued. */
	vfs_file *f = create(incoming, "big.db", "0123456789", &ino);
	char buf[100];
	memset(buf, 'y', sizeof(buf));
	CHECK_EQ(vfs_write(v, f, buf, sizeof(buf), 10), -EFBIG);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), q0);
	CHECK(in_store("c", STORE_AREA_INCOMING, "big.db"));
	CHECK_EQ(fake.reports, r0 + 1);
	CHECK(strstr(fake.last_report, "big.db not queued: writing it failed") != NULL);
	/* Written again from scratch (O_TRUNC): the old failure is gone. */
	f = create(incoming, "big.db", "fits", &ino);
	vfs_release(v, f);
	CHECK_EQ(queued("c"), q0 + 1);
}

static void test_setattr_on_the_handle(uint64_t incoming)
{
	uint64_t ino1, ino2;
	vfs_file *f1 = create(incoming, ".one", "first writer", &ino1);
	vfs_file *f2 = create(incoming, ".two", "second file", &ino2);
	vfs_release(v, f2);
	CHECK_EQ(vfs_rename(v, incoming, ".two", incoming, ".one", 0),
		 0); /* .one now names the second */
	struct stat attr = {.st_size = 0}, out;
	double t;
	CHECK_EQ(vfs_setattr(v, ino1, f1, VFS_SET_SIZE, &attr, &out, &t), 0);
	CHECK_EQ(out.st_size, 0);
	char p[PATH_MAX], *text = NULL;
	CHECK_EQ(store_path(st, "c", STORE_AREA_INCOMING, ".one", p, sizeof(p)), 0);
	CHECK_EQ(fsx_read_all(p, &text, NULL), 0);
	CHECK_STR(text ? text : "", "second file");
	free(text);
	/* Without a handle the name is acted on, and a node whose name went has none. */
	vfs_release(v, f1);
	CHECK_EQ(vfs_setattr(v, ino1, NULL, VFS_SET_SIZE, &attr, &out, &t), -ENOENT);
	CHECK_EQ(vfs_unlink(v, incoming, ".one"), 0);
}

static void test_rmdir(uint64_t incoming)
{
	struct vfs_entry e;
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "r", &e), 0);
	uint64_t rin = lookup(e.ino, "incoming"), ino;
	vfs_file *f = create(rin, "w.db", "still writing", &ino);
	CHECK_EQ(vfs_rmdir(v, VFS_ROOT_INO, "r"), -EBUSY); /* a writer is at work */
	struct vfs_open_info info;
	vfs_file *g = NULL;
	CHECK_EQ(vfs_open(v, ino, O_WRONLY, &g, &info), 0);
	vfs_release(v, g);
	vfs_release(v, f);
	CHECK_EQ(queued("r"), 1u);
	CHECK_EQ(vfs_rmdir(v, VFS_ROOT_INO, "r"), -ENOTEMPTY); /* a queued delta */
	store_delta *d;
	size_t n;
	CHECK_EQ(store_queue_list(st, "r", &d, &n), 0);
	if (n == 1)
		CHECK_EQ(store_queue_remove(st, "r", &d[0]), 0);
	store_deltas_free(d, n);
	/* A non-dot file left in incoming/ (its write failed) keeps it too; dot-files do not. */
	f = create(rin, ".left", "x", &ino);
	vfs_release(v, f);
	CHECK_EQ(vfs_rmdir(v, VFS_ROOT_INO, "r"), 0);
	CHECK(lookup(VFS_ROOT_INO, "r") == 0);
	fake.remove_rc = -EBUSY; /* the compactor at work: refused, and the collection stays */
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "r2", &e), 0);
	CHECK_EQ(vfs_rmdir(v, VFS_ROOT_INO, "r2"), -EBUSY);
	CHECK(lookup(VFS_ROOT_INO, "r2") != 0);
	fake.remove_rc = 0;
	uint64_t r2in = lookup(e.ino, "incoming");
	f = create(r2in, "after.db", "still accepted", &ino); /* not left marked removing */
	vfs_release(v, f);
	(void)incoming;
}

static void test_rejected(uint64_t coll)
{
	/* rm works in rejected/ and counts delta files, not reasons. */
	char p[PATH_MAX];
	CHECK_EQ(store_path(st, "c", STORE_AREA_REJECTED, "bad.db", p, sizeof(p)), 0);
	CHECK_EQ(fsx_write_atomic(p, "junk", 4), 0);
	CHECK_EQ(store_path(st, "c", STORE_AREA_REJECTED, "bad.db.reason", p, sizeof(p)), 0);
	CHECK_EQ(fsx_write_atomic(p, "why\n", 4), 0);
	uint64_t rej = lookup(coll, "rejected");
	int before = fake.rejected_removed;
	CHECK_EQ(vfs_unlink(v, rej, "bad.db.reason"), 0);
	CHECK_EQ(fake.rejected_removed, before);
	CHECK_EQ(vfs_unlink(v, rej, "bad.db"), 0);
	CHECK_EQ(fake.rejected_removed, before + 1);
	uint64_t snaps = lookup(coll, "snapshots");
	CHECK_EQ(vfs_unlink(v, snaps, "x"), -EROFS);
}

static void test_retirement(uint64_t coll)
{
	/* keep=2: the third snapshot retires the first; in use, it stays on disk until released. */
	uint64_t a = publish("c");
	char name[24];
	store_id_format(a, name, sizeof(name));
	uint64_t snaps = lookup(coll, "snapshots");
	uint64_t dir = lookup(snaps, name);
	uint64_t db = lookup(dir, "c.sqlite3");
	CHECK(dir && db);
	vfs_file *f = NULL;
	struct vfs_open_info info;
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &f, &info), 0);
	CHECK(info.keep_cache);
	publish("c");
	publish("c");
	CHECK(lookup(snaps, name) != 0);                  /* still found by who holds it */
	CHECK(in_store("c", STORE_AREA_SNAPSHOTS, name)); /* and still on disk */
	vfs_release(v, f);
	vfs_forget(v, db, 1);
	vfs_forget(v, dir, 2);
	CHECK(!in_store("c", STORE_AREA_SNAPSHOTS, name)); /* gone once its last user left */
	CHECK(lookup(coll, "latest") != 0);
	char link[64];
	CHECK_EQ(vfs_readlink(v, lookup(coll, "latest"), link, sizeof(link)), 0);
	store_id_format(a + 2, name, sizeof(name));
	char want[64];
	snprintf(want, sizeof(want), "snapshots/%s", name);
	CHECK_STR(link, want);
	/* Sealed content is read-only. */
	struct vfs_entry e;
	CHECK_EQ(vfs_create_file(v, lookup(snaps, name), "x", 0644, O_WRONLY | O_CREAT, &e, &f, &oi),
		 -EROFS);
}

/* ---- status ---- */

/* The status hook, as the uploader's: a member for a collection, a line for the metrics. */
static void status_hook(void *ctx, const char *coll, json_t *status, sbuf *metrics)
{
	if (!coll && status) { /* the whole mount's status */
		jsonx_set(status, "hook_root", jsonx_int(1));
		return;
	}
	if (!coll) {
		sbuf_adds(metrics, "hook_metric 1\n");
		return;
	}
	json_t *o = json_object();
	jsonx_set(o, "state", jsonx_str("idle\xff"));
	jsonx_set(o, "ctx", jsonx_int(ctx == &fake));
	jsonx_set(status, "upload", o);
}

/* The whole generated file at ino, malloc'd. */
static char *read_generated(uint64_t ino)
{
	vfs_file *f = NULL;
	struct vfs_open_info info;
	sbuf b = SBUF_INIT;
	CHECK_EQ(vfs_open(v, ino, O_RDONLY, &f, &info), 0);
	if (!f)
		return sbuf_detach(&b);
	for (off_t off = 0;;) {
		const char *mem = NULL;
		size_t len = 0;
		int fd = -1;
		if (vfs_read(v, f, 4096, off, &mem, &len, &fd) < 0 || !mem || len == 0)
			break;
		sbuf_add(&b, mem, len);
		off += (off_t)len;
	}
	vfs_release(v, f);
	return sbuf_detach(&b);
}

static void test_status(uint64_t coll)
{
	char *text = read_generated(lookup(coll, "status"));
	CHECK_STR(text,
		  "{\"collection\": \"c\", \"snapshots\": 0, \"upload\": {\"state\": \"idle\xef\xbf\xbd\", "
		  "\"ctx\": 1}}\n");
	free(text);

	uint64_t meta = lookup(VFS_ROOT_INO, ".snapfs");
	text = read_generated(lookup(meta, "status"));
	json_t *root = NULL, *colls = NULL;
	const char *version = "", *store_dir = "";
	json_int_t uptime = -1;
	CHECK(jsonx_load(text, 8, &root) == 0);
	CHECK(json_unpack(root, "{s:s, s:I, s:s, s:o}", "version", &version, "uptime_s", &uptime,
			  "store", &store_dir, "collections", &colls) == 0);
	CHECK(strncmp(text, "{\"version\": \"" SNAPFS_VERSION "\", \"uptime_s\": ", 24) == 0);
	CHECK_STR(version, SNAPFS_VERSION);
	CHECK_STR(store_dir, store_root(st));
	CHECK(uptime >= 0);
	CHECK(json_object_size(colls) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(colls, "c"), "snapshots")) == 0);
	CHECK(json_integer_value(json_object_get(root, "hook_root")) == 1); /* after the vfs's members */
	CHECK(text[0] && text[strlen(text) - 1] == '\n');
	json_decref(root);
	free(text);

	text = read_generated(lookup(meta, "metrics"));
	CHECK(strstr(text, "snapfs_snapshots{collection=\"c\"} 0\n") != NULL);
	CHECK(strstr(text, "\nhook_metric 1\n") != NULL);
	free(text);
}

/* ---- how sealed files are read (enum vfs_read_path, auto) ---- */

/* The reads.open entry of .snapfs/status for file, as "P C" (passthrough, page cache) or "". */
static void open_ways(const char *file, char *out, size_t len)
{
	char *text = read_generated(lookup(lookup(VFS_ROOT_INO, ".snapfs"), "status"));
	json_t *root = NULL;
	out[0] = '\0';
	if (jsonx_load(text, 8, &root) == 0) {
		json_t *e = json_object_get(json_object_get(json_object_get(root, "reads"), "open"),
					    file);
		if (e)
			snprintf(out, len, "%lld %lld",
				 (long long)json_integer_value(json_object_get(e, "passthrough")),
				 (long long)json_integer_value(json_object_get(e, "page_cache")));
		json_decref(root);
	}
	free(text);
}

static void test_read_path(uint64_t coll)
{
	uint64_t id = publish("c");
	char name[24], file[64], ways[32];
	store_id_format(id, name, sizeof(name));
	snprintf(file, sizeof(file), "c/snapshots/%s/c.sqlite3", name);
	uint64_t db = lookup(lookup(lookup(coll, "snapshots"), name), "c.sqlite3");
	vfs_file *a = NULL, *b = NULL;
	struct vfs_open_info info;
	/* A kernel without passthrough: the page cache for every open. */
	vfs_set_passthrough(v, false);
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &a, &info), 0);
	CHECK(!info.passthrough && info.sealed_fd >= 0 && info.keep_cache);
	vfs_release(v, a);
	vfs_set_passthrough(v, true);
	/* A plain open streams by passthrough; an O_NOFOLLOW one while it is open goes the same way. */
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &a, &info), 0);
	CHECK(info.passthrough);
	CHECK_EQ(vfs_open(v, db, O_RDONLY | O_NOFOLLOW, &b, &info), 0);
	CHECK(info.passthrough);
	open_ways(file, ways, sizeof(ways));
	CHECK_STR(ways, "2 0");
	vfs_release(v, a);
	vfs_release(v, b);
	/* SQLite's open (O_NOFOLLOW) gets the page cache, and a plain one follows it. */
	CHECK_EQ(vfs_open(v, db, O_RDONLY | O_NOFOLLOW, &a, &info), 0);
	CHECK(!info.passthrough);
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &b, &info), 0);
	CHECK(!info.passthrough);
	open_ways(file, ways, sizeof(ways));
	CHECK_STR(ways, "0 2");
	vfs_release(v, a);
	vfs_release(v, b);
	open_ways(file, ways, sizeof(ways));
	CHECK_STR(ways, ""); /* nothing open */
	/* The backing file could not be registered: that open and every later one use the page cache. */
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &a, &info), 0);
	CHECK(info.passthrough);
	vfs_passthrough_failed(v, a);
	CHECK_EQ(vfs_open(v, db, O_RDONLY, &b, &info), 0);
	CHECK(!info.passthrough);
	open_ways(file, ways, sizeof(ways));
	CHECK_STR(ways, "0 2");
	vfs_release(v, a);
	vfs_release(v, b);
}

/* A cluster member's mount (vfs_set_cluster): hooks instead of kicks, no rmdir, collections from elsewhere. */
static int hook_queued, hook_made;
static char hook_last[64];

static void on_queued(void *ctx, const char *c)
{
	hook_queued++;
	snprintf(hook_last, sizeof(hook_last), "%s", c);
}

static void on_made(void *ctx, const char *c)
{
	hook_made++;
	snprintf(hook_last, sizeof(hook_last), "%s", c);
}

static void test_cluster(void)
{
	struct vfs_cluster h = {.ctx = &fake, .queued = on_queued, .made = on_made};
	vfs_set_cluster(v, &h);
	store_set_outbox_intake(st, true);
	struct vfs_entry e;
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "k", &e), 0);
	CHECK_EQ(hook_made, 1);
	CHECK_STR(hook_last, "k");
	uint64_t incoming = lookup(e.ino, "incoming"), ino;
	int k0 = fake.kicks;
	vfs_file *f = create(incoming, "x.db", "delta x", &ino);
	vfs_release(v, f);
	CHECK_EQ(hook_queued, 1); /* shipped, not kicked */
	CHECK_EQ(fake.kicks, k0);
	store_delta *d = NULL;
	size_t n = 0;
	CHECK_EQ(store_area_list(st, "k", STORE_AREA_OUTBOX, &d, &n), 0);
	CHECK_EQ(n, 1u);
	CHECK(n == 1 && !strcmp(d[0].name, "x.db"));
	store_deltas_free(d, n);
	CHECK(!in_store("k", STORE_AREA_INCOMING, "x.db"));
	CHECK_EQ(vfs_rmdir(v, VFS_ROOT_INO, "k"), -EPERM);
	/* Made by another host: there now, no mkdir hook, no lookup count taken. */
	CHECK_EQ(vfs_collection_appeared(v, "far"), 0);
	CHECK_EQ(hook_made, 1);
	CHECK(lookup(VFS_ROOT_INO, "far") != 0);
	CHECK_EQ(vfs_collection_appeared(v, "far"), -EEXIST);
	CHECK_EQ(vfs_collection_appeared(v, "../x"), -EINVAL);
}

int main(void)
{
	const char *tmp = tap_tmpdir();
	char err[256];
	CHECK_EQ(store_open(tmp, 0, NULL, &st, err, sizeof(err)), 0);
	if (!st)
		return tap_done();
	fake.st = st;
	struct vfs_config cfg = {.max_delta_size = 64, .keep = 2, .stale_dotfiles_ms = 0};
	CHECK_EQ(vfs_create(&cfg, &v), 0);
	vfs_set_status_hook(v, status_hook, &fake);
	CHECK_EQ(vfs_start(v, st, &fake), 0);
	struct vfs_entry e;
	CHECK_EQ(vfs_mkdir(v, VFS_ROOT_INO, "c", &e), 0);
	uint64_t coll = e.ino, incoming = lookup(coll, "incoming");
	test_namespace(coll, incoming);
	test_status(coll);
	test_queueing(incoming);
	test_hash_while_written(incoming);
	test_failed_write(incoming);
	test_setattr_on_the_handle(incoming);
	test_rmdir(incoming);
	test_rejected(coll);
	test_retirement(coll);
	test_read_path(coll);
	test_cluster();
	vfs_destroy(v);
	trailhash_put(fake.hash);
	CHECK(trailhash_drain(10000));
	store_close(st);
	if (!tap_failed)
		fsx_rm_rf(tmp);
	return tap_done();
}
