/*
 * compactor_batch — one round of the compactor thread on one collection:
 * look at live once after start, apply the queue, seal and publish.
 *
 * Runs on the compactor thread only, with cc->busy set and no lock held;
 * it takes c->mu only to update the fields status reads. The live
 * connection is opened and closed here, within the round.
 *
 * How a failure is handled (see compactor.h):
 *  - LIVEDB_REJECTED: the delta goes to rejected/ with its reason;
 *  - LIVEDB_FAILED (its file unreadable, a merge statement failing with
 *    a plain error) or a delta file that cannot be hashed: counted
 *    against that delta;
 *    the collection waits a backoff; after max_attempts in a row the
 *    delta is rejected ("failed N times: ...");
 *  - any other error (disk full, live's I/O or corruption, out of
 *    memory): the machine's; the collection waits a backoff, nothing is
 *    counted against a delta;
 *  - -ECANCELED: a stop; the round ends at once, nothing is sealed (the
 *    next start seals what live holds).
 */
#include "compactor.h"
#include "compactor_i.h"
#include "mono.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hex.h"
#include "livedb.h"
#include "log.h"
#include "manifest.h"
#include "seal.h"
#include "xalloc.h"

void cc_load_last(compactor *c, const char *coll, struct last_snapshot *ls)
{
	memset(ls, 0, sizeof(*ls));
	uint64_t *ids = NULL;
	size_t n = 0;
	if (store_snapshots(c->st, coll, &ids, &n) < 0 || n == 0) {
		free(ids);
		return;
	}
	char idname[24], leaf[PATH_MAX], path[PATH_MAX];
	store_id_format(ids[n - 1], idname, sizeof(idname));
	snprintf(leaf, sizeof(leaf), "%s/MANIFEST.json", idname);
	if (store_path(c->st, coll, STORE_AREA_SNAPSHOTS, leaf, path, sizeof(path)) == 0) {
		char *json = NULL;
		struct stat st;
		if (fsx_read_all(path, &json, NULL) == 0 &&
		    manifest_read_basic(json, &ls->size, ls->sha256, &ls->id) == 0 &&
		    stat(path, &st) == 0)
			ls->created = st.st_mtime;
		else
			log_warn("collection %s: cannot read %s; status will not show its details",
				 coll, path);
		free(json);
	}
	ls->id = ids[n - 1];
	snprintf(leaf, sizeof(leaf), "%s/%s.sqlite3", idname, coll);
	char err[512];
	if (store_path(c->st, coll, STORE_AREA_SNAPSHOTS, leaf, path, sizeof(path)) == 0 &&
	    livedb_ledger_max_file(path, &ls->ledger_max, err, sizeof(err)) < 0)
		log_warn("collection %s: cannot read the ledger of snapshot %s: %s", coll, idname,
			 err);
	free(ids);
}

/* The failures that are the machine's, not a delta's: no delta is ever rejected for these. */
static bool machine_fault(int rc)
{
	return rc == -ENOSPC || rc == -EDQUOT || rc == -EROFS || rc == -EBUSY || rc == -EIO ||
	       rc == -ENOMEM || rc == -EACCES || rc == -EPERM || rc == -ENOENT;
}

/* Ends a live connection: checkpoint and close, or (stopping) close without the checkpoint. */
static int live_end(compactor *c, struct ccoll *cc, livedb *db, const char *live)
{
	char msg[1024];
	if (cc_stopping(c)) {
		livedb_abandon(db); /* the WAL stays; the next open recovers it */
		return -ECANCELED;
	}
	int rc = livedb_close(db, msg, sizeof(msg));
	if (rc < 0)
		cc_error(c, cc, "collection %s: closing live database %s failed: %s", cc->name,
			 live, msg);
	return rc;
}

/* After start: is the live ledger ahead of the newest snapshot (a crash before publish)? */
static int check_live(compactor *c, struct ccoll *cc, const char *live)
{
	struct stat st;
	if (stat(live, &st) < 0)
		return 0; /* nothing merged yet */
	char msg[1024];
	livedb *db = NULL;
	int rc = livedb_open(live, &c->cancel, &log_sink, &db, msg, sizeof(msg));
	if (rc < 0) {
		if (rc != -ECANCELED)
			cc_error(c, cc, "collection %s: cannot open live database %s: %s", cc->name,
				 live, msg);
		return rc;
	}
	int64_t max = 0;
	rc = livedb_ledger_max(db, &max);
	int rc2 = live_end(c, cc, db, live);
	if (rc == 0 && rc2 == 0) {
		pthread_mutex_lock(&c->mu);
		int64_t sealed = cc->last.ledger_max;
		if (max > sealed)
			cc->needs_seal = true;
		pthread_mutex_unlock(&c->mu);
		if (max > sealed)
			log_info("collection %s: live database holds deltas not in any snapshot (ledger %lld > %lld); "
				 "sealing them",
				 cc->name, (long long)max, (long long)sealed);
	}
	return rc < 0 ? rc : rc2;
}

/* Seals the closed live database of cc as a new snapshot and publishes it. */
static int seal_and_publish(compactor *c, struct ccoll *cc, const char *live,
			    const livedb_entry *entries, size_t n, int64_t ledger_max)
{
	char staging[PATH_MAX];
	uint64_t id;
	int rc = store_id_alloc(c->st, cc->name, &id);
	if (rc == 0)
		rc = store_staging_create(c->st, cc->name, id, staging, sizeof(staging));
	if (rc < 0) {
		cc_error(c, cc, "collection %s: cannot prepare a snapshot: %s", cc->name,
			 strerror(-rc));
		return rc;
	}
	struct manifest_delta *md = calloc(n ? n : 1, sizeof(*md));
	if (!md)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		md[i] = (struct manifest_delta){entries[i].seq, entries[i].name, entries[i].sha256};
	struct seal_request req = {
		.collection = cc->name,
		.id = id,
		.live_path = live,
		.staging_dir = staging,
		.created = time(NULL),
		.ledger_max = ledger_max,
		.deltas = md,
		.ndeltas = n,
		.cancel = &c->cancel,
	};
	struct seal_result res;
	char err[512];
	double t0 = mono_now();
	rc = seal_make(&req, &res, err, sizeof(err));
	free(md);
	if (rc == 0) {
		rc = store_publish(c->st, cc->name, id);
		if (rc < 0)
			snprintf(err, sizeof(err), "publishing failed: %s", strerror(-rc));
	}
	if (rc < 0) {
		fsx_rm_rf(staging);
		if (rc == -ECANCELED)
			return rc;
		pthread_mutex_lock(&c->mu);
		cc->seal_failures++;
		pthread_mutex_unlock(&c->mu);
		cc_error(c, cc, "collection %s: snapshot %llu not published: %s", cc->name,
			 (unsigned long long)id, err);
		return rc;
	}
	log_info("collection %s: published snapshot %llu (%llu bytes, sha256 %s, %zu new deltas, "
		 "copy+hash %.0f ms, check %.0f ms)",
		 cc->name, (unsigned long long)id, (unsigned long long)res.size, res.sha256, n,
		 res.copy_ms, res.check_ms);
	pthread_mutex_lock(&c->mu);
	cc->needs_seal = false;
	cc->published_total++;
	cc->last_seal_ms = res.copy_ms + res.check_ms;
	cc->batch.seal_ms = (mono_now() - t0) * 1e3;
	cc->batch.ms = (mono_now() - cc->batch_start) * 1e3;
	cc->last_batch = cc->batch;
	cc->last = (struct last_snapshot){.id = id,
					  .created = req.created,
					  .size = res.size,
					  .ledger_max = ledger_max};
	memcpy(cc->last.sha256, res.sha256, sizeof(cc->last.sha256));
	cc->last_error[0] = '\0';
	pthread_mutex_unlock(&c->mu);
	if (c->ev.published)
		c->ev.published(c->ev.ctx, cc->name, id);
	return 0;
}

/*
 * Moves d to rejected/ with reason; the count and status follow what is
 * on disk. false if it could not be moved: the round then ends and the
 * collection waits a backoff (a disk that cannot take the move now).
 */
static bool reject(compactor *c, struct ccoll *cc, const store_delta *d, const char *reason,
		   bool *gone)
{
	log_warn("collection %s: rejected delta %s: %s", cc->name, d->name, reason);
	uint64_t pruned = 0;
	int rc = store_reject(c->st, cc->name, d, reason);
	if (rc == 0 && c->cfg.rejected_max)
		store_rejected_prune(c->st, cc->name, c->cfg.rejected_max, &pruned);
	pthread_mutex_lock(&c->mu);
	if (rc == 0) {
		cc->rejected_total++;
		cc->rejected_now = cc->rejected_now + 1 > pruned ? cc->rejected_now + 1 - pruned : 0;
		*gone = true;
	}
	if (d->seq == cc->fail_seq)
		cc->fail_count = 0;
	pthread_mutex_unlock(&c->mu);
	if (rc < 0)
		cc_error(c, cc, "collection %s: cannot move delta %s to rejected/: %s", cc->name,
			 d->name, strerror(-rc));
	return rc == 0;
}

/*
 * A failure of delta d that is its own (unreadable, a merge statement
 * failing). Returns true when it was rejected for failing too often (the
 * batch goes on); false when the round must end and wait a backoff.
 */
static bool count_failure(compactor *c, struct ccoll *cc, const store_delta *d, const char *msg,
			  bool *gone)
{
	pthread_mutex_lock(&c->mu);
	if (cc->fail_seq != d->seq) {
		cc->fail_seq = d->seq;
		cc->fail_count = 0;
	}
	unsigned n = ++cc->fail_count;
	cc->delta_failures++;
	pthread_mutex_unlock(&c->mu);
	if (n < c->cfg.max_attempts) {
		cc_error(c, cc, "collection %s: delta %s failed (attempt %u of %u): %s", cc->name,
			 d->name, n, c->cfg.max_attempts, msg);
		return false;
	}
	char reason[1024];
	snprintf(reason, sizeof(reason), "failed %u times in a row, the last time: %s", n, msg);
	return reject(c, cc, d, reason, gone);
}

/* Why a delta named like a SQLite side file is refused, or NULL. */
static const char *side_file_reason(const char *name)
{
	static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t k = strlen(suffixes[i]);
		if (n > k && !strcmp(name + n - k, suffixes[i]))
			return "is a SQLite side file (write-ahead log, shared memory or rollback journal): the database was "
			       "copied while a connection had it open, so its committed rows may be only in this file. "
			       "Close every connection (or run PRAGMA wal_checkpoint(TRUNCATE)), or copy it with "
			       "sqlite3 DB \".backup COPY\" or VACUUM INTO, and send that file alone";
	}
	return NULL;
}

/*
 * Whether delta i came with a non-empty "NAME-wal": queued beside it, or
 * still in incoming/ (being copied after it).
 */
static bool has_wal_sibling(compactor *c, struct ccoll *cc, const store_delta *q, size_t n, size_t i)
{
	size_t len = strlen(q[i].name);
	struct stat st;
	for (size_t j = 0; j < n; j++) {
		if (j == i || strncmp(q[j].name, q[i].name, len) || strcmp(q[j].name + len, "-wal"))
			continue;
		if (stat(q[j].path, &st) == 0 && st.st_size > 0)
			return true;
	}
	char leaf[NAME_MAX + 8], path[PATH_MAX];
	snprintf(leaf, sizeof(leaf), "%s-wal", q[i].name);
	return store_path(c->st, cc->name, STORE_AREA_INCOMING, leaf, path, sizeof(path)) == 0 &&
	       stat(path, &st) == 0 && st.st_size > 0;
}

/* What to do after one delta; *stop ends the batch. */
/* A queued delta's hash taken by the mount while it was written (compactor_delta_hash). */
struct written_hash {
	trailhash *t;
	const char *path;
};

/*
 * livedb_known_hash.get, on the thread beside the merge: waits for the
 * hash and gives it only if it describes the very file queued now (same
 * device, inode, size and mtime), so that a file changed behind the
 * mount's back is hashed again, never trusted.
 */
static bool written_hash_get(void *arg, char hex[FSX_SHA256_HEX])
{
	const struct written_hash *w = arg;
	struct trailhash_result r;
	struct stat st;
	if (trailhash_result(w->t, &r) != 0 || lstat(w->path, &st) != 0 ||
	    !trailhash_same_file(&r, &st))
		return false;
	hex_encode(r.sha256, sizeof(r.sha256), hex);
	return true;
}

static void apply_one(compactor *c, struct ccoll *cc, livedb *db, store_delta *q, size_t nq,
		      size_t i, bool *applied, bool *gone, bool *stop)
{
	char msg[1024], hex[FSX_SHA256_HEX];
	const store_delta *d = &q[i];
	const char *why = side_file_reason(d->name);
	if (why) {
		*stop = !reject(c, cc, d, why, gone);
		return;
	}
	if (has_wal_sibling(c, cc, q, nq, i)) {
		snprintf(msg, sizeof(msg),
			 "arrived with %s-wal: the database was copied while a connection had it open, and rows "
			 "committed only in the write-ahead log would be missing. Checkpoint it (PRAGMA "
			 "wal_checkpoint(TRUNCATE)) or copy it with sqlite3 DB \".backup COPY\", and send that file alone",
			 d->name);
		*stop = !reject(c, cc, d, msg, gone);
		return;
	}
	struct livedb_file file;
	int64_t seq = 0;
	struct written_hash w = {.t = cc_take_hash(c, cc, d->seq), .path = d->path};
	struct livedb_known_hash known = {.get = written_hash_get, .arg = &w};
	int rc = livedb_apply_file(db, d->path, d->name, w.t ? &known : NULL, &file, &seq, msg,
				   sizeof(msg));
	trailhash_put(w.t);
	if (file.hash_rc < 0 && file.hash_rc != -ECANCELED) {
		snprintf(msg, sizeof(msg), "cannot read queued file %s: %s", d->path,
			 strerror(-file.hash_rc));
		*stop = !count_failure(c, cc, d, msg, gone);
		return;
	}
	memcpy(hex, file.sha256, sizeof(hex));
	pthread_mutex_lock(&c->mu);
	cc->batch.hash_ms += file.hash_ms;
	cc->batch.hashed_while_written += file.hash_known;
	cc->batch.check_ms += file.check_ms;
	cc->batch.apply_ms += file.apply_ms;
	if (rc == LIVEDB_APPLIED)
		cc->batch.deltas++, cc->batch.bytes += file.size;
	int64_t published = cc->last.ledger_max;
	if (rc == LIVEDB_APPLIED || rc == LIVEDB_DUPLICATE)
		cc->fail_count = cc->fail_seq == d->seq ? 0 : cc->fail_count;
	pthread_mutex_unlock(&c->mu);
	switch (rc) {
	case LIVEDB_APPLIED:
		*applied = true;
		log_info("collection %s: applied delta %s (sha256 %s)", cc->name, d->name, hex);
		pthread_mutex_lock(&c->mu);
		cc->applied_total++;
		cc->needs_seal = true;
		pthread_mutex_unlock(&c->mu);
		return;
	case LIVEDB_DUPLICATE:
		pthread_mutex_lock(&c->mu);
		cc->duplicate_total++;
		pthread_mutex_unlock(&c->mu);
		if (seq > published) {
			/* In live but in no published snapshot yet (a seal failed or was cut short). */
			log_info("collection %s: delta %s (sha256 %s) is in the ledger but not yet in a snapshot; "
				 "keeping it queued until one holds it",
				 cc->name, d->name, hex);
			*applied = true;
			pthread_mutex_lock(&c->mu);
			cc->needs_seal = true;
			pthread_mutex_unlock(&c->mu);
			return;
		}
		log_info("collection %s: delta %s (sha256 %s) is already in a published snapshot; not applied again",
			 cc->name, d->name, hex);
		if (store_queue_remove(c->st, cc->name, d) == 0)
			*gone = true;
		else
			*stop = true; /* the disk refuses: wait a backoff rather than loop */
		return;
	case LIVEDB_REJECTED: *stop = !reject(c, cc, d, msg, gone); return;
	case LIVEDB_FAILED: *stop = !count_failure(c, cc, d, msg, gone); return;
	case -ECANCELED: *stop = true; return;
	default:
		if (rc < 0 && machine_fault(rc)) {
			cc_error(c, cc,
				 "collection %s: applying delta %s failed, not the delta's fault: %s",
				 cc->name, d->name, msg);
			*stop = true;
			return;
		}
		/* A merge statement failing with a plain error: counted against the delta. */
		*stop = !count_failure(c, cc, d, msg, gone);
	}
}

/* Applies up to batch_max queued deltas; returns whether the round failed (backoff). */
static bool apply_queue(compactor *c, struct ccoll *cc, const char *live, livedb **dbp)
{
	store_delta *q = NULL;
	size_t nq = 0;
	pthread_mutex_lock(&c->mu);
	cc->kicks = 0; /* before listing: a kick from now on is either listed or counted */
	pthread_mutex_unlock(&c->mu);
	int rc = store_queue_list(c->st, cc->name, &q, &nq);
	if (rc < 0) {
		cc_error(c, cc, "collection %s: cannot list the queue: %s", cc->name, strerror(-rc));
		return true;
	}
	size_t nwork = nq < c->cfg.batch_max ? nq : c->cfg.batch_max;
	bool *applied = xcalloc(nq, sizeof(bool)), *gone = xcalloc(nq, sizeof(bool));
	bool failed = false, stop = false;
	char msg[1024];
	pthread_mutex_lock(&c->mu);
	bool need_live = nwork || cc->needs_seal;
	if (!cc->needs_seal) { /* a new batch; an unsealed one goes on counting */
		cc->batch = (struct batch_times){0};
		cc->batch_start = mono_now();
	}
	pthread_mutex_unlock(&c->mu);
	if (need_live) {
		rc = livedb_open(live, &c->cancel, &log_sink, dbp, msg, sizeof(msg));
		if (rc < 0) {
			if (rc != -ECANCELED)
				cc_error(c, cc, "collection %s: cannot open live database %s: %s",
					 cc->name, live, msg);
			failed = rc != -ECANCELED;
			nwork = 0;
		}
	}
	if (nwork)
		cc_set_state(c, cc, CSTATE_MERGING);
	for (size_t i = 0; i < nwork && !stop && !cc_stopping(c); i++) {
		apply_one(c, cc, *dbp, q, nq, i, &applied[i], &gone[i], &stop);
		failed = failed || (stop && !cc_stopping(c));
	}
	/* Seal what was applied, then drop those deltas from the queue (compactor.c, step 4). */
	if (*dbp) {
		pthread_mutex_lock(&c->mu);
		bool seal = cc->needs_seal;
		int64_t sealed = cc->last.ledger_max;
		pthread_mutex_unlock(&c->mu);
		livedb_entry *entries = NULL;
		size_t nentries = 0;
		int64_t max = 0;
		if (seal && (livedb_ledger_max(*dbp, &max) < 0 ||
			     livedb_ledger_since(*dbp, sealed, &entries, &nentries) < 0))
			seal = false, failed = true;
		rc = live_end(c, cc, *dbp, live);
		*dbp = NULL;
		if (rc < 0)
			seal = false, failed = failed || rc != -ECANCELED;
		if (seal && max <= sealed) {
			pthread_mutex_lock(&c->mu);
			cc->needs_seal = false;
			pthread_mutex_unlock(&c->mu);
			seal = false;
		}
		if (seal) {
			cc_set_state(c, cc, CSTATE_SEALING);
			rc = seal_and_publish(c, cc, live, entries, nentries, max);
			failed = failed || (rc < 0 && rc != -ECANCELED);
			for (size_t i = 0; rc == 0 && i < nq; i++)
				if (applied[i] && store_queue_remove(c->st, cc->name, &q[i]) == 0)
					gone[i] = true;
		}
		livedb_entries_free(entries, nentries);
	}
	/* The queue as it now is: what was listed and not gone, plus what arrived since. */
	uint64_t left = 0;
	for (size_t i = 0; i < nq; i++)
		left += !gone[i];
	pthread_mutex_lock(&c->mu);
	cc->queued = left + cc->kicks;
	pthread_mutex_unlock(&c->mu);
	free(applied);
	free(gone);
	store_deltas_free(q, nq);
	return failed;
}

bool cc_rebase(compactor *c, struct ccoll *cc)
{
	pthread_mutex_lock(&c->mu);
	uint64_t ticket = cc->rebase_ticket;
	char *db = cc->rebase_db ? strdup(cc->rebase_db) : NULL;
	bool nomem = cc->rebase_db && !db;
	pthread_mutex_unlock(&c->mu);
	if (nomem)
		return false;
	/* In a cluster queue/ holds only imports: S3 keeps them until a published snapshot has them. */
	store_delta *d = NULL;
	size_t n = 0;
	int rc = store_queue_list(c->st, cc->name, &d, &n);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = store_queue_remove(c->st, cc->name, &d[i]);
	store_deltas_free(d, n);
	if (rc == 0)
		rc = store_live_replace(c->st, cc->name, db);
	if (rc < 0) {
		cc_error(c, cc, "collection %s: cannot start over from %s: %s; retrying", cc->name,
			 db ? db : "nothing", strerror(-rc));
		free(db);
		return false;
	}
	struct last_snapshot ls;
	cc_load_last(c, cc->name, &ls);
	pthread_mutex_lock(&c->mu);
	cc->rebase_done = ticket;
	cc->rebase_pending = cc->rebase_ticket != ticket; /* a newer request came meanwhile */
	cc->queued = 0;
	cc->kicks = 0;
	cc->needs_seal = false;
	cc->check_live = false;
	cc->fail_seq = 0;
	cc->fail_count = 0;
	cc->last = ls;
	pthread_mutex_unlock(&c->mu);
	log_info("collection %s: starting over from %s (queue emptied)", cc->name,
		 db ? db : "an empty database");
	free(db);
	return true;
}

void cc_run(compactor *c, struct ccoll *cc)
{
	char live[PATH_MAX];
	if (store_path(c->st, cc->name, STORE_AREA_LIVE_DB, NULL, live, sizeof(live)) < 0) {
		cc_park(c, cc);
		return;
	}
	pthread_mutex_lock(&c->mu);
	bool recover = cc->recover, first = cc->check_live, rebase = cc->rebase_pending;
	pthread_mutex_unlock(&c->mu);
	bool failed = false;
	if (recover) {
		uint64_t quarantined = 0;
		int rc = store_recover(c->st, cc->name, false, &quarantined);
		if (rc < 0) {
			cc_error(c, cc, "collection %s: recovery failed: %s; retrying", cc->name,
				 strerror(-rc));
			cc_park(c, cc);
			return;
		}
		pthread_mutex_lock(&c->mu);
		cc->recover = false;
		pthread_mutex_unlock(&c->mu);
	}
	if (rebase) {
		if (cc_rebase(c, cc))
			cc_unpark(c, cc);
		else
			cc_park(c, cc);
		return;
	}
	if (first) {
		int rc = check_live(c, cc, live);
		if (rc == -ECANCELED)
			return;
		failed = rc < 0;
		if (!failed) {
			pthread_mutex_lock(&c->mu);
			cc->check_live = false;
			pthread_mutex_unlock(&c->mu);
		}
	}
	if (!failed) {
		livedb *db = NULL;
		failed = apply_queue(c, cc, live, &db);
	}
	if (cc_stopping(c))
		return;
	if (failed)
		cc_park(c, cc);
	else
		cc_unpark(c, cc);
}
