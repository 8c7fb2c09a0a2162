/*
 * dbtest — what the unit tests of SQLite modules (delta, livedb) share:
 * paths in the test directory, and databases made from SQL text. Every
 * helper exits 2 on a failure of the test's own setup.
 */
#ifndef SNAPFS_DBTEST_H
#define SNAPFS_DBTEST_H

#include <sqlite3.h>

/* Makes the test directory (tap_tmpdir) and chdirs into it; returns it. */
const char *dbtest_dir(void);
/* dir/name; four rotating buffers, so that a few can be live at once. */
const char *at(const char *name);
void exec_or_die(sqlite3 *db, const char *sql);
/* A fresh database file at path holding what sql makes (no fsync per statement). */
void mkdb(const char *path, const char *sql);

#endif
