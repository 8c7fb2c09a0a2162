/*
 * seal — turns a closed live database into a checked, hashed, durable
 * snapshot in a staging directory (see seal.h for the contract).
 *
 * What it guarantees when seal_make returns 0:
 *  - staging_dir/NAME.sqlite3 is a byte copy of live_path, fsynced;
 *  - sha256 and size in the result and in MANIFEST.json are those of the
 *    copy's bytes (hashed from the copy itself, not from the source);
 *  - a fresh read-only connection on the copy ran PRAGMA integrity_check
 *    and got exactly one row, "ok"; the row counts are the copy's;
 *  - MANIFEST.json is written and fsynced, and so is staging_dir.
 * On failure it returns a negative errno (-EIO for a copy that fails its
 * check), removes the files it created, and says what and why in err;
 * logging it is the caller's (the compactor's) job, once.
 *
 * How the work overlaps (issue 2, item 9: seal <= 0.8 x cp + sha256 +
 * integrity_check run back to back). The checks must be of the copy, so
 * nothing may look at the copy before its bytes are there; but once a
 * range of the copy is written it is byte-identical to what the check and
 * the hash will read, both from the page cache. So:
 *
 *   main thread:  copy_file_range, chunk by chunk (an in-kernel page-cache
 *                 copy, no pass through user space); after the last chunk:
 *                 integrity_check and row counts on the copy, then fsync.
 *   hash thread:  SHA-256 of the copy, mapping each chunk (populated at
 *                 once, unmapped after: no copy into a buffer, at most a
 *                 chunk resident) as soon as the copier has published it,
 *                 then starting its writeback (sync_file_range), so the
 *                 disk writes while we compute and the fsync at the end
 *                 only waits for the tail. Starting writeback here rather
 *                 than in the copier keeps the copier from blocking on a
 *                 full disk queue: seal_bench 521-559 ms against 548-591.
 *
 * With two cores the wall time is about max(copy + check, hash) plus
 * whatever writeback is still outstanding at the end, instead of
 * copy + hash + check + fsync. immutable=1 is right for the check: the
 * copy is ours and never changes, so SQLite needs neither locks nor
 * change detection.
 *
 * The check reads the copy through sqlvfs (sqlh_open_mapped): mapped, but
 * with at most SQLVFS_RESIDENT of it resident. The check is the longest
 * leg of the seal, so its speed is the seal's: on the 600 MB bench
 * collection integrity_check took 0.44 s reading by pread through a
 * 16 MiB page cache, 0.16 s with SQLite's own mmap, which left every page
 * it touched in the daemon's resident memory (a seal of a 600 MB
 * collection peaked at 620 MiB RSS, of a 4 GB one at 4 GB, and the OOM
 * killer ranks processes by RSS), and about as fast with sqlvfs, with the
 * daemon's RSS as flat as with pread.
 * Rejected alternatives: a read-hash-write copy in one user-space pass
 * followed by fsync takes 1.3-1.5 s alone, and the check can only follow
 * it; copying without sync_file_range leaves the whole disk write to the
 * final fsync (~0.3 s more); checking while the copy is still being
 * written, through a SQLite VFS whose reads wait for the copier's mark
 * (tried on 2026-11-29): the check never had to wait, yet the seal took
 * 1.9-2.2 s, because copier, hasher and check then compete for two
 * cores and all three slow down; worth trying again on more cores.
 *
 * The source is only ever read here; the caller guarantees nothing writes
 * it meanwhile, and a change of size or mtime during the copy is still
 * detected and fails the seal.
 */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "fsx.h"
#include "hex.h"
#include "manifest.h"
#include "mono.h"
#include "sqlh.h"
#include "sbuf.h"

#define SEAL_CHUNK (8u << 20)      /* copy granularity, and hash hand-off */
#define SEAL_HASH_MAP SEAL_CHUNK   /* mapped, hashed and handed to writeback at a time */
#define SEAL_HASH_BUF (256u << 10) /* where mapping fails: read and hashed while in L2 */
#define SEAL_CACHE_KIB 2048        /* check connection's page cache: pages come mapped */
#define SEAL_CANCEL_STEPS 10000    /* how often the check looks at the stop flag */

/* ---- copy and hash ---- */

/*
 * Hand-off between the copier (main thread) and the hash thread. The
 * copier only ever grows `copied`; the hasher reads [hashed, copied).
 */
struct seal_hasher {
	int fd; /* the copy; read by the hasher with pread, never moved */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t copied; /* bytes of the copy complete so far; protected by mu */
	bool done;       /* the copier will publish no more; protected by mu */
	bool cancel;     /* the copy failed: stop; protected by mu */
	/* Owned by the hash thread until it is joined. */
	uint64_t hashed;
	int rc;
	unsigned char sha[FSX_SHA256_LEN];
};

static void seal_hasher_publish(struct seal_hasher *h, uint64_t copied, bool done, bool cancel)
{
	pthread_mutex_lock(&h->mu);
	h->copied = copied;
	h->done = h->done || done;
	h->cancel = h->cancel || cancel;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/*
 * Hashes [off, off + n) of the copy: mapped (populated at once, unmapped
 * after, so at most SEAL_HASH_MAP of it is ever resident), or, where it
 * cannot be mapped, read through buf.
 */
static int seal_hash_range(struct seal_hasher *h, EVP_MD_CTX *ctx, unsigned char *buf, uint64_t off,
			   size_t n)
{
	/* A short copy_file_range may leave off unaligned: map from the page it starts in. */
	size_t skew = (size_t)(off % (uint64_t)sysconf(_SC_PAGESIZE));
	unsigned char *m = mmap(NULL, n + skew, PROT_READ, MAP_SHARED | MAP_POPULATE, h->fd,
				(off_t)(off - skew));
	if (m != MAP_FAILED) {
		int rc = EVP_DigestUpdate(ctx, m + skew, n) == 1 ? 0 : -EIO;
		munmap(m, n + skew);
		return rc;
	}
	while (n > 0) {
		ssize_t r = pread(h->fd, buf, n < SEAL_HASH_BUF ? n : SEAL_HASH_BUF, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1)
			return -EIO;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

static void *seal_hasher_run(void *arg)
{
	struct seal_hasher *h = arg;
	unsigned char *buf = malloc(SEAL_HASH_BUF);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	h->rc = (buf && ctx) ? 0 : -ENOMEM;
	if (h->rc == 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		h->rc = -EIO;
	while (h->rc == 0) {
		pthread_mutex_lock(&h->mu);
		while (!h->cancel && !h->done && h->copied == h->hashed)
			pthread_cond_wait(&h->cv, &h->mu);
		uint64_t avail = h->copied;
		bool done = h->done, cancel = h->cancel;
		pthread_mutex_unlock(&h->mu);
		if (cancel) {
			h->rc = -ECANCELED;
			break;
		}
		if (done && avail == h->hashed)
			break;
		while (h->rc == 0 && h->hashed < avail) {
			uint64_t want = avail - h->hashed;
			size_t n = want < SEAL_HASH_MAP ? (size_t)want : SEAL_HASH_MAP;
			h->rc = seal_hash_range(h, ctx, buf, h->hashed, n);
			if (h->rc == 0) {
				/* Hashed: now the disk may have it (the fsync at the end waits for the tail). */
				sync_file_range(h->fd, (off_t)h->hashed, (off_t)n,
						SYNC_FILE_RANGE_WRITE);
				h->hashed += n;
			}
		}
	}
	if (h->rc == 0 && EVP_DigestFinal_ex(ctx, h->sha, NULL) != 1)
		h->rc = -EIO;
	EVP_MD_CTX_free(ctx);
	free(buf);
	return NULL;
}

/* Copies [off, off+want) by read/write: for file systems without copy_file_range. */
static ssize_t seal_copy_slow(int in, int out, uint64_t off, size_t want, unsigned char **buf)
{
	if (!*buf && !(*buf = malloc(SEAL_CHUNK))) {
		errno = ENOMEM;
		return -1;
	}
	ssize_t n;
	do
		n = pread(in, *buf, want < SEAL_CHUNK ? want : SEAL_CHUNK, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		int rc = fsx_pwrite_full(out, *buf, (size_t)n, (off_t)off);
		if (rc < 0) {
			errno = -rc;
			return -1;
		}
	}
	return n;
}

/*
 * Copies `size` bytes of in to out, publishing progress to the hasher
 * after each chunk and starting that chunk's writeback.
 */
static int seal_copy(int in, int out, uint64_t size, struct seal_hasher *h, char *err, size_t len,
		     const char *src, const atomic_bool *cancel)
{
	bool kernel_copy = true;
	unsigned char *buf = NULL;
	uint64_t off = 0;
	int rc = 0;
	while (off < size) {
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			errbuf_line(err, len,
				    "copy of %s stopped at byte %" PRIu64 ": snapfs is shutting down",
				    src, off);
			break;
		}
		uint64_t left = size - off;
		size_t want = left < SEAL_CHUNK ? (size_t)left : SEAL_CHUNK;
		ssize_t n;
		if (kernel_copy) {
			loff_t ioff = (loff_t)off, ooff = (loff_t)off;
			n = copy_file_range(in, &ioff, out, &ooff, want, 0);
			if (n < 0 && off == 0 &&
			    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
			     errno == EINVAL)) {
				kernel_copy = false;
				continue;
			}
		} else {
			n = seal_copy_slow(in, out, off, want, &buf);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			errbuf_line(err, len, "copy of %s failed at byte %" PRIu64 ": %s", src, off,
				    strerror(errno));
			break;
		}
		if (n == 0) {
			rc = -EIO;
			errbuf_line(err, len,
				    "copy of %s: file ended at byte %" PRIu64 " of %" PRIu64
				    " (it changed while being sealed)",
				    src, off, size);
			break;
		}
		off += (uint64_t)n;
		seal_hasher_publish(h, off, false, false);
	}
	free(buf);
	return rc;
}

/* ---- check ---- */

struct seal_check {
	uint64_t page_size;
	uint64_t page_count;
	struct manifest_table *tables;
	size_t ntables;
};

static void seal_check_free(struct seal_check *c)
{
	for (size_t i = 0; i < c->ntables; i++)
		free((char *)c->tables[i].name);
	free(c->tables);
	c->tables = NULL;
	c->ntables = 0;
}

/*
 * integrity_check's first row may span lines ("*** in database main ***\n
 * On tree page 4 ..."); errors are logged one line each, so join them.
 */
static void seal_one_line(char *out, size_t cap, const char *msg)
{
	size_t n = 0;
	for (const char *p = msg ? msg : "(null)"; *p && n + 3 < cap; p++) {
		if (*p == '\n') {
			out[n++] = ';';
			out[n++] = ' ';
		} else {
			out[n++] = (unsigned char)*p < 0x20 ? ' ' : *p;
		}
	}
	out[n] = '\0';
}

static int seal_pragma_u64(sqlite3 *db, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		sqlite3_int64 v = sqlite3_column_int64(st, 0);
		*out = v < 0 ? 0 : (uint64_t)v;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Every table of type 'table' but SQLite's own, with its row count. */
static int seal_count_rows(sqlite3 *db, struct seal_check *c)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db,
				    "SELECT name FROM sqlite_schema WHERE type = 'table'"
				    " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
				    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (c->ntables == cap) {
			cap = cap ? 2 * cap : 8;
			struct manifest_table *n = realloc(c->tables, cap * sizeof(*n));
			if (!n) {
				rc = SQLITE_NOMEM;
				break;
			}
			c->tables = n;
		}
		char *name = strdup((const char *)sqlite3_column_text(st, 0));
		if (!name) {
			rc = SQLITE_NOMEM;
			break;
		}
		c->tables[c->ntables++] = (struct manifest_table){name, 0};
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return rc;
	for (size_t i = 0; i < c->ntables; i++) {
		char *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", c->tables[i].name);
		if (!sql)
			return SQLITE_NOMEM;
		rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
		sqlite3_free(sql);
		if (rc != SQLITE_OK)
			return rc;
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			c->tables[i].rows = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/* Progress handler of the check connection: a stop interrupts the check. */
static int seal_check_cancelled(void *arg)
{
	return atomic_load((const atomic_bool *)arg);
}

/*
 * Opens the copy with a fresh read-only connection, requires
 * integrity_check to answer exactly "ok", and reads page size, page count
 * and row counts.
 */
static int seal_check_copy(const struct seal_request *req, const char *path, uint64_t size,
			   struct seal_check *c, char *err, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char oerr[512];
	int rc = sqlh_open_mapped(path, &db, oerr, sizeof(oerr));
	if (rc < 0) {
		errbuf_line(err, len, "open of snapshot %08" PRIu64 " of %s failed: %s", req->id,
			    req->collection, oerr);
		return -EIO;
	}
	if (req->cancel)
		sqlite3_progress_handler(db, SEAL_CANCEL_STEPS, seal_check_cancelled,
					 (void *)req->cancel);
	char *sql = sqlite3_mprintf("PRAGMA cache_size=-%d;", SEAL_CACHE_KIB);
	if (sql)
		sqlite3_exec(db, sql, NULL, NULL, NULL); /* only speed depends on these */
	sqlite3_free(sql);

	/* integrity_check: exactly one row, "ok". Anything else is a failure. */
	char first[512] = "";
	int rows = 0;
	rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows++ == 0)
			seal_one_line(first, sizeof(first), (const char *)sqlite3_column_text(st, 0));
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		snprintf(first, sizeof(first), "%s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	st = NULL;
	int out = 0;
	if (rc == SQLITE_INTERRUPT && req->cancel && atomic_load(req->cancel)) {
		errbuf_line(err, len,
			    "check of snapshot %08" PRIu64 " of %s stopped: snapfs is shutting down",
			    req->id, req->collection);
		out = -ECANCELED;
	} else if (rc != SQLITE_DONE || rows != 1 || strcmp(first, "ok") != 0) {
		errbuf_line(err, len, "integrity_check of snapshot %08" PRIu64 " of %s failed: %s",
			    req->id, req->collection,
			    rows == 0 && rc == SQLITE_DONE ? "no result" : first);
		out = -EIO;
	}
	if (out == 0 &&
	    ((rc = seal_pragma_u64(db, "PRAGMA page_size", &c->page_size)) != SQLITE_OK ||
	     (rc = seal_pragma_u64(db, "PRAGMA page_count", &c->page_count)) != SQLITE_OK ||
	     (rc = seal_count_rows(db, c)) != SQLITE_OK)) {
		errbuf_line(err, len, "row counts of snapshot %08" PRIu64 " of %s failed: %s",
			    req->id, req->collection, sqlite3_errmsg(db));
		out = rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	if (sqlite3_close(db) != SQLITE_OK && out == 0) {
		errbuf_line(err, len, "close of snapshot %08" PRIu64 " of %s failed: %s", req->id,
			    req->collection, sqlite3_errmsg(db));
		out = -EIO;
	}
	if (out < 0)
		seal_check_free(c);
	return out;
}

/* ---- manifest ---- */

/* Writes a new MANIFEST.json and fsyncs it; *created says whether the file is ours to remove. */
static int seal_write_manifest(const char *path, const char *text, size_t n, bool *created)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0)
		return -errno;
	*created = true;
	int rc = fsx_pwrite_full(fd, text, n, 0);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* ---- seal_make ---- */

static bool seal_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ino == b->st_ino;
}

/* Writes the snapshot's MANIFEST.json at mpath (durably; *made once it exists). */
static int seal_manifest(const struct seal_request *req, const char *file, uint64_t size,
			 const char *sha256, const struct seal_check *check, const char *mpath,
			 bool *made, char *err, size_t len)
{
	struct manifest m = {
		.collection = req->collection,
		.id = req->id,
		.created = req->created,
		.file = file,
		.size = size,
		.sha256 = sha256,
		.page_size = check->page_size,
		.page_count = check->page_count,
		.integrity = "ok",
		.ledger_max = req->ledger_max,
		.tables = check->tables,
		.ntables = check->ntables,
		.deltas = req->deltas,
		.ndeltas = req->ndeltas,
	};
	sbuf json = SBUF_INIT;
	manifest_write_json(&m, &json);
	int rc = seal_write_manifest(mpath, sbuf_str(&json), json.len, made);
	sbuf_free(&json);
	if (rc < 0)
		errbuf_line(err, len, "seal of %s: write %s: %s", req->collection, mpath,
			    strerror(-rc));
	return rc;
}

/*
 * Waits for the hasher (when it runs as a thread) once the copy is
 * synced (rc 0) or failed (rc < 0), and checks that it hashed all size
 * bytes. Returns rc, or the hasher's error.
 */
static int seal_hash_end(struct seal_hasher *h, pthread_t tid, bool *started, int rc, uint64_t size,
			 const char *coll, const char *copy, char *err, size_t len)
{
	if (*started) {
		if (rc != 0)
			seal_hasher_publish(h, h->copied, true, true);
		pthread_join(tid, NULL);
		*started = false;
	}
	if (rc == 0 && h->rc != 0) {
		rc = h->rc;
		errbuf_line(err, len, "seal of %s: hashing %s: %s", coll, copy, strerror(-h->rc));
	}
	if (rc == 0 && h->hashed != size) {
		rc = -EIO;
		errbuf_line(err, len, "seal of %s: hashed %" PRIu64 " bytes of %" PRIu64, coll,
			    h->hashed, size);
	}
	return rc;
}

int seal_make(const struct seal_request *req, struct seal_result *res, char *err, size_t len)
{
	if (err && len)
		err[0] = '\0';
	if (!req || !res || !req->collection || !req->live_path || !req->staging_dir ||
	    (req->ndeltas && !req->deltas)) {
		errbuf_line(err, len, "seal: invalid request");
		return -EINVAL;
	}
	memset(res, 0, sizeof(*res));
	double t0 = (mono_now() * 1e3);
	char file[PATH_MAX], copy[PATH_MAX], mpath[PATH_MAX];
	if ((size_t)snprintf(file, sizeof(file), "%s.sqlite3", req->collection) >= sizeof(file) ||
	    (size_t)snprintf(copy, sizeof(copy), "%s/%s", req->staging_dir, file) >= sizeof(copy) ||
	    (size_t)snprintf(mpath, sizeof(mpath), "%s/MANIFEST.json", req->staging_dir) >=
		    sizeof(mpath)) {
		errbuf_line(err, len, "seal of %s: staging path too long", req->collection);
		return -ENAMETOOLONG;
	}

	int rc = 0;
	bool made_copy = false, made_manifest = false, hasher_started = false;
	struct seal_check check = {0};
	struct seal_hasher h = {.fd = -1};
	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	struct stat st0, st1;
	pthread_t tid;

	int in = open(req->live_path, O_RDONLY | O_CLOEXEC);
	if (in < 0 || fstat(in, &st0) < 0) {
		rc = -errno;
		errbuf_line(err, len, "seal of %s: open %s: %s", req->collection, req->live_path,
			    strerror(errno));
		goto out;
	}
	posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	h.fd = open(copy, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (h.fd < 0) {
		rc = -errno;
		errbuf_line(err, len, "seal of %s: create %s: %s", req->collection, copy,
			    strerror(errno));
		goto out;
	}
	made_copy = true;
	uint64_t size = (uint64_t)st0.st_size;

	/* If no thread can be started, the hash runs after the copy on this one. */
	hasher_started = pthread_create(&tid, NULL, seal_hasher_run, &h) == 0;
	rc = seal_copy(in, h.fd, size, &h, err, len, req->live_path, req->cancel);
	if (rc == 0 && (fstat(in, &st1) < 0 || !seal_same_file(&st0, &st1))) {
		rc = -EIO;
		errbuf_line(err, len, "seal of %s: %s changed while being copied", req->collection,
			    req->live_path);
	}
	seal_hasher_publish(&h, rc == 0 ? size : h.copied, true, rc != 0);
	if (!hasher_started)
		seal_hasher_run(&h);

	double c0 = (mono_now() * 1e3);
	if (rc == 0)
		rc = seal_check_copy(req, copy, size, &check, err, len);
	double c1 = (mono_now() * 1e3);
	res->check_ms = c1 - c0;

	if (rc == 0 && fsync(h.fd) < 0) {
		rc = -errno;
		errbuf_line(err, len, "seal of %s: fsync %s: %s", req->collection, copy,
			    strerror(errno));
	}
	rc = seal_hash_end(&h, tid, &hasher_started, rc, size, req->collection, copy, err, len);
	if (rc < 0)
		goto out;
	res->size = size;
	hex_encode(h.sha, FSX_SHA256_LEN, res->sha256);

	rc = seal_manifest(req, file, size, res->sha256, &check, mpath, &made_manifest, err, len);
	if (rc < 0)
		goto out;
	rc = fsx_fsync_dir(req->staging_dir);
	if (rc < 0)
		errbuf_line(err, len, "seal of %s: fsync %s: %s", req->collection, req->staging_dir,
			    strerror(-rc));
	/* The check overlaps the hash, so copy_ms is "all but the check": the two add up to the seal. */
	res->copy_ms = (mono_now() * 1e3) - t0 - res->check_ms;

out:
	if (hasher_started) {
		seal_hasher_publish(&h, h.copied, true, true);
		pthread_join(tid, NULL);
	}
	if (h.fd >= 0)
		close(h.fd);
	if (in >= 0)
		close(in);
	if (rc < 0) {
		if (made_copy)
			unlink(copy);
		if (made_manifest)
			unlink(mpath);
		memset(res, 0, sizeof(*res));
	}
	seal_check_free(&check);
	pthread_cond_destroy(&h.cv);
	pthread_mutex_destroy(&h.mu);
	return rc;
}
