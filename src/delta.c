/*
 * delta — checks an untrusted delta database and merges it into live.
 *
 * Guarantees:
 *  - delta_check never executes SQL text taken from the delta. It reads
 *    the file header itself (magic, page size, size == page count * page
 *    size, so a torn or truncated copy is caught before SQLite sees it),
 *    then opens the file read-only and immutable on its own connection
 *    with SQLite's defensive settings, runs PRAGMA integrity_check and
 *    inspects the schema through sqlite_schema and the table pragmas.
 *  - delta_apply builds every statement itself from column names and
 *    declared types, each identifier quoted with "" doubling; the delta
 *    is attached read-only and immutable under the schema name "delta",
 *    its path bound as a parameter, never spliced into SQL.
 *  - Every reason is one line: names are quoted, control characters are
 *    replaced, long names are shortened.
 *
 * Return convention of the static helpers below, as for delta_check:
 * 0 = fine, 1 = the delta is rejected (reason set), negative errno = the
 * check could not run (reason set).
 *
 * Connections: the delta connection opened here lives only for the
 * duration of one delta_check call. The live connection belongs to the
 * caller (the compactor thread, through livedb); this module only runs
 * statements on it inside the caller's transaction.
 */
#include "delta.h"

#include "log.h"
#include "sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DELTA_DELETE_PREFIX "_snapfs_delete_"
#define DELTA_RESERVED_PREFIX "_snapfs_"
#define SQLITE_PREFIX "sqlite_"
#define SAFE_TYPE_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _(),.+-"

/* Room for a quoted, escaped, possibly shortened name in a reason. */
#define QN_MAX_CHARS 64
#define QN (2 * QN_MAX_CHARS + 8)

/* ------------------------------------------------------------------ */
/* Messages                                                            */

/* Formats into buf, then makes it one line: control characters become spaces. */
static void put(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *buf, size_t len, const char *fmt, ...)
{
	if (!len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	for (unsigned char *p = (unsigned char *)buf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/*
 * Writes name into q (QN bytes) as "name": '"' and '\' are escaped,
 * control characters become '?', and a long name is cut with "...".
 */
static const char *qname(char q[QN], const char *name)
{
	size_t o = 0;
	q[o++] = '"';
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++, n++) {
		if (n == QN_MAX_CHARS) {
			memcpy(q + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == '"' || *p == '\\')
			q[o++] = '\\';
		q[o++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
	}
	q[o++] = '"';
	q[o] = '\0';
	return q;
}

/* Appends name as a SQL identifier: "name" with embedded quotes doubled. */
static void add_ident(sbuf *b, const char *name)
{
	sbuf_add(b, "\"", 1);
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			sbuf_add(b, "\"", 1);
		sbuf_add(b, p, 1);
	}
	sbuf_add(b, "\"", 1);
}

/* Appends a comma-separated list of quoted names for a reason (not SQL). */
static void add_name_list(sbuf *b, char *const *names, size_t n)
{
	char q[QN];
	sbuf_adds(b, "(");
	for (size_t i = 0; i < n; i++)
		sbuf_addf(b, "%s%s", i ? ", " : "", qname(q, names[i]));
	sbuf_adds(b, ")");
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
	return sqlite3_strnicmp(s, prefix, (int)strlen(prefix)) == 0;
}

/*
 * Maps a SQLite result code from the delta's connection: resource and
 * I/O failures are ours (negative errno, keep the delta queued); any
 * other error reading the file means the file is bad (reject).
 */
static int delta_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_INTERRUPT:
		return -EINTR;
	case SQLITE_IOERR:
		/* A short read is the file's fault: its size lies. */
		return rc == SQLITE_IOERR_SHORT_READ ? 1 : -EIO;
	default:
		return 1;
	}
}

/*
 * Maps a SQLite result code from live while merging: a constraint of
 * live's table that the delta's rows break is the delta's fault (1);
 * everything else is the environment's (negative errno).
 */
static int live_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_TOOBIG:
	case SQLITE_RANGE:
		return 1;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_INTERRUPT:
		return -EINTR;
	default:
		return -EIO;
	}
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */

/* "file:" + path, percent-encoding every byte outside [A-Za-z0-9/._~-]. */
static void add_uri(sbuf *b, const char *path, const char *query)
{
	static const char hex[] = "0123456789ABCDEF";
	/* "file://" + an absolute path keeps a path starting with "//" from reading as an authority. */
	sbuf_adds(b, path[0] == '/' ? "file://" : "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
		    c == '.' || c == '_' || c == '~' || c == '-') {
			sbuf_add(b, p, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			sbuf_add(b, e, 3);
		}
	}
	sbuf_adds(b, query);
}

static void harden(sqlite3 *db)
{
	sqlite3_extended_result_codes(db, 1);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_ENABLE_TRIGGER
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_ENABLE_VIEW
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_DQS_DDL
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
#endif
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
	/*
	 * Caps for hostile schemas: our own statements are short and attach
	 * nothing on this connection; a schema entry longer than 1 MB or a
	 * deeper expression than this is not a collection table.
	 */
	sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
	sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 1000000);
	sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 100);
	sqlite3_limit(db, SQLITE_LIMIT_COMPOUND_SELECT, 50);
	sqlite3_limit(db, SQLITE_LIMIT_VDBE_OP, 100000);
	sqlite3_limit(db, SQLITE_LIMIT_FUNCTION_ARG, 8);
	sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 1);
	sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 100);
}

int delta_open_ro(const char *path, sqlite3 **out, char *err, size_t len)
{
	*out = NULL;
	sbuf uri = SBUF_INIT;
	add_uri(&uri, path, "?mode=ro&immutable=1");
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(sbuf_str(&uri), &db, flags, NULL);
	sbuf_free(&uri);
	if (rc != SQLITE_OK) {
		put(err, len, "open %s read-only: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return rc == SQLITE_NOMEM ? -ENOMEM : (rc & 0xff) == SQLITE_CANTOPEN ? -ENOENT : -EIO;
	}
	harden(db);
	/*
	 * mmap off: a file truncated under us would raise SIGBUS instead of
	 * an error. cell_size_check: catch malformed cells while reading,
	 * not only in integrity_check. query_only: belt and braces over
	 * mode=ro.
	 */
	char *msg = NULL;
	rc = sqlite3_exec(db,
			  "PRAGMA trusted_schema=OFF; PRAGMA cell_size_check=ON; PRAGMA mmap_size=0;"
			  " PRAGMA query_only=ON;",
			  NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		put(err, len, "configure read-only connection to %s: %s", path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		sqlite3_close(db);
		return delta_fault(rc) < 0 ? delta_fault(rc) : -EIO;
	}
	*out = db;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Header                                                              */

static uint32_t be16(const unsigned char *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Live's text encoding as the header numbers it (1 UTF-8, 2 UTF-16le, 3 UTF-16be), or negative errno. */
static int live_encoding(sqlite3 *live, char *reason, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, "PRAGMA main.encoding", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	int enc = 0;
	if (rc == SQLITE_ROW) {
		const char *e = (const char *)sqlite3_column_text(st, 0);
		enc = !e ? 0 : !strcmp(e, "UTF-8") ? 1 : !strcmp(e, "UTF-16le") ? 2 : !strcmp(e, "UTF-16be") ? 3 : 0;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		put(reason, len, "read the live database's encoding: %s", sqlite3_errmsg(live));
		sqlite3_finalize(st);
		return live_fault(rc) < 0 ? live_fault(rc) : -EIO;
	}
	sqlite3_finalize(st);
	return enc;
}

static const char *encoding_name(uint32_t e)
{
	return e == 1 ? "UTF-8" : e == 2 ? "UTF-16le" : e == 3 ? "UTF-16be" : "unknown";
}

/*
 * Reads the 100-byte header ourselves, before SQLite: a writer that died
 * midway leaves a file shorter than its header says, and SQLite would
 * happily read the pages that are there.
 */
static int check_header(sqlite3 *live, const char *path, char *reason, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP) {
			put(reason, len, "is a symbolic link, not a delta file");
			return 1;
		}
		put(reason, len, "open %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	unsigned char h[100];
	if (fstat(fd, &st) < 0) {
		int e = errno;
		put(reason, len, "stat %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		put(reason, len, "not a regular file");
		return 1;
	}
	long long size = (long long)st.st_size;
	if (size == 0) {
		close(fd);
		put(reason, len, "empty: file is 0 bytes");
		return 1;
	}
	if (size < (long long)sizeof(h)) {
		close(fd);
		put(reason, len, "not a SQLite database: file is %lld bytes, shorter than the 100-byte header", size);
		return 1;
	}
	ssize_t n = pread(fd, h, sizeof(h), 0);
	int e = errno;
	close(fd);
	if (n != (ssize_t)sizeof(h)) {
		put(reason, len, "read the header of %s: %s", path, n < 0 ? strerror(e) : "short read");
		return n < 0 ? -e : -EIO;
	}
	if (memcmp(h, "SQLite format 3", 16) != 0) {
		put(reason, len, "not a SQLite database: the file does not start with \"SQLite format 3\"");
		return 1;
	}
	uint32_t ps = be16(h + 16);
	if (ps == 1)
		ps = 65536;
	if (ps < 512 || ps > 65536 || (ps & (ps - 1))) {
		put(reason, len, "corrupt header: page size %u is not a power of two between 512 and 65536", ps);
		return 1;
	}
	if (h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2) {
		put(reason, len, "unsupported file format (write version %u, read version %u)", h[18], h[19]);
		return 1;
	}
	/* The in-header page count is valid when the change counter matches "version-valid-for". */
	uint32_t pages = be32(h + 28);
	if (pages != 0 && memcmp(h + 24, h + 92, 4) == 0) {
		long long want = (long long)ps * pages;
		if (size < want) {
			put(reason, len, "truncated: file is %lld bytes but its header says %u pages of %u", size, pages,
			    ps);
			return 1;
		}
		if (size > want) {
			put(reason, len, "size mismatch: file is %lld bytes but its header says %u pages of %u", size,
			    pages, ps);
			return 1;
		}
	} else if (size % ps) {
		put(reason, len, "truncated: file is %lld bytes, not a whole number of %u-byte pages", size, ps);
		return 1;
	}
	/* ATTACH refuses a database whose text encoding differs from main's. */
	uint32_t enc = be32(h + 56);
	if (enc != 0) {
		int lenc = live_encoding(live, reason, len);
		if (lenc < 0)
			return lenc;
		if (lenc != 0 && (uint32_t)lenc != enc) {
			put(reason, len, "text encoding %s differs from the collection's %s", encoding_name(enc),
			    encoding_name((uint32_t)lenc));
			return 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Table descriptions                                                  */

struct column {
	char *name;
	char *type; /* declared type, "" if none */
	int pk;	    /* 1-based position in the primary key, 0 if not part of it */
	int hidden; /* table_xinfo: 1 virtual-table hidden, 2/3 generated */
};

struct table {
	char *name;
	struct column *col;
	size_t ncol;
	char **pk; /* primary-key column names, in key order (point into col) */
	size_t npk;
	bool without_rowid;
	char kind[16]; /* table_list type: "table", "view", "virtual", "shadow" */
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->ncol; i++) {
		free(t->col[i].name);
		free(t->col[i].type);
	}
	free(t->col);
	free(t->pk);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort(); /* as sbuf: a few bytes we cannot get are not recoverable */
	return d;
}

/*
 * Describes table name of schema on db. A missing table leaves ncol == 0.
 * Returns a SQLite result code; the message is sqlite3_errmsg(db).
 */
static int table_load(sqlite3 *db, const char *schema, const char *name, struct table *t)
{
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	snprintf(t->kind, sizeof(t->kind), "table");
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1, ?2)", -1, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, schema, -1, SQLITE_STATIC);
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (t->ncol == cap) {
			cap = cap ? cap * 2 : 8;
			struct column *c = realloc(t->col, cap * sizeof(*c));
			if (!c)
				abort();
			t->col = c;
		}
		struct column *c = &t->col[t->ncol++];
		c->name = xstrdup((const char *)sqlite3_column_text(st, 0));
		c->type = xstrdup((const char *)sqlite3_column_text(st, 1));
		c->pk = sqlite3_column_int(st, 2);
		c->hidden = sqlite3_column_int(st, 3);
		if (c->pk > 0)
			t->npk++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return rc;
	if (!t->ncol)
		return SQLITE_OK;
	t->pk = calloc(t->npk ? t->npk : 1, sizeof(*t->pk));
	if (!t->pk)
		abort();
	for (size_t i = 0; i < t->ncol; i++) {
		int k = t->col[i].pk;
		if (k > 0 && (size_t)k <= t->npk)
			t->pk[k - 1] = t->col[i].name;
	}
	for (size_t i = 0; i < t->npk; i++)
		if (!t->pk[i])
			return SQLITE_CORRUPT; /* pk positions not 1..n: cannot happen with a sane SQLite */

	/* What the table really is, and whether it is WITHOUT ROWID (SQLite >= 3.37). */
	rc = sqlite3_prepare_v2(db, "SELECT type, wr FROM pragma_table_list(?1) WHERE schema = ?2", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, schema, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const char *k = (const char *)sqlite3_column_text(st, 0);
			snprintf(t->kind, sizeof(t->kind), "%s", k ? k : "");
			t->without_rowid = sqlite3_column_int(st, 1) != 0;
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_OK;
		}
		sqlite3_finalize(st);
		return rc;
	}
	/* Older SQLite: a WITHOUT ROWID table has no _rowid_ to select. */
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT _rowid_ FROM ");
	add_ident(&q, schema);
	sbuf_adds(&q, ".");
	add_ident(&q, name);
	rc = sqlite3_prepare_v2(db, sbuf_str(&q), -1, &st, NULL);
	t->without_rowid = rc != SQLITE_OK;
	sqlite3_finalize(st);
	sbuf_free(&q);
	return SQLITE_OK;
}

static const struct column *table_column(const struct table *t, const char *name)
{
	for (size_t i = 0; i < t->ncol; i++)
		if (sqlite3_stricmp(t->col[i].name, name) == 0)
			return &t->col[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Schema statements                                                   */

enum sql_kind { SQL_NONE, SQL_TABLE, SQL_VIRTUAL, SQL_INDEX, SQL_VIEW, SQL_TRIGGER, SQL_OTHER };

/* Copies the next keyword-ish word of p (after blanks and comments) into w, upper-cased. */
static const char *next_word(const char *p, char *w, size_t wlen)
{
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");
			p = end ? end + 2 : p + strlen(p);
		} else {
			break;
		}
	}
	size_t n = 0;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
		if (n + 1 < wlen)
			w[n++] = (char)(*p >= 'a' ? *p - 32 : *p);
		p++;
	}
	w[n] = '\0';
	return p;
}

/*
 * What a schema entry's SQL text creates, judged by its first words the
 * way SQLite's parser would read them. SQLite parses that text when it
 * loads the schema, whatever the entry's "type" column says, so the text
 * is what counts.
 */
static enum sql_kind sql_kind(const char *sql)
{
	if (!sql)
		return SQL_NONE;
	char w1[16], w2[16], w3[16];
	const char *p = next_word(sql, w1, sizeof(w1));
	p = next_word(p, w2, sizeof(w2));
	next_word(p, w3, sizeof(w3));
	/* A file cannot hold TEMP objects: anything but CREATE <kind> is suspect. */
	if (strcmp(w1, "CREATE"))
		return SQL_OTHER;
	if (!strcmp(w2, "TABLE"))
		return SQL_TABLE;
	if (!strcmp(w2, "VIRTUAL"))
		return SQL_VIRTUAL;
	if (!strcmp(w2, "INDEX") || (!strcmp(w2, "UNIQUE") && !strcmp(w3, "INDEX")))
		return SQL_INDEX;
	if (!strcmp(w2, "VIEW"))
		return SQL_VIEW;
	if (!strcmp(w2, "TRIGGER"))
		return SQL_TRIGGER;
	return SQL_OTHER;
}

struct entry {
	char *type;
	char *name;
	enum sql_kind kind;
};

struct check {
	sqlite3 *d;    /* the delta, on its own read-only connection */
	sqlite3 *live; /* the caller's live connection, only read here */
	char *reason;
	size_t len;
	struct entry *e; /* sqlite_schema rows, in rowid order */
	size_t ne;
	struct table *t; /* the delta's upsert tables, once described */
	size_t nt;
};

static int reject(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reject(struct check *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(c->reason, c->len, "%s", buf);
	return 1;
}

/* An error of the delta's connection: reject, unless it is resources or I/O. */
static int delta_error(struct check *c, int rc, const char *what)
{
	put(c->reason, c->len, "%s: %s", what, sqlite3_errmsg(c->d));
	return delta_fault(rc);
}

/* An error reading live: never the delta's fault. */
static int live_error(struct check *c, int rc, const char *what)
{
	put(c->reason, c->len, "%s in the live database: %s", what, sqlite3_errmsg(c->live));
	int e = live_fault(rc);
	return e < 0 ? e : -EIO;
}

static int check_integrity(struct check *c)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->d, "PRAGMA integrity_check(1)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return delta_error(c, rc, "integrity_check");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		int r = delta_error(c, rc, "integrity_check");
		sqlite3_finalize(st);
		return r;
	}
	const char *res = (const char *)sqlite3_column_text(st, 0);
	int r = 0;
	if (!res || strcmp(res, "ok") != 0)
		r = reject(c, "integrity_check failed: %s", res ? res : "(no result)");
	sqlite3_finalize(st);
	return r;
}

static int load_schema(struct check *c)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->d, "SELECT type, name, sql FROM main.sqlite_schema ORDER BY rowid", -1, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return delta_error(c, rc, "read sqlite_schema");
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (c->ne == cap) {
			cap = cap ? cap * 2 : 16;
			struct entry *e = realloc(c->e, cap * sizeof(*e));
			if (!e)
				abort();
			c->e = e;
		}
		struct entry *e = &c->e[c->ne++];
		e->type = xstrdup((const char *)sqlite3_column_text(st, 0));
		e->name = xstrdup((const char *)sqlite3_column_text(st, 1));
		e->kind = sql_kind((const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return delta_error(c, rc, "read sqlite_schema");
	return 0;
}

/* Anything executable anywhere in the schema rejects the delta before we look closer. */
static int check_executable(struct check *c)
{
	char q[QN];
	for (size_t i = 0; i < c->ne; i++) {
		const struct entry *e = &c->e[i];
		qname(q, e->name);
		if (!strcmp(e->type, "trigger") || e->kind == SQL_TRIGGER)
			return reject(c, "has trigger %s: deltas may not carry executable schema", q);
		if (!strcmp(e->type, "view") || e->kind == SQL_VIEW)
			return reject(c, "has view %s: deltas may not carry executable schema", q);
		if (e->kind == SQL_VIRTUAL)
			return reject(c, "has virtual table %s: deltas may not carry executable schema", q);
		if (!strcmp(e->type, "table")) {
			if (e->kind != SQL_TABLE && !has_prefix_nocase(e->name, SQLITE_PREFIX))
				return reject(c, "has table %s whose definition is not a CREATE TABLE statement", q);
		} else if (!strcmp(e->type, "index")) {
			if (e->kind != SQL_INDEX && e->kind != SQL_NONE)
				return reject(c, "has index %s whose definition is not a CREATE INDEX statement", q);
		} else {
			char qt[QN];
			return reject(c, "has schema entry %s of unknown type %s", q, qname(qt, e->type));
		}
	}
	return 0;
}

/* Checks what every table (upsert or deletion) must satisfy on its own. */
static int check_table_shape(struct check *c, const struct table *t)
{
	char q[QN], q2[QN], q3[QN];
	qname(q, t->name);
	if (!strcmp(t->kind, "virtual") || !strcmp(t->kind, "shadow"))
		return reject(c, "has virtual table %s: deltas may not carry executable schema", q);
	if (!strcmp(t->kind, "view"))
		return reject(c, "has view %s: deltas may not carry executable schema", q);
	if (strcmp(t->kind, "table"))
		return reject(c, "has table %s of unexpected kind %s", q, qname(q2, t->kind));
	if (!t->ncol)
		return reject(c, "has table %s with no columns", q);
	for (size_t i = 0; i < t->ncol; i++) {
		const struct column *col = &t->col[i];
		qname(q2, col->name);
		if (col->hidden == 2 || col->hidden == 3)
			return reject(c, "table %s has generated column %s: deltas may not carry executable schema",
				      q, q2);
		if (col->hidden)
			return reject(c, "table %s has hidden column %s: deltas may not carry virtual tables", q, q2);
		if (!col->name[0])
			return reject(c, "table %s has a column with an empty name", q);
		if (strspn(col->type, SAFE_TYPE_CHARS) != strlen(col->type))
			return reject(c, "table %s column %s has declared type %s outside [A-Za-z0-9 _(),.+-]", q, q2,
				      qname(q3, col->type));
	}
	return 0;
}

/* Same column names (case-insensitive) and the same primary key, in order. */
static int check_against_live(struct check *c, const struct table *t, const struct table *l)
{
	char q[QN], q2[QN];
	qname(q, t->name);
	for (size_t i = 0; i < t->ncol; i++) {
		const struct column *lc = table_column(l, t->col[i].name);
		if (!lc || lc->hidden)
			return reject(c, "table %s differs from the collection's: column %s is not in the collection's table",
				      q, qname(q2, t->col[i].name));
	}
	for (size_t i = 0; i < l->ncol; i++) {
		if (l->col[i].hidden) /* generated in live: computed there, never written */
			continue;
		if (!table_column(t, l->col[i].name))
			return reject(c, "table %s differs from the collection's: column %s is missing from the delta",
				      q, qname(q2, l->col[i].name));
	}
	bool same = t->npk == l->npk;
	for (size_t i = 0; same && i < t->npk; i++)
		same = sqlite3_stricmp(t->pk[i], l->pk[i]) == 0;
	if (!same) {
		sbuf a = SBUF_INIT, b = SBUF_INIT;
		add_name_list(&a, t->pk, t->npk);
		add_name_list(&b, l->pk, l->npk);
		reject(c, "table %s differs from the collection's: primary key %s, the collection's is %s", q,
		       sbuf_str(&a), sbuf_str(&b));
		sbuf_free(&a);
		sbuf_free(&b);
		return 1;
	}
	return 0;
}

/* A row whose key holds NULL cannot be upserted by key: each apply would add another copy. */
static int check_null_keys(struct check *c, const struct table *t)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT 1 FROM main.");
	add_ident(&q, t->name);
	for (size_t i = 0; i < t->npk; i++) {
		sbuf_adds(&q, i ? " OR " : " WHERE ");
		add_ident(&q, t->pk[i]);
		sbuf_adds(&q, " IS NULL");
	}
	sbuf_adds(&q, " LIMIT 1");
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->d, sbuf_str(&q), -1, &st, NULL);
	sbuf_free(&q);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	char qn[QN];
	if (rc == SQLITE_ROW)
		return reject(c, "table %s has a row with NULL in its primary key", qname(qn, t->name));
	if (rc != SQLITE_DONE)
		return delta_error(c, rc, "scan primary keys");
	return 0;
}

/* A table new to the collection must not take a name live already uses for something else (an index). */
static int check_name_free(struct check *c, const char *name)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->live, "SELECT type FROM main.sqlite_schema WHERE name = ?1 COLLATE NOCASE", -1,
				    &st, NULL);
	if (rc != SQLITE_OK)
		return live_error(c, rc, "read sqlite_schema");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	int r = 0;
	char q[QN], q2[QN];
	if (rc == SQLITE_ROW)
		r = reject(c, "table %s is new to the collection, but the collection already has an object of that name (%s)",
			   qname(q, name), qname(q2, (const char *)sqlite3_column_text(st, 0)));
	else if (rc != SQLITE_DONE)
		r = live_error(c, rc, "read sqlite_schema");
	sqlite3_finalize(st);
	return r;
}

static const struct table *delta_table(const struct check *c, const char *name)
{
	for (size_t i = 0; i < c->nt; i++)
		if (sqlite3_stricmp(c->t[i].name, name) == 0)
			return &c->t[i];
	return NULL;
}

static int check_upsert_table(struct check *c, const char *name)
{
	struct table *t = &c->t[c->nt];
	int rc = table_load(c->d, "main", name, t);
	c->nt++; /* owned by c from here, freed with it */
	if (rc != SQLITE_OK)
		return delta_error(c, rc, "describe table");
	int r = check_table_shape(c, t);
	if (r)
		return r;
	char q[QN];
	if (!t->npk)
		return reject(c, "table %s has no PRIMARY KEY: rows of a rowid-only table cannot be upserted",
			      qname(q, name));
	struct table l;
	rc = table_load(c->live, "main", name, &l);
	if (rc != SQLITE_OK) {
		table_free(&l);
		return live_error(c, rc, "describe table");
	}
	if (!l.ncol) {
		r = check_name_free(c, name);
	} else {
		if (strcmp(l.kind, "table")) {
			table_free(&l);
			return reject(c, "table %s names something that is not a table in the collection",
				      qname(q, name));
		}
		r = check_against_live(c, t, &l);
	}
	table_free(&l);
	return r ? r : check_null_keys(c, t);
}

static int check_delete_table(struct check *c, const char *name)
{
	char q[QN], q2[QN];
	const char *target = name + strlen(DELTA_DELETE_PREFIX);
	qname(q, name);
	qname(q2, target);
	if (!*target || has_prefix_nocase(target, SQLITE_PREFIX) || has_prefix_nocase(target, DELTA_RESERVED_PREFIX))
		return reject(c, "has deletion table %s: %s is not a collection table", q, q2);
	struct table dt;
	int rc = table_load(c->d, "main", name, &dt);
	if (rc != SQLITE_OK) {
		table_free(&dt);
		return delta_error(c, rc, "describe table");
	}
	int r = check_table_shape(c, &dt);
	struct table l = {0};
	const struct table *t = delta_table(c, target);
	if (!r && !t) {
		rc = table_load(c->live, "main", target, &l);
		if (rc != SQLITE_OK)
			r = live_error(c, rc, "describe table");
		else if (!l.ncol || strcmp(l.kind, "table"))
			r = reject(c, "has deletion table %s for %s, which neither the delta nor the collection has",
				   q, q2);
		else if (!l.npk)
			r = reject(c, "has deletion table %s for %s, which has no PRIMARY KEY in the collection", q,
				   q2);
		t = &l;
	}
	if (!r) {
		bool same = dt.ncol == t->npk;
		for (size_t i = 0; same && i < dt.ncol; i++) {
			same = false;
			for (size_t k = 0; k < t->npk; k++)
				same = same || sqlite3_stricmp(dt.col[i].name, t->pk[k]) == 0;
		}
		if (!same) {
			sbuf a = SBUF_INIT, b = SBUF_INIT;
			char **names = calloc(dt.ncol ? dt.ncol : 1, sizeof(*names));
			if (!names)
				abort();
			for (size_t i = 0; i < dt.ncol; i++)
				names[i] = dt.col[i].name;
			add_name_list(&a, names, dt.ncol);
			add_name_list(&b, t->pk, t->npk);
			r = reject(c, "deletion table %s has columns %s, but the primary key of %s is %s", q,
				   sbuf_str(&a), q2, sbuf_str(&b));
			free(names);
			sbuf_free(&a);
			sbuf_free(&b);
		}
	}
	table_free(&l);
	table_free(&dt);
	return r;
}

static int check_schema(struct check *c)
{
	int r = load_schema(c);
	if (!r)
		r = check_executable(c);
	if (r)
		return r;
	c->t = calloc(c->ne ? c->ne : 1, sizeof(*c->t));
	if (!c->t)
		abort();
	char q[QN];
	/* Upsert tables first: deletion tables are checked against them. */
	for (size_t i = 0; !r && i < c->ne; i++) {
		const char *name = c->e[i].name;
		if (strcmp(c->e[i].type, "table") || has_prefix_nocase(name, SQLITE_PREFIX))
			continue;
		if (has_prefix_nocase(name, DELTA_RESERVED_PREFIX)) {
			if (!has_prefix_nocase(name, DELTA_DELETE_PREFIX))
				r = reject(c, "has table %s: names starting with _snapfs_ are reserved, except %sTABLE",
					   qname(q, name), DELTA_DELETE_PREFIX);
			continue;
		}
		r = check_upsert_table(c, name);
	}
	for (size_t i = 0; !r && i < c->ne; i++)
		if (!strcmp(c->e[i].type, "table") && has_prefix_nocase(c->e[i].name, DELTA_DELETE_PREFIX))
			r = check_delete_table(c, c->e[i].name);
	return r;
}

int delta_check(sqlite3 *live, const char *path, char *reason, size_t len)
{
	if (len)
		reason[0] = '\0';
	int r = check_header(live, path, reason, len);
	if (r)
		return r;
	struct check c = {.live = live, .reason = reason, .len = len};
	r = delta_open_ro(path, &c.d, reason, len);
	if (r)
		return r;
	r = check_integrity(&c);
	if (!r)
		r = check_schema(&c);
	for (size_t i = 0; i < c.ne; i++) {
		free(c.e[i].type);
		free(c.e[i].name);
	}
	free(c.e);
	for (size_t i = 0; i < c.nt; i++)
		table_free(&c.t[i]);
	free(c.t);
	/* Every statement above is finalized on every path, so this close cannot be busy. */
	if (sqlite3_close(c.d) != SQLITE_OK)
		log_err("delta %s: closing the check connection failed: %s", path, sqlite3_errmsg(c.d));
	return r;
}

/* ------------------------------------------------------------------ */
/* Merge                                                               */

#define ATTACHED "delta" /* schema name of the delta inside live */

static int exec_live(sqlite3 *live, const char *sql, char *err, size_t len, const char *what, const char *table)
{
	char *msg = NULL;
	int rc = sqlite3_exec(live, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	char q[QN];
	put(err, len, "%s %s: %s", what, qname(q, table), msg ? msg : sqlite3_errmsg(live));
	sqlite3_free(msg);
	return live_fault(sqlite3_extended_errcode(live));
}

static void add_col_list(sbuf *b, const struct table *t, const char *prefix)
{
	for (size_t i = 0; i < t->ncol; i++) {
		if (i)
			sbuf_adds(b, ", ");
		sbuf_adds(b, prefix);
		add_ident(b, t->col[i].name);
	}
}

static void add_key_list(sbuf *b, char *const *pk, size_t npk)
{
	for (size_t i = 0; i < npk; i++) {
		if (i)
			sbuf_adds(b, ", ");
		add_ident(b, pk[i]);
	}
}

/* CREATE TABLE from names, declared types and the key: never the delta's SQL text. */
static int create_table(sqlite3 *live, const struct table *t, char *err, size_t len)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "CREATE TABLE main.");
	add_ident(&q, t->name);
	sbuf_adds(&q, " (");
	for (size_t i = 0; i < t->ncol; i++) {
		add_ident(&q, t->col[i].name);
		if (t->col[i].type[0])
			sbuf_addf(&q, " %s", t->col[i].type); /* checked against SAFE_TYPE_CHARS */
		sbuf_adds(&q, ", ");
	}
	sbuf_adds(&q, "PRIMARY KEY (");
	add_key_list(&q, t->pk, t->npk);
	sbuf_adds(&q, t->without_rowid ? ")) WITHOUT ROWID" : "))");
	int r = exec_live(live, sbuf_str(&q), err, len, "create table", t->name);
	sbuf_free(&q);
	return r;
}

static int delete_keys(sqlite3 *live, const char *dname, const struct table *l, char *err, size_t len)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "DELETE FROM main.");
	add_ident(&q, l->name);
	sbuf_adds(&q, " WHERE (");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, ") IN (SELECT ");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, " FROM " ATTACHED ".");
	add_ident(&q, dname);
	sbuf_adds(&q, ")");
	int r = exec_live(live, sbuf_str(&q), err, len, "delete keys listed in", dname);
	sbuf_free(&q);
	return r;
}

static int upsert_rows(sqlite3 *live, const struct table *t, const struct table *l, char *err, size_t len)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "INSERT INTO main.");
	add_ident(&q, l->name);
	sbuf_adds(&q, " (");
	add_col_list(&q, t, "");
	sbuf_adds(&q, ") SELECT ");
	add_col_list(&q, t, "");
	sbuf_adds(&q, " FROM " ATTACHED ".");
	add_ident(&q, t->name);
	/* "WHERE true" keeps the parser from reading ON CONFLICT as a join constraint. */
	sbuf_adds(&q, " WHERE true ON CONFLICT (");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, ") DO ");
	bool any = false;
	for (size_t i = 0; i < t->ncol; i++) {
		if (t->col[i].pk)
			continue;
		sbuf_adds(&q, any ? ", " : "UPDATE SET ");
		add_ident(&q, t->col[i].name);
		sbuf_adds(&q, " = excluded.");
		add_ident(&q, t->col[i].name);
		any = true;
	}
	if (!any)
		sbuf_adds(&q, "NOTHING");
	int r = exec_live(live, sbuf_str(&q), err, len, "upsert rows of", t->name);
	sbuf_free(&q);
	return r;
}

int delta_detach(sqlite3 *live, char *err, size_t len)
{
	if (!sqlite3_db_filename(live, ATTACHED))
		return 0;
	char *msg = NULL;
	int rc = sqlite3_exec(live, "DETACH " ATTACHED, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	put(err, len, "detach the delta: %s", msg ? msg : sqlite3_errmsg(live));
	sqlite3_free(msg);
	return live_fault(rc) < 0 ? live_fault(rc) : -EBUSY;
}

/* Names of the delta's tables, split into upsert tables and deletion tables. */
static int list_tables(sqlite3 *live, char ***up, size_t *nup, char ***del, size_t *ndel, char *err, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, "SELECT name FROM " ATTACHED ".sqlite_schema WHERE type = 'table' ORDER BY rowid",
				    -1, &st, NULL);
	if (rc != SQLITE_OK) {
		put(err, len, "list the delta's tables: %s", sqlite3_errmsg(live));
		return live_fault(rc);
	}
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!name || has_prefix_nocase(name, SQLITE_PREFIX))
			continue;
		bool is_del = has_prefix_nocase(name, DELTA_DELETE_PREFIX);
		if (!is_del && has_prefix_nocase(name, DELTA_RESERVED_PREFIX))
			continue; /* delta_check rejects these */
		if (*nup + *ndel == cap) {
			cap = cap ? cap * 2 : 16;
			char **a = realloc(*up, cap * sizeof(*a));
			char **b = realloc(*del, cap * sizeof(*b));
			if (!a || !b)
				abort();
			*up = a;
			*del = b;
		}
		if (is_del)
			(*del)[(*ndel)++] = xstrdup(name);
		else
			(*up)[(*nup)++] = xstrdup(name);
	}
	int e = rc == SQLITE_DONE ? 0 : live_fault(sqlite3_extended_errcode(live));
	if (e)
		put(err, len, "list the delta's tables: %s", sqlite3_errmsg(live));
	sqlite3_finalize(st);
	return e;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int describe(sqlite3 *live, const char *schema, const char *name, struct table *t, char *err, size_t len)
{
	int rc = table_load(live, schema, name, t);
	if (rc == SQLITE_OK)
		return 0;
	char q[QN];
	put(err, len, "describe %s.%s: %s", schema, qname(q, name), sqlite3_errmsg(live));
	return live_fault(rc);
}

int delta_apply(sqlite3 *live, const char *path, char *err, size_t len)
{
	if (len)
		err[0] = '\0';
	if (sqlite3_get_autocommit(live)) {
		put(err, len, "merge %s: no transaction is open on the live database", path);
		return -EINVAL;
	}
	if (sqlite3_db_filename(live, ATTACHED)) {
		put(err, len, "merge %s: a delta is still attached (delta_detach was not called)", path);
		return -EBUSY;
	}
	sbuf uri = SBUF_INIT;
	add_uri(&uri, path, "?mode=ro&immutable=1");
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, "ATTACH ?1 AS " ATTACHED, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, sbuf_str(&uri), -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		put(err, len, "attach %s: %s", path, sqlite3_errmsg(live));
		sqlite3_finalize(st);
		sbuf_free(&uri);
		int e = live_fault(rc);
		return e < 0 ? e : -EIO;
	}
	sqlite3_finalize(st);
	sbuf_free(&uri);
	/* A live connection opened without SQLITE_OPEN_URI would have read the URI as a file name. */
	if (sqlite3_db_readonly(live, ATTACHED) != 1) {
		put(err, len, "attach %s: not attached read-only; open the live database with SQLITE_OPEN_URI", path);
		return -EINVAL;
	}

	char **up = NULL, **del = NULL;
	size_t nup = 0, ndel = 0;
	int r = list_tables(live, &up, &nup, &del, &ndel, err, len);
	struct table *dt = calloc(nup ? nup : 1, sizeof(*dt));
	struct table *lt = calloc(nup ? nup : 1, sizeof(*lt));
	if (!dt || !lt)
		abort();
	/* 1. Tables live lacks. */
	for (size_t i = 0; !r && i < nup; i++) {
		r = describe(live, ATTACHED, up[i], &dt[i], err, len);
		if (!r && !dt[i].npk) {
			char q[QN];
			put(err, len, "table %s has no PRIMARY KEY", qname(q, up[i]));
			r = 1; /* delta_check rejects this first */
		}
		if (!r)
			r = describe(live, "main", up[i], &lt[i], err, len);
		if (!r && !lt[i].ncol) {
			r = create_table(live, &dt[i], err, len);
			if (!r) {
				table_free(&lt[i]);
				r = describe(live, "main", up[i], &lt[i], err, len);
			}
		}
	}
	/* 2. Deletions, before any upsert. */
	for (size_t i = 0; !r && i < ndel; i++) {
		struct table l;
		const char *target = del[i] + strlen(DELTA_DELETE_PREFIX);
		r = describe(live, "main", target, &l, err, len);
		if (!r && l.npk)
			r = delete_keys(live, del[i], &l, err, len);
		else if (!r) {
			char q[QN];
			char q2[QN];
			put(err, len, "deletion table %s: no keyed table %s in the collection", qname(q, del[i]),
			    qname(q2, target));
			r = 1;
		}
		table_free(&l);
	}
	/* 3. Upserts by primary key. */
	for (size_t i = 0; !r && i < nup; i++)
		r = upsert_rows(live, &dt[i], &lt[i], err, len);

	for (size_t i = 0; i < nup; i++) {
		table_free(&dt[i]);
		table_free(&lt[i]);
	}
	free(dt);
	free(lt);
	free_names(up, nup);
	free_names(del, ndel);
	/*
	 * The delta stays attached: SQLite refuses to DETACH a database the
	 * open transaction has read. The caller detaches after COMMIT or
	 * ROLLBACK (delta_detach).
	 */
	return r;
}
