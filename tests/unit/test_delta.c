/*
 * Unit tests for delta: deltas are built here with the sqlite3 C API,
 * checked and merged into a live database opened as livedb opens it.
 */
#include "delta.h"
#include "fsx.h"
#include "sbuf.h"
#include "dbtest.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) < 0) {
		perror(path);
		exit(2);
	}
}

static size_t read_file(const char *path, char **out)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(path);
		exit(2);
	}
	*out = malloc((size_t)st.st_size + 1);
	if (!*out || read(fd, *out, (size_t)st.st_size) != st.st_size) {
		perror(path);
		exit(2);
	}
	close(fd);
	return (size_t)st.st_size;
}

/* Live as livedb opens it: URI names on, WAL. */
static sqlite3 *live_open(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
			    NULL) != SQLITE_OK) {
		fprintf(stderr, "open live %s: %s\n", path, sqlite3_errmsg(db));
		exit(2);
	}
	exec_or_die(db, "PRAGMA journal_mode=WAL");
	return db;
}

/* First column of the first row as an integer; -1 on error, -2 on no row. */
static long long q1(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		int rc = sqlite3_step(st);
		v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? -2 : -1;
	}
	if (v == -1)
		fprintf(stderr, "  query failed: %s: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return v;
}

/* Text of the first column of the first row, copied into buf ("" if none). */
static const char *qs(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st = NULL;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

/* What livedb does: one transaction, check, merge, commit or roll back, detach. */
static int merge(sqlite3 *live, const char *path, char *msg, size_t len)
{
	exec_or_die(live, "BEGIN IMMEDIATE");
	int r = delta_check(live, path, NULL, msg, len);
	if (r == 0)
		r = delta_apply(live, path, msg, len);
	if (r == 0)
		exec_or_die(live, "COMMIT");
	else if (!sqlite3_get_autocommit(live)) /* SQLITE_FULL may have rolled back already */
		exec_or_die(live, "ROLLBACK");
	char err[256];
	int d = delta_detach(live, err, sizeof(err));
	if (d != 0)
		fprintf(stderr, "  detach: %s\n", err);
	CHECK(d == 0);
	CHECK(q1(live, "SELECT count(*) FROM pragma_database_list WHERE name = 'delta'") == 0);
	return r;
}

/* Everything a reject must leave alone, as one string. */
static void fingerprint(sqlite3 *live, char *buf, size_t len)
{
	qs(live,
	   "SELECT (SELECT group_concat(name) FROM sqlite_schema) || '|' ||"
	   " (SELECT count(*) || ':' || total(length(doc)) || ':' || total(id) FROM lines)",
	   buf, len);
}

static void expect_reject_file(sqlite3 *live, const char *path, const char *want, const char *what)
{
	char before[512], after[512], reason[512];
	fingerprint(live, before, sizeof(before));
	int r = merge(live, path, reason, sizeof(reason));
	fingerprint(live, after, sizeof(after));
	bool ok = r == 1 && strstr(reason, want) && !strchr(reason, '\n') && !strcmp(before, after);
	tap_note("%s reject %s: %s\n", ok ? "ok  " : "FAIL", what, reason);
	if (!ok)
		fprintf(stderr, "  %s: r=%d want \"%s\" got \"%s\"; live %s -> %s\n", what, r, want,
			reason, before, after);
	CHECK(r == 1);
	CHECK(strstr(reason, want) != NULL);
	CHECK(strchr(reason, '\n') == NULL);
	CHECK(strcmp(before, after) == 0);
}

static void expect_reject(sqlite3 *live, const char *sql, const char *want, const char *what)
{
	const char *path = at("bad.db");
	mkdb(path, sql);
	expect_reject_file(live, path, want, what);
}

static void expect_apply(sqlite3 *live, const char *path, const char *what)
{
	char msg[512];
	int r = merge(live, path, msg, sizeof(msg));
	tap_note("%s apply %s%s%s\n", r == 0 ? "ok  " : "FAIL", what, r ? ": " : "", r ? msg : "");
	CHECK(r == 0);
}

#define ROWS_SQL                                                                                   \
	"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)"            \
	" INSERT INTO lines SELECT i, printf('doc %d ', i) || hex(randomblob(100)), randomblob(64) FROM n;"

static void test_good(sqlite3 *live)
{
	char buf[256];
	const char *d = at("d1.db");
	mkdb(d,
	     "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT NOT NULL, emb BLOB);"
	     "INSERT INTO lines VALUES (1, 'one', x'01'), (2, 'two', x'02'), (3, 'three', x'03');");
	expect_apply(live, d, "new table with rows");
	CHECK(q1(live, "SELECT count(*) FROM lines") == 3);
	/* Created from names, types and key: a rowid alias, no NOT NULL copied from the delta's SQL. */
	qs(live, "SELECT sql FROM sqlite_schema WHERE name = 'lines'", buf, sizeof(buf));
	CHECK(strcmp(buf,
		     "CREATE TABLE \"lines\" (\"id\" 'INTEGER', \"doc\" 'TEXT', \"emb\" 'BLOB', PRIMARY KEY (\"id\"))") ==
	      0);
	CHECK(q1(live, "SELECT count(*) FROM lines WHERE rowid = id") == 3);

	d = at("d2.db");
	mkdb(d, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);"
		"INSERT INTO lines VALUES (1, 'one v2', x'11'), (4, 'four', x'04');");
	expect_apply(live, d, "upsert by primary key");
	CHECK(q1(live, "SELECT count(*) FROM lines") == 4);
	CHECK(strcmp(qs(live, "SELECT doc FROM lines WHERE id = 1", buf, sizeof(buf)), "one v2") == 0);
	CHECK(q1(live, "SELECT count(*) FROM lines WHERE id = 1 AND emb = x'11'") == 1);

	d = at("d3.db");
	mkdb(d, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);"
		"CREATE TABLE _snapfs_delete_lines(id INTEGER);"
		"INSERT INTO _snapfs_delete_lines VALUES (2), (3), (99);"
		"INSERT INTO lines VALUES (3, 'three v3', NULL);");
	expect_apply(live, d, "deletions before upserts");
	CHECK(q1(live, "SELECT count(*) FROM lines") == 3);
	CHECK(q1(live, "SELECT count(*) FROM lines WHERE id = 2") == 0);
	CHECK(strcmp(qs(live, "SELECT doc FROM lines WHERE id = 3", buf, sizeof(buf)), "three v3") ==
	      0);

	d = at("d4.db");
	mkdb(d, "CREATE TABLE _snapfs_delete_lines(ID);" /* key names match case-insensitively */
		"INSERT INTO _snapfs_delete_lines VALUES (4);");
	expect_apply(live, d, "deletions only, for a table only live has");
	CHECK(q1(live, "SELECT count(*) FROM lines") == 2);

	d = at("d5.db");
	mkdb(d, "CREATE TABLE words(lang TEXT, word TEXT, n INTEGER, PRIMARY KEY(lang, word));"
		"INSERT INTO words VALUES ('en', 'a', 1), ('en', 'b', 2), ('fr', 'a', 3);");
	expect_apply(live, d, "composite primary key");
	d = at("d6.db");
	mkdb(d, "CREATE TABLE words(LANG TEXT, Word TEXT, n INTEGER, PRIMARY KEY(lang, word));"
		"CREATE TABLE _snapfs_delete_words(word TEXT, lang TEXT);"
		"INSERT INTO _snapfs_delete_words VALUES ('a', 'en');"
		"INSERT INTO words VALUES ('en', 'b', 20), ('de', 'a', 4);");
	expect_apply(live, d, "composite key upsert and delete");
	CHECK(q1(live, "SELECT count(*) FROM words") == 3);
	CHECK(q1(live, "SELECT count(*) FROM words WHERE lang = 'en' AND word = 'a'") == 0);
	CHECK(q1(live, "SELECT n FROM words WHERE lang = 'en' AND word = 'b'") == 20);
	CHECK(q1(live, "SELECT n FROM words WHERE lang = 'fr' AND word = 'a'") == 3);

	d = at("d7.db");
	mkdb(d, "CREATE TABLE meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
		"INSERT INTO meta VALUES ('model', 'm1'), ('dim', 384);");
	expect_apply(live, d, "WITHOUT ROWID");
	CHECK(q1(live, "SELECT wr FROM pragma_table_list('meta') WHERE schema = 'main'") == 1);
	CHECK(q1(live, "SELECT count(*) FROM meta") == 2);

	/* Only key columns: DO NOTHING on conflict. */
	d = at("d8.db");
	mkdb(d, "CREATE TABLE tags(tag TEXT PRIMARY KEY); INSERT INTO tags VALUES ('x'), ('y');");
	expect_apply(live, d, "key-only table");
	expect_apply(live, d, "key-only table again");
	CHECK(q1(live, "SELECT count(*) FROM tags") == 2);

	/* Identifiers with quotes, spaces and a newline survive quoting. */
	d = at("d9.db");
	mkdb(d, "CREATE TABLE \"we\"\"ird\nt\"(\"k\"\"ey\" TEXT PRIMARY KEY, \"v al\" INT);"
		"INSERT INTO \"we\"\"ird\nt\" VALUES ('a', 1);");
	expect_apply(live, d, "quoted identifiers");
	CHECK(q1(live, "SELECT \"v al\" FROM \"we\"\"ird\nt\" WHERE \"k\"\"ey\" = 'a'") == 1);

	/* A path that needs percent-encoding in a URI. */
	d = at("we?ird #na%20me&x=1.db");
	mkdb(d, "CREATE TABLE tags(tag TEXT PRIMARY KEY); INSERT INTO tags VALUES ('z');");
	expect_apply(live, d, "path with ? # % & and a space");
	CHECK(q1(live, "SELECT count(*) FROM tags") == 3);

	/* A WAL-mode delta, a delta with no table, a delta with an index. */
	d = at("d10.db");
	mkdb(d, "PRAGMA journal_mode=WAL; CREATE TABLE tags(tag TEXT PRIMARY KEY); INSERT INTO tags VALUES ('w');"
		"CREATE INDEX ix ON tags(tag);");
	expect_apply(live, d, "WAL-mode delta with an index");
	CHECK(q1(live, "SELECT count(*) FROM tags") == 4);
	CHECK(q1(live, "SELECT count(*) FROM sqlite_schema WHERE name = 'ix'") == 0);
	CHECK(access(at("d10.db-wal"), F_OK) != 0); /* immutable: nothing created beside it */
	d = at("d11.db");
	mkdb(d, "PRAGMA user_version = 7;");
	expect_apply(live, d, "no tables");

	/* Many pages: the bulk path. */
	d = at("d12.db");
	mkdb(d, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);" ROWS_SQL);
	expect_apply(live, d, "400 rows over many pages");
	CHECK(q1(live, "SELECT count(*) FROM lines") == 400);
}

static void test_rejects(sqlite3 *live)
{
	const char *d = at("text.db");
	const char *text = "id,doc\n1,hello\n2,this is a CSV file, not a SQLite database at all\n"
			   "3,padding padding padding padding padding padding\n";
	write_file(d, text, strlen(text));
	expect_reject_file(live, d, "not a SQLite database", "text file");
	write_file(d, "", 0);
	expect_reject_file(live, d, "empty: file is 0 bytes", "zero bytes");
	write_file(d, "SQLite format 3", 16);
	expect_reject_file(live, d, "shorter than the 100-byte header", "16 bytes");

	/* Half of a valid multi-page file: a writer that died midway. */
	const char *full = at("full.db");
	mkdb(full, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);" ROWS_SQL);
	char *bytes = NULL;
	size_t n = read_file(full, &bytes);
	CHECK(n >= 8 * 4096);
	char want[128];
	snprintf(want, sizeof(want),
		 "truncated: file is %zu bytes but its header says %zu pages of 4096", n / 2,
		 n / 4096);
	write_file(d, bytes, n / 2);
	expect_reject_file(live, d, want, "truncated");
	write_file(d, bytes, n / 2 + 100);
	expect_reject_file(live, d, "truncated", "truncated mid-page");

	/* A b-tree page overwritten: the size is right, the content is not. */
	memcpy(bytes + 2 * 4096, "\xff\xff\xff\xff\xff\xff\xff\xff", 8); /* header of page 3 */
	write_file(d, bytes, n);
	expect_reject_file(live, d, "integrity_check", "corrupted b-tree page");
	free(bytes);

	char lines[] = "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);";
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "%s CREATE TRIGGER \"t\nx\" AFTER INSERT ON lines BEGIN DELETE FROM lines; END;",
		 lines);
	expect_reject(live, sql, "has trigger \"t?x\": deltas may not carry executable schema",
		      "trigger");
	snprintf(sql, sizeof(sql), "%s CREATE VIEW v AS SELECT * FROM lines;", lines);
	expect_reject(live, sql, "has view \"v\"", "view");
	if (sqlite3_compileoption_used("ENABLE_FTS5")) {
		snprintf(sql, sizeof(sql), "%s CREATE VIRTUAL TABLE f USING fts5(body);", lines);
		expect_reject(live, sql, "has virtual table \"f\"", "virtual table (fts5)");
	}
	if (sqlite3_compileoption_used("ENABLE_RTREE")) {
		snprintf(sql, sizeof(sql), "%s CREATE VIRTUAL TABLE r USING rtree(id, x0, x1);",
			 lines);
		expect_reject(live, sql, "has virtual table \"r\"", "virtual table (rtree)");
	}
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB, n AS (length(doc)));",
		      "has generated column \"n\"", "generated column");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB,"
		      " n INT GENERATED ALWAYS AS (id * 2) STORED);",
		      "has generated column \"n\"", "stored generated column");
	expect_reject(live, "CREATE TABLE extra(a, b); INSERT INTO extra VALUES (1, 2);",
		      "table \"extra\" has no PRIMARY KEY", "table without primary key");
	expect_reject(
		live, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB, score REAL);",
		"table \"lines\" differs from the collection's: column \"score\" is not in the collection's table",
		"extra column vs live");
	expect_reject(live, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT);",
		      "column \"emb\" is missing from the delta", "missing column vs live");
	expect_reject(live, "CREATE TABLE lines(id INTEGER, doc TEXT, emb BLOB, PRIMARY KEY(doc));",
		      "primary key (\"doc\"), the collection's is (\"id\")",
		      "different primary key vs live");
	expect_reject(live,
		      "CREATE TABLE words(lang TEXT, word TEXT, n INTEGER, PRIMARY KEY(word, lang));",
		      "primary key (\"word\", \"lang\"), the collection's is (\"lang\", \"word\")",
		      "primary key order vs live");
	expect_reject(
		live,
		"CREATE TABLE _snapfs_delete_lines(doc); INSERT INTO _snapfs_delete_lines VALUES ('x');",
		"deletion table \"_snapfs_delete_lines\" has columns (\"doc\"), but the primary key of \"lines\" is (\"id\")",
		"deletion table with non-key columns");
	expect_reject(live, "CREATE TABLE _snapfs_delete_lines(id, doc);",
		      "has columns (\"id\", \"doc\")", "deletion table with extra columns");
	expect_reject(live, "CREATE TABLE _snapfs_delete_words(lang);",
		      "primary key of \"words\" is (\"lang\", \"word\")",
		      "deletion table with part of a composite key");
	expect_reject(live, "CREATE TABLE _snapfs_delete_nosuch(id);",
		      "which neither the delta nor the collection has",
		      "deletion table for an unknown table");
	expect_reject(live, "CREATE TABLE _snapfs_delete__snapfs_ledger(seq);",
		      "is not a collection table", "deletion from the ledger");
	expect_reject(live,
		      "CREATE TABLE _SNAPFS_LEDGER(seq INTEGER PRIMARY KEY, sha256, name, applied_at);",
		      "names starting with _snapfs_ are reserved", "a table named like the ledger");
	expect_reject(live, "CREATE TABLE t2(id INTEGER PRIMARY KEY, x \"a;b\");",
		      "declared type \"a;b\" outside [A-Za-z0-9 _(),.+-]", "unsafe declared type");
	expect_reject(live,
		      "CREATE TABLE t3(k TEXT PRIMARY KEY, v); INSERT INTO t3 VALUES (NULL, 1);",
		      "table \"t3\" has a row with NULL in its primary key", "NULL primary key");
	expect_reject(live, "PRAGMA encoding = 'UTF-16le'; CREATE TABLE t4(k TEXT PRIMARY KEY);",
		      "text encoding UTF-16le differs from the collection's UTF-8", "UTF-16 delta");
	/* A view disguised as a table through writable_schema: SQLite's own schema parse refuses it. */
	expect_reject(live,
		      "CREATE TABLE t5(a PRIMARY KEY); CREATE VIEW v5 AS SELECT * FROM t5;"
		      " PRAGMA writable_schema = ON; UPDATE sqlite_schema SET type = 'table' WHERE name = 'v5';",
		      "malformed database schema", "view disguised as a table");
	/* A trigger disguised as an index: its SQL text is what SQLite would load. */
	expect_reject(
		live,
		"CREATE TABLE t6(a PRIMARY KEY); CREATE TRIGGER tr6 AFTER INSERT ON t6 BEGIN SELECT 1; END;"
		" PRAGMA writable_schema = ON; UPDATE sqlite_schema SET type = 'index' WHERE name = 'tr6';",
		"", "trigger disguised as an index");

	exec_or_die(live, "CREATE INDEX lines_doc ON lines(doc)");
	expect_reject(live, "CREATE TABLE LINES_DOC(k PRIMARY KEY);",
		      "the collection already has an object of that name (\"index\")",
		      "table named like an index of live");
	exec_or_die(live, "DROP INDEX lines_doc");

	/* A symbolic link is not a delta. */
	const char *link = at("link.db");
	unlink(link);
	CHECK(symlink(full, link) == 0);
	expect_reject_file(live, link, "symbolic link", "symlink");

	/* Rows that break a constraint only live has: found while merging, rolled back. */
	exec_or_die(live,
		    "CREATE TABLE uniq(id INTEGER PRIMARY KEY, tag TEXT UNIQUE); INSERT INTO uniq VALUES (1, 'a');");
	expect_reject(live,
		      "CREATE TABLE newt(k PRIMARY KEY); INSERT INTO newt VALUES (1);"
		      "CREATE TABLE uniq(id INTEGER PRIMARY KEY, tag TEXT); INSERT INTO uniq VALUES (2, 'a');",
		      "UNIQUE constraint failed", "row breaking live's UNIQUE");
	CHECK(q1(live, "SELECT count(*) FROM sqlite_schema WHERE name = 'newt'") == 0);
	expect_reject(live,
		      "CREATE TABLE lines(id TEXT PRIMARY KEY, doc TEXT, emb BLOB); INSERT INTO lines VALUES ('x', 'y', NULL);",
		      "datatype mismatch", "text key into INTEGER PRIMARY KEY");
}

/* A collation the delta's author had; our connection lacks it, but the check must not even try it. */
static int cmp_rev(void *arg, int n1, const void *a, int n2, const void *b)
{
	(void)arg;
	int r = memcmp(b, a, (size_t)(n1 < n2 ? n1 : n2));
	return r ? r : n2 - n1;
}

/* Builds a delta whose sql needs collation "rev". */
static void mkdb_rev(const char *path, const char *sql)
{
	unlink(path);
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		exit(2);
	sqlite3_create_collation(db, "rev", SQLITE_UTF8, NULL, cmp_rev);
	exec_or_die(db, sql);
	if (sqlite3_close(db) != SQLITE_OK)
		exit(2);
}

/* Nothing in a delta's schema may run an expression, and the schema stays within the limits. */
static void test_bounds(sqlite3 *live)
{
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);"
		      "CREATE INDEX e ON lines(length(doc)); INSERT INTO lines VALUES (900, 'x', NULL);",
		      "indexes an expression", "expression index");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);"
		      "CREATE INDEX p ON lines(doc) WHERE id > 5; INSERT INTO lines VALUES (900, 'x', NULL);",
		      "partial index", "partial index");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT CHECK (length(doc) < 99), emb BLOB);"
		      "INSERT INTO lines VALUES (900, 'x', NULL);",
		      "CHECK constraint", "CHECK constraint");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB, CONSTRAINT c check(id > 0));"
		      "INSERT INTO lines VALUES (900, 'x', NULL);",
		      "CHECK constraint", "table CHECK constraint");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT DEFAULT (hex(randomblob(4))), emb BLOB);"
		      "INSERT INTO lines VALUES (900, 'x', NULL);",
		      "DEFAULT expression", "DEFAULT expression");
	expect_reject(live,
		      "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT DEFAULT (1 + 2), emb BLOB);"
		      "INSERT INTO lines VALUES (900, 'x', NULL);",
		      "DEFAULT expression", "DEFAULT arithmetic");
	const char *c = at("coll.db");
	mkdb_rev(c, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT COLLATE rev, emb BLOB);"
		    "INSERT INTO lines VALUES (900, 'x', NULL);");
	expect_reject_file(live, c, "uses collation \"rev\"", "column collation");
	mkdb_rev(c, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB); CREATE INDEX r ON lines(doc COLLATE rev);"
		    "INSERT INTO lines VALUES (900, 'x', NULL);");
	expect_reject_file(live, c, "uses collation \"rev\"", "index collation");
	/* A column named "check" or a string holding CHECK is no constraint. */
	const char *ok = at("words-ok.db");
	mkdb(ok,
	     "CREATE TABLE notes(id INTEGER PRIMARY KEY, \"check\" TEXT DEFAULT 'CHECK (1)', [x check] TEXT COLLATE NOCASE,"
	     " n DEFAULT -1.5e3, b DEFAULT x'00ff', s DEFAULT 'it''s', t DEFAULT CURRENT_TIMESTAMP, z DEFAULT NULL);"
	     "CREATE INDEX n ON notes(\"check\" COLLATE RTRIM); INSERT INTO notes (id, \"check\", [x check]) VALUES (1, 'CHECK', 'y');");
	expect_apply(live, ok, "column named check, literal default, built-in collations");

	/*
	 * A declared type given as a string passes the character filter but
	 * must stay a type in live: no column, no constraint of its own.
	 */
	const char *ty = at("types.db");
	mkdb(ty, "CREATE TABLE typed(id INTEGER PRIMARY KEY, c 'INT, evil BLOB, g AS (abs(-5))', n 'INT NOT NULL',"
		 " d 'DECIMAL(10, 5)'); INSERT INTO typed VALUES (1, '7', NULL, 2.5);");
	expect_apply(live, ty, "declared types that look like SQL");
	CHECK_EQ(q1(live, "SELECT count(*) FROM pragma_table_xinfo('typed')"), 4);
	CHECK_EQ(q1(live,
		    "SELECT count(*) FROM pragma_table_xinfo('typed') WHERE name IN ('evil', 'g')"),
		 0);
	CHECK_EQ(q1(live, "SELECT count(*) FROM typed WHERE n IS NULL AND typeof(c) = 'integer'"), 1);
	CHECK_EQ(q1(live, "SELECT count(*) FROM pragma_table_xinfo('typed') WHERE name = 'c' AND "
			  "type = 'INT, evil BLOB, g AS (abs(-5))'"),
		 1);

	/* Limits: the check's own program must fit its connection's caps. */
	sbuf q = SBUF_INIT;
	for (int i = 0; i <= DELTA_MAX_TABLES; i++)
		sbuf_addf(&q, "CREATE TABLE t%d(id INTEGER PRIMARY KEY);", i);
	expect_reject(live, sbuf_str(&q), "more than 256 tables", "too many tables");
	sbuf_reset(&q);
	sbuf_adds(&q, "CREATE TABLE wide(id INTEGER PRIMARY KEY, a, b, c, d, e, f);");
	for (int i = 0; i <= DELTA_MAX_INDEXES; i++)
		sbuf_addf(&q, "CREATE INDEX w%d ON wide(%c);", i, 'a' + i % 6);
	expect_reject(live, sbuf_str(&q), "more than 512 indexes", "too many indexes");
	sbuf_reset(&q);
	for (int t = 0; t < 5; t++) {
		sbuf_addf(&q, "CREATE TABLE c%d(id INTEGER PRIMARY KEY", t);
		for (int i = 0; i < 1900; i++)
			sbuf_addf(&q, ", c%d", i);
		sbuf_adds(&q, ");");
	}
	expect_reject(live, sbuf_str(&q), "more than 8192 columns", "too many columns");
	/* The poison delta of the hostile test: 1,700 tables, two indexes each. */
	sbuf_reset(&q);
	for (int i = 0; i < 1700; i++)
		sbuf_addf(&q,
			  "CREATE TABLE p%d(id INTEGER PRIMARY KEY, a, b); CREATE INDEX p%da ON p%d(a);"
			  "CREATE INDEX p%db ON p%d(b); INSERT INTO p%d VALUES (1, 'x', 'y');",
			  i, i, i, i, i, i);
	expect_reject(live, sbuf_str(&q), "more than 256 tables", "1,700 tables of the poison delta");
	sbuf_free(&q);

	/* The work budget: a delta costing more than its budget is rejected, with the reason. */
	const char *big = at("budget.db");
	mkdb(big, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);" ROWS_SQL);
	char reason[512];
	exec_or_die(live, "BEGIN IMMEDIATE");
	struct delta_ctl tight = {.budget_base = 1, .budget_per_page = 1};
	int r = delta_check(live, big, &tight, reason, sizeof(reason));
	tap_note("%s reject over budget: %d %s\n",
		 r == 1 && strstr(reason, "work budget") ? "ok  " : "FAIL", r, reason);
	CHECK(r == 1 && strstr(reason, "work budget") != NULL);
	/* The default budget is far above what a real delta needs. */
	CHECK(delta_check(live, big, NULL, reason, sizeof(reason)) == 0);
	/* A stop ends the check at once, neither accepted nor rejected. */
	atomic_bool stop;
	atomic_init(&stop, true);
	struct delta_ctl stopping = {.cancel = &stop};
	r = delta_check(live, big, &stopping, reason, sizeof(reason));
	tap_note("%s stop: %d %s\n", r == -ECANCELED ? "ok  " : "FAIL", r, reason);
	CHECK(r == -ECANCELED);
	exec_or_die(live, "ROLLBACK");
}

/* Appends name as a quoted SQL identifier. */
static void add_quoted(sbuf *q, const char *name)
{
	sbuf_adds(q, "\"");
	for (const char *p = name; *p; p++) {
		sbuf_add(q, p, 1);
		if (*p == '"')
			sbuf_add(q, "\"", 1);
	}
	sbuf_adds(q, "\"");
}

/* Value of column col of the row id = 1 of table t in live, as text ("" if none). */
static const char *cell(sqlite3 *live, const char *t, const char *col, char *buf, size_t len)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT ");
	add_quoted(&q, col);
	sbuf_adds(&q, " FROM main.");
	add_quoted(&q, t);
	sbuf_adds(&q, " WHERE id = 1");
	qs(live, sbuf_str(&q), buf, len);
	sbuf_free(&q);
	return buf;
}

/*
 * Upserts must update, whatever the table and column are called: a table
 * named excluded (any case) once kept its old values while the ledger
 * said the delta was applied.
 */
static void test_names(sqlite3 *live)
{
	static const char *const tables[] = {
		"excluded", "EXCLUDED", "Excluded", "main", "temp", "rowid",
		"oid",      "_rowid_",  "delta",    "a\"b", "[br]", "d.o.t",
		"sp ace",   "ταβλή",    "select",   "\"",   "'q'",
	};
	char v[64], msg[512];
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		const char *t = tables[i];
		sbuf ident = SBUF_INIT;
		add_quoted(&ident, t);
		const char *id = sbuf_str(&ident);
		for (int round = 0; round < 2; round++) {
			sbuf q = SBUF_INIT;
			sbuf_addf(&q,
				  "CREATE TABLE %s(id INTEGER PRIMARY KEY, \"excluded\" TEXT, \"rowid\" TEXT, "
				  "\"x\"\"y\" TEXT, oid TEXT);"
				  "INSERT INTO %s VALUES (1, 'e%d', 'r%d', 'x%d', 'o%d');",
				  id, id, round, round, round, round);
			const char *d = at("names.db");
			mkdb(d, sbuf_str(&q));
			sbuf_free(&q);
			int r = merge(live, d, msg, sizeof(msg));
			if (r)
				fprintf(stderr, "  table %s round %d: %d %s\n", t, round, r, msg);
			CHECK(r == 0);
		}
		bool ok = !strcmp(cell(live, t, "excluded", v, sizeof(v)), "e1") &&
			  !strcmp(cell(live, t, "rowid", v, sizeof(v)), "r1") &&
			  !strcmp(cell(live, t, "x\"y", v, sizeof(v)), "x1") &&
			  !strcmp(cell(live, t, "oid", v, sizeof(v)), "o1");
		tap_note("%s update of table %s\n", ok ? "ok  " : "FAIL", t);
		CHECK(ok);
		sbuf_free(&ident);
	}
}

/* Whether s is well-formed UTF-8 (RFC 3629). */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	while (p < end) {
		size_t n = sbuf_utf8_len(p, end);
		if (n == 0)
			return false;
		p += n;
	}
	return true;
}

/*
 * Reasons go to DELTA.reason, the log and the status JSON: whatever
 * bytes the delta's names hold, a reason is one line of UTF-8 (issue 6,
 * item 13; tests/fuzz/regressions/delta/reason-not-utf8.sql). Bytes that
 * are not UTF-8 read "\xHH", characters that are stay as they are, and a
 * long name is cut between characters.
 */
static void test_reason_utf8(sqlite3 *live)
{
	static const struct {
		const char *name, *want;
	} cases[] = {
		{"t\xff\xfe", "\"t\\xff\\xfe\""},
		{"bad\xc3(\xe2\x82 \xed\xa0\x80 \xf5x",
		 "\"bad\\xc3(\\xe2\\x82 \\xed\\xa0\\x80 \\xf5x\""},
		{"\xce\xb1\xce\xb2\xce\xb3\x80", "\"\xce\xb1\xce\xb2\xce\xb3\\x80\""},
		{"ctl\x01q\"b\\", "\"ctl?q\\\"b\\\\\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sbuf q = SBUF_INIT;
		sbuf_adds(&q, "CREATE TABLE ");
		add_quoted(&q, cases[i].name);
		sbuf_adds(&q, "(a, b); INSERT INTO ");
		add_quoted(&q, cases[i].name);
		sbuf_adds(&q, " VALUES (1, 2);");
		const char *d = at("utf8.db");
		mkdb(d, sbuf_str(&q));
		sbuf_free(&q);
		char reason[512];
		int r = merge(live, d, reason, sizeof(reason));
		bool ok = r == 1 && utf8_valid(reason) && strstr(reason, cases[i].want);
		tap_note("%s reason of table #%zu in UTF-8: %s\n", ok ? "ok  " : "FAIL", i, reason);
		CHECK(r == 1);
		CHECK(utf8_valid(reason));
		CHECK(strstr(reason, cases[i].want) != NULL);
	}

	/* A long name of two-byte characters, and one of raw bytes, are cut between characters. */
	for (int raw = 0; raw < 2; raw++) {
		sbuf name = SBUF_INIT, q = SBUF_INIT;
		sbuf_adds(&name, "x");
		for (int i = 0; i < 100; i++)
			sbuf_adds(&name, raw ? "\xe9" : "\xc3\xa9");
		sbuf_adds(&q, "CREATE TABLE ");
		add_quoted(&q, sbuf_str(&name));
		sbuf_adds(&q, "(a, b);");
		const char *d = at("utf8-long.db");
		mkdb(d, sbuf_str(&q));
		char reason[1024];
		int r = merge(live, d, reason, sizeof(reason));
		bool ok = r == 1 && utf8_valid(reason) &&
			  strstr(reason, raw ? "x\\xe9\\xe9" : "x\xc3\xa9\xc3\xa9") &&
			  strstr(reason, "...\"");
		tap_note("%s long %s name cut in UTF-8: %s\n", ok ? "ok  " : "FAIL",
			 raw ? "raw" : "UTF-8", reason);
		CHECK(ok);
		/* Cut short by the caller's buffer, the reason is still UTF-8. */
		for (size_t len = 20; len < 64; len++) {
			r = merge(live, d, reason, len);
			CHECK(r == 1 && utf8_valid(reason) && strlen(reason) < len);
		}
		sbuf_free(&name);
		sbuf_free(&q);
	}
}

static void test_errors(sqlite3 *live)
{
	char msg[512];
	int r = delta_check(live, at("does-not-exist.db"), NULL, msg, sizeof(msg));
	tap_note("%s missing file: %d %s\n", r == DELTA_RETRY ? "ok  " : "FAIL", r, msg);
	CHECK(r == DELTA_RETRY); /* its own trouble, maybe passing: the compactor counts it */

	const char *d = at("e1.db");
	mkdb(d, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);" ROWS_SQL);
	r = delta_apply(live, d, msg, sizeof(msg));
	CHECK(r == -EINVAL); /* no transaction */
	CHECK(strstr(msg, "no transaction") != NULL);

	/* Disk full while merging: the environment's fault, not the delta's. */
	const char *lp = at("small.db");
	unlink(lp);
	sqlite3 *small = live_open(lp);
	exec_or_die(small, "CREATE TABLE lines(id INTEGER PRIMARY KEY, doc TEXT, emb BLOB);");
	long long pages = q1(small, "PRAGMA page_count");
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", pages + 2);
	exec_or_die(small, sql);
	r = merge(small, d, msg, sizeof(msg));
	tap_note("%s disk full: %d %s\n", r == -ENOSPC ? "ok  " : "FAIL", r, msg);
	CHECK(r == -ENOSPC);
	CHECK(q1(small, "SELECT count(*) FROM lines") == 0);
	CHECK(sqlite3_close(small) == SQLITE_OK);

	/* A live connection without URI names would read the URI as a file name. */
	sqlite3 *nouri = NULL;
	CHECK(sqlite3_open_v2(at("nouri.db"), &nouri, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			      NULL) == SQLITE_OK);
	exec_or_die(nouri, "BEGIN");
	r = delta_apply(nouri, d, msg, sizeof(msg));
	exec_or_die(nouri, "ROLLBACK");
	CHECK(delta_detach(nouri, msg + 256, 256) == 0);
	/* Built with SQLITE_USE_URI (Debian's is) every connection reads URIs, and the attach is fine. */
	bool uri_always = sqlite3_compileoption_used("USE_URI");
	tap_note("%s live without SQLITE_OPEN_URI: %d (USE_URI=%d)\n",
		 (r == 0) == uri_always ? "ok  " : "FAIL", r, uri_always);
	CHECK((r == 0) == uri_always);
	CHECK(sqlite3_close(nouri) == SQLITE_OK);

	/* delta_open_ro on a sealed-like file: nothing appears beside it. */
	sqlite3 *ro = NULL;
	CHECK(delta_open_ro(d, &ro, msg, sizeof(msg)) == 0);
	CHECK(q1(ro, "SELECT count(*) FROM lines") == 400);
	CHECK(sqlite3_exec(ro, "DELETE FROM lines", NULL, NULL, NULL) != SQLITE_OK);
	CHECK(sqlite3_close(ro) == SQLITE_OK);
}

int main(void)
{
	const char *dir = dbtest_dir();
	sqlite3 *live = live_open(at("live.db"));
	/* A ledger as livedb makes, for the deletion-from-ledger case. */
	exec_or_die(live,
		    "CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL,"
		    " name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
	test_good(live);
	test_rejects(live);
	test_bounds(live);
	test_names(live);
	test_reason_utf8(live);
	test_errors(live);
	CHECK(sqlite3_close(live) == SQLITE_OK);
	if (!tap_failed) /* keep the files of a failed run */
		fsx_rm_rf(dir);
	return tap_done();
}
