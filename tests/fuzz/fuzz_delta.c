/*
 * fuzz_delta — delta_check and delta_apply (core/delta.h): every delta
 * copied into incoming/ is an untrusted SQLite file, checked against the
 * collection's live database and merged into it.
 *
 * An input makes one delta file, two ways:
 *  - it starts with "SQLite format 3": the input is the file, as is
 *    (libFuzzer then mutates real database images, corrupt ones too);
 *  - otherwise it is SQL, up to a NUL byte, run on a fresh in-memory
 *    database whose image (sqlite3_serialize) becomes the file. Bytes
 *    after the NUL are patches, 3 bytes each (offset big-endian 16 bits,
 *    value), applied to that image: valid deltas built from the format
 *    of snapfs(8) (DELTAS, Format), then torn in chosen places. The SQL
 *    cannot touch files (no ATTACH, no VACUUM INTO), cannot run long or
 *    grow big, and cannot ask for randomness or the clock, so every
 *    input replays the same.
 * The file is checked against one live database per process, opened as
 * livedb opens it (URI names, WAL, sqlh_harden) with a fixed schema and
 * a few rows (tables with rowid and WITHOUT ROWID keys, a composite key,
 * a STRICT table with constraints a delta cannot see, a generated
 * column, and a table called "excluded"), inside a transaction rolled
 * back at the end of every input. One input in eight is checked under a
 * work budget the input picks (struct delta_ctl), from a few steps up:
 * running out of it must reject the delta, like any other trouble of
 * its own.
 *
 * Checked besides crashes, leaks and UB:
 *  - delta_check answers 0 or 1, with a one-line reason without control
 *    characters for 1;
 *  - nothing is created beside the delta file (-wal, -shm, -journal);
 *  - a delta that passes merges: delta_apply answers 0 or 1 (a one-line
 *    reason), and after 0 every upserted row is in live with the
 *    delta's values (as live's column types store them), every key
 *    listed for deletion and not upserted again is gone, and a table
 *    new to live has exactly the delta's columns, declared types, key
 *    and rowid-ness;
 *  - delta_detach then succeeds, and the rollback leaves live exactly as
 *    it was (schema and every row).
 * A negative errno or DELTA_RETRY from delta_check or delta_apply is a
 * finding too: nothing here can fail but the delta itself (memory, disk,
 * the file and the live database are fine), so an error that follows
 * from the delta must be a rejection, or the delta would be retried for
 * nothing (issue 6, item 3); and a merge statement failing on a delta
 * the check passed means the check missed something. Reasons must be
 * UTF-8 (issue 6, item 13).
 *
 * Fixed since, inputs in tests/fuzz/regressions/delta/: a table named
 * "excluded" kept its old values (item 5: the upsert's target is now
 * aliased); a declared type from a string token was written into
 * live's CREATE TABLE as SQL, where it either failed (-EIO) or added
 * columns and constraints of the delta's choosing (create_table now
 * writes every type as one string token); and reasons carried the
 * delta's names byte for byte, UTF-8 or not (item 13: delta_qname
 * writes such bytes as "\xHH", errbuf_line keeps every reason UTF-8).
 */
#include "delta.h"
#include "fuzz.h"
#include "sbuf.h"
#include "sqlh.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#define DELTA_FUZZ_MAX_IMAGE (4 << 20) /* a made delta larger than this is not tried */
#define DELTA_FUZZ_STEPS 2000000       /* VM steps the SQL of one input may take */
#define DELTA_FUZZ_MAX_PAGES "64"      /* pages the made delta may have */
#define DELTA_FUZZ_VERIFY_ROWS 2000    /* tables bigger than this are not verified row by row */

static char dir[256], live_path[300], delta_path[300];
static sqlite3 *live;
static char *live_print; /* the fingerprint of live before any input */

static const char live_schema[] =
	"CREATE TABLE _snapfs_ledger(seq INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL,"
	" applied_at INTEGER NOT NULL);"
	"CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);"
	"CREATE INDEX items_body ON items(body);"
	"CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;"
	"CREATE TABLE pairs(a INTEGER, b TEXT, n REAL, PRIMARY KEY(a, b));"
	"CREATE TABLE strict_t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, u TEXT UNIQUE) STRICT;"
	"CREATE TABLE gen(id INTEGER PRIMARY KEY, x INTEGER, twice INTEGER GENERATED ALWAYS AS (x * 2) VIRTUAL);"
	"CREATE TABLE excluded(id INTEGER PRIMARY KEY, v TEXT);"
	"INSERT INTO _snapfs_ledger VALUES (1, '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03',"
	" 'first.db', 1700000000);"
	"INSERT INTO items VALUES (1, 'one'), (2, 'two'), (7, 'seven');"
	"INSERT INTO kv VALUES ('a', x'00ff'), ('b', NULL);"
	"INSERT INTO pairs VALUES (1, 'x', 1.5), (2, 'y', NULL);"
	"INSERT INTO strict_t VALUES (1, 1, 'u1');"
	"INSERT INTO gen(id, x) VALUES (1, 21);"
	"INSERT INTO excluded VALUES (1, 'old'), (2, 'old');";

/* ---- small SQLite helpers ---- */

static void exec_or_die(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	FUZZ_SETUP(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
		   msg ? msg : "?");
}

static void add_ident(sbuf *b, const char *name)
{
	sbuf_adds(b, "\"");
	for (const char *p = name; *p; p++)
		sbuf_adds(b, *p == '"' ? "\"\"" : (char[]){*p, '\0'});
	sbuf_adds(b, "\"");
}

/* First column of the first row of sql as an integer; aborts if sql fails. */
static long long q1(const char *sql)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, sql, -1, &st, NULL);
	FUZZ_CHECK(rc == SQLITE_OK, "verification query does not compile (%s): %s",
		   sqlite3_errmsg(live), sql);
	rc = sqlite3_step(st);
	FUZZ_CHECK(rc == SQLITE_ROW, "verification query fails (%s): %s", sqlite3_errmsg(live), sql);
	long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Every table of live's main schema and every row, as one string. */
static char *fingerprint(void)
{
	sbuf out = SBUF_INIT;
	sqlite3_stmt *st = NULL;
	FUZZ_SETUP(sqlite3_prepare_v2(
			   live,
			   "SELECT type, name, tbl_name, sql FROM main.sqlite_schema ORDER BY name",
			   -1, &st, NULL) == SQLITE_OK,
		   "fingerprint: %s", sqlite3_errmsg(live));
	sbuf tables = SBUF_INIT;
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (int i = 0; i < 4; i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			sbuf_addf(&out, "%s|", t ? (const char *)t : "NULL");
		}
		sbuf_adds(&out, "\n");
		if (!strcmp((const char *)sqlite3_column_text(st, 0), "table")) {
			add_ident(&tables, (const char *)sqlite3_column_text(st, 1));
			sbuf_add(&tables, "", 1); /* NUL-separated */
		}
	}
	sqlite3_finalize(st);
	for (const char *t = tables.buf; t && t < tables.buf + tables.len; t += strlen(t) + 1) {
		sbuf q = SBUF_INIT;
		sbuf_addf(&q, "SELECT * FROM main.%s", t);
		FUZZ_SETUP(sqlite3_prepare_v2(live, q.buf, -1, &st, NULL) == SQLITE_OK,
			   "fingerprint: %s", sqlite3_errmsg(live));
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(st); i++) {
				int type = sqlite3_column_type(st, i);
				const void *b = sqlite3_column_blob(st, i);
				int n = sqlite3_column_bytes(st, i);
				sbuf_addf(&out, "%d:%d:", type, n);
				if (b)
					sbuf_add(&out, b, (size_t)n);
				sbuf_adds(&out, ",");
			}
			sbuf_adds(&out, "\n");
		}
		sqlite3_finalize(st);
		sbuf_free(&q);
	}
	sbuf_free(&tables);
	return sbuf_detach(&out);
}

/* ---- set-up, once per process ---- */

static void remove_dir(const char *d)
{
	DIR *dd = opendir(d);
	if (!dd)
		return;
	struct dirent *de;
	while ((de = readdir(dd))) {
		char p[600];
		if (de->d_name[0] != '.' &&
		    snprintf(p, sizeof(p), "%s/%s", d, de->d_name) < (int)sizeof(p))
			unlink(p);
	}
	closedir(dd);
	rmdir(d);
}

static void cleanup(void)
{
	if (live)
		sqlite3_close(live);
	live = NULL;
	remove_dir(dir);
}

/* Directories of earlier runs that crashed (their process is gone). */
static void remove_stale(const char *base)
{
	DIR *d = opendir(base);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		long pid;
		char p[600];
		if (sscanf(de->d_name, "snapfs-fuzz-delta.%ld", &pid) == 1 && pid > 0 &&
		    kill((pid_t)pid, 0) < 0 && errno == ESRCH &&
		    snprintf(p, sizeof(p), "%s/%s", base, de->d_name) < (int)sizeof(p))
			remove_dir(p);
	}
	closedir(d);
}

static void setup(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
			   : getenv("TMPDIR")            ? getenv("TMPDIR")
							 : "/tmp";
	remove_stale(base);
	snprintf(dir, sizeof(dir), "%s/snapfs-fuzz-delta.%ld", base, (long)getpid());
	snprintf(live_path, sizeof(live_path), "%s/live.db", dir);
	snprintf(delta_path, sizeof(delta_path), "%s/delta.db", dir);
	remove_dir(dir);
	FUZZ_SETUP(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
	atexit(cleanup);

	/* As livedb_open does: URI names (delta_apply attaches by URI), defensive, WAL. */
	FUZZ_SETUP(sqlite3_open_v2(live_path, &live,
				   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
					   SQLITE_OPEN_NOMUTEX,
				   NULL) == SQLITE_OK,
		   "open %s", live_path);
	sqlite3_extended_result_codes(live, 1);
	exec_or_die(live, live_schema);
	sqlh_harden(live); /* as livedb_open does */
	/* synchronous=OFF: nothing here is ever committed, so durability buys nothing but time. */
	exec_or_die(live,
		    "PRAGMA trusted_schema = OFF; PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF");
	live_print = fingerprint();
}

/* ---- making the delta file ---- */

/* What the SQL of an input may do: no files, no clock, no randomness, no limits of its own. */
static int sql_auth(void *arg, int action, const char *a, const char *b, const char *db,
		    const char *trigger)
{
	(void)arg, (void)db, (void)trigger;
	static const char *const pragmas[] = {
		"max_page_count",
		"mmap_size",
		"cache_size",
		"cache_spill",
		"soft_heap_limit",
		"hard_heap_limit",
		"threads",
		"temp_store",
		"temp_store_directory",
		"data_store_directory",
		"journal_mode",
		"locking_mode",
		"journal_size_limit",
		"wal_autocheckpoint",
		"wal_checkpoint",
		NULL,
	};
	static const char *const functions[] = {
		"random",       "randomblob",        "date",           "time",     "datetime",
		"julianday",    "strftime",          "unixepoch",      "timediff", "current_date",
		"current_time", "current_timestamp", "load_extension", NULL,
	};
	const char *const *deny = action == SQLITE_PRAGMA     ? pragmas
				  : action == SQLITE_FUNCTION ? functions
							      : NULL;
	const char *name = action == SQLITE_PRAGMA ? a : b;
	if (action == SQLITE_ATTACH || action == SQLITE_DETACH)
		return SQLITE_DENY;
	for (int i = 0; deny && name && deny[i]; i++) {
		if (!sqlite3_stricmp(name, deny[i])) {
			if (fuzz_verbose())
				fprintf(stderr, "delta SQL: %s %s denied\n",
					action == SQLITE_PRAGMA ? "pragma" : "function", name);
			return SQLITE_DENY;
		}
	}
	return SQLITE_OK;
}

static int sql_progress(void *arg)
{
	return ++*(long *)arg * 1000 > DELTA_FUZZ_STEPS;
}

/*
 * Runs sql statement by statement (a failing one is skipped) on a fresh
 * in-memory database and returns its image (sqlite3_malloc'd), or NULL.
 */
static unsigned char *image_from_sql(const char *sql, sqlite3_int64 *size)
{
	sqlite3 *db = NULL;
	FUZZ_SETUP(sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
				   NULL) == SQLITE_OK,
		   "open :memory:");
	exec_or_die(db, "PRAGMA max_page_count = " DELTA_FUZZ_MAX_PAGES);
	sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
	sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 100000);
	sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 100000);
	sqlite3_limit(db, SQLITE_LIMIT_COLUMN, 100);
	sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 100);
	sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 5);
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
	long ticks = 0;
	sqlite3_progress_handler(db, 1000, sql_progress, &ticks);
	sqlite3_set_authorizer(db, sql_auth, NULL);
	const char *p = sql;
	for (int n = 0; *p && n < 200 && ticks * 1000 <= DELTA_FUZZ_STEPS; n++) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		int rc = sqlite3_prepare_v2(db, p, -1, &st, &tail);
		if (rc != SQLITE_OK && fuzz_verbose())
			fprintf(stderr, "delta SQL: %s\n", sqlite3_errmsg(db));
		if (rc != SQLITE_OK || !tail || tail == p) {
			sqlite3_finalize(st);
			/* Skip to after the next ';' and try again. */
			const char *semi = strchr(p, ';');
			if (!semi)
				break;
			p = semi + 1;
			continue;
		}
		while (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
			;
		if (st && rc != SQLITE_DONE && fuzz_verbose())
			fprintf(stderr, "delta SQL: %s\n", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		p = tail;
	}
	sqlite3_progress_handler(db, 0, NULL, NULL);
	sqlite3_set_authorizer(db, NULL, NULL); /* sqlite3_serialize runs PRAGMA page_count */
	unsigned char *img = sqlite3_serialize(db, "main", size, 0);
	sqlite3_close(db);
	return img;
}

static void write_delta(const unsigned char *buf, size_t len)
{
	int fd = open(delta_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_SETUP(fd >= 0, "open %s: %s", delta_path, strerror(errno));
	FUZZ_SETUP(len == 0 || write(fd, buf, len) == (ssize_t)len, "write %s: %s", delta_path,
		   strerror(errno));
	close(fd);
}

/* Writes the delta file the input describes; false if there is none to try. */
static bool make_delta(const uint8_t *data, size_t size)
{
	static const char magic[] = "SQLite format 3";
	if (size >= sizeof(magic) - 1 && !memcmp(data, magic, sizeof(magic) - 1)) {
		write_delta(data, size);
		return true;
	}
	const uint8_t *nul = memchr(data, '\0', size);
	char *sql = fuzz_strndup(data, nul ? (size_t)(nul - data) : size);
	sqlite3_int64 isz = 0;
	unsigned char *img = image_from_sql(sql, &isz);
	free(sql);
	if (isz == 0) { /* an empty database: a 0-byte file */
		sqlite3_free(img);
		write_delta(NULL, 0);
		return true;
	}
	if (fuzz_verbose())
		fprintf(stderr, "delta image: %lld bytes\n", (long long)isz);
	if (!img || isz <= 0 || isz > DELTA_FUZZ_MAX_IMAGE) {
		sqlite3_free(img);
		return false;
	}
	if (nul) {
		for (const uint8_t *p = nul + 1; p + 3 <= data + size; p += 3) {
			size_t off = ((size_t)p[0] << 8 | p[1]) % (size_t)isz;
			img[off] = p[2];
		}
	}
	write_delta(img, (size_t)isz);
	sqlite3_free(img);
	return true;
}

/* ---- checking the merge ---- */

struct col {
	char *name;
	int pk; /* position in the key, 0 if none */
	int hidden;
};

static size_t load_cols(const char *schema, const char *table, struct col **out)
{
	sqlite3_stmt *st = NULL;
	FUZZ_CHECK(sqlite3_prepare_v2(live, "SELECT name, pk, hidden FROM pragma_table_xinfo(?1, ?2)",
				      -1, &st, NULL) == SQLITE_OK,
		   "table_xinfo: %s", sqlite3_errmsg(live));
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, schema, -1, SQLITE_STATIC);
	size_t n = 0;
	*out = NULL;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct col *c = realloc(*out, (n + 1) * sizeof(*c));
		FUZZ_SETUP(c, "out of memory");
		*out = c;
		const unsigned char *name = sqlite3_column_text(st, 0);
		c[n].name = strdup(name ? (const char *)name : "");
		FUZZ_SETUP(c[n].name, "out of memory");
		c[n].pk = sqlite3_column_int(st, 1);
		c[n].hidden = sqlite3_column_int(st, 2);
		n++;
	}
	sqlite3_finalize(st);
	return n;
}

static void free_cols(struct col *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].name);
	free(c);
}

/* "a"."x" IS "b"."x" AND ... over the columns of c (keys only if keys_only). */
static void add_same(sbuf *q, const struct col *c, size_t n, const char *a, const char *b,
		     bool keys_only)
{
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (keys_only && !c[i].pk)
			continue;
		sbuf_adds(q, any ? " AND " : "");
		sbuf_addf(q, "%s.", a);
		add_ident(q, c[i].name);
		sbuf_addf(q, " IS %s.", b);
		add_ident(q, c[i].name);
		any = true;
	}
	if (!any)
		sbuf_adds(q, "1");
}

/*
 * The rows of delta table t, converted by live's column types, into
 * temp."exp" (created from live's table, so with its column affinities).
 * Returns how many rows; -1 if t is too big to verify.
 */
static long long expected_rows(const char *t, const struct col *dc, size_t nd)
{
	exec_or_die(live, "DROP TABLE IF EXISTS temp.exp");
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT count(*) FROM delta.");
	add_ident(&q, t);
	long long rows = q1(q.buf);
	sbuf_reset(&q);
	if (rows > DELTA_FUZZ_VERIFY_ROWS) {
		sbuf_free(&q);
		return -1;
	}
	sbuf cols = SBUF_INIT;
	for (size_t i = 0; i < nd; i++) {
		if (i)
			sbuf_adds(&cols, ", ");
		add_ident(&cols, dc[i].name);
	}
	sbuf_addf(&q, "CREATE TEMP TABLE exp AS SELECT %s FROM main.", cols.buf);
	add_ident(&q, t);
	sbuf_adds(&q, " WHERE 0");
	exec_or_die(live, q.buf);
	sbuf_reset(&q);
	sbuf_addf(&q, "INSERT INTO temp.exp SELECT %s FROM delta.", cols.buf);
	add_ident(&q, t);
	exec_or_die(live, q.buf);
	sbuf_free(&q);
	sbuf_free(&cols);
	return rows;
}

/* Every upserted row of delta table t is in live, as live's types store it. */
static void verify_upserts(const char *t)
{
	struct col *dc, *lc;
	size_t nd = load_cols("delta", t, &dc), nl = load_cols("main", t, &lc);
	FUZZ_CHECK(nl > 0, "delta_apply merged table \"%s\" but live has no such table", t);
	/* The key as live has it, with the delta's columns (same names, any case). */
	for (size_t i = 0; i < nd; i++)
		for (size_t k = 0; k < nl; k++)
			if (!sqlite3_stricmp(dc[i].name, lc[k].name))
				dc[i].pk = lc[k].pk;
	if (expected_rows(t, dc, nd) >= 0) {
		/* Rows whose key is unique once converted: two rows of the delta may meet in live. */
		sbuf q = SBUF_INIT;
		sbuf_adds(&q,
			  "SELECT count(*) FROM temp.exp e WHERE (SELECT count(*) FROM temp.exp e2 WHERE ");
		add_same(&q, dc, nd, "e2", "e", true);
		sbuf_adds(&q, ") = 1 AND NOT EXISTS (SELECT 1 FROM main.");
		add_ident(&q, t);
		sbuf_adds(&q, " l WHERE ");
		add_same(&q, dc, nd, "l", "e", false);
		sbuf_adds(&q, ")");
		long long missing = q1(q.buf);
		/* A table called "excluded" too (issue 6 item 5, regressions/delta/excluded-*). */
		FUZZ_CHECK(missing == 0,
			   "delta_apply answered 0, but %lld row(s) of table \"%s\" are not in live as the delta has them",
			   missing, t);
		sbuf_free(&q);
	}
	free_cols(dc, nd);
	free_cols(lc, nl);
}

/* No key listed in deletion table d (for live table t) is left in live, unless the delta upserts it again. */
static void verify_deletes(const char *d, const char *t, bool upserted)
{
	struct col *lc;
	size_t nl = load_cols("main", t, &lc);
	if (!nl) {
		free(lc);
		return;
	}
	struct col *dc;
	size_t nd = load_cols("delta", t, &dc);
	if (upserted && expected_rows(t, dc, nd) < 0) {
		free_cols(lc, nl);
		free_cols(dc, nd);
		return;
	}
	sbuf keys = SBUF_INIT;
	int npk = 0;
	for (size_t i = 0; i < nl; i++)
		npk += lc[i].pk > 0;
	for (int k = 1; k <= npk; k++)
		for (size_t i = 0; i < nl; i++)
			if (lc[i].pk == k) {
				sbuf_adds(&keys, k > 1 ? ", " : "");
				add_ident(&keys, lc[i].name);
			}
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT count(*) FROM main.");
	add_ident(&q, t);
	sbuf_addf(&q, " l WHERE (%s) IN (SELECT %s FROM delta.", keys.buf, keys.buf);
	add_ident(&q, d);
	sbuf_adds(&q, ")");
	if (upserted) {
		sbuf_adds(&q, " AND NOT EXISTS (SELECT 1 FROM temp.exp e WHERE ");
		add_same(&q, lc, nl, "l", "e", true);
		sbuf_adds(&q, ")");
	}
	long long left = q1(q.buf);
	FUZZ_CHECK(left == 0,
		   "delta_apply answered 0, but %lld key(s) listed in \"%s\" are still in \"%s\"",
		   left, d, t);
	sbuf_free(&q);
	sbuf_free(&keys);
	free_cols(lc, nl);
	free_cols(dc, nd);
}

static bool has_prefix_nocase(const char *s, const char *p)
{
	return sqlite3_strnicmp(s, p, (int)strlen(p)) == 0;
}

/* A table the merge created has exactly the delta's columns, types, key and rowid-ness; nothing else. */
static void verify_created(const char *t)
{
	static const char sql[] = "SELECT c.cid, c.name, c.type, c.pk, c.hidden,"
				  " (SELECT wr FROM pragma_table_list(?1) WHERE schema = ?2)"
				  " FROM pragma_table_xinfo(?1, ?2) c ORDER BY c.cid";
	sqlite3_stmt *d = NULL, *m = NULL;
	FUZZ_CHECK(sqlite3_prepare_v2(live, sql, -1, &d, NULL) == SQLITE_OK &&
			   sqlite3_prepare_v2(live, sql, -1, &m, NULL) == SQLITE_OK,
		   "describe \"%s\": %s", t, sqlite3_errmsg(live));
	sqlite3_bind_text(d, 1, t, -1, SQLITE_STATIC);
	sqlite3_bind_text(d, 2, "delta", -1, SQLITE_STATIC);
	sqlite3_bind_text(m, 1, t, -1, SQLITE_STATIC);
	sqlite3_bind_text(m, 2, "main", -1, SQLITE_STATIC);
	sbuf a = SBUF_INIT, b = SBUF_INIT;
	sqlite3_stmt *both[2] = {d, m};
	sbuf *out[2] = {&a, &b};
	for (int i = 0; i < 2; i++) {
		while (sqlite3_step(both[i]) == SQLITE_ROW) {
			for (int c = 0; c < 6; c++) {
				const unsigned char *v = sqlite3_column_text(both[i], c);
				sbuf_addf(out[i], "%s|", v ? (const char *)v : "NULL");
			}
			sbuf_adds(out[i], "\n");
		}
		sqlite3_finalize(both[i]);
	}
	/*
	 * A declared type from a string token ('INT, evil BLOB, g AS
	 * (abs(-5))') too (regressions/delta/create-table-*): it once added
	 * columns, generated columns or constraints of the delta's choosing.
	 */
	FUZZ_CHECK(!strcmp(sbuf_str(&a), sbuf_str(&b)),
		   "the merge created \"%s\" unlike the delta's table:\n%s---\n%s", t, sbuf_str(&a),
		   sbuf_str(&b));
	sbuf_free(&a);
	sbuf_free(&b);
}

/* Whether live had table t before any delta (its initial schema, in the fingerprint). */
static bool live_had(const char *t)
{
	static const char *const names[] = {"_snapfs_ledger", "items", "kv",       "pairs",
					    "strict_t",       "gen",   "excluded", NULL};
	for (int i = 0; names[i]; i++)
		if (!sqlite3_stricmp(t, names[i]))
			return true;
	return false;
}

static void verify_merge(void)
{
	sqlite3_stmt *st = NULL;
	FUZZ_CHECK(sqlite3_prepare_v2(
			   live,
			   "SELECT name FROM delta.sqlite_schema WHERE type = 'table' ORDER BY rowid",
			   -1, &st, NULL) == SQLITE_OK,
		   "list the delta's tables: %s", sqlite3_errmsg(live));
	sbuf names = SBUF_INIT;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *n = (const char *)sqlite3_column_text(st, 0);
		if (n && !has_prefix_nocase(n, "sqlite_"))
			sbuf_add(&names, n, strlen(n) + 1);
	}
	sqlite3_finalize(st);
	const char *end = names.buf ? names.buf + names.len : NULL;
	for (const char *n = names.buf; n && n < end; n += strlen(n) + 1) {
		if (has_prefix_nocase(n, "_snapfs_"))
			continue;
		if (!live_had(n))
			verify_created(n);
		verify_upserts(n);
	}
	for (const char *n = names.buf; n && n < end; n += strlen(n) + 1) {
		if (!has_prefix_nocase(n, "_snapfs_delete_"))
			continue;
		const char *t = n + strlen("_snapfs_delete_");
		bool upserted = false;
		for (const char *u = names.buf; u < end; u += strlen(u) + 1)
			upserted = upserted || !sqlite3_stricmp(u, t);
		verify_deletes(n, t, upserted);
	}
	exec_or_die(live, "DROP TABLE IF EXISTS temp.exp");
	sbuf_free(&names);
}

/* ---- the target ---- */

static void check_reason(const char *what, int r, const char *reason)
{
	FUZZ_CHECK(r >= -4095 && r <= DELTA_RETRY, "%s returned %d", what, r);
	if (r == 0)
		return;
	FUZZ_CHECK(reason[0], "%s answered %d without a reason", what, r);
	FUZZ_CHECK(fuzz_one_line(reason),
		   "%s: the reason is not one line without control characters: %s", what, reason);
	/*
	 * The reason goes into DELTA.reason, the log and status JSON. Names
	 * from the delta once went in byte for byte, UTF-8 or not (issue 6
	 * item 13, regressions/delta/reason-not-utf8.sql); delta_qname now
	 * writes bytes that are not UTF-8 as "\xHH".
	 */
	FUZZ_CHECK(fuzz_utf8_valid(reason, strlen(reason)), "%s: the reason is not UTF-8: %s", what,
		   reason);
	/*
	 * Nothing but the delta can fail here, and its file reads fine: a
	 * fault of the delta must reject it, not be retried. From
	 * delta_apply, DELTA_RETRY is a merge statement failing on a delta
	 * delta_check passed (a declared type that was not SQL once made
	 * create_table fail so, regressions/delta/create-table-type-not-sql.sql).
	 */
	FUZZ_CHECK(r == 1,
		   "%s answered %d (%s) for a delta in a sound environment: a fault of the delta must reject it",
		   what, r, reason);
}

static void check_nothing_beside(void)
{
	static const char *const sides[] = {"-wal", "-shm", "-journal"};
	for (size_t i = 0; i < 3; i++) {
		char p[320];
		snprintf(p, sizeof(p), "%s%s", delta_path, sides[i]);
		FUZZ_CHECK(access(p, F_OK) < 0, "%s was created beside the delta", p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	if (!make_delta(data, size))
		return 0;

	char reason[1024], err[1024];
	/* One input in eight under a small budget of the input's choosing: running out must reject. */
	uint64_t h = fuzz_hash(data, size);
	struct delta_ctl ctl = {.budget_base = 1 + (h >> 8) % 200000,
				.budget_per_page = 1 + (h >> 32) % 1000};
	exec_or_die(live, "BEGIN IMMEDIATE");
	int r = delta_check(live, delta_path, h % 8 == 0 ? &ctl : NULL, reason, sizeof(reason));
	if (fuzz_verbose())
		fprintf(stderr, "delta_check: %d %s\n", r, reason);
	check_reason("delta_check", r, reason);
	check_nothing_beside();
	if (r == 0) {
		int a = delta_apply(live, delta_path, err, sizeof(err));
		if (fuzz_verbose())
			fprintf(stderr, "delta_apply: %d %s\n", a, err);
		check_reason("delta_apply", a, err);
		if (a == 0)
			verify_merge();
		check_nothing_beside();
	}
	if (!sqlite3_get_autocommit(live))
		exec_or_die(live, "ROLLBACK");
	int d = delta_detach(live, err, sizeof(err));
	FUZZ_CHECK(d == 0, "delta_detach after ROLLBACK returned %d: %s", d, err);
	FUZZ_CHECK(!sqlite3_db_filename(live, "delta"), "the delta is still attached");
	char *now = fingerprint();
	FUZZ_CHECK(!strcmp(now, live_print), "the rollback left live changed");
	free(now);
	return 0;
}
