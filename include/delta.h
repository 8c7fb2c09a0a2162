/*
 * delta — checks an untrusted delta database and merges it into a live one.
 *
 * A delta is a SQLite database file. The delta format (documented in
 * snapfs(8), "DELTA FORMAT"):
 *  - every ordinary table T whose name does not start with "sqlite_" or
 *    "_snapfs_" holds rows to upsert, by primary key, into the
 *    collection's table T; T must declare a PRIMARY KEY, and no row may
 *    hold NULL in a key column;
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
 * caller opened on live (the caller commits or rolls back), and live
 * must have been opened with SQLITE_OPEN_URI: attaches the delta
 * read-only as schema "delta", creates missing tables, applies deletions
 * then upserts. Returns 0; 1 if the delta's rows break a constraint of
 * live's tables (a UNIQUE or NOT NULL the delta cannot see, a type an
 * INTEGER PRIMARY KEY refuses): reject it, err says why; or a negative
 * errno with err saying why (-ENOSPC when the disk is full).
 *
 * The delta stays attached when delta_apply returns, whatever the
 * result (unless the ATTACH itself failed): SQLite refuses to DETACH a
 * database that the open transaction has read. Call delta_detach after
 * COMMIT or ROLLBACK, on every path.
 */
int delta_apply(sqlite3 *live, const char *path, char *err, size_t len);

/* Detaches the delta attached by delta_apply; 0 if none is attached. Outside a transaction only. */
int delta_detach(sqlite3 *live, char *err, size_t len);

/*
 * Opens any database file read-only and immutable (URI-encoded path,
 * mode=ro&immutable=1, no symlink), with the defensive settings above:
 * nothing is created beside the file, not even -wal or -shm. For deltas
 * and for sealed snapshots. Returns 0 or a negative errno, err says why.
 */
int delta_open_ro(const char *path, sqlite3 **out, char *err, size_t len);

#endif
