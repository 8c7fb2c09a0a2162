/*
 * delta_header — the first check of a delta: its SQLite file header, read
 * by us before SQLite opens the file (magic, page size, size == page
 * count * page size, text encoding the collection's), so that a torn or
 * truncated copy is caught before SQLite sees it. Part of the delta
 * module (delta_i.h).
 */
#include "delta.h"
#include "delta_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Header                                                              */

static uint32_t be16(const unsigned char *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Live's text encoding as the header numbers it (1 UTF-8, 2 UTF-16le, 3 UTF-16be), or negative errno. */
static int live_encoding(sqlite3 *live, char *reason, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(live, "PRAGMA main.encoding", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	int enc = 0;
	if (rc == SQLITE_ROW) {
		const char *e = (const char *)sqlite3_column_text(st, 0);
		enc = !e                       ? 0
		      : !strcmp(e, "UTF-8")    ? 1
		      : !strcmp(e, "UTF-16le") ? 2
		      : !strcmp(e, "UTF-16be") ? 3
					       : 0;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		errbuf_line(reason, len, "read the live database's encoding: %s",
			    sqlite3_errmsg(live));
		sqlite3_finalize(st);
		return delta_live_fault(rc) < 0 ? delta_live_fault(rc) : -EIO;
	}
	sqlite3_finalize(st);
	return enc;
}

static const char *encoding_name(uint32_t e)
{
	return e == 1 ? "UTF-8" : e == 2 ? "UTF-16le" : e == 3 ? "UTF-16be" : "unknown";
}

/*
 * Reads the 100-byte header ourselves, before SQLite: a writer that died
 * midway leaves a file shorter than its header says, and SQLite would
 * happily read the pages that are there.
 */
int delta_check_header(sqlite3 *live, const char *path, uint32_t *npages, char *reason, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP) {
			errbuf_line(reason, len, "is a symbolic link, not a delta file");
			return 1;
		}
		errbuf_line(reason, len, "open %s: %s", path, strerror(e));
		return DELTA_RETRY;
	}
	struct stat st;
	unsigned char h[100];
	if (fstat(fd, &st) < 0) {
		int e = errno;
		errbuf_line(reason, len, "stat %s: %s", path, strerror(e));
		close(fd);
		return DELTA_RETRY;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		errbuf_line(reason, len, "not a regular file");
		return 1;
	}
	long long size = (long long)st.st_size;
	if (size == 0) {
		close(fd);
		errbuf_line(reason, len, "empty: file is 0 bytes");
		return 1;
	}
	if (size < (long long)sizeof(h)) {
		close(fd);
		errbuf_line(reason, len,
			    "not a SQLite database: file is %lld bytes, shorter than the 100-byte header",
			    size);
		return 1;
	}
	ssize_t n = pread(fd, h, sizeof(h), 0);
	int e = errno;
	close(fd);
	if (n != (ssize_t)sizeof(h)) {
		errbuf_line(reason, len, "read the header of %s: %s", path,
			    n < 0 ? strerror(e) : "short read");
		return DELTA_RETRY;
	}
	if (memcmp(h, "SQLite format 3", 16) != 0) {
		errbuf_line(reason, len,
			    "not a SQLite database: the file does not start with \"SQLite format 3\"");
		return 1;
	}
	uint32_t ps = be16(h + 16);
	if (ps == 1)
		ps = 65536;
	if (ps < 512 || ps > 65536 || (ps & (ps - 1))) {
		errbuf_line(reason, len,
			    "corrupt header: page size %u is not a power of two between 512 and 65536",
			    ps);
		return 1;
	}
	if (h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2) {
		errbuf_line(reason, len,
			    "unsupported file format (write version %u, read version %u)", h[18],
			    h[19]);
		return 1;
	}
	/* The in-header page count is valid when the change counter matches "version-valid-for". */
	uint32_t pages = be32(h + 28);
	if (pages != 0 && memcmp(h + 24, h + 92, 4) == 0) {
		long long want = (long long)ps * pages;
		if (size < want) {
			errbuf_line(reason, len,
				    "truncated: file is %lld bytes but its header says %u pages of %u",
				    size, pages, ps);
			return 1;
		}
		if (size > want) {
			errbuf_line(reason, len,
				    "size mismatch: file is %lld bytes but its header says %u pages of %u",
				    size, pages, ps);
			return 1;
		}
	} else if (size % ps) {
		errbuf_line(reason, len,
			    "truncated: file is %lld bytes, not a whole number of %u-byte pages",
			    size, ps);
		return 1;
	}
	*npages = (uint32_t)(size / ps);
	/* ATTACH refuses a database whose text encoding differs from main's. */
	uint32_t enc = be32(h + 56);
	if (enc != 0) {
		int lenc = live_encoding(live, reason, len);
		if (lenc < 0)
			return lenc;
		if (lenc != 0 && (uint32_t)lenc != enc) {
			errbuf_line(reason, len, "text encoding %s differs from the collection's %s",
				    encoding_name(enc), encoding_name((uint32_t)lenc));
			return 1;
		}
	}
	return 0;
}
