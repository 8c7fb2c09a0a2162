/*
 * livedb — a collection's live database and its ledger.
 *
 * Guarantees:
 *  - Each delta is merged in one transaction together with its ledger
 *    row, so after a crash a delta is either wholly in live with its
 *    sha256 in the ledger, or not at all; a delta seen again is skipped.
 *  - synchronous=FULL: once livedb_apply returns LIVEDB_APPLIED, the
 *    commit is on disk and the delta may be dropped from the queue. A
 *    batch starts in WAL mode (one fsync per delta); livedb_bulk turns
 *    the rollback journal on for large deltas, whose pages WAL would
 *    write twice (log, then checkpoint): 4-5 s instead of 1.1-1.4 s for
 *    a 600 MB delta into an empty database here. Both modes make a
 *    commit atomic and durable; a crash leaves a -wal or a hot -journal
 *    that the next open recovers.
 *  - livedb_close returns 0 only when every WAL frame is back in the
 *    database file, the connection really closed and no -wal content nor
 *    -journal is left: only then does the file alone hold the whole
 *    database, and only then may it be copied (see seal.h).
 *
 * Threads: a livedb and its connection belong to the compactor thread
 * that opened it, for its whole life; it is never shared, so the
 * connection is opened with SQLITE_OPEN_NOMUTEX and nothing here locks.
 */
#include "livedb.h"

#include "delta.h"
#include "sqlh.h"
#include "sqlvfs.h"
#include "diag.h"
#include "errbuf.h"
#include "mono.h"
#include "hex.h"
#include "fsx.h"
#include "sbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Waiting this long for a lock means someone else opened live: an error, not a reason to hang. */
#define LIVEDB_BUSY_MS 1000

/* How often (in virtual-machine steps) the live connection looks at the cancel flag. */
#define LIVEDB_CANCEL_STEPS 10000

struct livedb {
	sqlite3 *db; /* owned by the compactor thread that opened it */
	char *path;
	const atomic_bool *cancel; /* the compactor's stop flag, or NULL */
	struct diag diag;          /* the owner's sink for what return values cannot carry */
};

/* Progress handler of the live connection: a stop interrupts the statement running. */
static int livedb_progress(void *arg)
{
	const livedb *l = arg;
	return l->cancel && atomic_load(l->cancel);
}

/* After a failure: a stop turns into -ECANCELED whatever the statement said. */
static int livedb_cancelled(const livedb *l, int r)
{
	return r < 0 && l->cancel && atomic_load(l->cancel) ? -ECANCELED : r;
}

static const char ledger_sql[] = "CREATE TABLE IF NOT EXISTS _snapfs_ledger ("
				 " seq INTEGER PRIMARY KEY,"
				 " sha256 TEXT UNIQUE NOT NULL,"
				 " name TEXT NOT NULL,"
				 " applied_at INTEGER NOT NULL)";

/* Runs sql on db; on failure says what failed into err and returns a negative errno. */
static int run(sqlite3 *db, const char *sql, const char *what, const char *path, char *err, size_t len)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	rc = sqlite3_extended_errcode(db);
	errbuf_line(err, len, "%s (%s): %s", what, path, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return sqlh_errno(rc) ? sqlh_errno(rc) : -EIO;
}

/*
 * Sets the journal mode of db (the file at path) and checks the mode it
 * got, which is how journal_mode answers: a file that cannot do WAL says
 * so. 0, or a negative errno with err saying why.
 */
static int journal_mode(sqlite3 *db, const char *mode, const char *path, char *err, size_t len)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA main.journal_mode = %s", mode);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	int r = 0;
	if (rc != SQLITE_ROW) {
		errbuf_line(err, len, "journal_mode %s on %s: %s", mode, path, sqlite3_errmsg(db));
		r = sqlh_errno(sqlite3_extended_errcode(db));
		r = r ? r : -EIO;
	} else if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), mode) != 0) {
		errbuf_line(err, len, "journal_mode %s on %s: still in %s mode", mode, path,
			    (const char *)sqlite3_column_text(st, 0));
		r = -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

int livedb_open(const char *path, const atomic_bool *cancel, const struct diag *diag, livedb **out,
		char *err, size_t len)
{
	*out = NULL;
	if (len)
		err[0] = '\0';
	/*
	 * SQLITE_OPEN_URI so that delta_apply can ATTACH a delta read-only by
	 * URI. Our own path must then not read as a URI: "./" defuses "file:".
	 */
	sbuf name = SBUF_INIT;
	if (strncmp(path, "file:", 5) == 0)
		sbuf_adds(&name, "./");
	sbuf_adds(&name, path);
	sqlite3 *db = NULL;
	/* sqlvfs: writeback starts as the merge writes, so COMMIT's fsync waits only for the tail. */
	int rc = sqlite3_open_v2(sbuf_str(&name), &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
					 SQLITE_OPEN_NOMUTEX,
				 sqlvfs_name());
	sbuf_free(&name);
	if (rc != SQLITE_OK) {
		errbuf_line(err, len, "open live database %s: %s", path,
			    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return sqlh_errno(rc);
	}
	sqlite3_busy_timeout(db, LIVEDB_BUSY_MS);
	/* Hardened as every connection: live has no triggers nor views of its own, and attaches untrusted files. */
	sqlh_harden(db);

	int r = run(db, "PRAGMA trusted_schema = OFF", "configure live database", path, err, len);
	if (!r)
		r = journal_mode(db, "WAL", path, err, len);
	/* FULL: in WAL mode NORMAL may lose the last commits on power loss, and the queue drops a delta once it is applied. */
	if (!r)
		r = run(db, "PRAGMA synchronous = FULL", "configure live database", path, err, len);
	if (!r)
		r = run(db, ledger_sql, "create the ledger", path, err, len);
	if (r) {
		sqlite3_close(db);
		return r;
	}
	livedb *l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		sqlite3_close(db);
		errbuf_line(err, len, "open live database %s: out of memory", path);
		return -ENOMEM;
	}
	l->db = db;
	l->cancel = cancel;
	if (diag)
		l->diag = *diag;
	sqlite3_progress_handler(db, LIVEDB_CANCEL_STEPS, livedb_progress, l);
	*out = l;
	return 0;
}

static bool is_sha256_hex(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	return strspn(s, "0123456789abcdef") == 64;
}

/* Ends a failed transaction. The caller's message stays; a failed ROLLBACK is logged. */
static void rollback(livedb *l)
{
	if (sqlite3_get_autocommit(l->db))
		return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
	char *msg = NULL;
	if (sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, &msg) != SQLITE_OK)
		diag_say(&l->diag, LOG_ERR, "live database %s: ROLLBACK failed: %s", l->path,
			 msg ? msg : sqlite3_errmsg(l->db));
	sqlite3_free(msg);
}

/* Once the transaction is over, the delta attached by delta_apply can go. */
static int detach(livedb *l, char *msg, size_t len, int ret)
{
	char err[256];
	int r = delta_detach(l->db, err, sizeof(err));
	if (r == 0)
		return ret;
	diag_say(&l->diag, LOG_ERR, "live database %s: %s", l->path, err);
	if (ret < 0)
		return ret;
	errbuf_line(msg, len, "%s", err);
	return r;
}

/* Is sha in the ledger? 1 yes (*seq its row, msg says which), 0 no, negative errno. */
static int ledger_has(livedb *l, const char *sha, int64_t *seq, char *msg, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(l->db, "SELECT seq, name FROM _snapfs_ledger WHERE sha256 = ?1",
				    -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	int r = 0;
	if (rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(st, 0);
		errbuf_line(msg, len, "already applied: ledger seq %lld, delta %s", (long long)*seq,
			    (const char *)sqlite3_column_text(st, 1));
		r = 1;
	} else if (rc != SQLITE_DONE) {
		errbuf_line(msg, len, "read the ledger of %s: %s", l->path, sqlite3_errmsg(l->db));
		r = sqlh_errno(sqlite3_extended_errcode(l->db));
		r = r ? r : -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

static int ledger_add(livedb *l, const char *sha, const char *name, int64_t *seq, char *msg,
		      size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		l->db, "INSERT INTO _snapfs_ledger (sha256, name, applied_at) VALUES (?1, ?2, ?3)",
		-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
		rc = sqlite3_step(st);
	}
	int r = 0;
	if (rc == SQLITE_DONE)
		*seq = sqlite3_last_insert_rowid(l->db);
	if (rc != SQLITE_DONE) {
		errbuf_line(msg, len, "write the ledger row of %s: %s", name, sqlite3_errmsg(l->db));
		r = sqlh_errno(sqlite3_extended_errcode(l->db));
		r = r ? r : -EIO;
	}
	sqlite3_finalize(st);
	return r;
}

/*
 * What runs beside the merge, on a thread of its own: the second half of
 * the delta's check (delta_check_finish: integrity_check and the row
 * scans, within the budget) and then, unless the caller gave it, the
 * delta's SHA-256: from known if that has it (waiting for the thread that
 * hashed it while it was written, off the merge's path), else read from
 * the file. The merge runs meanwhile on the compactor thread: two
 * cores. A check that fails interrupts the merge; sqlite3_interrupt may be
 * called from any thread while the connection is open, and it is: the
 * compactor thread joins this one before anything else on it.
 */
struct side {
	delta_checker *k; /* the check to finish, or NULL */
	const char *path;
	sqlite3 *live;
	atomic_bool merging;       /* the compactor thread is inside delta_apply */
	const atomic_bool *cancel; /* the compactor's stop flag: no hash once it is set */
	bool want_hash;
	const struct livedb_known_hash *known; /* asked first for the hash (may be NULL) */
	int check_rc;
	double check_ms;
	char reason[1024];
	struct livedb_file *file; /* the hash's result */
};

static void *side_run(void *arg)
{
	struct side *s = arg;
	if (s->k) {
		double t0 = mono_now();
		s->check_rc = delta_check_finish(s->k, s->path, s->reason, sizeof(s->reason));
		s->k = NULL;
		s->check_ms = (mono_now() - t0) * 1e3;
		if (s->check_rc && atomic_load(&s->merging))
			sqlite3_interrupt(s->live);
	}
	if (s->want_hash && s->cancel && atomic_load(s->cancel)) {
		s->file->hash_rc = -ECANCELED; /* a stop: not worth reading the file for */
	} else if (s->want_hash) {
		unsigned char sha[FSX_SHA256_LEN];
		double t0 = mono_now();
		if (s->known && s->known->get(s->known->arg, s->file->sha256)) {
			s->file->hash_known = true;
			s->file->hash_rc = 0;
		} else {
			s->file->hash_rc = fsx_sha256_file(s->path, sha, &s->file->size);
			if (s->file->hash_rc == 0)
				hex_encode(sha, sizeof(sha), s->file->sha256);
		}
		s->file->hash_ms = (mono_now() - t0) * 1e3;
	}
	return NULL;
}

/*
 * One transaction: the first half of the check, then the merge beside
 * the second half and the hash (struct side), then the ledger: a delta
 * already there is rolled back as a duplicate, whatever its check or
 * merge said this time (its rows are in live; it must not be called
 * rejected), any other gets its ledger row and the commit.
 */
static int apply_delta(livedb *db, const char *path, const char *name, const char *given_hex,
		       const struct livedb_known_hash *known, struct livedb_file *file,
		       int64_t *seq, char *msg, size_t len)
{
	/* A large delta: the rollback journal, between transactions (livedb_bulk). */
	struct stat st;
	bool there = stat(path, &st) == 0;
	if (there)
		file->size = (uint64_t)st.st_size; /* a hash read from the file says the same */
	int r = there && (uint64_t)st.st_size >= LIVEDB_BULK_BYTES ? livedb_bulk(db, msg, len) : 0;
	/* IMMEDIATE: take the write lock now, so nothing between the ledger check and the commit can be busy. */
	if (!r)
		r = run(db->db, "BEGIN IMMEDIATE", "begin a transaction", db->path, msg, len);
	if (r)
		return livedb_cancelled(db, r);
	struct side s = {.path = path,
			 .live = db->db,
			 .cancel = db->cancel,
			 .want_hash = !given_hex,
			 .known = known,
			 .file = file};
	double t0 = mono_now();
	r = delta_check_begin(db->db, path, &(struct delta_ctl){.cancel = db->cancel}, &s.k, msg,
			      len);
	double t1 = mono_now();
	pthread_t th;
	bool beside = pthread_create(&th, NULL, side_run, &s) == 0;
	if (!beside)
		side_run(&s); /* no thread to be had: check and hash first, then merge */
	if (!r && !s.check_rc) {
		atomic_store(&s.merging, true);
		r = delta_apply(db->db, path, msg, len);
		atomic_store(&s.merging, false);
	}
	if (beside)
		pthread_join(th, NULL);
	double t2 = mono_now();
	/* The check's verdict explains a merge it interrupted, or one that met the corruption it found. */
	if (s.check_rc) {
		r = s.check_rc;
		errbuf_line(msg, len, "%s", s.reason);
	}
	const char *hex = given_hex ? given_hex : file->sha256;
	int hr = given_hex ? 0 : file->hash_rc;
	if (hr == -ECANCELED) {
		errbuf_line(msg, len, "apply %s: stopped (snapfs is shutting down)", name);
		r = -ECANCELED;
	} else if (hr < 0 && !r) {
		errbuf_line(msg, len, "cannot read %s: %s", path, strerror(-hr));
		r = DELTA_RETRY;
	}
	if (!hr && !(db->cancel && atomic_load(db->cancel))) {
		char lmsg[256];
		int64_t had = 0;
		int d = ledger_has(db, hex, &had, lmsg, sizeof(lmsg));
		if (d == 1) {
			rollback(db);
			*seq = had;
			errbuf_line(msg, len, "%s", lmsg);
			file->check_ms = (t1 - t0) * 1e3 + s.check_ms;
			file->apply_ms = (t2 - t1) * 1e3;
			return detach(db, msg, len, LIVEDB_DUPLICATE);
		}
		if (d < 0 && !r) {
			errbuf_line(msg, len, "%s", lmsg);
			r = d;
		}
	}
	if (!r)
		r = ledger_add(db, hex, name, seq, msg, len);
	if (!r)
		r = run(db->db, "COMMIT", "commit", db->path, msg, len);
	file->check_ms = (t1 - t0) * 1e3 + s.check_ms;
	file->apply_ms = (mono_now() - t1) * 1e3;
	if (r) {
		rollback(db);
		*seq = 0;
		r = r == 1             ? LIVEDB_REJECTED
		    : r == DELTA_RETRY ? LIVEDB_FAILED
				       : livedb_cancelled(db, r);
		return detach(db, msg, len, r);
	}
	return detach(db, msg, len, LIVEDB_APPLIED);
}

int livedb_apply(livedb *db, const char *delta_path, const char *delta_name, const char *sha256_hex,
		 int64_t *seq, char *msg, size_t len)
{
	if (len)
		msg[0] = '\0';
	*seq = 0;
	if (!is_sha256_hex(sha256_hex) || !delta_name || !delta_path) {
		errbuf_line(msg, len, "apply %s: sha256 must be 64 lower-case hex digits",
			    delta_name ? delta_name : "(null)");
		return -EINVAL;
	}
	struct livedb_file file = {0};
	return apply_delta(db, delta_path, delta_name, sha256_hex, NULL, &file, seq, msg, len);
}

int livedb_apply_file(livedb *db, const char *delta_path, const char *delta_name,
		      const struct livedb_known_hash *known, struct livedb_file *file, int64_t *seq,
		      char *msg, size_t len)
{
	if (len)
		msg[0] = '\0';
	*seq = 0;
	*file = (struct livedb_file){0};
	if (!delta_name || !delta_path) {
		errbuf_line(msg, len, "apply: no delta path or name");
		return -EINVAL;
	}
	return apply_delta(db, delta_path, delta_name, NULL, known, file, seq, msg, len);
}

int livedb_ledger_since(livedb *db, int64_t after, livedb_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		db->db,
		"SELECT seq, sha256, name, applied_at FROM _snapfs_ledger WHERE seq > ?1 ORDER BY seq",
		-1, &st, NULL);
	if (rc != SQLITE_OK) {
		diag_say(&db->diag, LOG_ERR, "live database %s: read the ledger: %s", db->path,
			 sqlite3_errmsg(db->db));
		return sqlh_errno(rc) ? sqlh_errno(rc) : -EIO;
	}
	sqlite3_bind_int64(st, 1, after);
	livedb_entry *v = NULL;
	size_t cnt = 0, cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			livedb_entry *nv = realloc(v, cap * sizeof(*nv));
			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			v = nv;
		}
		livedb_entry *e = &v[cnt];
		e->seq = sqlite3_column_int64(st, 0);
		snprintf(e->sha256, sizeof(e->sha256), "%s",
			 (const char *)sqlite3_column_text(st, 1));
		e->name = strdup((const char *)sqlite3_column_text(st, 2));
		e->applied_at = sqlite3_column_int64(st, 3);
		if (!e->name) {
			rc = SQLITE_NOMEM;
			break;
		}
		cnt++;
	}
	if (rc != SQLITE_DONE) {
		diag_say(&db->diag, LOG_ERR, "live database %s: read the ledger: %s", db->path,
			 rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db->db));
		sqlite3_finalize(st);
		livedb_entries_free(v, cnt);
		return sqlh_errno(rc) ? sqlh_errno(rc) : -EIO;
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return 0;
}

void livedb_entries_free(livedb_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++)
		free(e[i].name);
	free(e);
}

/* max(seq) of the ledger of db; on failure err (if not NULL) says why. */
static int ledger_max(sqlite3 *db, const char *path, int64_t *out, char *err, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) FROM _snapfs_ledger", -1, &st,
				    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		return 0;
	}
	errbuf_line(err, len, "database %s: read the ledger: %s", path, sqlite3_errmsg(db));
	rc = sqlite3_extended_errcode(db);
	sqlite3_finalize(st);
	return sqlh_errno(rc) ? sqlh_errno(rc) : -EIO;
}

int livedb_ledger_max(livedb *db, int64_t *out)
{
	char err[512];
	*out = 0;
	int r = ledger_max(db->db, db->path, out, err, sizeof(err));
	if (r < 0)
		diag_say(&db->diag, LOG_ERR, "%s", err);
	return r;
}

int livedb_ledger_max_file(const char *path, int64_t *out, char *err, size_t len)
{
	*out = 0;
	sqlite3 *db = NULL;
	/* Read-only and immutable: a sealed file gets no -wal or -shm beside it. */
	int r = sqlh_open_ro(path, &db, err, len);
	if (r)
		return r;
	r = ledger_max(db, path, out, err, len);
	sqlite3_close(db);
	return r;
}

/* Keeps the first error for the caller; reports every one to the sink. */
static int close_fail(livedb *l, int *ret, char *err, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static int close_fail(livedb *l, int *ret, char *err, size_t len, int code, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_say(&l->diag, LOG_ERR, "close live database %s: %s", l->path, buf);
	if (*ret == 0) {
		errbuf_line(err, len, "close live database %s: %s", l->path, buf);
		*ret = code;
	}
	return code;
}

/*
 * Why close is checked, step by step: sealing copies the database file
 * alone. If frames were left in the WAL, or the connection could not
 * really close (a statement left unfinalized keeps it open, and SQLite
 * only checkpoints and removes the -wal on the last close), the copy
 * would miss committed data or be "malformed". So each step must
 * succeed, and we also look at the -wal file itself.
 */
int livedb_close(livedb *db, char *err, size_t len)
{
	if (len)
		err[0] = '\0';
	if (!db)
		return 0;
	int ret = 0;
	sqlite3 *s = db->db;
	if (!sqlite3_get_autocommit(s)) {
		close_fail(db, &ret, err, len, -EBUSY, "a transaction was still open; rolled back");
		rollback(db);
	}
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s, "PRAGMA main.wal_checkpoint(TRUNCATE)", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int busy = sqlite3_column_int(st, 0);
		int frames = sqlite3_column_int(st, 1);
		int done = sqlite3_column_int(st, 2);
		if (busy)
			close_fail(db, &ret, err, len, -EBUSY,
				   "wal_checkpoint(TRUNCATE) was blocked by another connection (busy=1, %d of %d frames checkpointed)",
				   done, frames);
		else if (frames != done)
			close_fail(db, &ret, err, len, -EIO,
				   "wal_checkpoint(TRUNCATE) checkpointed %d of %d frames", done,
				   frames);
	} else {
		close_fail(db, &ret, err, len, sqlh_errno(rc) ? sqlh_errno(rc) : -EIO,
			   "wal_checkpoint(TRUNCATE): %s", sqlite3_errmsg(s));
	}
	sqlite3_finalize(st);
	st = NULL;
	/*
	 * Leave the file in rollback-journal mode: its copy becomes a snapshot,
	 * and a WAL-mode file cannot be opened read-only (sqlite3 -readonly,
	 * a read-only mount) without a -shm beside it. Switching also removes
	 * -wal and -shm; livedb_open turns WAL on again for the next batch.
	 */
	char jerr[512];
	if (ret == 0 && journal_mode(s, "DELETE", db->path, jerr, sizeof(jerr)) < 0)
		close_fail(db, &ret, err, len, -EIO, "%s", jerr);
	/* Every statement of this module and of delta is finalized where it is made; one left here is a bug. */
	while ((st = sqlite3_next_stmt(s, NULL)) != NULL) {
		close_fail(db, &ret, err, len, -EBUSY, "statement left unfinalized: %s",
			   sqlite3_sql(st));
		sqlite3_finalize(st);
	}
	/* sqlite3_close, not _v2: _v2 would "succeed" and leave a zombie connection holding the file. */
	rc = sqlite3_close(s);
	if (rc != SQLITE_OK) {
		close_fail(db, &ret, err, len, -EBUSY, "sqlite3_close: %s", sqlite3_errmsg(s));
		sqlite3_close_v2(s); /* frees it as soon as whatever holds it lets go */
	}
	sbuf wal = SBUF_INIT;
	sbuf_addf(&wal, "%s-wal", db->path);
	struct stat stw;
	if (stat(sbuf_str(&wal), &stw) == 0) {
		if (stw.st_size > 0)
			close_fail(db, &ret, err, len, -EIO, "%s still holds %lld bytes after close",
				   sbuf_str(&wal), (long long)stw.st_size);
	} else if (errno != ENOENT) {
		int e = errno;
		close_fail(db, &ret, err, len, -e, "stat %s: %s", sbuf_str(&wal), strerror(e));
	}
	/* A -journal left behind would be a transaction the file does not hold whole yet. */
	sbuf_reset(&wal);
	sbuf_addf(&wal, "%s-journal", db->path);
	if (stat(sbuf_str(&wal), &stw) == 0 && stw.st_size > 0)
		close_fail(db, &ret, err, len, -EIO, "%s still holds %lld bytes after close",
			   sbuf_str(&wal), (long long)stw.st_size);
	sbuf_free(&wal);
	free(db->path);
	free(db);
	return ret;
}

int livedb_bulk(livedb *db, char *err, size_t len)
{
	if (len)
		err[0] = '\0';
	/* Leaving WAL checkpoints what the log holds and removes it; only this connection has the file. */
	return livedb_cancelled(db, journal_mode(db->db, "DELETE", db->path, err, len));
}

void livedb_abandon(livedb *db)
{
	if (!db)
		return;
	if (!sqlite3_get_autocommit(db->db))
		rollback(db);
	sqlite3_stmt *st;
	while ((st = sqlite3_next_stmt(db->db, NULL)) != NULL)
		sqlite3_finalize(st);
	/* The last close of a WAL database checkpoints it; skip that: a commit is in the -wal already. */
	sqlite3_db_config(db->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	if (sqlite3_close(db->db) != SQLITE_OK) {
		diag_say(&db->diag, LOG_ERR, "live database %s: close: %s", db->path,
			 sqlite3_errmsg(db->db));
		sqlite3_close_v2(db->db);
	}
	free(db->path);
	free(db);
}
