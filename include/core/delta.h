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
 *    views, virtual tables, generated columns, CHECK constraints, DEFAULT
 *    expressions, expression or partial indexes, collations other than
 *    BINARY, NOCASE and RTRIM) rejects the whole delta;
 *  - a delta stays within the LIMITS below, checked before its rows are
 *    read, and its check within a work budget that grows with its size.
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

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

/* Limits of one delta (snapfs(8), LIMITS); past any of them it is rejected. */
#define DELTA_MAX_TABLES 256   /* ordinary tables, deletion tables included */
#define DELTA_MAX_INDEXES 512  /* in all tables, those made by constraints included */
#define DELTA_MAX_COLUMNS 8192 /* in all tables together */
/*
 * Work budget of delta_check, in SQLite virtual-machine steps: a base
 * plus so many per page of the file. A real delta needs 2-800 steps a
 * page for integrity_check (measured on tables with 0-3 indexes and rows
 * of 10-6,000 bytes), so the budget is never what stops a real one.
 */
#define DELTA_BUDGET_BASE 10000000ull
#define DELTA_BUDGET_PER_PAGE 100000ull

/* How delta_check may be stopped and how much work it may do. */
struct delta_ctl {
	const atomic_bool *cancel; /* may be NULL; once true, the check stops with -ECANCELED */
	uint64_t budget_base;      /* 0: DELTA_BUDGET_BASE */
	uint64_t budget_per_page;  /* 0: DELTA_BUDGET_PER_PAGE */
};

/* What delta_check returns besides 0, 1 and a negative errno. */
#define DELTA_RETRY 2 /* failed for a reason of its own that may pass (I/O reading it): try later */

/*
 * Checks the delta at path against the live database: a SQLite file,
 * whole (size matches its page count), within the limits, nothing
 * executable in its schema, passing PRAGMA integrity_check within its
 * work budget, a primary key on every table, and no conflict with a
 * same-named table of live (same column names, same primary key).
 * Returns:
 *   0                 it may be applied;
 *   1                 it must be rejected: one-line reason (no newline);
 *   DELTA_RETRY       reading the file failed (EIO, vanished): the
 *                     delta's own trouble, but perhaps not for ever;
 *   -ECANCELED        *ctl->cancel became true (ctl may be NULL);
 *   another -errno    the live database or the machine failed (reason
 *                     says why): not the delta's fault.
 * Anything the delta's content causes on its own connection (a limit,
 * "out of memory" under the connection's caps, the budget) is a reject.
 */
int delta_check(sqlite3 *live, const char *path, const struct delta_ctl *ctl, char *reason,
		size_t len);
/*
 * delta_check in two halves, so that the costly one can run on another
 * thread while the delta is merged (livedb.c). delta_check_begin does
 * everything that reads live or only the delta's schema (header, limits,
 * nothing executable, the tables against live's), on the caller's
 * thread; on 0 it hands over *out, which delta_check_finish (on any one
 * thread, which then owns it) uses for what reads the delta's rows
 * (integrity_check within the budget, NULL keys) and frees. Each
 * returns what delta_check would; live is not touched by the second.
 */
typedef struct delta_checker delta_checker;
int delta_check_begin(sqlite3 *live, const char *path, const struct delta_ctl *ctl,
		      delta_checker **out, char *reason, size_t len);
int delta_check_finish(delta_checker *k, const char *path, char *reason, size_t len);

/*
 * The schema bounds above (limits, nothing that runs an expression), on
 * a connection to the delta (d). 0, 1 with reason, or as delta_check.
 */
int delta_schema_bounds(sqlite3 *d, char *reason, size_t len);

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
 * nothing is created beside the file, not even -wal or -shm; its pages
 * are read through a mapping (sqlh_open_mapped), so only for a file no
 * one truncates while it is open: a queued delta, a sealed snapshot.
 * Returns 0 or a negative errno, err says why.
 */
int delta_open_ro(const char *path, sqlite3 **out, char *err, size_t len);

#endif
