/*
 * delta_sql — the delta module's shared SQL helpers: one-line reasons,
 * quoted names and identifiers, the mapping of SQLite result codes to
 * "the delta's fault" or "the environment's", the hardened read-only
 * connection (delta_open_ro) and table descriptions read through the
 * table pragmas. See delta.h for the module's contract.
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
/* Messages                                                            */

/*
 * Writes name into q (QN bytes) as "name", one line of UTF-8 whatever
 * the name holds: '"' and '\' are escaped, control characters become
 * '?', bytes that are not well-formed UTF-8 become "\xHH" (well-formed
 * multi-byte characters are kept), and a name longer than QN_MAX_CHARS
 * bytes is cut, between characters, with "...".
 */
const char *delta_qname(char q[QN], const char *name)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(name ? name : "");
	const unsigned char *end = p + strlen((const char *)p);
	size_t o = 0;
	q[o++] = '"';
	for (size_t n = 0; p < end;) {
		bool ctl = *p < 0x20 || *p == 0x7f;
		size_t k = ctl ? 1 : sbuf_utf8_len(p, end);
		if (n + (k ? k : 1) > QN_MAX_CHARS) {
			memcpy(q + o, "...", 3);
			o += 3;
			break;
		}
		if (ctl) {
			q[o++] = '?';
		} else if (k == 0) {
			char e[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
			memcpy(q + o, e, 4);
			o += 4;
			k = 1;
		} else {
			if (*p == '"' || *p == '\\')
				q[o++] = '\\';
			memcpy(q + o, p, k);
			o += k;
		}
		p += k;
		n += k;
	}
	q[o++] = '"';
	q[o] = '\0';
	return q;
}

/* Appends name as a SQL identifier: "name" with embedded quotes doubled. */
void delta_add_ident(sbuf *b, const char *name)
{
	sbuf_add(b, "\"", 1);
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			sbuf_add(b, "\"", 1);
		sbuf_add(b, p, 1);
	}
	sbuf_add(b, "\"", 1);
}

bool delta_has_prefix(const char *s, const char *prefix)
{
	return sqlite3_strnicmp(s, prefix, (int)strlen(prefix)) == 0;
}

/*
 * Maps a SQLite result code from the delta's own connection. That
 * connection reads nothing but the delta, under caps we set (limits,
 * budget), so whatever goes wrong there is the delta's doing and
 * rejects it: "out of memory" under SQLITE_LIMIT_VDBE_OP, a value too
 * big, a corrupt page. Only a failed read of the file (I/O, the file
 * gone) may pass, so it is retried; and a full temporary disk is the
 * machine's.
 */
int delta_file_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_INTERRUPT:
		return -EINTR; /* the caller knows whether it was the budget or a stop */
	case SQLITE_CANTOPEN: return DELTA_RETRY;
	case SQLITE_IOERR:
		/* A short read is the file's fault: its size lies. */
		return rc == SQLITE_IOERR_SHORT_READ ? 1 : DELTA_RETRY;
	default: return 1;
	}
}

/*
 * Maps a SQLite result code from live while merging: a constraint of
 * live's table that the delta's rows break is the delta's fault (1); a
 * plain error of one of our statements is tied to this delta's shape
 * (DELTA_RETRY: counted against it); resources, I/O and a corrupt live
 * database are the machine's (negative errno: no delta is blamed).
 */
int delta_live_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_TOOBIG:
	case SQLITE_RANGE: return 1;
	case SQLITE_ERROR: return DELTA_RETRY;
	default: return sqlh_errno(rc) ? sqlh_errno(rc) : -EIO;
	}
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */

/*
 * Caps for hostile schemas, on top of sqlh_harden: our own statements
 * are short and attach nothing on this connection; a schema entry longer
 * than 1 MB or a deeper expression than this is not a collection table.
 */
static void delta_limits(sqlite3 *db)
{
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
	sqlite3 *db = NULL;
	/*
	 * Mapped with bounded residency (sqlvfs): the check reads every page
	 * of the delta beside the merge, and by pread it took 0.36-0.46 s of
	 * the second core for the 629 MB bench delta, slowing the merge by a
	 * sixth. A mapped file truncated under us would raise SIGBUS instead
	 * of an error; a delta is only checked once it is in queue/, which
	 * only the daemon reaches (STORE is 0700, and a queued file has no
	 * name in the mount any more, so no one can truncate it through it).
	 */
	int rc = sqlh_open_mapped(path, &db, err, len);
	if (rc < 0)
		return rc;
	delta_limits(db);
	/* cell_size_check: catch malformed cells while reading, not only in integrity_check. */
	char *msg = NULL;
	rc = sqlite3_exec(db, "PRAGMA cell_size_check=ON;", NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		errbuf_line(err, len, "configure read-only connection to %s: %s", path,
			    msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		sqlite3_close(db);
		return delta_file_fault(rc) < 0 ? delta_file_fault(rc) : -EIO;
	}
	*out = db;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Table descriptions                                                  */

void delta_table_free(struct table *t)
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

char *delta_strdup_or_empty(const char *s)
{
	return xstrdup(s ? s : "");
}

/*
 * Describes table name of schema on db. A missing table leaves ncol == 0.
 * Returns a SQLite result code; the message is sqlite3_errmsg(db).
 */
int delta_table_load(sqlite3 *db, const char *schema, const char *name, struct table *t)
{
	memset(t, 0, sizeof(*t));
	t->name = delta_strdup_or_empty(name);
	snprintf(t->kind, sizeof(t->kind), "table");
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db,
				    "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1, ?2)",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, schema, -1, SQLITE_STATIC);
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (t->ncol == cap) {
			cap = cap ? cap * 2 : 8;
			t->col = xreallocarray(t->col, cap, sizeof(*t->col));
		}
		struct column *c = &t->col[t->ncol++];
		c->name = delta_strdup_or_empty((const char *)sqlite3_column_text(st, 0));
		c->type = delta_strdup_or_empty((const char *)sqlite3_column_text(st, 1));
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
	t->pk = xcalloc(t->npk, sizeof(*t->pk));
	for (size_t i = 0; i < t->ncol; i++) {
		int k = t->col[i].pk;
		if (k > 0 && (size_t)k <= t->npk)
			t->pk[k - 1] = t->col[i].name;
	}
	for (size_t i = 0; i < t->npk; i++)
		if (!t->pk[i])
			return SQLITE_CORRUPT; /* pk positions not 1..n: cannot happen with a sane SQLite */

	/* What the table really is, and whether it is WITHOUT ROWID (SQLite >= 3.37). */
	rc = sqlite3_prepare_v2(db, "SELECT type, wr FROM pragma_table_list(?1) WHERE schema = ?2",
				-1, &st, NULL);
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
	delta_add_ident(&q, schema);
	sbuf_adds(&q, ".");
	delta_add_ident(&q, name);
	rc = sqlite3_prepare_v2(db, sbuf_str(&q), -1, &st, NULL);
	t->without_rowid = rc != SQLITE_OK;
	sqlite3_finalize(st);
	sbuf_free(&q);
	return SQLITE_OK;
}

const struct column *delta_table_column(const struct table *t, const char *name)
{
	for (size_t i = 0; i < t->ncol; i++)
		if (sqlite3_stricmp(t->col[i].name, name) == 0)
			return &t->col[i];
	return NULL;
}
