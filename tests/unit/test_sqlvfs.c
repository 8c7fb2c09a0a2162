/*
 * Unit tests for sqlvfs. Through sqlh_open_mapped: a connection reading a
 * database through the bounded mapping answers exactly what a plain
 * read-only connection answers (a full scan, an index walk,
 * integrity_check, and a corruption found), really maps the file, and
 * leaves at most its bound of the file resident however much it reads.
 * Written through the VFS ("snapfs", as livedb opens live), a database
 * has its writeback started as it is written: the page cache holds at
 * most SQLVFS_WRITEBACK of it dirty, where the default VFS leaves it all
 * (seen with cachestat(2)).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsx.h"
#include "sqlh.h"
#include "tap.h"

/* sqlvfs.h: SQLVFS_RESIDENT, 16 MiB. The test file is about five times that. */
#define RESIDENT_MIB 16
#define FILE_MIB 80

static const char *tmp;

static bool exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		tap_note("sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return rc == SQLITE_OK;
}

/*
 * ~FILE_MIB of rows and an index, closed. The blobs fit in their b-tree
 * pages: SQLite reads overflow pages with xRead, never mapped, and this
 * test is about what is mapped.
 */
static bool make_db(const char *path)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return false;
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "PRAGMA journal_mode=DELETE; BEGIN;"
		 "CREATE TABLE vectors(id INTEGER PRIMARY KEY, embedding BLOB NOT NULL, doc TEXT);"
		 "CREATE INDEX vectors_doc ON vectors(doc);"
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
		 " INSERT INTO vectors SELECT i, randomblob(400), 'doc ' || (i * 7919 %% 100003)"
		 " FROM n;"
		 "COMMIT;",
		 FILE_MIB * 1024 * 2);
	bool ok = exec_ok(db, sql);
	return sqlite3_close(db) == SQLITE_OK && ok;
}

/* The one text value of a one-row query, into out. */
static bool query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st;
	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		tap_note("prepare %s: %s", sql, sqlite3_errmsg(db));
		return false;
	}
	bool ok = sqlite3_step(st) == SQLITE_ROW;
	if (ok)
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	else
		tap_note("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return ok;
}

/* A scan of every blob byte, an index walk, and integrity_check, as one string. */
static bool answers(sqlite3 *db, char *out, size_t cap)
{
	char a[256], b[256], c[256];
	bool ok = query_text(db,
			     "SELECT count(*) || ' ' || sum(id) || ' ' || total(length(embedding))"
			     " || ' ' || hex(max(substr(embedding, 200, 8))) FROM vectors",
			     a, sizeof(a)) &&
		  query_text(db,
			     "SELECT group_concat(id) FROM (SELECT id FROM vectors INDEXED BY"
			     " vectors_doc WHERE doc >= 'doc 5' ORDER BY doc LIMIT 20)",
			     b, sizeof(b)) &&
		  query_text(db, "PRAGMA integrity_check", c, sizeof(c));
	snprintf(out, cap, "%s | %s | %s", a, b, c);
	return ok;
}

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long v = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Whether this process has path mapped (a line of /proc/self/maps names it). */
static bool is_mapped(const char *path)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return false;
	char line[PATH_MAX + 128];
	bool found = false;
	size_t n = strlen(path);
	while (!found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		size_t l = strlen(line);
		found = l >= n && strcmp(line + l - n, path) == 0;
	}
	fclose(f);
	return found;
}

static void test_same_answers_bounded(const char *db_path)
{
	char plain[1024], mapped[1024], err[512];
	sqlite3 *db = NULL;
	CHECK(sqlh_open_ro(db_path, &db, err, sizeof(err)) == 0);
	CHECK(db && answers(db, plain, sizeof(plain)));
	sqlite3_close(db);
	tap_note("plain read-only connection: %s", plain);
	CHECK(strstr(plain, " | ok") != NULL);

	long before = status_kib("RssFile");
	db = NULL;
	CHECK(sqlh_open_mapped(db_path, &db, err, sizeof(err)) == 0);
	CHECK(db && answers(db, mapped, sizeof(mapped)));
	/* Mapped: the reads went through the mapping, not through pread. */
	CHECK(is_mapped(db_path));
	long after = status_kib("RssFile");
	sqlite3_close(db);
	CHECK(!is_mapped(db_path));
	CHECK_STR(mapped, plain);

	/*
	 * The scans touched every page of an 80 MiB file; at most the bound,
	 * plus a few held pages and this process's other file pages, stays
	 * resident.
	 */
	tap_note("RssFile before %ld KiB, after the scans %ld KiB (file %d MiB, bound %d MiB)",
		 before, after, FILE_MIB, RESIDENT_MIB);
	CHECK(before >= 0 && after >= 0);
	CHECK(after - before <= (RESIDENT_MIB + 4) * 1024);
}

/* A damaged leaf is found through the mapping just as through reads (damages db_path). */
static void test_corruption_found(const char *db_path)
{
	char out[1024], err[512];
	int fd = open(db_path, O_WRONLY);
	CHECK(fd >= 0);
	/* Cell pointers of pages deep in the file, past the first page of each 1 MiB chunk. */
	static const unsigned char junk[8] = {0xff, 0x01, 0xff, 0x02, 0xff, 0x03, 0xff, 0x04};
	for (off_t page = 13000; page < 13010; page++)
		CHECK(pwrite(fd, junk, sizeof(junk), page * 4096 + 8) == (ssize_t)sizeof(junk));
	close(fd);
	sqlite3 *db = NULL;
	CHECK(sqlh_open_mapped(db_path, &db, err, sizeof(err)) == 0);
	CHECK(db != NULL);
	bool ok = db && query_text(db, "PRAGMA integrity_check", out, sizeof(out));
	tap_note("integrity_check of the damaged copy: %.200s", out);
	CHECK(!ok || strcmp(out, "ok") != 0);
	sqlite3_close(db);
}

/* cachestat(2) (Linux 6.5): the page-cache state of a file; glibc 2.36 has no wrapper. */
struct cs_range {
	uint64_t off, len;
};
struct cs_stat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Pages of path dirty in the page cache, or -1 if the kernel cannot say. */
static long dirty_pages(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct cs_range r = {0, 0};
	struct cs_stat cs;
	long n = fd >= 0 && syscall(451, fd, &r, &cs, 0) == 0 ? (long)cs.nr_dirty : -1;
	if (fd >= 0)
		close(fd);
	return n;
}

/*
 * 40 MiB written in one transaction without fsync (synchronous=OFF, so
 * nothing but the VFS's hint starts the writeback), then the dirty pages
 * of the file counted: all of them through the default VFS, at most the
 * hint's interval (plus what the commit rewrote) through "snapfs".
 */
static long dirty_after_writing(const char *path, const char *vfs)
{
	sqlite3 *db = NULL;
	unlink(path);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK)
		return -2;
	bool ok = exec_ok(db, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF;"
			      "PRAGMA cache_size=-1024; BEGIN;"
			      "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);"
			      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
			      " WHERE i < 10240) INSERT INTO t SELECT i, randomblob(4000) FROM n;"
			      "COMMIT;");
	long dirty = ok ? dirty_pages(path) : -2;
	sqlite3_close(db);
	return dirty;
}

static void test_writeback_started(void)
{
	char path[PATH_MAX], err[256];
	snprintf(path, sizeof(path), "%s/written.db", tmp);
	/* sqlh_open_mapped registers the VFS; its name is "snapfs". */
	sqlite3 *db = NULL;
	if (sqlh_open_mapped("/nonexistent", &db, err, sizeof(err)) == 0)
		sqlite3_close(db);
	CHECK(sqlite3_vfs_find("snapfs") != NULL);
	long plain = dirty_after_writing(path, NULL);
	if (plain == -1) {
		tap_note("cachestat(2) not available on this kernel: writeback not observed");
		return;
	}
	long hinted = dirty_after_writing(path, "snapfs");
	tap_note("dirty pages after 40 MiB without fsync: %ld by the default VFS, %ld by snapfs's",
		 plain, hinted);
	CHECK(plain >= 8000); /* the default VFS: ~10,000 pages dirty */
	CHECK(hinted >= 0 &&
	      hinted <= (8 << 20) / 4096 + 512); /* at most the interval, and the commit's */
	CHECK(unlink(path) == 0);
}

int main(void)
{
	tmp = tap_tmpdir();
	char db_path[PATH_MAX];
	snprintf(db_path, sizeof(db_path), "%s/mapped.db", tmp);
	CHECK(make_db(db_path));
	struct stat st;
	CHECK(stat(db_path, &st) == 0 && st.st_size >= (off_t)(4 * RESIDENT_MIB) << 20);
	tap_note("test database: %lld bytes", (long long)st.st_size);
	test_same_answers_bounded(db_path);
	test_corruption_found(db_path);
	test_writeback_started();
	int rc = tap_done();
	if (rc == 0)
		fsx_rm_rf(tmp);
	return rc;
}
