/*
 * compactor — merges queued deltas into live databases and seals snapshots.
 *
 * Threads: one compactor thread does all merging and sealing
 * (compactor_batch.c). Other threads (FUSE workers) only call
 * compactor_kick/add/remove/report/status, which touch the fields marked
 * "protected by c->mu" and never wait for the thread.
 *
 * Per batch, the order that makes crashes harmless:
 *   1. apply each delta in its own transaction with its ledger row;
 *      rejected deltas move to rejected/; duplicates that a published
 *      snapshot already holds leave the queue;
 *   2. livedb_close: checkpoint(TRUNCATE) + close, checked;
 *   3. seal a copy in staging/, store_publish it (rename + fsyncs);
 *   4. only then remove the applied deltas from the queue.
 * Dying between 1 and 4 leaves applied deltas queued: the ledger makes
 * them duplicates. Dying between 1 and 3 leaves the live ledger ahead of
 * the newest snapshot's: the first round after compactor_add notices and
 * seals.
 *
 * Scheduling: a collection is due when its gathered batch is due, when it
 * needs a seal, or when its live database has not been looked at yet;
 * never while it is parked (backoff after a failure) or being removed.
 */
#include "compactor.h"
#include "compactor_i.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>

#include "log.h"
#include "mono.h"

#define DEFAULT_MAX_ATTEMPTS 3

static struct ccoll *ccoll_find(compactor *c, const char *name)
{
	for (struct ccoll *cc = c->colls; cc; cc = cc->next)
		if (!strcmp(cc->name, name))
			return cc;
	return NULL;
}

/* mono_now() plus ms milliseconds. */
static double mono_in_ms(unsigned ms)
{
	return mono_now() + ms / 1000.0;
}

void cc_set_state(compactor *c, struct ccoll *cc, enum cstate s)
{
	pthread_mutex_lock(&c->mu);
	cc->state = s;
	pthread_mutex_unlock(&c->mu);
}

static void cc_verror(compactor *c, struct ccoll *cc, const char *fmt, va_list ap)
{
	char msg[sizeof(cc->last_error)];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_err("%s", msg);
	pthread_mutex_lock(&c->mu);
	snprintf(cc->last_error, sizeof(cc->last_error), "%s", msg);
	pthread_mutex_unlock(&c->mu);
}

void cc_error(compactor *c, struct ccoll *cc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cc_verror(c, cc, fmt, ap);
	va_end(ap);
}

void cc_park(compactor *c, struct ccoll *cc)
{
	pthread_mutex_lock(&c->mu);
	cc->backoff_ms = cc->backoff_ms ? cc->backoff_ms * 2 : COMPACTOR_BACKOFF_MIN_MS;
	if (cc->backoff_ms > COMPACTOR_BACKOFF_MAX_MS)
		cc->backoff_ms = COMPACTOR_BACKOFF_MAX_MS;
	cc->parked = true;
	cc->not_before = mono_in_ms(cc->backoff_ms);
	cc->waits++;
	unsigned ms = cc->backoff_ms;
	pthread_mutex_unlock(&c->mu);
	log_info("collection %s: trying again in %.1f s", cc->name, ms / 1000.0);
}

void cc_unpark(compactor *c, struct ccoll *cc)
{
	pthread_mutex_lock(&c->mu);
	cc->backoff_ms = 0;
	cc->parked = false;
	pthread_mutex_unlock(&c->mu);
}

bool cc_stopping(compactor *c)
{
	return atomic_load(&c->cancel);
}

/*
 * With c->mu held: a collection with work due now, or NULL and (in
 * *wake) when the next one will be. Parked collections wait out their
 * backoff whatever they have to do.
 */
static struct ccoll *next_due(compactor *c, double *wake, bool *have_wake)
{
	double now = mono_now();
	*have_wake = false;
	for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
		if (cc->busy || cc->removing)
			continue;
		double at;
		if (cc->parked && now < cc->not_before)
			at = cc->not_before;
		else if (cc->rebase_pending || cc->check_live || cc->needs_seal)
			return cc;
		else if (cc->queued == 0)
			continue;
		else if (now >= cc->due)
			return cc;
		else
			at = cc->due;
		if (!*have_wake || at < *wake) {
			*wake = at;
			*have_wake = true;
		}
	}
	return NULL;
}

/* With c->mu held: a collection whose housekeeping is due, or NULL (and *wake lowered). */
static struct ccoll *housekeeping_due(compactor *c, double *wake, bool *have_wake)
{
	if (!c->ev.housekeeping)
		return NULL;
	double now = mono_now();
	for (struct ccoll *cc = c->colls; cc; cc = cc->next) {
		if (cc->busy || cc->removing)
			continue;
		if (now >= cc->next_housekeep)
			return cc;
		if (!*have_wake || cc->next_housekeep < *wake) {
			*wake = cc->next_housekeep;
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
		double wake = 0;
		bool have_wake;
		bool housekeeping = false;
		struct ccoll *cc = next_due(c, &wake, &have_wake);
		if (!cc) {
			cc = housekeeping_due(c, &wake, &have_wake);
			housekeeping = cc != NULL;
		}
		if (!cc) {
			mono_cond_wait(&c->cond, &c->mu, have_wake ? wake - mono_now() : -1);
			continue;
		}
		cc->busy = true;
		if (housekeeping)
			cc->next_housekeep = mono_in_ms(c->cfg.housekeep_ms);
		pthread_mutex_unlock(&c->mu);
		if (housekeeping)
			c->ev.housekeeping(c->ev.ctx, cc->name);
		else
			cc_run(c, cc);
		pthread_mutex_lock(&c->mu);
		cc->busy = false;
		cc->state = cc->parked ? CSTATE_WAITING : CSTATE_IDLE;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int compactor_start(store *st, const struct compactor_config *cfg,
		    const struct compactor_events *ev, compactor **out)
{
	compactor *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->st = st;
	c->cfg = *cfg;
	if (!c->cfg.max_attempts)
		c->cfg.max_attempts = DEFAULT_MAX_ATTEMPTS;
	if (!c->cfg.housekeep_ms)
		c->cfg.housekeep_ms = COMPACTOR_HOUSEKEEP_MS;
	if (ev)
		c->ev = *ev;
	atomic_init(&c->cancel, false);
	pthread_mutex_init(&c->mu, NULL);
	mono_cond_init(&c->cond);
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
	/* First the flag the thread's SQLite work and copies look at, then the loop's. */
	atomic_store(&c->cancel, true);
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	while (c->colls) {
		struct ccoll *cc = c->colls;
		c->colls = cc->next;
		cc_drop_hashes(cc);
		free(cc->rebase_db);
		free(cc);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int compactor_add(compactor *c, const char *coll)
{
	struct ccoll *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return -ENOMEM;
	snprintf(cc->name, sizeof(cc->name), "%s", coll);
	uint64_t quarantined = 0;
	int rc = store_recover(c->st, coll, true, &quarantined);
	if (rc < 0) {
		/* Served all the same (its snapshots stay readable); the thread retries. */
		snprintf(cc->last_error, sizeof(cc->last_error),
			 "collection %s: recovery failed: %s; retrying", coll, strerror(-rc));
		log_err("%s", cc->last_error);
		cc->recover = true;
	}
	if (quarantined)
		snprintf(cc->last_error, sizeof(cc->last_error),
			 "collection %s: %llu file(s) left in incoming/ could not be queued at start; moved to "
			 "rejected/ with the reason",
			 coll, (unsigned long long)quarantined);
	store_delta *q = NULL;
	size_t nq = 0;
	if (store_queue_list(c->st, coll, &q, &nq) == 0)
		store_deltas_free(q, nq);
	cc->queued = nq;
	store_rejected_count(c->st, coll, &cc->rejected_now);
	cc_load_last(c, coll, &cc->last);
	/*
	 * Whether live is ahead of the newest snapshot is the thread's first
	 * look (it may take a checkpoint); a collection without a live
	 * database yet (a new one) has nothing to look at, and an rmdir of
	 * it must not find it busy.
	 */
	char live[PATH_MAX];
	struct stat lst;
	cc->check_live = store_path(c->st, coll, STORE_AREA_LIVE_DB, NULL, live, sizeof(live)) < 0 ||
			 stat(live, &lst) == 0;
	cc->due = mono_now();
	cc->next_housekeep = mono_in_ms(c->cfg.housekeep_ms);
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
	int rc = !cc ? -ENOENT : cc->removing ? -EBUSY : 0;
	/*
	 * What it holds decides first (snapshots, queued or unsealed deltas:
	 * ENOTEMPTY, whatever the thread is doing); an empty collection the
	 * thread is at work on is refused rather than waited for (EBUSY).
	 */
	if (rc == 0 && (cc->queued || cc->needs_seal || cc->last.id))
		rc = -ENOTEMPTY;
	else if (rc == 0 && (cc->busy || cc->check_live || cc->recover))
		rc = -EBUSY;
	if (rc == 0)
		cc->removing = true; /* the thread leaves it alone from now on */
	pthread_mutex_unlock(&c->mu);
	if (rc < 0)
		return rc;

	rc = store_collection_remove(c->st, coll);

	pthread_mutex_lock(&c->mu);
	if (rc == 0) {
		for (struct ccoll **p = &c->colls; *p; p = &(*p)->next) {
			if (*p == cc) {
				*p = cc->next;
				break;
			}
		}
		cc_drop_hashes(cc);
		free(cc->rebase_db);
		free(cc);
	} else {
		cc->removing = false;
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void compactor_kick(compactor *c, const char *coll)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc) {
		if (cc->queued == 0) {
			cc->due = mono_in_ms(c->cfg.batch_delay_ms);
		}
		cc->queued++;
		cc->kicks++;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
}

void compactor_delta_hash(compactor *c, const char *coll, uint64_t seq, trailhash *t)
{
	trailhash *drop = NULL;
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (!cc) {
		drop = t;
	} else {
		if (cc->nhashes == COMPACTOR_HASHES) { /* the oldest goes: hashed again when merged */
			drop = cc->hashes[0].t;
			memmove(&cc->hashes[0], &cc->hashes[1],
				(COMPACTOR_HASHES - 1) * sizeof(cc->hashes[0]));
			cc->nhashes--;
		}
		cc->hashes[cc->nhashes].seq = seq;
		cc->hashes[cc->nhashes++].t = t;
	}
	pthread_mutex_unlock(&c->mu);
	trailhash_put(drop);
}

trailhash *cc_take_hash(compactor *c, struct ccoll *cc, uint64_t seq)
{
	trailhash *found = NULL, *drop[COMPACTOR_HASHES];
	size_t ndrop = 0, keep = 0;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < cc->nhashes; i++) {
		if (cc->hashes[i].seq == seq)
			found = cc->hashes[i].t;
		else if (cc->hashes[i].seq < seq)
			drop[ndrop++] = cc->hashes[i].t;
		else
			cc->hashes[keep++] = cc->hashes[i];
	}
	cc->nhashes = keep;
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < ndrop; i++)
		trailhash_put(drop[i]);
	return found;
}

void cc_drop_hashes(struct ccoll *cc)
{
	for (size_t i = 0; i < cc->nhashes; i++)
		trailhash_put(cc->hashes[i].t);
	cc->nhashes = 0;
}

uint64_t compactor_rebase(compactor *c, const char *coll, const char *db)
{
	char *copy = db ? strdup(db) : NULL;
	if (db && !copy)
		return 0;
	uint64_t ticket = 0;
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc) {
		free(cc->rebase_db);
		cc->rebase_db = copy;
		copy = NULL;
		cc->rebase_pending = true;
		ticket = ++cc->rebase_ticket;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
	free(copy);
	return ticket;
}

void compactor_adopted(compactor *c, const char *coll)
{
	struct last_snapshot ls;
	cc_load_last(c, coll, &ls);
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc && ls.id > cc->last.id)
		cc->last = ls;
	pthread_mutex_unlock(&c->mu);
}

uint64_t compactor_rebased(compactor *c, const char *coll)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	uint64_t done = cc ? cc->rebase_done : 0;
	pthread_mutex_unlock(&c->mu);
	return done;
}

void compactor_report(compactor *c, const char *coll, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc)
		snprintf(cc->last_error, sizeof(cc->last_error), "%s", msg);
	pthread_mutex_unlock(&c->mu);
}

void compactor_rejected_removed(compactor *c, const char *coll, uint64_t n)
{
	pthread_mutex_lock(&c->mu);
	struct ccoll *cc = ccoll_find(c, coll);
	if (cc)
		cc->rejected_now = cc->rejected_now > n ? cc->rejected_now - n : 0;
	pthread_mutex_unlock(&c->mu);
}
