/*
 * delta_check — decides whether an untrusted delta may be merged.
 *
 * Never executes SQL text taken from the delta. After its file header
 * (delta_header.c), it opens the file
 * read-only and immutable on its own connection with SQLite's defensive
 * settings, runs PRAGMA integrity_check and inspects the schema through
 * sqlite_schema and the table pragmas. Every reason is one line: names
 * are quoted, control characters replaced, long names shortened.
 *
 * Connections: the delta connection opened here lives from
 * delta_check_begin to delta_check_finish (one delta_check call), used by
 * one thread at a time: the caller's, then whichever finishes the check.
 * The live connection belongs to the caller (the compactor thread,
 * through livedb); it is only read here, and only by delta_check_begin.
 */
#include "delta.h"
#include "delta_i.h"
#include "xalloc.h"

/* The delta connection's progress handler runs every this many virtual-machine steps. */
#define DELTA_STEPS 1000

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

/* Appends a comma-separated list of quoted names for a reason (not SQL). */
static void add_name_list(sbuf *b, char *const *names, size_t n)
{
	char q[QN];
	sbuf_adds(b, "(");
	for (size_t i = 0; i < n; i++)
		sbuf_addf(b, "%s%s", i ? ", " : "", delta_qname(q, names[i]));
	sbuf_adds(b, ")");
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

struct delta_checker {
	sqlite3 *d;    /* the delta, on its own read-only connection */
	sqlite3 *live; /* the caller's live connection, only read here */
	char *reason;
	size_t len;
	const atomic_bool *cancel; /* the caller's stop flag, or NULL */
	uint64_t budget;           /* progress-handler calls allowed (each DELTA_STEPS steps) */
	uint64_t calls;
	bool over_budget;
	struct entry *e; /* sqlite_schema rows, in rowid order */
	size_t ne;
	struct table *t; /* the delta's upsert tables, once described */
	size_t nt;
};

static int reject(struct delta_checker *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int reject(struct delta_checker *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	errbuf_line(c->reason, c->len, "%s", buf);
	return 1;
}

/* An error of the delta's connection: the delta's doing (see delta_file_fault), or a stop. */
static int delta_error(struct delta_checker *c, int rc, const char *what)
{
	if ((rc & 0xff) == SQLITE_INTERRUPT && c->over_budget)
		return reject(c,
			      "%s: took more than %llu steps, the work budget of a delta of this size (see LIMITS in "
			      "snapfs(8))",
			      what, (unsigned long long)(c->budget * DELTA_STEPS));
	if ((rc & 0xff) == SQLITE_INTERRUPT) {
		errbuf_line(c->reason, c->len, "%s: stopped (snapfs is shutting down)", what);
		return -ECANCELED;
	}
	if ((rc & 0xff) == SQLITE_NOMEM || (rc & 0xff) == SQLITE_TOOBIG)
		return reject(c,
			      "%s: %s: the delta exceeds what its checks may use (see LIMITS in snapfs(8))",
			      what, sqlite3_errmsg(c->d));
	errbuf_line(c->reason, c->len, "%s: %s", what, sqlite3_errmsg(c->d));
	return delta_file_fault(rc);
}

/*
 * Progress handler of the delta's connection, every DELTA_STEPS virtual
 * machine steps: stops the statement when the caller is stopping or the
 * budget is spent. Both end in SQLITE_INTERRUPT, told apart by delta_error.
 */
static int check_progress(void *arg)
{
	struct delta_checker *c = arg;
	if (c->cancel && atomic_load(c->cancel))
		return 1;
	if (++c->calls > c->budget) {
		c->over_budget = true;
		return 1;
	}
	return 0;
}

/* An error reading live: never the delta's fault. */
static int live_error(struct delta_checker *c, int rc, const char *what)
{
	errbuf_line(c->reason, c->len, "%s in the live database: %s", what, sqlite3_errmsg(c->live));
	int e = delta_live_fault(rc);
	return e < 0 ? e : -EIO;
}

static int check_integrity(struct delta_checker *c)
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

static int load_schema(struct delta_checker *c)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->d,
				    "SELECT type, name, sql FROM main.sqlite_schema ORDER BY rowid",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return delta_error(c, rc, "read sqlite_schema");
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (c->ne == cap) {
			cap = cap ? cap * 2 : 16;
			c->e = xreallocarray(c->e, cap, sizeof(*c->e));
		}
		struct entry *e = &c->e[c->ne++];
		e->type = delta_strdup_or_empty((const char *)sqlite3_column_text(st, 0));
		e->name = delta_strdup_or_empty((const char *)sqlite3_column_text(st, 1));
		e->kind = sql_kind((const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return delta_error(c, rc, "read sqlite_schema");
	return 0;
}

/* Anything executable anywhere in the schema rejects the delta before we look closer. */
static int check_executable(struct delta_checker *c)
{
	char q[QN];
	for (size_t i = 0; i < c->ne; i++) {
		const struct entry *e = &c->e[i];
		delta_qname(q, e->name);
		if (!strcmp(e->type, "trigger") || e->kind == SQL_TRIGGER)
			return reject(c, "has trigger %s: deltas may not carry executable schema", q);
		if (!strcmp(e->type, "view") || e->kind == SQL_VIEW)
			return reject(c, "has view %s: deltas may not carry executable schema", q);
		if (e->kind == SQL_VIRTUAL)
			return reject(c,
				      "has virtual table %s: deltas may not carry executable schema",
				      q);
		if (!strcmp(e->type, "table")) {
			if (e->kind != SQL_TABLE && !delta_has_prefix(e->name, DELTA_SQLITE_PREFIX))
				return reject(c,
					      "has table %s whose definition is not a CREATE TABLE statement",
					      q);
		} else if (!strcmp(e->type, "index")) {
			if (e->kind != SQL_INDEX && e->kind != SQL_NONE)
				return reject(c,
					      "has index %s whose definition is not a CREATE INDEX statement",
					      q);
		} else {
			char qt[QN];
			return reject(c, "has schema entry %s of unknown type %s", q,
				      delta_qname(qt, e->type));
		}
	}
	return 0;
}

/* Checks what every table (upsert or deletion) must satisfy on its own. */
static int check_table_shape(struct delta_checker *c, const struct table *t)
{
	char q[QN], q2[QN], q3[QN];
	delta_qname(q, t->name);
	if (!strcmp(t->kind, "virtual") || !strcmp(t->kind, "shadow"))
		return reject(c, "has virtual table %s: deltas may not carry executable schema", q);
	if (!strcmp(t->kind, "view"))
		return reject(c, "has view %s: deltas may not carry executable schema", q);
	if (strcmp(t->kind, "table"))
		return reject(c, "has table %s of unexpected kind %s", q, delta_qname(q2, t->kind));
	if (!t->ncol)
		return reject(c, "has table %s with no columns", q);
	for (size_t i = 0; i < t->ncol; i++) {
		const struct column *col = &t->col[i];
		delta_qname(q2, col->name);
		if (col->hidden == 2 || col->hidden == 3)
			return reject(c,
				      "table %s has generated column %s: deltas may not carry executable schema",
				      q, q2);
		if (col->hidden)
			return reject(c,
				      "table %s has hidden column %s: deltas may not carry virtual tables",
				      q, q2);
		if (!col->name[0])
			return reject(c, "table %s has a column with an empty name", q);
		if (strspn(col->type, DELTA_SAFE_TYPE_CHARS) != strlen(col->type))
			return reject(c,
				      "table %s column %s has declared type %s outside [A-Za-z0-9 _(),.+-]",
				      q, q2, delta_qname(q3, col->type));
	}
	return 0;
}

/* Same column names (case-insensitive) and the same primary key, in order. */
static int check_against_live(struct delta_checker *c, const struct table *t, const struct table *l)
{
	char q[QN], q2[QN];
	delta_qname(q, t->name);
	for (size_t i = 0; i < t->ncol; i++) {
		const struct column *lc = delta_table_column(l, t->col[i].name);
		if (!lc || lc->hidden)
			return reject(c,
				      "table %s differs from the collection's: column %s is not in the collection's table",
				      q, delta_qname(q2, t->col[i].name));
	}
	for (size_t i = 0; i < l->ncol; i++) {
		if (l->col[i].hidden) /* generated in live: computed there, never written */
			continue;
		if (!delta_table_column(t, l->col[i].name))
			return reject(c,
				      "table %s differs from the collection's: column %s is missing from the delta",
				      q, delta_qname(q2, l->col[i].name));
	}
	bool same = t->npk == l->npk;
	for (size_t i = 0; same && i < t->npk; i++)
		same = sqlite3_stricmp(t->pk[i], l->pk[i]) == 0;
	if (!same) {
		sbuf a = SBUF_INIT, b = SBUF_INIT;
		add_name_list(&a, t->pk, t->npk);
		add_name_list(&b, l->pk, l->npk);
		reject(c,
		       "table %s differs from the collection's: primary key %s, the collection's is %s",
		       q, sbuf_str(&a), sbuf_str(&b));
		sbuf_free(&a);
		sbuf_free(&b);
		return 1;
	}
	return 0;
}

/* A row whose key holds NULL cannot be upserted by key: each apply would add another copy. */
static int check_null_keys(struct delta_checker *c, const struct table *t)
{
	sbuf q = SBUF_INIT;
	sbuf_adds(&q, "SELECT 1 FROM main.");
	delta_add_ident(&q, t->name);
	for (size_t i = 0; i < t->npk; i++) {
		sbuf_adds(&q, i ? " OR " : " WHERE ");
		delta_add_ident(&q, t->pk[i]);
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
		return reject(c, "table %s has a row with NULL in its primary key",
			      delta_qname(qn, t->name));
	if (rc != SQLITE_DONE)
		return delta_error(c, rc, "scan primary keys");
	return 0;
}

/* A table new to the collection must not take a name live already uses for something else (an index). */
static int check_name_free(struct delta_checker *c, const char *name)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->live,
				    "SELECT type FROM main.sqlite_schema WHERE name = ?1 COLLATE NOCASE",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return live_error(c, rc, "read sqlite_schema");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	int r = 0;
	char q[QN], q2[QN];
	if (rc == SQLITE_ROW)
		r = reject(c,
			   "table %s is new to the collection, but the collection already has an object of that name (%s)",
			   delta_qname(q, name),
			   delta_qname(q2, (const char *)sqlite3_column_text(st, 0)));
	else if (rc != SQLITE_DONE)
		r = live_error(c, rc, "read sqlite_schema");
	sqlite3_finalize(st);
	return r;
}

static const struct table *delta_table(const struct delta_checker *c, const char *name)
{
	for (size_t i = 0; i < c->nt; i++)
		if (sqlite3_stricmp(c->t[i].name, name) == 0)
			return &c->t[i];
	return NULL;
}

static int check_upsert_table(struct delta_checker *c, const char *name)
{
	struct table *t = &c->t[c->nt];
	int rc = delta_table_load(c->d, "main", name, t);
	c->nt++; /* owned by c from here, freed with it */
	if (rc != SQLITE_OK)
		return delta_error(c, rc, "describe table");
	int r = check_table_shape(c, t);
	if (r)
		return r;
	char q[QN];
	if (!t->npk)
		return reject(c,
			      "table %s has no PRIMARY KEY: rows of a rowid-only table cannot be upserted",
			      delta_qname(q, name));
	struct table l;
	rc = delta_table_load(c->live, "main", name, &l);
	if (rc != SQLITE_OK) {
		delta_table_free(&l);
		return live_error(c, rc, "describe table");
	}
	if (!l.ncol) {
		r = check_name_free(c, name);
	} else {
		if (strcmp(l.kind, "table")) {
			delta_table_free(&l);
			return reject(c,
				      "table %s names something that is not a table in the collection",
				      delta_qname(q, name));
		}
		r = check_against_live(c, t, &l);
	}
	delta_table_free(&l);
	return r; /* its NULL keys are looked for by delta_check_finish, with the rows */
}

static int check_delete_table(struct delta_checker *c, const char *name)
{
	char q[QN], q2[QN];
	const char *target = name + strlen(DELTA_DELETE_PREFIX);
	delta_qname(q, name);
	delta_qname(q2, target);
	if (!*target || delta_has_prefix(target, DELTA_SQLITE_PREFIX) ||
	    delta_has_prefix(target, DELTA_RESERVED_PREFIX))
		return reject(c, "has deletion table %s: %s is not a collection table", q, q2);
	struct table dt;
	int rc = delta_table_load(c->d, "main", name, &dt);
	if (rc != SQLITE_OK) {
		delta_table_free(&dt);
		return delta_error(c, rc, "describe table");
	}
	int r = check_table_shape(c, &dt);
	struct table l = {0};
	const struct table *t = delta_table(c, target);
	if (!r && !t) {
		rc = delta_table_load(c->live, "main", target, &l);
		if (rc != SQLITE_OK)
			r = live_error(c, rc, "describe table");
		else if (!l.ncol || strcmp(l.kind, "table"))
			r = reject(c,
				   "has deletion table %s for %s, which neither the delta nor the collection has",
				   q, q2);
		else if (!l.npk)
			r = reject(c,
				   "has deletion table %s for %s, which has no PRIMARY KEY in the collection",
				   q, q2);
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
			char **names = xcalloc(dt.ncol, sizeof(*names));
			for (size_t i = 0; i < dt.ncol; i++)
				names[i] = dt.col[i].name;
			add_name_list(&a, names, dt.ncol);
			add_name_list(&b, t->pk, t->npk);
			r = reject(c,
				   "deletion table %s has columns %s, but the primary key of %s is %s",
				   q, sbuf_str(&a), q2, sbuf_str(&b));
			free(names);
			sbuf_free(&a);
			sbuf_free(&b);
		}
	}
	delta_table_free(&l);
	delta_table_free(&dt);
	return r;
}

static int check_schema(struct delta_checker *c)
{
	int r = 0;
	c->t = xcalloc(c->ne, sizeof(*c->t));
	char q[QN];
	/* Upsert tables first: deletion tables are checked against them. */
	for (size_t i = 0; !r && i < c->ne; i++) {
		const char *name = c->e[i].name;
		if (strcmp(c->e[i].type, "table") || delta_has_prefix(name, DELTA_SQLITE_PREFIX))
			continue;
		if (delta_has_prefix(name, DELTA_RESERVED_PREFIX)) {
			if (!delta_has_prefix(name, DELTA_DELETE_PREFIX))
				r = reject(c,
					   "has table %s: names starting with _snapfs_ are reserved, except %sTABLE",
					   delta_qname(q, name), DELTA_DELETE_PREFIX);
			continue;
		}
		r = check_upsert_table(c, name);
	}
	for (size_t i = 0; !r && i < c->ne; i++)
		if (!strcmp(c->e[i].type, "table") &&
		    delta_has_prefix(c->e[i].name, DELTA_DELETE_PREFIX))
			r = check_delete_table(c, c->e[i].name);
	return r;
}

/* Closes c's connection and frees c; r, or the close's failure. */
static int check_end(struct delta_checker *c, int r, const char *path)
{
	for (size_t i = 0; i < c->ne; i++) {
		free(c->e[i].type);
		free(c->e[i].name);
	}
	free(c->e);
	for (size_t i = 0; i < c->nt; i++)
		delta_table_free(&c->t[i]);
	free(c->t);
	/*
	 * Every statement above is finalized on every path, so this close
	 * cannot be busy; if it is, that is a bug here, reported as the
	 * check's own failure rather than logged.
	 */
	if (c->d && sqlite3_close(c->d) != SQLITE_OK) {
		errbuf_line(c->reason, c->len, "closing the check connection of %s failed: %s",
			    path, sqlite3_errmsg(c->d));
		sqlite3_close_v2(c->d);
		r = r < 0 ? r : -EIO;
	}
	free(c);
	return r;
}

int delta_check_begin(sqlite3 *live, const char *path, const struct delta_ctl *ctl,
		      delta_checker **out, char *reason, size_t len)
{
	*out = NULL;
	if (len)
		reason[0] = '\0';
	uint32_t pages = 0;
	int r = delta_check_header(live, path, &pages, reason, len);
	if (r)
		return r;
	delta_checker *c = xcalloc(1, sizeof(*c));
	*c = (struct delta_checker){.live = live,
				    .reason = reason,
				    .len = len,
				    .cancel = ctl ? ctl->cancel : NULL};
	uint64_t base = DELTA_BUDGET_BASE, per_page = DELTA_BUDGET_PER_PAGE;
	if (ctl && ctl->budget_base)
		base = ctl->budget_base;
	if (ctl && ctl->budget_per_page)
		per_page = ctl->budget_per_page;
	c->budget = (base + per_page * pages) / DELTA_STEPS;
	r = delta_open_ro(path, &c->d, reason, len);
	if (r) {
		c->d = NULL;
		check_end(c, r, path);
		return r == -ENOMEM ? r : DELTA_RETRY;
	}
	sqlite3_progress_handler(c->d, DELTA_STEPS, check_progress, c);
	/*
	 * Cheapest and most telling first, and nothing that reads rows before
	 * the schema is known to be bounded and free of expressions: the
	 * integrity check runs those once per row. What needs live (the
	 * tables' shapes against live's) is done here, on the caller's thread;
	 * what reads the delta's rows waits for delta_check_finish.
	 */
	r = load_schema(c);
	if (!r)
		r = check_executable(c);
	if (!r) {
		r = delta_schema_bounds(c->d, reason, len);
		if (r == -EINTR) /* the progress handler stopped a pragma */
			r = delta_error(c, SQLITE_INTERRUPT, "read the schema");
	}
	if (!r)
		r = check_schema(c);
	if (r)
		return check_end(c, r, path);
	*out = c;
	return 0;
}

int delta_check_finish(delta_checker *c, const char *path, char *reason, size_t len)
{
	c->reason = reason;
	c->len = len;
	if (len)
		reason[0] = '\0';
	int r = check_integrity(c);
	for (size_t i = 0; !r && i < c->nt; i++)
		r = check_null_keys(c, &c->t[i]);
	return check_end(c, r, path);
}

int delta_check(sqlite3 *live, const char *path, const struct delta_ctl *ctl, char *reason, size_t len)
{
	delta_checker *k = NULL;
	int r = delta_check_begin(live, path, ctl, &k, reason, len);
	return r ? r : delta_check_finish(k, path, reason, len);
}
