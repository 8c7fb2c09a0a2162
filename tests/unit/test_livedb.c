/*
 * Unit tests for livedb: applying deltas exactly once through the ledger,
 * rejects leaving live untouched, and a close that leaves the file whole.
 */
#include "fsx.h"
#include "hex.h"
#include "livedb.h"
#include "dbtest.h"
#include "tap.h"

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

/* A stand-in for the delta's SHA-256: any 64 hex digits do for the ledger. */
static const char *sha(int n)
{
	static char buf[4][65];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%064x", n);
	return buf[i];
}

static sqlite3 *reader_open(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "open reader %s: %s\n", path, sqlite3_errmsg(db));
		exit(2);
	}
	return db;
}

/* One integer from the live file, read by a fresh connection that is gone again before returning. */
static long long peek(const char *path, const char *sql)
{
	sqlite3 *db = reader_open(path);
	sqlite3_stmt *st = NULL;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		fprintf(stderr, "  peek failed: %s: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static long long rows(const char *live)
{
	return peek(live, "SELECT count(*) FROM lines");
}

/* A livedb_known_hash that answers hex, or nothing. */
struct known_stub {
	const char *hex;
	bool answer;
	int calls;
};

static bool known_stub_get(void *arg, char hex[65])
{
	struct known_stub *k = arg;
	k->calls++;
	if (k->answer)
		memcpy(hex, k->hex, 65);
	return k->answer;
}

static int64_t ledger_max(livedb *db)
{
	int64_t m = -1;
	CHECK(livedb_ledger_max(db, &m) == 0);
	return m;
}

static int apply(livedb *db, const char *path, const char *name, const char *hex, int want)
{
	char msg[512];
	int64_t seq = -1;
	int r = livedb_apply(db, path, name, hex, &seq, msg, sizeof(msg));
	tap_note("%s %s: %d %s\n", r == want ? "ok  " : "FAIL", name, r, msg);
	CHECK(r == want);
	/* The ledger row that holds the delta: the new one, or the one from before. */
	if (want == LIVEDB_APPLIED)
		CHECK(seq == ledger_max(db));
	else if (want == LIVEDB_DUPLICATE)
		CHECK(seq > 0 && seq <= ledger_max(db));
	else
		CHECK(seq == 0);
	CHECK(strchr(msg, '\n') == NULL);
	if (want == LIVEDB_APPLIED)
		CHECK(msg[0] == '\0');
	else
		CHECK(msg[0] != '\0');
	return r;
}

static long long wal_size(const char *live)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s-wal", live);
	struct stat st;
	return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static void copy_file(const char *from, const char *to)
{
	char *data = NULL;
	size_t len = 0;
	unlink(to);
	FILE *f = NULL;
	if (fsx_read_all(from, &data, &len) != 0 || !(f = fopen(to, "wb")) ||
	    fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "copy %s to %s failed\n", from, to);
		exit(2);
	}
	free(data);
}

#define LINES "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);"

int main(void)
{
	const char *dir = dbtest_dir();
	char live[PATH_MAX];
	snprintf(live, sizeof(live), "%s", at("live.sqlite3"));
	char err[512];
	livedb *db = NULL;

	CHECK(livedb_open(live, NULL, NULL, &db, err, sizeof(err)) == 0);
	CHECK(db != NULL);
	CHECK(ledger_max(db) == 0);

	/* Applied, then a second delta, then the first again: once only. */
	mkdb(at("a.db"),
	     LINES "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)"
		   " INSERT INTO lines SELECT i, 'doc ' || i, randomblob(16) FROM n;");
	mkdb(at("b.db"), LINES "CREATE TABLE _snapfs_delete_lines(id);"
			       "INSERT INTO _snapfs_delete_lines VALUES (5);"
			       "INSERT INTO lines VALUES (11, 'doc 11', NULL);");
	apply(db, at("a.db"), "a.db", sha(1), LIVEDB_APPLIED);
	CHECK(rows(live) == 10);
	CHECK(ledger_max(db) == 1);
	apply(db, at("b.db"), "b.db", sha(2), LIVEDB_APPLIED);
	CHECK(rows(live) == 10);
	CHECK(ledger_max(db) == 2);
	apply(db, at("a.db"), "a.db again", sha(1), LIVEDB_DUPLICATE);
	CHECK(rows(live) == 10);
	CHECK(peek(live, "SELECT count(*) FROM lines WHERE id = 5") == 0); /* a was not re-applied */
	CHECK(ledger_max(db) == 2);
	CHECK(peek(live, "SELECT count(*) FROM _snapfs_ledger") == 2);
	/* Same bytes under another name: the sha decides. */
	apply(db, at("a.db"), "copy-of-a.db", sha(1), LIVEDB_DUPLICATE);

	/* Rejects: live untouched (rows, schema, ledger), and later deltas still apply. */
	long long schema = peek(live, "SELECT count(*) FROM sqlite_schema");
	struct {
		const char *name;
		const char *sql;
	} bad[] = {
		{"trigger.db",
		 LINES "CREATE TRIGGER t AFTER INSERT ON lines BEGIN DELETE FROM lines; END;"
		       "INSERT INTO lines VALUES (100, 'x', NULL);"},
		{"view.db", LINES
		 "CREATE VIEW v AS SELECT * FROM lines; INSERT INTO lines VALUES (100, 'x', NULL);"},
		{"nopk.db", "CREATE TABLE extra(a, b); INSERT INTO extra VALUES (1, 2);"},
		{"otherpk.db", "CREATE TABLE lines(id INTEGER, doc TEXT, emb BLOB, PRIMARY KEY(doc));"
			       "INSERT INTO lines VALUES (100, 'x', NULL);"},
		{"othercols.db", "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT);"
				 "INSERT INTO lines VALUES (100, 'x');"},
		{"gen.db",
		 "CREATE TABLE g(id INTEGER PRIMARY KEY, n AS (id + 1)); INSERT INTO g(id) VALUES (1);"},
		{"baddel.db",
		 "CREATE TABLE _snapfs_delete_lines(doc); INSERT INTO _snapfs_delete_lines VALUES ('doc 1');"},
		/* Fails only while merging, after a new table was created: the creation is rolled back too. */
		{"mismatch.db", "CREATE TABLE newt(k PRIMARY KEY); INSERT INTO newt VALUES (1);"
				"CREATE TABLE lines(id TEXT PRIMARY KEY, doc TEXT, emb BLOB);"
				"INSERT INTO lines VALUES ('not an integer', 'x', NULL);"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mkdb(at(bad[i].name), bad[i].sql);
		apply(db, at(bad[i].name), bad[i].name, sha(100 + (int)i), LIVEDB_REJECTED);
	}
	/* Not SQLite, empty, truncated. */
	int fd = open(at("text.db"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, "hello\n", 6) == 6 && close(fd) == 0);
	apply(db, at("text.db"), "text.db", sha(200), LIVEDB_REJECTED);
	fd = open(at("empty.db"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && close(fd) == 0);
	apply(db, at("empty.db"), "empty.db", sha(201), LIVEDB_REJECTED);
	mkdb(at("big.db"),
	     LINES "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
		   " INSERT INTO lines SELECT 1000 + i, hex(randomblob(200)), NULL FROM n;");
	CHECK(truncate(at("big.db"), 8192) == 0);
	apply(db, at("big.db"), "big.db (torn)", sha(202), LIVEDB_REJECTED);

	CHECK(rows(live) == 10);
	CHECK(peek(live, "SELECT count(*) FROM sqlite_schema") == schema);
	CHECK(peek(live,
		   "SELECT count(*) FROM sqlite_schema WHERE name IN ('newt', 'extra', 'g', 't', 'v')") ==
	      0);
	CHECK(ledger_max(db) == 2);

	/* A delta file that cannot be read: its own trouble, perhaps passing (the compactor
	 * counts it and rejects it after max_attempts); nothing recorded, it stays queued. */
	char msg[512];
	int64_t seq;
	int r = livedb_apply(db, at("gone.db"), "gone.db", sha(300), &seq, msg, sizeof(msg));
	tap_note("%s missing delta file: %d %s\n", r == LIVEDB_FAILED ? "ok  " : "FAIL", r, msg);
	CHECK(r == LIVEDB_FAILED);
	CHECK(ledger_max(db) == 2);
	CHECK(livedb_apply(db, at("a.db"), "a.db", "not-a-sha", &seq, msg, sizeof(msg)) == -EINVAL);
	CHECK(livedb_apply(db, at("a.db"), "a.db",
			   "ABCDEF0000000000000000000000000000000000000000000000000000000000", &seq,
			   msg, sizeof(msg)) == -EINVAL);

	mkdb(at("c.db"), LINES "INSERT INTO lines VALUES (12, 'doc 12', NULL);");
	apply(db, at("c.db"), "c\nwith a newline.db", sha(3), LIVEDB_APPLIED);
	CHECK(rows(live) == 11);
	CHECK(ledger_max(db) == 3);
	apply(db, at("c.db"), "c again", sha(3), LIVEDB_DUPLICATE);

	/* The ledger, in order. */
	livedb_entry *e = NULL;
	size_t n = 0;
	CHECK(livedb_ledger_since(db, 0, &e, &n) == 0);
	CHECK(n == 3);
	if (n == 3) {
		CHECK(e[0].seq == 1 && e[1].seq == 2 && e[2].seq == 3);
		CHECK(strcmp(e[0].sha256, sha(1)) == 0 && strcmp(e[2].sha256, sha(3)) == 0);
		CHECK(strcmp(e[0].name, "a.db") == 0 && strcmp(e[1].name, "b.db") == 0);
		CHECK(strcmp(e[2].name, "c\nwith a newline.db") == 0);
		CHECK(e[0].applied_at > 1600000000 && e[2].applied_at >= e[0].applied_at);
	}
	livedb_entries_free(e, n);
	CHECK(livedb_ledger_since(db, 2, &e, &n) == 0);
	CHECK(n == 1 && e && e[0].seq == 3);
	livedb_entries_free(e, n);
	CHECK(livedb_ledger_since(db, 3, &e, &n) == 0);
	CHECK(n == 0);
	livedb_entries_free(e, n);

	/* A reader in an idle state does not block the close. */
	sqlite3 *idle = reader_open(live);
	CHECK(wal_size(live) > 0); /* the commits are in the WAL until the close */
	r = livedb_close(db, err, sizeof(err));
	tap_note("%s close: %d %s\n", r == 0 ? "ok  " : "FAIL", r, err);
	CHECK(r == 0);
	CHECK(wal_size(live) <= 0); /* missing, or empty while the idle reader keeps it open */
	CHECK(sqlite3_close(idle) == SQLITE_OK);
	CHECK(wal_size(live) == -1);

	/* The closed file alone holds everything: a copy has the whole ledger and is in rollback mode,
	 * so it opens read-only with no -wal or -shm beside it. */
	copy_file(live, at("copy.sqlite3"));
	int64_t m = -1;
	CHECK(livedb_ledger_max_file(at("copy.sqlite3"), &m, err, sizeof(err)) == 0);
	CHECK(m == 3);
	CHECK(access(at("copy.sqlite3-wal"), F_OK) != 0 && access(at("copy.sqlite3-shm"), F_OK) != 0);
	CHECK(peek(at("copy.sqlite3"), "SELECT count(*) FROM lines") == 11);
	unsigned char hdr[20];
	fd = open(at("copy.sqlite3"), O_RDONLY);
	CHECK(fd >= 0 && read(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr));
	close(fd);
	CHECK(hdr[18] == 1 && hdr[19] == 1); /* rollback-journal mode */
	CHECK(livedb_ledger_max_file(at("no-such-file"), &m, err, sizeof(err)) < 0);
	CHECK(livedb_ledger_max_file(at("text.db"), &m, err, sizeof(err)) < 0);
	CHECK(livedb_ledger_max_file(at("a.db"), &m, err, sizeof(err)) < 0); /* no ledger */

	/* Reopened: the ledger still knows a and c. */
	CHECK(livedb_open(live, NULL, NULL, &db, err, sizeof(err)) == 0);
	CHECK(ledger_max(db) == 3);
	apply(db, at("a.db"), "a.db after restart", sha(1), LIVEDB_DUPLICATE);
	mkdb(at("d.db"), LINES "INSERT INTO lines VALUES (13, 'doc 13', NULL);");
	apply(db, at("d.db"), "d.db", sha(4), LIVEDB_APPLIED);

	/* A reader inside a transaction keeps frames in the WAL: the close must say so, not return 0. */
	sqlite3 *holder = reader_open(live);
	exec_or_die(holder, "BEGIN; SELECT count(*) FROM lines;");
	r = livedb_close(db, err, sizeof(err));
	tap_note("%s close while a reader holds the WAL: %d %s\n", r < 0 ? "ok  " : "FAIL", r, err);
	CHECK(r == -EBUSY);
	CHECK(strstr(err, "busy") != NULL);
	CHECK(wal_size(live) > 0);
	exec_or_die(holder, "COMMIT");
	CHECK(sqlite3_close(holder) == SQLITE_OK);

	/* Once the reader is gone, open and close finish the job. */
	CHECK(livedb_open(live, NULL, NULL, &db, err, sizeof(err)) == 0);
	CHECK(ledger_max(db) == 4);
	CHECK(livedb_close(db, err, sizeof(err)) == 0);
	CHECK(wal_size(live) == -1);
	CHECK(peek(live, "SELECT count(*) FROM lines") == 12);
	CHECK(livedb_close(NULL, err, sizeof(err)) == 0);

	/* A path starting with "file:" is a file name, not a URI. */
	const char *odd = "file:odd.sqlite3"; /* relative: in the test directory */
	CHECK(livedb_open(odd, NULL, NULL, &db, err, sizeof(err)) == 0);
	apply(db, at("d.db"), "d.db into file:odd", sha(4), LIVEDB_APPLIED);
	CHECK(livedb_close(db, err, sizeof(err)) == 0);
	CHECK(access(at("file:odd.sqlite3"), F_OK) == 0);

	/* Opening where no database can be: an error with a message. */
	r = livedb_open(at("no/such/dir/live.sqlite3"), NULL, NULL, &db, err, sizeof(err));
	CHECK(r < 0 && db == NULL && strstr(err, "no/such/dir") != NULL);
	r = livedb_open(at("text.db"), NULL, NULL, &db, err, sizeof(err));
	tap_note("%s open a text file as live: %d %s\n", r < 0 ? "ok  " : "FAIL", r, err);
	CHECK(r < 0 && db == NULL);

	/*
	 * livedb_bulk: from WAL to the rollback journal between transactions.
	 * Commits stay atomic (a reject leaves live as it was), the ledger
	 * keeps counting, and close leaves neither -wal nor -journal.
	 */
	/*
	 * livedb_apply_file: the check's second half and the hash run beside
	 * the merge. Applied with the file's own SHA-256; the same bytes again
	 * are a duplicate; a corrupt file is rejected for what the check found
	 * (the merge it may have interrupted leaves nothing); a file that
	 * cannot be read fails, live untouched each time.
	 */
	{
		char lm[512], want[65];
		int64_t sq = -1;
		struct livedb_file lf;
		long long before = rows(live);
		CHECK(livedb_open(live, NULL, NULL, &db, err, sizeof(err)) == 0);
		mkdb(at("late.db"), LINES "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
					  "FROM n WHERE i < 3000) INSERT INTO lines SELECT 5000 + i, "
					  "hex(randomblob(300)), NULL FROM n;");
		unsigned char raw[FSX_SHA256_LEN];
		CHECK(fsx_sha256_file(at("late.db"), raw, NULL) == 0);
		hex_encode(raw, sizeof(raw), want);
		CHECK(livedb_apply_file(db, at("late.db"), "late.db", NULL, &lf, &sq, lm,
					sizeof(lm)) == LIVEDB_APPLIED);
		CHECK(lf.hash_rc == 0 && strcmp(lf.sha256, want) == 0 && sq == ledger_max(db));
		CHECK(rows(live) == before + 3000);
		CHECK(livedb_apply_file(db, at("late.db"), "again.db", NULL, &lf, &sq, lm,
					sizeof(lm)) == LIVEDB_DUPLICATE);
		CHECK(rows(live) == before + 3000);
		/*
		 * A hash known from elsewhere (taken while it was written) is
		 * what the ledger is asked about; one that is not to be had
		 * leaves the file to be hashed as usual.
		 */
		struct known_stub ks = {.hex = want, .answer = true};
		struct livedb_known_hash kh = {.get = known_stub_get, .arg = &ks};
		CHECK(livedb_apply_file(db, at("late.db"), "known.db", &kh, &lf, &sq, lm,
					sizeof(lm)) == LIVEDB_DUPLICATE);
		CHECK(ks.calls == 1 && lf.hash_known && strcmp(lf.sha256, want) == 0);
		ks.hex = sha(77); /* vouched for by the caller: a new delta to the ledger */
		CHECK(livedb_apply_file(db, at("late.db"), "vouched.db", &kh, &lf, &sq, lm,
					sizeof(lm)) == LIVEDB_APPLIED);
		CHECK(lf.hash_known && strcmp(lf.sha256, sha(77)) == 0 && sq == ledger_max(db));
		ks.answer = false;
		CHECK(livedb_apply_file(db, at("late.db"), "unknown.db", &kh, &lf, &sq, lm,
					sizeof(lm)) == LIVEDB_DUPLICATE);
		CHECK(ks.calls == 3 && !lf.hash_known && strcmp(lf.sha256, want) == 0);
		CHECK(rows(live) == before + 3000);
		/* Corrupt deep inside (past its schema): the merge starts, the check stops it. */
		mkdb(at("rot.db"), LINES "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
					 "FROM n WHERE i < 3000) INSERT INTO lines SELECT 9000 + i, "
					 "hex(randomblob(300)), NULL FROM n;");
		fd = open(at("rot.db"), O_WRONLY);
		char junk[4096];
		memset(junk, 0x5a, sizeof(junk));
		CHECK(fd >= 0 && pwrite(fd, junk, sizeof(junk), 40 * 4096) == (ssize_t)sizeof(junk) &&
		      close(fd) == 0);
		r = livedb_apply_file(db, at("rot.db"), "rot.db", NULL, &lf, &sq, lm, sizeof(lm));
		tap_note("rot.db: %d %s\n", r, lm);
		CHECK(r == LIVEDB_REJECTED && sq == 0);
		CHECK(rows(live) == before + 3000);
		r = livedb_apply_file(db, at("no-such.db"), "no-such.db", NULL, &lf, &sq, lm,
				      sizeof(lm));
		CHECK(r == LIVEDB_FAILED && lf.hash_rc == -ENOENT);
		CHECK(rows(live) == before + 3000);
		CHECK(livedb_close(db, err, sizeof(err)) == 0);
	}

	char bulk[PATH_MAX];
	snprintf(bulk, sizeof(bulk), "%s", at("bulk.sqlite3"));
	CHECK(livedb_open(bulk, NULL, NULL, &db, err, sizeof(err)) == 0);
	apply(db, at("a.db"), "a.db", sha(1), LIVEDB_APPLIED);
	CHECK(wal_size(bulk) > 0);
	CHECK(livedb_bulk(db, err, sizeof(err)) == 0);
	CHECK(wal_size(bulk) == -1); /* checkpointed and removed */
	apply(db, at("mismatch.db"), "mismatch.db", sha(300), LIVEDB_REJECTED);
	CHECK(rows(bulk) == 10);
	apply(db, at("b.db"), "b.db", sha(2), LIVEDB_APPLIED);
	CHECK(ledger_max(db) == 2);
	CHECK(livedb_bulk(db, err, sizeof(err)) == 0); /* again: nothing to do */
	CHECK(livedb_close(db, err, sizeof(err)) == 0);
	char side[PATH_MAX + 16];
	snprintf(side, sizeof(side), "%s-journal", bulk);
	CHECK(access(side, F_OK) != 0);
	CHECK(wal_size(bulk) == -1);
	CHECK(rows(bulk) == 10);
	CHECK(peek(bulk, "SELECT count(*) FROM lines WHERE id = 11") == 1);

	if (!tap_failed)
		fsx_rm_rf(dir);
	return tap_done();
}
