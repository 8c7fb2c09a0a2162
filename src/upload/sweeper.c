/*
 * sweeper — one thread that sweeps every watched collection in turn
 * (see sweeper.h for when and why).
 *
 * Ownership: struct scoll entries are made by sweeper_watch and freed by
 * sweeper_stop only; their fields are protected by s->mu, except that the
 * thread reads its config without it (it never changes). The thread
 * drops s->mu for every S3 call and for the lease_for and in_flight
 * callbacks, so a status read never waits on the network and the
 * uploader's lock is never taken under ours.
 */
#include "sweeper.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "layout.h"
#include "log.h"
#include "mono.h"
#include "rfc3339.h"
#include "store.h"

#define SWEEPER_PERIOD_S 600.0 /* a pass at least this often */
#define SWEEPER_MIN_WAIT_S 1.0
#define SWEEPER_KICK_DELAY_S 0.5 /* after a swap: let the uploader release the lease first */
#define SWEEPER_BACKOFF_MIN_S 5.0
#define SWEEPER_BACKOFF_MAX_S 600.0

struct scoll {
	struct scoll *next;
	char name[STORE_NAME_MAX + 1];
	/* Protected by s->mu. */
	double next_pass; /* monotonic seconds */
	bool kicked;      /* the pointer moved since the pass in progress began */
	unsigned failures_in_row;
	const char *state; /* "idle", "sweeping", "failed", "waiting for the lease" */
	char last_error[1400];
	char note[1200]; /* why nothing is deleted, if so */
	int64_t last_at; /* unix seconds of the last pass that completed */
	bool seen;       /* a pass completed: the gauges mean something */
	uint64_t objects, bytes, kept, waiting, newer;
	char pointer_dir[LAYOUT_DIR_MAX];
	uint64_t deleted_objects, deleted_bytes, deleted_snaps, orphans_found, aborted, failures;
	/* The orphans of the last pass, to count each one found once. Thread only. */
	char (*orphans)[LAYOUT_DIR_MAX];
	size_t norphans;
};

struct sweeper {
	struct sweeper_config cfg;
	char prefix[LAYOUT_PREFIX_MAX];
	char host_id[LAYOUT_HOST_ID_MAX + 1];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;           /* protected by mu */
	struct scoll *colls; /* protected by mu; sorted by name; freed only by sweeper_stop */
	pthread_t thread;
	bool started;
};

/* With s->mu held. */
static struct scoll *sweeper_find(sweeper *s, const char *name)
{
	for (struct scoll *c = s->colls; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

void sweeper_watch(sweeper *s, const char *coll)
{
	if (!store_name_valid(coll))
		return;
	pthread_mutex_lock(&s->mu);
	if (!sweeper_find(s, coll)) {
		struct scoll *c = calloc(1, sizeof(*c));
		if (c) {
			snprintf(c->name, sizeof(c->name), "%s", coll);
			c->state = "idle";
			c->next_pass = 0;
			struct scoll **pp = &s->colls;
			while (*pp && strcmp((*pp)->name, coll) < 0)
				pp = &(*pp)->next;
			c->next = *pp;
			*pp = c;
			pthread_cond_broadcast(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

void sweeper_kick(sweeper *s, const char *coll)
{
	pthread_mutex_lock(&s->mu);
	struct scoll *c = sweeper_find(s, coll);
	/* A failing sweep keeps its backoff: a kick must not turn it into a loop. */
	if (c && !c->failures_in_row) {
		c->kicked = true;
		double at = mono_now() + SWEEPER_KICK_DELAY_S;
		if (at < c->next_pass)
			c->next_pass = at;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

/* Counts the orphans not seen in the last pass, and remembers this pass's. Thread only. */
static uint64_t sweeper_new_orphans(struct scoll *c, const struct sweep_plan *p)
{
	size_t n = 0;
	for (size_t i = 0; i < p->nsnaps; i++)
		n += p->snaps[i].role == SWEEP_ORPHAN;
	char(*now)[LAYOUT_DIR_MAX] = calloc(n ? n : 1, sizeof(*now));
	if (!now)
		return 0;
	uint64_t fresh = 0;
	size_t k = 0;
	for (size_t i = 0; i < p->nsnaps; i++) {
		if (p->snaps[i].role != SWEEP_ORPHAN)
			continue;
		bool known = false;
		for (size_t j = 0; j < c->norphans && !known; j++)
			known = strcmp(c->orphans[j], p->snaps[i].name.dir) == 0;
		fresh += !known;
		memcpy(now[k++], p->snaps[i].name.dir, LAYOUT_DIR_MAX);
	}
	free(c->orphans);
	c->orphans = now;
	c->norphans = k;
	return fresh;
}

/* A failed pass: reported, and the next one backs off. */
static void sweeper_fail(sweeper *s, struct scoll *c, const char *what, const struct s3_error *e,
			 int rc)
{
	char detail[1100], msg[1400];
	if (e && (e->http_status || e->curl_code || e->transport[0] || e->sys_errno))
		s3_error_format(e, detail, sizeof(detail));
	else
		snprintf(detail, sizeof(detail), "%s", strerror(rc < 0 ? -rc : rc));
	snprintf(msg, sizeof(msg), "%s: %s", what, detail);
	pthread_mutex_lock(&s->mu);
	c->state = "failed";
	snprintf(c->last_error, sizeof(c->last_error), "%s", msg);
	c->failures++;
	unsigned k = c->failures_in_row < 7 ? c->failures_in_row : 7;
	c->failures_in_row++;
	double wait = SWEEPER_BACKOFF_MIN_S * (double)(1u << k);
	if (wait > SWEEPER_BACKOFF_MAX_S)
		wait = SWEEPER_BACKOFF_MAX_S;
	c->next_pass = mono_now() + wait;
	pthread_mutex_unlock(&s->mu);
	log_warn("sweep: %s: %s; trying again in %.0f s", c->name, msg, wait);
}

/* One pass over c. Runs on the thread without s->mu. */
/*
 * Records what a pass found and did in c (under s->mu) and when the next
 * pass is due. holder: who holds the lease, when it kept deletions from
 * running; rc: the pass's result.
 */
static void sweeper_record(sweeper *s, struct scoll *c, const struct sweep_plan *p,
			   const struct sweep_result *res, const struct lease_state *holder,
			   int64_t now, int rc)
{
	bool busy = holder != NULL;
	uint64_t fresh = sweeper_new_orphans(c, p);
	size_t waiting = 0, newer = 0;
	for (size_t i = 0; i < p->nsnaps; i++) {
		waiting += p->snaps[i].action == SWEEP_WAIT;
		newer += p->snaps[i].role == SWEEP_NEWER;
	}

	pthread_mutex_lock(&s->mu);
	c->deleted_objects += res->deleted_objects;
	c->deleted_bytes += res->deleted_bytes;
	c->deleted_snaps += res->deleted_snaps;
	c->aborted += res->aborted;
	c->orphans_found += fresh;
	c->objects = p->objects - res->deleted_objects;
	c->bytes = p->bytes - res->deleted_bytes;
	c->kept = p->kept;
	c->waiting = waiting + (p->del_snaps - res->deleted_snaps);
	c->newer = newer;
	c->seen = true;
	c->pointer_dir[0] = '\0';
	for (size_t i = 0; i < p->nsnaps; i++)
		if (p->snaps[i].role == SWEEP_POINTER)
			memcpy(c->pointer_dir, p->snaps[i].name.dir, LAYOUT_DIR_MAX);
	snprintf(c->note, sizeof(c->note), "%s", p->blocked);
	double wait = SWEEPER_PERIOD_S;
	if (p->next_due) {
		double due = (double)(p->next_due - now) + 1.0;
		wait = due < wait ? due : wait;
	}
	if (busy) {
		char until[RFC3339_LEN];
		rfc3339_format(holder->expires, until);
		c->state = "waiting for the lease";
		snprintf(c->note, sizeof(c->note),
			 "lease held by %s until %s: deletions wait for it", holder->owner, until);
		double left = (double)(holder->expires - now) + 1.0;
		if (left < wait)
			wait = left;
	}
	if (wait < SWEEPER_MIN_WAIT_S)
		wait = SWEEPER_MIN_WAIT_S;
	if (c->kicked)
		wait = SWEEPER_KICK_DELAY_S; /* the pointer moved during this pass: look again */
	if (rc == 0) {
		if (!busy)
			c->state = "idle";
		c->last_at = (int64_t)time(NULL);
		c->last_error[0] = '\0';
		c->failures_in_row = 0;
		c->next_pass = mono_now() + wait;
	}
	pthread_mutex_unlock(&s->mu);
}

static void sweeper_log(const sweeper *s, const struct scoll *c, const struct sweep_plan *p,
			const struct sweep_result *res)
{
	if (res->deleted_snaps)
		log_info("sweep: %s: deleted %zu snapshot(s) (%" PRIu64 " objects, %" PRIu64
			 " bytes) behind the pointer (generation %" PRIu64 "); %" PRIu64
			 " objects, %" PRIu64 " bytes kept",
			 c->name, res->deleted_snaps, res->deleted_objects, res->deleted_bytes,
			 p->pointer.generation, p->objects - res->deleted_objects,
			 p->bytes - res->deleted_bytes);
	if (res->aborted_ours)
		log_info("sweep: %s: aborted %zu multipart upload(s) of host %s left by an earlier run",
			 c->name, res->aborted_ours, s->host_id);
	if (res->aborted > res->aborted_ours)
		log_info("sweep: %s: aborted %zu stale multipart upload(s) of other hosts", c->name,
			 res->aborted - res->aborted_ours);
}

static void sweeper_pass(sweeper *s, struct scoll *c)
{
	struct sweep_plan p;
	struct sweep_result res = {0};
	struct s3_error e;
	memset(&e, 0, sizeof(e));
	int64_t now = (int64_t)time(NULL);
	int rc = sweep_plan(s->cfg.c, s->prefix, c->name, &s->cfg.rules, now, &p, &e);
	if (rc < 0) {
		if (rc != -ECANCELED)
			sweeper_fail(s, c, "listing the collection's snapshots and uploads", &e, rc);
		return;
	}
	bool foreign = false;
	for (size_t i = 0; i < p.nuploads; i++)
		foreign = foreign || (p.uploads[i].abort && !p.uploads[i].ours);
	/* Only the lease holder deletes: take it only when there is something to delete. */
	lease *l = NULL;
	bool busy = false;
	struct lease_state holder = {0};
	if ((p.del_snaps && !p.blocked[0]) || foreign) {
		l = s->cfg.lease_for(s->cfg.lease_arg, c->name);
		if (!l)
			rc = -ENOMEM;
		else if (s->cfg.only_if_held)
			rc = lease_hold_if_held(l, s->cfg.margin_s) == 0
				     ? 0
				     : -EBUSY; /* not the compactor here */
		else
			rc = lease_hold(l, s->cfg.margin_s, &holder, &e);
		busy = rc == -EBUSY;
		if (rc < 0 && !busy) {
			if (rc != -ECANCELED)
				sweeper_fail(s, c, "taking the lease to delete behind the pointer",
					     &e, rc);
			sweep_plan_free(&p);
			return;
		}
		if (busy)
			l = NULL;
	}
	rc = sweep_run(s->cfg.c, s->prefix, c->name, &p, l, s->cfg.margin_s, &res, &e);
	struct s3_error de;
	if (l && lease_drop(l, &de) < 0) {
		char detail[1100];
		s3_error_format(&de, detail, sizeof(detail));
		log_warn("sweep: %s: releasing the lease: %s (it expires by itself)", c->name,
			 detail);
	}
	sweeper_record(s, c, &p, &res, busy ? &holder : NULL, now, rc);
	sweeper_log(s, c, &p, &res);
	if (rc < 0 && rc != -ECANCELED)
		sweeper_fail(s, c,
			     rc == -ESTALE ? "checking the pointer before deleting"
					   : "deleting behind the pointer",
			     &e, rc);
	sweep_plan_free(&p);
}

/* With s->mu held: the collection whose pass is due first; *wait_s until then (-1: none). */
static struct scoll *sweeper_next(sweeper *s, double *wait_s)
{
	struct scoll *best = NULL;
	for (struct scoll *c = s->colls; c; c = c->next)
		if (!best || c->next_pass < best->next_pass)
			best = c;
	if (!best) {
		*wait_s = -1;
		return NULL;
	}
	*wait_s = best->next_pass - mono_now();
	return *wait_s <= 0 ? best : NULL;
}

static void *sweeper_main(void *arg)
{
	sweeper *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		double wait;
		struct scoll *c = sweeper_next(s, &wait);
		if (!c) {
			mono_cond_wait(&s->cv, &s->mu, wait);
			continue;
		}
		c->state = "sweeping";
		c->kicked = false;
		/* Until the pass says otherwise: never straight back to the same collection. */
		c->next_pass = mono_now() + SWEEPER_PERIOD_S;
		pthread_mutex_unlock(&s->mu);
		sweeper_pass(s, c);
		pthread_mutex_lock(&s->mu);
		if (!strcmp(c->state, "sweeping"))
			c->state = "idle";
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int sweeper_start(const struct sweeper_config *cfg, sweeper **out, char *err, size_t errlen)
{
	*out = NULL;
	sweeper *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->cfg = *cfg;
	snprintf(s->prefix, sizeof(s->prefix), "%s", cfg->prefix);
	s->cfg.prefix = s->prefix;
	if (cfg->rules.host_id) {
		snprintf(s->host_id, sizeof(s->host_id), "%s", cfg->rules.host_id);
		s->cfg.rules.host_id = s->host_id;
	}
	pthread_mutex_init(&s->mu, NULL);
	mono_cond_init(&s->cv);
	int rc = pthread_create(&s->thread, NULL, sweeper_main, s);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the sweeper thread: %s", strerror(rc));
		sweeper_stop(s);
		return -rc;
	}
	s->started = true;
	*out = s;
	return 0;
}

void sweeper_stop(sweeper *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->started)
		pthread_join(s->thread, NULL);
	while (s->colls) {
		struct scoll *c = s->colls;
		s->colls = c->next;
		free(c->orphans);
		free(c);
	}
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- status ---- */

void sweeper_metrics(sweeper *s, sbuf *out)
{
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{"snapfs_s3_objects", "gauge",
		 "Objects of the collection's snapshots in S3 (last sweep)."},
		{"snapfs_s3_bytes", "gauge",
		 "Bytes of the collection's snapshots in S3 (last sweep)."},
		{"snapfs_s3_snapshots_kept", "gauge", "Snapshots the retention rule keeps in S3."},
		{"snapfs_s3_deleted_objects_total", "counter", "Snapshot objects the sweep deleted."},
		{"snapfs_s3_deleted_bytes_total", "counter",
		 "Bytes of snapshot objects the sweep deleted."},
		{"snapfs_s3_orphans_found_total", "counter",
		 "Snapshots found in S3 that no pointer named (deleted after the grace)."},
		{"snapfs_s3_stale_uploads_aborted_total", "counter",
		 "Stale multipart uploads the sweep aborted."},
		{"snapfs_sweep_failures_total", "counter", "Sweep passes that failed."},
	};
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
			  m[i].type);
		for (struct scoll *c = s->colls; c; c = c->next) {
			uint64_t v[] = {c->objects,         c->bytes,         c->kept,
					c->deleted_objects, c->deleted_bytes, c->orphans_found,
					c->aborted,         c->failures};
			sbuf_addf(out, "%s{collection=\"%s\"} %" PRIu64 "\n", m[i].name, c->name,
				  v[i]);
		}
	}
	pthread_mutex_unlock(&s->mu);
}

/* A count the last sweep saw, or null before one ran. */
static json_t *sweeper_seen(const struct scoll *c, uint64_t v)
{
	return c->seen ? jsonx_u64(v) : json_null();
}

void sweeper_status(sweeper *s, const char *coll, json_t *upload)
{
	pthread_mutex_lock(&s->mu);
	struct scoll *c = sweeper_find(s, coll);
	if (!c) {
		pthread_mutex_unlock(&s->mu);
		jsonx_set(upload, "bucket", json_null());
		return;
	}
	json_t *b = json_object(), *sw = json_object();
	jsonx_set(b, "objects", sweeper_seen(c, c->objects));
	jsonx_set(b, "bytes", sweeper_seen(c, c->bytes));
	jsonx_set(b, "snapshots_kept", sweeper_seen(c, c->kept));
	jsonx_set(b, "waiting_for_grace", sweeper_seen(c, c->waiting));
	jsonx_set(b, "newer_than_pointer", sweeper_seen(c, c->newer));
	jsonx_set(b, "pointer_snapshot", jsonx_str_or_null(c->pointer_dir));
	jsonx_set(b, "deleted_snapshots_total", jsonx_u64(c->deleted_snaps));
	jsonx_set(b, "deleted_objects_total", jsonx_u64(c->deleted_objects));
	jsonx_set(b, "deleted_bytes_total", jsonx_u64(c->deleted_bytes));
	jsonx_set(b, "orphans_found_total", jsonx_u64(c->orphans_found));
	jsonx_set(b, "stale_uploads_aborted_total", jsonx_u64(c->aborted));
	jsonx_set(sw, "state", jsonx_str(c->state));
	jsonx_set(sw, "last_at", c->last_at ? jsonx_int(c->last_at) : json_null());
	jsonx_set(sw, "failures_total", jsonx_u64(c->failures));
	jsonx_set(sw, "last_error", jsonx_str_or_null(c->last_error));
	jsonx_set(sw, "note", jsonx_str_or_null(c->note));
	jsonx_set(b, "sweep", sw);
	pthread_mutex_unlock(&s->mu);
	jsonx_set(upload, "bucket", b);
}
