/*
 * delta_apply — merges a checked delta into live.
 *
 * Builds every statement itself from column names and declared types,
 * each identifier quoted with "" doubling; the delta is attached
 * read-only and immutable under the schema name "delta", its path bound
 * as a parameter, never spliced into SQL. Runs only inside the caller's
 * transaction on the live connection, which belongs to the compactor
 * thread.
 */
#include "delta.h"
#include "delta_i.h"
#include "sqlh.h"
#include "xalloc.h"

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

/* ------------------------------------------------------------------ */
/* Merge                                                               */

#define ATTACHED "delta" /* schema name of the delta inside live */
#define UPSERT_ALIAS "_snapfs_target"

static int exec_live(sqlite3 *live, const char *sql, char *err, size_t len, const char *what,
		     const char *table)
{
	char *msg = NULL;
	int rc = sqlite3_exec(live, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	char q[QN];
	errbuf_line(err, len, "%s %s: %s", what, delta_qname(q, table),
		    msg ? msg : sqlite3_errmsg(live));
	sqlite3_free(msg);
	return delta_live_fault(sqlite3_extended_errcode(live));
}

static void add_col_list(sbuf *b, const struct table *t, const char *prefix)
{
	for (size_t i = 0; i < t->ncol; i++) {
		if (i)
			sbuf_adds(b, ", ");
		sbuf_adds(b, prefix);
		delta_add_ident(b, t->col[i].name);
	}
}

static void add_key_list(sbuf *b, char *const *pk, size_t npk)
{
	for (size_t i = 0; i < npk; i++) {
		if (i)
			sbuf_adds(b, ", ");
		delta_add_ident(b, pk[i]);
	}
}

/* Appends s as a SQL string literal: 'text' with embedded quotes doubled. */
static void add_string(sbuf *b, const char *s)
{
	sbuf_add(b, "'", 1);
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			sbuf_add(b, "'", 1);
		sbuf_add(b, p, 1);
	}
	sbuf_add(b, "'", 1);
}

/*
 * CREATE TABLE from names, declared types and the key: never the delta's
 * SQL text. A declared type is written as one string token ('INT'),
 * which SQLite takes as the type name whole: the same declared type, so
 * the same affinity and the same INTEGER PRIMARY KEY rowid alias, and
 * nothing in it can become SQL. (Written bare, a type the delta gave as a
 * string, such as 'INT, evil BLOB, g AS (1)', added columns of its
 * choosing; found by fuzz_delta.)
 */
static int create_table(sqlite3 *live, const struct table *t, char *err, size_t len)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "CREATE TABLE main.");
	delta_add_ident(&q, t->name);
	sbuf_adds(&q, " (");
	for (size_t i = 0; i < t->ncol; i++) {
		delta_add_ident(&q, t->col[i].name);
		if (t->col[i].type[0]) {
			sbuf_adds(&q, " ");
			add_string(&q, t->col[i].type);
		}
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
	delta_add_ident(&q, l->name);
	sbuf_adds(&q, " WHERE (");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, ") IN (SELECT ");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, " FROM " ATTACHED ".");
	delta_add_ident(&q, dname);
	sbuf_adds(&q, ")");
	int r = exec_live(live, sbuf_str(&q), err, len, "delete keys listed in", dname);
	sbuf_free(&q);
	return r;
}

static int upsert_rows(sqlite3 *live, const struct table *t, const struct table *l, char *err,
		       size_t len)
{
	sbuf q = SBUF_INIT;
	/*
	 * The target is aliased: in DO UPDATE, "excluded.col" would otherwise
	 * resolve to the target itself for a table named excluded (any case),
	 * and every update would silently keep the old values. The alias
	 * starts with _snapfs_, which no collection table may.
	 */
	sbuf_adds(&q, "INSERT INTO main.");
	delta_add_ident(&q, l->name);
	sbuf_adds(&q, " AS " UPSERT_ALIAS " (");
	add_col_list(&q, t, "");
	sbuf_adds(&q, ") SELECT ");
	add_col_list(&q, t, "");
	sbuf_adds(&q, " FROM " ATTACHED ".");
	delta_add_ident(&q, t->name);
	/* "WHERE true" keeps the parser from reading ON CONFLICT as a join constraint. */
	sbuf_adds(&q, " WHERE true ON CONFLICT (");
	add_key_list(&q, l->pk, l->npk);
	sbuf_adds(&q, ") DO ");
	bool any = false;
	for (size_t i = 0; i < t->ncol; i++) {
		if (t->col[i].pk)
			continue;
		sbuf_adds(&q, any ? ", " : "UPDATE SET ");
		delta_add_ident(&q, t->col[i].name);
		sbuf_adds(&q, " = excluded.");
		delta_add_ident(&q, t->col[i].name);
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
	errbuf_line(err, len, "detach the delta: %s", msg ? msg : sqlite3_errmsg(live));
	sqlite3_free(msg);
	return delta_live_fault(rc) < 0 ? delta_live_fault(rc) : -EBUSY;
}

/* Names of the delta's tables, split into upsert tables and deletion tables. */
static int list_tables(sqlite3 *live, char ***up, size_t *nup, char ***del, size_t *ndel, char *err,
		       size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live,
				    "SELECT name FROM " ATTACHED
				    ".sqlite_schema WHERE type = 'table' ORDER BY rowid",
				    -1, &st, NULL);
	if (rc != SQLITE_OK) {
		errbuf_line(err, len, "list the delta's tables: %s", sqlite3_errmsg(live));
		return delta_live_fault(rc);
	}
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!name || delta_has_prefix(name, DELTA_SQLITE_PREFIX))
			continue;
		bool is_del = delta_has_prefix(name, DELTA_DELETE_PREFIX);
		if (!is_del && delta_has_prefix(name, DELTA_RESERVED_PREFIX))
			continue; /* delta_check rejects these */
		if (*nup + *ndel == cap) {
			cap = cap ? cap * 2 : 16;
			*up = xreallocarray(*up, cap, sizeof(**up));
			*del = xreallocarray(*del, cap, sizeof(**del));
		}
		if (is_del)
			(*del)[(*ndel)++] = xstrdup(name);
		else
			(*up)[(*nup)++] = xstrdup(name);
	}
	int e = rc == SQLITE_DONE ? 0 : delta_live_fault(sqlite3_extended_errcode(live));
	if (e)
		errbuf_line(err, len, "list the delta's tables: %s", sqlite3_errmsg(live));
	sqlite3_finalize(st);
	return e;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int describe(sqlite3 *live, const char *schema, const char *name, struct table *t, char *err,
		    size_t len)
{
	int rc = delta_table_load(live, schema, name, t);
	if (rc == SQLITE_OK)
		return 0;
	char q[QN];
	errbuf_line(err, len, "describe %s.%s: %s", schema, delta_qname(q, name),
		    sqlite3_errmsg(live));
	return delta_live_fault(rc);
}

int delta_apply(sqlite3 *live, const char *path, char *err, size_t len)
{
	if (len)
		err[0] = '\0';
	if (sqlite3_get_autocommit(live)) {
		errbuf_line(err, len, "merge %s: no transaction is open on the live database", path);
		return -EINVAL;
	}
	if (sqlite3_db_filename(live, ATTACHED)) {
		errbuf_line(err, len,
			    "merge %s: a delta is still attached (delta_detach was not called)",
			    path);
		return -EBUSY;
	}
	sbuf uri = SBUF_INIT;
	sqlh_add_uri(&uri, path, "?mode=ro&immutable=1");
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, "ATTACH ?1 AS " ATTACHED, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, sbuf_str(&uri), -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		errbuf_line(err, len, "attach %s: %s", path, sqlite3_errmsg(live));
		sqlite3_finalize(st);
		sbuf_free(&uri);
		int e = delta_live_fault(rc);
		return e < 0 ? e : -EIO;
	}
	sqlite3_finalize(st);
	sbuf_free(&uri);
	/* A live connection opened without SQLITE_OPEN_URI would have read the URI as a file name. */
	if (sqlite3_db_readonly(live, ATTACHED) != 1) {
		errbuf_line(err, len,
			    "attach %s: not attached read-only; open the live database with SQLITE_OPEN_URI",
			    path);
		return -EINVAL;
	}

	char **up = NULL, **del = NULL;
	size_t nup = 0, ndel = 0;
	int r = list_tables(live, &up, &nup, &del, &ndel, err, len);
	struct table *dt = xcalloc(nup, sizeof(*dt));
	struct table *lt = xcalloc(nup, sizeof(*lt));
	/* 1. Tables live lacks. */
	for (size_t i = 0; !r && i < nup; i++) {
		r = describe(live, ATTACHED, up[i], &dt[i], err, len);
		if (!r && !dt[i].npk) {
			char q[QN];
			errbuf_line(err, len, "table %s has no PRIMARY KEY", delta_qname(q, up[i]));
			r = 1; /* delta_check rejects this first */
		}
		if (!r)
			r = describe(live, "main", up[i], &lt[i], err, len);
		if (!r && !lt[i].ncol) {
			r = create_table(live, &dt[i], err, len);
			if (!r) {
				delta_table_free(&lt[i]);
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
			errbuf_line(err, len,
				    "deletion table %s: no keyed table %s in the collection",
				    delta_qname(q, del[i]), delta_qname(q2, target));
			r = 1;
		}
		delta_table_free(&l);
	}
	/* 3. Upserts by primary key. */
	for (size_t i = 0; !r && i < nup; i++)
		r = upsert_rows(live, &dt[i], &lt[i], err, len);

	for (size_t i = 0; i < nup; i++) {
		delta_table_free(&dt[i]);
		delta_table_free(&lt[i]);
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
