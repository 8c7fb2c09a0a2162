/*
 * sqlh — the hardening, read-only open and URIs every SQLite connection
 * of snapfs shares (see sqlh.h).
 */
#include "sqlh.h"

#include <errno.h>
#include <stdio.h>

#include "sqlvfs.h"

void sqlh_add_uri(sbuf *b, const char *path, const char *query)
{
	static const char hex[] = "0123456789ABCDEF";
	/* "file://" + an absolute path keeps a path starting with "//" from reading as an authority. */
	sbuf_adds(b, path[0] == '/' ? "file://" : "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '/' || c == '.' || c == '_' || c == '~' || c == '-') {
			sbuf_add(b, p, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			sbuf_add(b, e, 3);
		}
	}
	sbuf_adds(b, query);
}

int sqlh_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: return 0;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH: return -EACCES;
	case SQLITE_CANTOPEN: return -ENOENT;
	case SQLITE_INTERRUPT: return -EINTR;
	default: return -EIO;
	}
}

void sqlh_harden(sqlite3 *db)
{
	sqlite3_extended_result_codes(db, 1);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_ENABLE_TRIGGER
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_ENABLE_VIEW
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_DQS_DDL
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
#endif
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
}

static int sqlh_open_ro_vfs(const char *path, const char *vfs, sqlite3 **out, char *err, size_t len)
{
	*out = NULL;
	sbuf uri = SBUF_INIT;
	sqlh_add_uri(&uri, path, "?mode=ro&immutable=1");
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(sbuf_str(&uri), &db, flags, vfs);
	sbuf_free(&uri);
	if (rc != SQLITE_OK) {
		if (err && len)
			snprintf(err, len, "open %s read-only: %s", path,
				 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return rc == SQLITE_NOMEM               ? -ENOMEM
		       : (rc & 0xff) == SQLITE_CANTOPEN ? -ENOENT
							: -EIO;
	}
	sqlh_harden(db);
	char *msg = NULL;
	rc = sqlite3_exec(db, "PRAGMA trusted_schema=OFF; PRAGMA query_only=ON;", NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		if (err && len)
			snprintf(err, len, "configure read-only connection to %s: %s", path,
				 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		sqlite3_close(db);
		return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	*out = db;
	return 0;
}

int sqlh_open_ro(const char *path, sqlite3 **out, char *err, size_t len)
{
	return sqlh_open_ro_vfs(path, NULL, out, err, len);
}

int sqlh_open_mapped(const char *path, sqlite3 **out, char *err, size_t len)
{
	const char *vfs = sqlvfs_name();
	int rc = sqlh_open_ro_vfs(path, vfs, out, err, len);
	/*
	 * mmap_size only switches SQLite to fetching pages (xFetch); sqlvfs
	 * maps the whole file and bounds what stays resident. Without sqlvfs
	 * the connection reads by pread: slower, never wrong.
	 */
	if (rc == 0 && vfs)
		sqlite3_exec(*out, "PRAGMA mmap_size=9223372036854775807;", NULL, NULL, NULL);
	return rc;
}
