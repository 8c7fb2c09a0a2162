/*
 * compactor — merges queued deltas into live databases and seals snapshots.
 *
 * Threads: one compactor thread does all merging and sealing. Other
 * threads (FUSE workers) only call compactor_kick/add/remove/status,
 * which touch the fields marked "protected by c->mu".
 *
 * Per batch, the order that makes crashes harmless:
 *   1. apply each delta in its own transaction with its ledger row;
 *      rejected deltas move to rejected/, duplicates leave the queue;
 *   2. livedb_close: checkpoint(TRUNCATE) + close, checked;
 *   3. seal a copy in staging/, store_publish it (rename + fsyncs);
 *   4. only then remove the applied deltas from the queue.
 * Dying between 1 and 4 leaves applied deltas queued: the ledger makes
 * them duplicates. Dying between 1 and 3 leaves the live ledger ahead of
 * the newest snapshot's: compactor_add notices and seals at once.
 */
#include "compactor.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fsx.h"
#include "livedb.h"
#include "log.h"
#include "manifest.h"
#include "seal.h"

enum cstate { CSTATE_IDLE, CSTATE_MERGING, CSTATE_SEALING };

struct last_snapshot {
	uint64_t id; /* 0: none yet */
	time_t created;
	uint64_t size;
	char sha256[FSX_SHA256_HEX];
	int64_t ledger_max;
};

struct ccoll {
	char name[STORE_NAME_MAX + 1];
	struct ccoll *next;
	/* All fields below are protected by c->mu. */
	enum cstate state;
	bool busy;          /* the compactor thread is working on it */
	bool needs_seal;    /* live ledger is ahead of the newest snapshot */
	uint64_t queued;    /* deltas in queue/ */
	struct timespec due; /* when the gathered batch should start */
	uint64_t applied_total, duplicate_total, rejected_total, published_total, seal_failures;
	double last_seal_ms;
	struct last_snapshot last;
	char last_error[512];
};

struct compactor {
	store *st;
	struct compactor_config cfg;
	struct compactor_events ev;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond; /* signalled on kick, stop, and when busy clears */
	struct ccoll *colls; /* protected by mu */
	bool stopping;       /* protected by mu */
};

static const char *cstate_name(enum cstate s)
{
	return s == CSTATE_MERGING ? "merging" : s == CSTATE_SEALING ? "sealing" : "idle";
}

static struct ccoll *ccoll_find(compactor *c, const char *name)
{
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		if (!strcmp(cc->name, name))
			return cc;
	return NULL;
}

static void ts_add_ms(struct timespec *t, unsigned ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void set_state(compactor *c, struct ccoll *cc, enum cstate s)
{
	pthread_mutex_lock(&c->mu);
	cc->state = s;
	pthread_mutex_unlock(&c->mu);
}

static void set_error(compactor *c, struct ccoll *cc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_error(compactor *c, struct ccoll *cc, const char *fmt, ...)
{
	char msg[sizeof(cc->last_error)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s", msg);
	pthread_mutex_lock(&c->mu);
	snprintf(cc->last_error, sizeof(cc->last_error), "%s", msg);
	pthread_mutex_unlock(&c->mu);
}

/* Reads what status shows about the newest snapshot from its files. */
static void load_last_snapshot(compactor *c, const char *coll, struct last_snapshot *ls)
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
		    manifest_read_basic(json, &ls->size, ls->sha256, &ls->id) == 0 && stat(path, &st) == 0)
			ls->created = st.st_mtime;
		else
			log_warn("collection %s: cannot read %s; status will not show its details", coll,
				 path);
		free(json);
	}
	ls->id = ids[n - 1];
	snprintf(leaf, sizeof(leaf), "%s/%s.sqlite3", idname, coll);
	if (store_path(c->st, coll, STORE_AREA_SNAPSHOTS, leaf, path, sizeof(path)) == 0 &&
	    livedb_ledger_max_file(path, &ls->ledger_max) < 0)
		log_warn("collection %s: cannot read the ledger of snapshot %s", coll, idname);
	free(ids);
}

/*
 * Seals the closed live database of cc as a new snapshot and publishes
 * it. entries are the ledger rows new since the previous snapshot.
 */
static int seal_and_publish(compactor *c, struct ccoll *cc, const livedb_entry *entries, size_t n,
			    int64_t ledger_max)
{
	char live[PATH_MAX], staging[PATH_MAX];
	uint64_t id;
	int rc = store_path(c->st, cc->name, STORE_AREA_LIVE_DB, NULL, live, sizeof(live));
	if (rc == 0)
		rc = store_id_alloc(c->st, cc->name, &id);
	if (rc == 0)
		rc = store_staging_create(c->st, cc->name, id, staging, sizeof(staging));
	if (rc < 0) {
		set_error(c, cc, "collection %s: cannot prepare a snapshot: %s", cc->name, strerror(-rc));
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
	};
	struct seal_result res;
	char err[512];
	rc = seal_make(&req, &res, err, sizeof(err));
	free(md);
	if (rc < 0) {
		fsx_rm_rf(staging);
		pthread_mutex_lock(&c->mu);
		cc->seal_failures++;
		pthread_mutex_unlock(&c->mu);
		set_error(c, cc, "collection %s: snapshot %llu not published: %s", cc->name,
			  (unsigned long long)id, err);
		return rc;
	}
	rc = store_publish(c->st, cc->name, id);
	if (rc < 0) {
		fsx_rm_rf(staging);
		set_error(c, cc, "collection %s: publishing snapshot %llu failed: %s", cc->name,
			  (unsigned long long)id, strerror(-rc));
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
	cc->last = (struct last_snapshot){.id = id, .created = req.created, .size = res.size,
					  .ledger_max = ledger_max};
	memcpy(cc->last.sha256, res.sha256, sizeof(cc->last.sha256));
	cc->last_error[0] = '\0';
	pthread_mutex_unlock(&c->mu);
	if (c->ev.published)
		c->ev.published(c->ev.ctx, cc->name, id);
	return 0;
}

/* Whether a stop was asked for; the batch then ends after the current delta. */
static bool stopping(compactor *c)
{
	pthread_mutex_lock(&c->mu);
	bool s = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return s;
}

/* One batch for cc, on the compactor thread. cc->busy is set by the caller. */
static void run_batch(compactor *c, struct ccoll *cc)
{
	char live[PATH_MAX], msg[1024];
	store_delta *q = NULL;
	size_t nq = 0;
	if (store_path(c->st, cc->name, STORE_AREA_LIVE_DB, NULL, live, sizeof(live)) < 0)
		return;
	int rc = store_queue_list(c->st, cc->name, &q, &nq);
	if (rc < 0) {
		set_error(c, cc, "collection %s: cannot list the queue: %s", cc->name, strerror(-rc));
		return;
	}
	size_t nlisted = nq; /* all of them are freed; only the first batch_max are worked on */
	if (nq > c->cfg.batch_max)
		nq = c->cfg.batch_max;

	livedb *db = NULL;
	rc = livedb_open(live, &db, msg, sizeof(msg));
	if (rc < 0) {
		set_error(c, cc, "collection %s: cannot open live database %s: %s", cc->name, live, msg);
		store_deltas_free(q, nlisted);
		return;
	}
	set_state(c, cc, CSTATE_MERGING);
	size_t napplied = 0;
	bool *applied = calloc(nq ? nq : 1, sizeof(bool));
	for (size_t i = 0; i < nq && applied; i++) {
		unsigned char sha[FSX_SHA256_LEN];
		char hex[FSX_SHA256_HEX];
		rc = fsx_sha256_file(q[i].path, sha, NULL);
		if (rc < 0) {
			set_error(c, cc, "collection %s: cannot read queued delta %s (%s): %s", cc->name,
				  q[i].name, q[i].path, strerror(-rc));
			break;
		}
		fsx_hex(sha, sizeof(sha), hex);
		rc = livedb_apply(db, q[i].path, q[i].name, hex, msg, sizeof(msg));
		if (rc == LIVEDB_APPLIED) {
			applied[i] = true;
			napplied++;
			log_info("collection %s: applied delta %s (sha256 %s)", cc->name, q[i].name, hex);
			pthread_mutex_lock(&c->mu);
			cc->applied_total++;
			cc->needs_seal = true;
			pthread_mutex_unlock(&c->mu);
		} else if (rc == LIVEDB_DUPLICATE) {
			log_info("collection %s: delta %s (sha256 %s) is already in the ledger; not applied "
				 "again",
				 cc->name, q[i].name, hex);
			int r2 = store_queue_remove(c->st, cc->name, &q[i]);
			pthread_mutex_lock(&c->mu);
			cc->duplicate_total++;
			if (r2 == 0)
				cc->queued--;
			pthread_mutex_unlock(&c->mu);
		} else if (rc == LIVEDB_REJECTED) {
			log_warn("collection %s: rejected delta %s: %s", cc->name, q[i].name, msg);
			int r2 = store_reject(c->st, cc->name, &q[i], msg);
			pthread_mutex_lock(&c->mu);
			cc->rejected_total++;
			if (r2 == 0)
				cc->queued--;
			pthread_mutex_unlock(&c->mu);
		} else {
			/* Not the delta's fault (disk full, I/O): keep it queued, try later. */
			set_error(c, cc, "collection %s: applying delta %s failed: %s", cc->name, q[i].name,
				  msg);
			break;
		}
		if (stopping(c))
			break;
	}

	pthread_mutex_lock(&c->mu);
	bool seal_needed = cc->needs_seal;
	int64_t sealed_max = cc->last.ledger_max;
	pthread_mutex_unlock(&c->mu);
	livedb_entry *entries = NULL;
	size_t nentries = 0;
	int64_t ledger_max = 0;
	if (seal_needed && (livedb_ledger_max(db, &ledger_max) < 0 ||
			    livedb_ledger_since(db, sealed_max, &entries, &nentries) < 0))
		seal_needed = false;
	rc = livedb_close(db, msg, sizeof(msg));
	if (rc < 0) {
		set_error(c, cc, "collection %s: closing live database %s failed, not sealing: %s",
			  cc->name, live, msg);
		seal_needed = false;
	}
	if (seal_needed && ledger_max > sealed_max) {
		set_state(c, cc, CSTATE_SEALING);
		rc = seal_and_publish(c, cc, entries, nentries, ledger_max);
		/* Applied deltas leave the queue only once a snapshot holds them. */
		for (size_t i = 0; rc == 0 && i < nq; i++) {
			if (!applied[i])
				continue;
			if (store_queue_remove(c->st, cc->name, &q[i]) == 0) {
				pthread_mutex_lock(&c->mu);
				cc->queued--;
				pthread_mutex_unlock(&c->mu);
			}
		}
	} else if (seal_needed) {
		pthread_mutex_lock(&c->mu);
		cc->needs_seal = false;
		pthread_mutex_unlock(&c->mu);
	}
	livedb_entries_free(entries, nentries);
	free(applied);
	store_deltas_free(q, nlisted);
	set_state(c, cc, CSTATE_IDLE);
}

/* With c->mu held: a collection whose batch is due, or NULL and when the next one is. */
static struct ccoll *next_due(compactor *c, struct timespec *wake, bool *have_wake)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	*have_wake = false;
	for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
		if (cc->busy)
			continue;
		if (cc->needs_seal && cc->last_error[0] == '\0')
			return cc;
		if (cc->queued == 0)
			continue;
		if (!ts_before(&now, &cc->due))
			return cc;
		if (!*have_wake || ts_before(&cc->due, wake)) {
			*wake = cc->due;
			*have_wake = true;
		}
	}
	return NULL;
}

static void *compactor_main(void *arg)
{
	compactor *c = arg;
	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		struct timespec wake;
		bool have_wake;
		struct ccoll *cc = next_due(c, &wake, &have_wake);
		if (!cc) {
			if (have_wake)
				pthread_cond_timedwait(&c->cond, &c->mu, &wake);
			else
				pthread_cond_wait(&c->cond, &c->mu);
			continue;
		}
		cc->busy = true;
		pthread_mutex_unlock(&c->mu);
		run_batch(c, cc);
		pthread_mutex_lock(&c->mu);
		cc->busy = false;
		/* A failed batch waits a full delay before it is tried again. */
		clock_gettime(CLOCK_MONOTONIC, &cc->due);
		ts_add_ms(&cc->due, c->cfg.batch_delay_ms);
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int compactor_start(store *st, const struct compactor_config *cfg, const struct compactor_events *ev,
		    compactor **out)
{
	compactor *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->st = st;
	c->cfg = *cfg;
	if (ev)
		c->ev = *ev;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&c->thread, NULL, compactor_main, c);
	if (rc != 0) {
		log_err("cannot start the compactor thread: %s", strerror(rc));
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return -rc;
	}
	*out = c;
	return 0;
}

void compactor_stop(compactor *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	while (c->colls) {
		struct ccoll *cc = c->colls;
		c->colls = cc->next;
		free(cc);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int compactor_add(compactor *c, const char *coll)
{
	int rc = store_recover(c->st, coll);
	if (rc < 0)
		return rc;
	struct ccoll *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return -ENOMEM;
	snprintf(cc->name, sizeof(cc->name), "%s", coll);
	store_delta *q = NULL;
	size_t nq = 0;
	if (store_queue_list(c->st, coll, &q, &nq) == 0)
		store_deltas_free(q, nq);
	cc->queued = nq;
	load_last_snapshot(c, coll, &cc->last);

	/* Is the live ledger ahead of the newest snapshot (a crash before publish)? */
	char live[PATH_MAX], msg[512];
	struct stat st;
	if (store_path(c->st, coll, STORE_AREA_LIVE_DB, NULL, live, sizeof(live)) == 0 &&
	    stat(live, &st) == 0) {
		livedb *db = NULL;
		int64_t max = 0;
		if (livedb_open(live, &db, msg, sizeof(msg)) == 0) {
			if (livedb_ledger_max(db, &max) == 0 && max > cc->last.ledger_max) {
				log_info("collection %s: live database holds deltas not in any snapshot "
					 "(ledger %lld > %lld); sealing them",
					 coll, (long long)max, (long long)cc->last.ledger_max);
				cc->needs_seal = true;
			}
			if (livedb_close(db, msg, sizeof(msg)) < 0)
				log_err("collection %s: closing live database after recovery: %s", coll,
					msg);
		} else {
			log_err("collection %s: cannot open live database %s: %s", coll, live, msg);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &cc->due);
	pthread_mutex_lock(&c->mu);
	cc->next = c->colls;
	c->colls = cc;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	if (nq)
		log_info("collection %s: %zu queued deltas waiting from before", coll, nq);
	return 0;
}

int compactor_remove(compactor *c, const char *coll)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	while (cc && cc->busy) {
		pthread_cond_wait(&c->cond, &c->mu);
		cc = ccoll_find(c, coll);
	}
	if (!cc) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	/* Held across the store call so the compactor cannot start on it meanwhile. */
	int rc = store_collection_remove(c->st, coll);
	if (rc == 0) {
		for (struct ccoll **p = &c->colls; *p; p = &(*p)->next) {
			if (*p == cc) {
				*p = cc->next;
				break;
			}
		}
		free(cc);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void compactor_kick(compactor *c, const char *coll)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc) {
		if (cc->queued == 0) {
			clock_gettime(CLOCK_MONOTONIC, &cc->due);
			ts_add_ms(&cc->due, c->cfg.batch_delay_ms);
		}
		cc->queued++;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
}

static void time_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int compactor_status_fields(compactor *c, const char *coll, uint64_t snapshots, sbuf *out)
{
	uint64_t rejected_now = 0;
	store_rejected_count(c->st, coll, &rejected_now);
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (!cc) {
		pthread_mutex_unlock(&c->mu);
		return -ENOENT;
	}
	sbuf_adds(out, "\"collection\": ");
	sbuf_add_json_str(out, cc->name);
	sbuf_addf(out,
		  ", \"state\": \"%s\", \"queued\": %llu, \"applied_total\": %llu, "
		  "\"duplicate_total\": %llu, \"rejected_total\": %llu, \"rejected\": %llu, "
		  "\"snapshots\": %llu, \"seal_failures\": %llu, \"last_snapshot\": ",
		  cstate_name(cc->state), (unsigned long long)cc->queued,
		  (unsigned long long)cc->applied_total, (unsigned long long)cc->duplicate_total,
		  (unsigned long long)cc->rejected_total, (unsigned long long)rejected_now,
		  (unsigned long long)snapshots, (unsigned long long)cc->seal_failures);
	if (cc->last.id) {
		char idname[24], created[32];
		store_id_format(cc->last.id, idname, sizeof(idname));
		time_rfc3339(cc->last.created, created, sizeof(created));
		sbuf_addf(out,
			  "{\"id\": %llu, \"snapshot\": \"%s\", \"created\": \"%s\", \"size\": %llu, "
			  "\"sha256\": \"%s\", \"ledger_max\": %lld}",
			  (unsigned long long)cc->last.id, idname, created,
			  (unsigned long long)cc->last.size, cc->last.sha256,
			  (long long)cc->last.ledger_max);
	} else {
		sbuf_adds(out, "null");
	}
	sbuf_adds(out, ", \"last_error\": ");
	if (cc->last_error[0])
		sbuf_add_json_str(out, cc->last_error);
	else
		sbuf_adds(out, "null");
	pthread_mutex_unlock(&c->mu);
	return 0;
}

void compactor_metrics(compactor *c, sbuf *out)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} counters[] = {
		{"snapfs_deltas_applied_total", "counter", "Deltas merged into a live database.",
		 offsetof(struct ccoll, applied_total)},
		{"snapfs_deltas_duplicate_total", "counter",
		 "Deltas skipped because the ledger already held them.",
		 offsetof(struct ccoll, duplicate_total)},
		{"snapfs_deltas_rejected_total", "counter", "Deltas moved to rejected/.",
		 offsetof(struct ccoll, rejected_total)},
		{"snapfs_snapshots_published_total", "counter", "Snapshots sealed and published.",
		 offsetof(struct ccoll, published_total)},
		{"snapfs_seal_failures_total", "counter", "Snapshots that failed sealing.",
		 offsetof(struct ccoll, seal_failures)},
		{"snapfs_queue_deltas", "gauge", "Deltas waiting in the queue.",
		 offsetof(struct ccoll, queued)},
	};
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", counters[i].name, counters[i].help,
			  counters[i].name, counters[i].type);
		for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
			uint64_t v;
			memcpy(&v, (const char *)cc + counters[i].off, sizeof(v));
			sbuf_addf(out, "%s{collection=\"%s\"} %llu\n", counters[i].name, cc->name,
				  (unsigned long long)v);
		}
	}
	sbuf_adds(out, "# HELP snapfs_seal_seconds Duration of the last seal.\n"
		       "# TYPE snapfs_seal_seconds gauge\n");
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		sbuf_addf(out, "snapfs_seal_seconds{collection=\"%s\"} %.3f\n", cc->name,
			  cc->last_seal_ms / 1000.0);
	pthread_mutex_unlock(&c->mu);
}
