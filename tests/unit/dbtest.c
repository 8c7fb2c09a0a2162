/* dbtest — paths and SQL-made databases for the unit tests (see dbtest.h). */
#include "dbtest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tap.h"

static char dir[PATH_MAX];

const char *dbtest_dir(void)
{
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
	if (chdir(dir) != 0) /* a stray relative file lands in the test directory */
		exit(2);
	return dir;
}

const char *at(const char *name)
{
	static char buf[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	if (snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name) >= (int)sizeof(buf[i]))
		exit(2);
	return buf[i];
}

void exec_or_die(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "setup SQL failed: %s\n  in: %s\n", msg, sql);
		exit(2);
	}
}

void mkdb(const char *path, const char *sql)
{
	unlink(path);
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		fprintf(stderr, "open %s: %s\n", path, sqlite3_errmsg(db));
		exit(2);
	}
	exec_or_die(db, "PRAGMA synchronous = OFF"); /* test files: no fsync per statement */
	exec_or_die(db, sql);
	if (sqlite3_close(db) != SQLITE_OK) {
		fprintf(stderr, "close %s failed\n", path);
		exit(2);
	}
}
