/*
 * Unit tests for seal: a real database (made with the sqlite3 API and
 * closed) is sealed into a staging directory; the copy, its hash and the
 * manifest are checked against the source, and corrupt sources must fail
 * with an integrity error and leave nothing that looks sealed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "manifest.h"
#include "seal.h"
#include "tap.h"

static const char *tmp;

static bool exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "sqlite: %s: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return rc == SQLITE_OK;
}

/*
 * A collection database like the live one: vectors with blobs (big ones
 * spill into overflow pages), an awkwardly named table, an index, and the
 * ledger. Closed before returning, WAL checkpointed away when wal is set.
 */
static bool make_db(const char *path, int rows, int blob, bool wal)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return false;
	bool ok =
		exec_ok(db, wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE") &&
		exec_ok(db,
			"BEGIN;"
			"CREATE TABLE vectors(id INTEGER PRIMARY KEY, embedding BLOB NOT NULL,"
			" document TEXT, metadata TEXT);"
			"CREATE INDEX vectors_doc ON vectors(document);"
			"CREATE TABLE \"we\"\"ird table\"(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
			"INSERT INTO \"we\"\"ird table\" VALUES ('a', 1), ('b', 2), ('c', 3);"
			"CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL,"
			" name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
			"INSERT INTO _snapfs_ledger VALUES (1, 'aa', 'd1.db', 1), (2, 'bb', 'd2.db', 2);");
	sqlite3_stmt *st = NULL;
	if (ok)
		ok = sqlite3_prepare_v2(db,
					"INSERT INTO vectors VALUES (?, randomblob(?), ?, '{\"k\": 1}')",
					-1, &st, NULL) == SQLITE_OK;
	for (int i = 1; ok && i <= rows; i++) {
		char doc[64];
		snprintf(doc, sizeof(doc), "document number %d", i);
		sqlite3_bind_int(st, 1, i);
		sqlite3_bind_int(st, 2, blob);
		sqlite3_bind_text(st, 3, doc, -1, SQLITE_TRANSIENT);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	ok = ok && exec_ok(db, "COMMIT");
	if (wal)
		ok = ok && exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
	return sqlite3_close(db) == SQLITE_OK && ok;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void path_join(char *out, const char *a, const char *b)
{
	if (snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX)
		abort();
}

/* Opens a file read-only and immutable, so not even a WAL-mode header makes SQLite create -shm. */
static int open_immutable(const char *path, sqlite3 **db)
{
	char uri[3 * PATH_MAX + 32] = "file:";
	size_t n = strlen(uri);
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		n += (size_t)sprintf(uri + n, strchr("?#%& ", *p) ? "%%%02X" : "%c", *p);
	strcat(uri, "?immutable=1");
	return sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
}

static bool sha_of(const char *path, char hex[65], uint64_t *size)
{
	unsigned char sha[FSX_SHA256_LEN];
	if (fsx_sha256_file(path, sha, size) != 0)
		return false;
	hex_encode(sha, sizeof(sha), hex);
	return true;
}

/* XORs n bytes at off with 0xff. */
static bool flip(const char *path, off_t off, size_t n)
{
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return false;
	unsigned char buf[64];
	bool ok = n <= sizeof(buf) && pread(fd, buf, n, off) == (ssize_t)n;
	for (size_t i = 0; ok && i < n; i++)
		buf[i] ^= 0xff;
	ok = ok && pwrite(fd, buf, n, off) == (ssize_t)n;
	return close(fd) == 0 && ok;
}

static int64_t root_page(const char *path, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t root = -1;
	if (open_immutable(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = ?", -1, &st,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			root = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return root;
}

static bool has(const char *doc, const char *needle)
{
	bool ok = doc && strstr(doc, needle) != NULL;
	if (!ok)
		fprintf(stderr, "missing %s in:\n%s", needle, doc ? doc : "(null)");
	return ok;
}

/* Seals src into a fresh directory under tmp and checks all it promises. */
static void check_good_seal(const char *src, const char *staging_name, const char *coll, int rows)
{
	char staging[PATH_MAX], copy[PATH_MAX], mpath[PATH_MAX], file[128];
	path_join(staging, tmp, staging_name);
	CHECK(mkdir(staging, 0755) == 0);
	snprintf(file, sizeof(file), "%s.sqlite3", coll);
	path_join(copy, staging, file);
	path_join(mpath, staging, "MANIFEST.json");

	char src_hex[65];
	uint64_t src_size = 0;
	CHECK(sha_of(src, src_hex, &src_size));

	const struct manifest_delta deltas[] = {{1, "d1.db", "aa"}, {2, "d\"2\".db", "bb"}};
	struct seal_request req = {
		.collection = coll,
		.id = 7,
		.live_path = src,
		.staging_dir = staging,
		.created = 1795698000,
		.ledger_max = 2,
		.deltas = deltas,
		.ndeltas = 2,
	};
	struct seal_result res;
	char err[512] = "junk";
	int rc = seal_make(&req, &res, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "seal_make: %d %s\n", rc, err);
	CHECK(rc == 0);
	CHECK(err[0] == '\0');
	CHECK(count_entries(staging) == 2);

	/* The copy: same bytes as the source, hashed right, read-only. */
	char copy_hex[65] = "";
	uint64_t copy_size = 0;
	CHECK(sha_of(copy, copy_hex, &copy_size));
	CHECK(strcmp(res.sha256, copy_hex) == 0);
	CHECK(strcmp(res.sha256, src_hex) == 0);
	CHECK(res.size == copy_size && copy_size == src_size);
	CHECK(res.copy_ms >= 0 && res.check_ms >= 0);
	struct stat st;
	CHECK(stat(copy, &st) == 0 && (st.st_mode & 0222) == 0);
	CHECK(stat(mpath, &st) == 0 && (st.st_mode & 0222) == 0);

	/* The manifest. */
	char *doc = NULL;
	CHECK(fsx_read_all(mpath, &doc, NULL) == 0);
	uint64_t m_size = 0, m_id = 0;
	char m_sha[65] = "";
	CHECK(manifest_read_basic(doc, &m_size, m_sha, &m_id) == 0);
	CHECK(m_size == copy_size);
	CHECK(m_id == 7);
	CHECK(strcmp(m_sha, copy_hex) == 0);
	char want[256];
	snprintf(want, sizeof(want), "\"collection\": \"%s\",", coll);
	CHECK(has(doc, want));
	snprintf(want, sizeof(want), "\"file\": \"%s\",", file);
	CHECK(has(doc, want));
	CHECK(has(doc, "\"snapshot\": \"00000007\","));
	CHECK(has(doc, "\"created\": \"2026-11-26T13:00:00Z\","));
	CHECK(has(doc, "\"page_size\": 4096,"));
	snprintf(want, sizeof(want), "\"page_count\": %llu,", (unsigned long long)(copy_size / 4096));
	CHECK(has(doc, want));
	CHECK(has(doc, "\"integrity_check\": \"ok\","));
	CHECK(has(doc, "\"ledger_max\": 2,"));
	snprintf(want, sizeof(want),
		 "\"tables\": {\n    \"_snapfs_ledger\": 2,\n    \"vectors\": %d,\n    \"we\\\"ird table\": 3\n  },",
		 rows);
	CHECK(has(doc, want));
	CHECK(has(doc, "{\"seq\": 2, \"name\": \"d\\\"2\\\".db\", \"sha256\": \"bb\"}"));
	free(doc);

	/* The copy opens as a database and holds the rows. */
	sqlite3 *db;
	sqlite3_stmt *q;
	int n = -1;
	if (open_immutable(copy, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM vectors", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			n = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
	CHECK(n == rows);

	/* Sealing into the same staging again never overwrites: O_EXCL. */
	rc = seal_make(&req, &res, err, sizeof(err));
	CHECK(rc == -EEXIST);
	CHECK(strstr(err, "create") != NULL);
	CHECK(sha_of(copy, copy_hex, NULL) && strcmp(copy_hex, src_hex) == 0);
	CHECK(count_entries(staging) == 2);
}

static void test_seal_small(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "small.db");
	CHECK(make_db(src, 100, 200, false));
	check_good_seal(src, "staging-small", "lines", 100);
}

/*
 * A database whose header still says WAL (livedb_close switches to
 * rollback mode, but seal must not depend on it): it seals as is, and the
 * check connection creates no -wal or -shm in staging.
 */
static void test_seal_wal(void)
{
	char src[PATH_MAX], wal[PATH_MAX];
	path_join(src, tmp, "wal.db");
	CHECK(make_db(src, 50, 100, true));
	if (snprintf(wal, sizeof(wal), "%s-wal", src) >= (int)sizeof(wal))
		abort();
	CHECK(access(wal, F_OK) != 0);
	check_good_seal(src, "staging-wal", "words", 50);
}

/* Larger than several copy chunks, with overflow pages: the pipelined hash still matches. */
static void test_seal_multi_chunk(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "big.db");
	CHECK(make_db(src, 4000, 6000, true));
	struct stat st;
	CHECK(stat(src, &st) == 0 && st.st_size > 20 * 1024 * 1024);
	check_good_seal(src, "staging-big", "big", 4000);
}

/* Paths SQLite URIs would misread unless encoded. */
static void test_seal_odd_staging_path(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "odd.db");
	CHECK(make_db(src, 10, 100, false));
	check_good_seal(src, "st ag?ing#%41&mode=rw", "odd", 10);
}

/* Staging on another file system (tmpfs): copy_file_range gives way to read/write. */
static void test_seal_cross_fs(void)
{
	struct stat a, b;
	if (stat("/dev/shm", &b) != 0 || stat(tmp, &a) != 0 || a.st_dev == b.st_dev)
		return;
	char src[PATH_MAX], staging[PATH_MAX];
	path_join(src, tmp, "xfs.db");
	CHECK(make_db(src, 2000, 6000, false));
	snprintf(staging, sizeof(staging), "/dev/shm/snapfs-seal-test-%d", (int)getpid());
	CHECK(mkdir(staging, 0755) == 0);
	struct seal_request req = {.collection = "x", .id = 1, .live_path = src, .staging_dir = staging};
	struct seal_result res;
	char err[512];
	CHECK(seal_make(&req, &res, err, sizeof(err)) == 0);
	char copy[PATH_MAX], hex[65] = "", src_hex[65] = "";
	path_join(copy, staging, "x.sqlite3");
	CHECK(sha_of(copy, hex, NULL) && sha_of(src, src_hex, NULL));
	CHECK(strcmp(hex, res.sha256) == 0 && strcmp(hex, src_hex) == 0);
	CHECK(fsx_rm_rf(staging) == 0);
}

/* A failed seal: error says integrity, nothing is left, the result claims nothing. */
static void check_bad_seal(const char *src, const char *staging_name, const char *expect)
{
	char staging[PATH_MAX];
	path_join(staging, tmp, staging_name);
	CHECK(mkdir(staging, 0755) == 0);
	struct seal_request req = {.collection = "lines",
				   .id = 7,
				   .live_path = src,
				   .staging_dir = staging};
	struct seal_result res;
	memset(&res, 0x5a, sizeof(res));
	char err[512] = "";
	int rc = seal_make(&req, &res, err, sizeof(err));
	tap_note("# %s: %s\n", staging_name, err);
	CHECK(rc == -EIO);
	CHECK(has(err, expect));
	CHECK(strlen(err) > strlen(expect)); /* the SQLite message follows */
	CHECK(count_entries(staging) == 0);
	CHECK(res.size == 0 && res.sha256[0] == '\0');
}

static void test_seal_corrupt_page(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "corrupt.db");
	CHECK(make_db(src, 300, 300, false));
	int64_t root = root_page(src, "vectors");
	CHECK(root > 0);
	/* The b-tree header of the page after the root (a leaf of vectors). */
	CHECK(flip(src, (off_t)root * 4096, 8));
	check_bad_seal(src, "staging-corrupt",
		       "integrity_check of snapshot 00000007 of lines failed: ");
}

static void test_seal_corrupt_cells(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "corrupt2.db");
	CHECK(make_db(src, 300, 300, false));
	int64_t root = root_page(src, "vectors");
	CHECK(root > 0);
	/* Cell pointers of a leaf now point into nonsense. */
	CHECK(flip(src, (off_t)(root + 1) * 4096 + 8, 6));
	check_bad_seal(src, "staging-corrupt2",
		       "integrity_check of snapshot 00000007 of lines failed: ");
}

static void test_seal_not_a_database(void)
{
	char src[PATH_MAX];
	path_join(src, tmp, "garbage.db");
	CHECK(make_db(src, 10, 10, false));
	CHECK(flip(src, 0, 16)); /* the "SQLite format 3" magic */
	check_bad_seal(src, "staging-garbage",
		       "integrity_check of snapshot 00000007 of lines failed: ");
}

static void test_seal_missing_source(void)
{
	char src[PATH_MAX], staging[PATH_MAX];
	path_join(src, tmp, "nonexistent.db");
	path_join(staging, tmp, "staging-missing");
	CHECK(mkdir(staging, 0755) == 0);
	struct seal_request req = {.collection = "lines",
				   .id = 1,
				   .live_path = src,
				   .staging_dir = staging};
	struct seal_result res;
	char err[512] = "";
	CHECK(seal_make(&req, &res, err, sizeof(err)) == -ENOENT);
	CHECK(has(err, "nonexistent.db"));
	CHECK(count_entries(staging) == 0);
	CHECK(seal_make(NULL, &res, err, sizeof(err)) == -EINVAL);
}

/* A MANIFEST.json already in staging is not ours: the seal fails, leaves it, removes its copy. */
static void test_seal_manifest_exists(void)
{
	char src[PATH_MAX], staging[PATH_MAX], mpath[PATH_MAX];
	path_join(src, tmp, "mexists.db");
	CHECK(make_db(src, 10, 10, false));
	path_join(staging, tmp, "staging-mexists");
	CHECK(mkdir(staging, 0755) == 0);
	path_join(mpath, staging, "MANIFEST.json");
	CHECK(fsx_write_atomic(mpath, "{}\n", 3) == 0);
	struct seal_request req = {.collection = "lines",
				   .id = 1,
				   .live_path = src,
				   .staging_dir = staging};
	struct seal_result res;
	char err[512] = "";
	CHECK(seal_make(&req, &res, err, sizeof(err)) == -EEXIST);
	CHECK(has(err, "MANIFEST.json"));
	CHECK(count_entries(staging) == 1);
	CHECK(access(mpath, F_OK) == 0);
	CHECK(res.sha256[0] == '\0');
}

int main(void)
{
	tmp = tap_tmpdir();
	test_seal_small();
	test_seal_wal();
	test_seal_multi_chunk();
	test_seal_odd_staging_path();
	test_seal_cross_fs();
	test_seal_corrupt_page();
	test_seal_corrupt_cells();
	test_seal_not_a_database();
	test_seal_missing_source();
	test_seal_manifest_exists();
	int rc = tap_done();
	if (rc == 0)
		fsx_rm_rf(tmp);
	return rc;
}
