/*
 * delta_i.h — what the files of the delta module share (not an interface):
 * the table descriptions and the helpers that quote names, build reasons
 * and map SQLite result codes. delta.h is the module's interface.
 *
 *   delta_sql.c    messages, quoting, fault mapping, opening, table descriptions
 *   delta_header.c delta_check_header: the file header, read before SQLite opens it
 *   delta_check.c  delta_check: the schema and integrity checks
 *   delta_schema.c delta_schema_bounds: limits, no expressions (before rows are read)
 *   delta_apply.c  delta_apply and delta_detach: the merge into live
 *
 * Return convention of the check helpers, as for delta_check: 0 = fine,
 * 1 = the delta is rejected (reason set), negative errno = the check
 * could not run (reason set).
 */
#ifndef SNAPFS_DELTA_I_H
#define SNAPFS_DELTA_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "errbuf.h"
#include "sbuf.h"

#define DELTA_DELETE_PREFIX "_snapfs_delete_"
#define DELTA_RESERVED_PREFIX "_snapfs_"
#define DELTA_SQLITE_PREFIX "sqlite_"
#define DELTA_SAFE_TYPE_CHARS                                                                      \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _(),.+-"

/*
 * Room for a quoted, escaped, possibly shortened name in a reason: at
 * most QN_MAX_CHARS bytes of the name, each written as up to 4 ("\xHH").
 */
#define QN_MAX_CHARS 64
#define QN (4 * QN_MAX_CHARS + 8)

struct column {
	char *name;
	char *type; /* declared type, "" if none */
	int pk;     /* 1-based position in the primary key, 0 if not part of it */
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

/*
 * name as "name" for a reason, in UTF-8: quotes escaped, control
 * characters '?', other bytes not UTF-8 "\xHH", long names cut.
 */
const char *delta_qname(char q[QN], const char *name);
/* Appends name as a SQL identifier: "name" with embedded quotes doubled. */
void delta_add_ident(sbuf *b, const char *name);
bool delta_has_prefix(const char *s, const char *prefix);
/* A SQLite code from the delta's own connection: 1 (reject) or a negative errno. */
int delta_file_fault(int rc);
/* A SQLite code from live while merging: 1 for constraints the delta breaks, else negative errno. */
int delta_live_fault(int rc);
/* A copy of a text SQLite gave (NULL: ""); aborts on out of memory (xalloc.h). */
char *delta_strdup_or_empty(const char *s);
/* Describes table name of schema on db (ncol == 0 if missing); a SQLite result code. */
int delta_table_load(sqlite3 *db, const char *schema, const char *name, struct table *t);
void delta_table_free(struct table *t);
const struct column *delta_table_column(const struct table *t, const char *name);

/*
 * The delta's file header at path (see delta_header.c): 0 and its page
 * count in *npages, 1 with reason (reject), or as delta_check.
 */
int delta_check_header(sqlite3 *live, const char *path, uint32_t *npages, char *reason, size_t len);

#endif
