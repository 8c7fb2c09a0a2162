/*
 * delta — checks an untrusted delta database and merges it into a live one.
 *
 * A delta is a SQLite database file. The delta format (documented in
 * snapfs(8), "DELTA FORMAT"):
 *  - every ordinary table T whose name does not start with "sqlite_" or
 *    "_snapfs_" holds rows to upsert, by primary key, into the
 *    collection's table T; T must declare a PRIMARY KEY;
 *  - a table "_snapfs_delete_T" whose columns are exactly T's primary-key
 *    columns lists keys to delete from T; deletions apply before upserts;
 *  - indexes in a delta are ignored; anything executable (triggers,
 *    views, virtual tables, generated columns) rejects the whole delta.
 *
 * Safety: a delta is opened read-only and immutable with
 * SQLITE_DBCONFIG_DEFENSIVE and trusted_schema=OFF; every identifier is
 * quoted; tables new to the collection are created from column names and
 * declared types (never from the delta's SQL text); the delta's content
 * never chooses a path.
 *
 * This module knows SQLite, not FUSE nor the store layout.
 */
#ifndef SNAPFS_DELTA_H
#define SNAPFS_DELTA_H

#include <stddef.h>
#include <sqlite3.h>

/*
 * Checks the delta at path against the live database: a SQLite file,
 * whole (size matches its page count), passing PRAGMA integrity_check,
 * nothing executable in its schema, a primary key on every table, and
 * no conflict with a same-named table of live (same column names, same
 * primary key). Returns 0 if it may be applied; 1 if it must be
 * rejected, with a one-line reason (no newline) in reason; a negative
 * errno if the check itself could not run (reason says why).
 */
int delta_check(sqlite3 *live, const char *path, char *reason, size_t len);

/*
 * Merges a checked delta into live. Must run inside a transaction the
 * caller opened on live (the caller commits or rolls back): attaches the
 * delta read-only, creates missing tables, applies deletions then
 * upserts, detaches. Returns 0, or a negative errno with err saying why.
 */
int delta_apply(sqlite3 *live, const char *path, char *err, size_t len);

#endif
