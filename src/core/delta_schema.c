/*
 * delta_schema — bounds on a delta's schema, checked before anything
 * reads its rows.
 *
 * PRAGMA integrity_check runs whatever expressions the schema holds
 * (CHECK constraints, expression and partial indexes, collations) once
 * per row, and its own program grows with every table, index and column.
 * A small hostile delta could so stall the compactor (one expression
 * index made with writable_schema cost 0.85 s per row) or fail the check
 * with "out of memory" on every attempt. So, before integrity_check:
 *  - the schema must stay within DELTA_MAX_TABLES, DELTA_MAX_INDEXES and
 *    DELTA_MAX_COLUMNS (snapfs(8), LIMITS): within them the check's
 *    program fits the connection's SQLITE_LIMIT_VDBE_OP with room to
 *    spare;
 *  - nothing in it may run an expression: no CHECK constraint, no
 *    DEFAULT (expression), no expression or partial index, no collation
 *    but SQLite's built-in BINARY, NOCASE and RTRIM. (Triggers, views,
 *    virtual tables and generated columns are refused by delta_check.)
 * The merge never uses any of these: tables new to a collection are made
 * from column names and declared types only, and rows are copied with
 * every column named. So refusing them costs a producer nothing but a
 * schema it did not need.
 *
 * Everything here reads the schema through sqlite_schema and the table
 * and index pragmas, which parse but never evaluate the delta's SQL.
 */
#include "delta.h"
#include "delta_i.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One schema object of the delta, as sqlite_schema lists it. */
struct sobj {
	const char *type, *name, *tbl, *sql;
};

/* The built-in collations: any other name is a function the delta would have us call. */
static bool builtin_collation(const char *name)
{
	return !name || !sqlite3_stricmp(name, "BINARY") || !sqlite3_stricmp(name, "NOCASE") ||
	       !sqlite3_stricmp(name, "RTRIM");
}

/*
 * Whether the SQL text holds the keyword word outside string literals,
 * quoted identifiers and comments (so a column named "check" does not
 * count, but a CHECK constraint does).
 */
static bool sql_has_keyword(const char *sql, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = sql; p && *p;) {
		char c = *p;
		if (c == '\'' || c == '"' || c == '`' || c == '[') {
			char close = c == '[' ? ']' : c;
			for (p++; *p; p++) {
				if (*p == close) {
					if (close != ']' && p[1] == close) {
						p++; /* doubled quote: still inside */
						continue;
					}
					break;
				}
			}
			if (*p)
				p++;
		} else if (c == '-' && p[1] == '-') {
			p = strchr(p, '\n');
		} else if (c == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			p = e ? e + 2 : NULL;
		} else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_') {
			const char *s = p;
			while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			       (*p >= '0' && *p <= '9') || *p == '_' || *p == '$' ||
			       (unsigned char)*p >= 0x80)
				p++;
			if ((size_t)(p - s) == wl && !sqlite3_strnicmp(s, word, (int)wl))
				return true;
		} else {
			p++;
		}
	}
	return false;
}

/*
 * Whether a column's default (as pragma table_xinfo shows it, without
 * the parentheses) is a literal: a signed number, a string or blob
 * literal, NULL, TRUE, FALSE or CURRENT_TIME/DATE/TIMESTAMP. Anything
 * else (a function call, an operator) is an expression.
 */
static bool default_is_literal(const char *t)
{
	static const char *const words[] = {"NULL",         "TRUE",         "FALSE",
					    "CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!sqlite3_stricmp(t, words[i]))
			return true;
	const char *p = t;
	if ((p[0] == 'x' || p[0] == 'X') && p[1] == '\'')
		p++;
	if (*p == '\'') {
		/* One quoted literal, '' inside, nothing after it. */
		for (p++; *p; p++)
			if (*p == '\'' && *++p != '\'')
				break;
		return !*p && p[-1] == '\'';
	}
	if (*p == '+' || *p == '-')
		p++;
	size_t digits = strspn(p, "0123456789");
	p += digits;
	if (*p == '.')
		p += 1 + strspn(p + 1, "0123456789");
	if (digits && (*p == 'e' || *p == 'E')) {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		p += strspn(p, "0123456789");
	}
	return digits && !*p;
}

static int sdb_error(sqlite3 *d, int rc, const char *what, char *reason, size_t len)
{
	errbuf_line(reason, len, "%s: %s", what, sqlite3_errmsg(d));
	return delta_file_fault(rc);
}

/* Columns of table t: their count into *ncol; refuses DEFAULT expressions and foreign collations. */
static int table_columns(sqlite3 *d, const char *t, size_t *ncol, char *reason, size_t len)
{
	char q[QN], q2[QN];
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(d, "SELECT name, dflt_value FROM pragma_table_xinfo(?1, 'main')",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sdb_error(d, rc, "describe table", reason, len);
	sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
	int r = 0;
	*ncol = 0;
	while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(st, 0);
		const char *dflt = (const char *)sqlite3_column_text(st, 1);
		(*ncol)++;
		if (dflt && !default_is_literal(dflt)) {
			errbuf_line(reason, len,
				    "table %s column %s has a DEFAULT expression: deltas may not carry expressions "
				    "(a literal default is fine)",
				    delta_qname(q, t), delta_qname(q2, col));
			r = 1;
			break;
		}
		const char *coll = NULL;
		if (col &&
		    sqlite3_table_column_metadata(d, "main", t, col, NULL, &coll, NULL, NULL,
						  NULL) == SQLITE_OK &&
		    !builtin_collation(coll)) {
			char q3[QN];
			errbuf_line(reason, len,
				    "table %s column %s uses collation %s: deltas may use only BINARY, NOCASE and RTRIM",
				    delta_qname(q, t), delta_qname(q2, col), delta_qname(q3, coll));
			r = 1;
		}
	}
	if (!r && rc != SQLITE_DONE)
		r = sdb_error(d, rc, "describe table", reason, len);
	sqlite3_finalize(st);
	return r;
}

/* Every index of table t (explicit or made by a constraint): no expressions, no WHERE, built-in collations. */
static int table_indexes(sqlite3 *d, const char *t, size_t *nidx, char *reason, size_t len)
{
	char q[QN], q2[QN], q3[QN];
	sqlite3_stmt *il = NULL, *ix = NULL;
	int rc = sqlite3_prepare_v2(d, "SELECT name, partial FROM pragma_index_list(?1, 'main')",
				    -1, &il, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(d,
					"SELECT cid, coll FROM pragma_index_xinfo(?1, 'main') WHERE key",
					-1, &ix, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(il);
		return sdb_error(d, rc, "describe indexes", reason, len);
	}
	sqlite3_bind_text(il, 1, t, -1, SQLITE_STATIC);
	int r = 0;
	while (!r && (rc = sqlite3_step(il)) == SQLITE_ROW) {
		const char *idx = (const char *)sqlite3_column_text(il, 0);
		(*nidx)++;
		if (sqlite3_column_int(il, 1)) {
			errbuf_line(reason, len,
				    "index %s on table %s is a partial index (WHERE): deltas may not carry expressions",
				    delta_qname(q, idx), delta_qname(q2, t));
			r = 1;
			break;
		}
		sqlite3_reset(ix);
		sqlite3_bind_text(ix, 1, idx, -1, SQLITE_TRANSIENT);
		while (!r && (rc = sqlite3_step(ix)) == SQLITE_ROW) {
			const char *coll = (const char *)sqlite3_column_text(ix, 1);
			if (sqlite3_column_int(ix, 0) == -2) {
				errbuf_line(reason, len,
					    "index %s on table %s indexes an expression: deltas may not carry expressions",
					    delta_qname(q, idx), delta_qname(q2, t));
				r = 1;
			} else if (!builtin_collation(coll)) {
				errbuf_line(reason, len,
					    "index %s on table %s uses collation %s: deltas may use only BINARY, NOCASE and "
					    "RTRIM",
					    delta_qname(q, idx), delta_qname(q2, t),
					    delta_qname(q3, coll));
				r = 1;
			}
		}
		if (!r && rc != SQLITE_DONE)
			r = sdb_error(d, rc, "describe index", reason, len);
	}
	if (!r && rc != SQLITE_DONE)
		r = sdb_error(d, rc, "describe indexes", reason, len);
	sqlite3_finalize(ix);
	sqlite3_finalize(il);
	return r;
}

int delta_schema_bounds(sqlite3 *d, char *reason, size_t len)
{
	char q[QN];
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		d, "SELECT type, name, tbl_name, sql FROM main.sqlite_schema ORDER BY rowid", -1,
		&st, NULL);
	if (rc != SQLITE_OK)
		return sdb_error(d, rc, "read sqlite_schema", reason, len);
	size_t ntables = 0, nindexes = 0, ncolumns = 0;
	int r = 0;
	while (!r && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sobj o = {
			(const char *)sqlite3_column_text(st, 0),
			(const char *)sqlite3_column_text(st, 1),
			(const char *)sqlite3_column_text(st, 2),
			(const char *)sqlite3_column_text(st, 3),
		};
		if (!o.type || !o.name || strcmp(o.type, "table") ||
		    delta_has_prefix(o.name, DELTA_SQLITE_PREFIX))
			continue; /* indexes are counted with their table; other kinds are delta_check's */
		if (++ntables > DELTA_MAX_TABLES) {
			errbuf_line(reason, len, "has more than %d tables (see LIMITS in snapfs(8))",
				    DELTA_MAX_TABLES);
			r = 1;
			break;
		}
		if (sql_has_keyword(o.sql, "CHECK")) {
			errbuf_line(reason, len,
				    "table %s has a CHECK constraint: deltas may not carry expressions",
				    delta_qname(q, o.name));
			r = 1;
			break;
		}
		size_t nc = 0;
		r = table_columns(d, o.name, &nc, reason, len);
		ncolumns += nc;
		if (!r)
			r = table_indexes(d, o.name, &nindexes, reason, len);
		if (!r && ncolumns > DELTA_MAX_COLUMNS) {
			errbuf_line(reason, len,
				    "has more than %d columns in all its tables (see LIMITS in snapfs(8))",
				    DELTA_MAX_COLUMNS);
			r = 1;
		}
		if (!r && nindexes > DELTA_MAX_INDEXES) {
			errbuf_line(reason, len, "has more than %d indexes (see LIMITS in snapfs(8))",
				    DELTA_MAX_INDEXES);
			r = 1;
		}
	}
	if (!r && rc != SQLITE_DONE)
		r = sdb_error(d, rc, "read sqlite_schema", reason, len);
	sqlite3_finalize(st);
	return r;
}
