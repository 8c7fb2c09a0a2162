/*
 * sqlh — what every SQLite connection of snapfs shares.
 *
 *  - sqlh_harden: the settings no connection of ours goes without:
 *    extended result codes, SQLITE_DBCONFIG_DEFENSIVE, an untrusted
 *    schema, no triggers, no views, no double-quoted strings, no
 *    extensions. Each user adds its own limits (the delta check caps
 *    what a hostile schema may make it do; live keeps SQLite's).
 *  - sqlh_open_ro: a file opened read-only and immutable (nothing is
 *    created beside it, not even -wal or -shm; no symlink followed),
 *    hardened and query_only: for deltas, sealed snapshots and copies.
 *  - sqlh_add_uri: the file: URI of a path, every byte outside
 *    [A-Za-z0-9/._~-] percent-encoded, so a name can never add a query
 *    parameter of its own.
 * Knows SQLite, not collections.
 */
#ifndef SNAPFS_SQLH_H
#define SNAPFS_SQLH_H

#include <stddef.h>
#include <sqlite3.h>

#include "sbuf.h"

void sqlh_harden(sqlite3 *db);
/*
 * A SQLite result code as a negative errno (0 for SQLITE_OK): -ENOMEM,
 * -ENOSPC, -EBUSY, -EROFS, -EACCES, -ENOENT, -EINTR, and -EIO for
 * everything else, corruption included (a damaged database is the
 * machine's trouble, never a caller's input).
 */
int sqlh_errno(int rc);
/* 0, or -ENOENT (no such file), -ENOMEM, -EIO; err says why. */
int sqlh_open_ro(const char *path, sqlite3 **out, char *err, size_t len);
/*
 * sqlh_open_ro, with pages read from a mapping of the file whose resident
 * part stays bounded (src/core/sqlvfs.h): as fast as SQLite's mmap, as
 * flat in memory as pread. Only for files snapfs wrote and nobody
 * truncates while they are open (a sealed copy): a truncated mapping
 * raises SIGBUS.
 */
int sqlh_open_mapped(const char *path, sqlite3 **out, char *err, size_t len);
/* Appends "file:" + path (percent-encoded) + query ("" or "?..."). */
void sqlh_add_uri(sbuf *b, const char *path, const char *query);

#endif
