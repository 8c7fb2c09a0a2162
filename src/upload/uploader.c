/*
 * uploader — ships sealed snapshots to S3 and swaps the pointer (see
 * uploader.h for the layout and the order of steps): the thread, the
 * collections it serves and its life cycle. One upload and one swap are
 * in upl_job.c, the local record and the status in upl_state.c.
 *
 * One thread serves every collection, one job at a time: an upload (of
 * the newest published snapshot not yet uploaded) or a pending pointer
 * swap (after the lease was busy). Each collection has its own "not
 * before" time, so a collection that waits (lease busy, S3 failing) does
 * not hold the others up. The thread makes no FUSE or vfs call; the
 * compactor tells it about snapshots (upl_published) and the vfs reads
 * its status (upl_status), both under u->mu only.
 *
 * Beside it runs the sweeper (sweeper.h): retention, orphans and stale
 * multipart uploads, on a thread and an S3 client of its own, so that no
 * housekeeping ever stands between a new snapshot and its upload. The
 * two share each collection's lease (lease_hold) and one fact: which
 * multipart upload of ours is in flight (upl_in_flight), so that the
 * sweep never aborts it.
 *
 * Three S3 clients: `data` (default retries: uploads ride out long
 * outages), `ctl` for the lease and the pointer, with few retries and
 * short deadlines, so that one conditional PUT cannot outlast the margin
 * the lease keeps (lease.h), and `hk`, the sweeper's. upl_stop cancels
 * all three: every call in flight ends within 100 ms, and the clean-up
 * on the way out (abort the upload, release the lease) gets UPL_LINGER_MS.
 */
#include "uploader_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "log.h"
#include "mono.h"

#define UPL_DEFAULT_PART (16ull << 20)
#define UPL_DEFAULT_PARALLEL 4
#define UPL_DEFAULT_TTL 60
#define UPL_HISTORY_MIN 16 /* pointer generations remembered, whatever the retention */
#define UPL_LINGER_MS 700  /* clean-up allowed once a stop has cancelled the calls */

/* ---- helpers ---- */

void upl_copy(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

int upl_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len || (size_t)n > S3_KEY_MAX ? -ENAMETOOLONG : 0;
}

/* ---- collections ---- */

struct ucoll *upl_coll_find(upl *u, const char *name)
{
	for (struct ucoll *c = u->colls; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

struct ucoll *upl_coll_get(upl *u, const char *name)
{
	struct ucoll *c = upl_coll_find(u, name);
	if (c || !store_name_valid(name))
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	upl_copy(c->name, sizeof(c->name), name);
	c->state = u->enabled ? "idle" : "off";
	upl_copy(c->lease_desc, sizeof(c->lease_desc), "free");
	/* Keep the list sorted, for stable status and metrics. */
	struct ucoll **pp = &u->colls;
	while (*pp && strcmp((*pp)->name, name) < 0)
		pp = &(*pp)->next;
	c->next = *pp;
	*pp = c;
	return c;
}

void upl_coll_push(struct ucoll *c, uint64_t id)
{
	if (c->nids && c->ids[c->nids - 1] >= id)
		return;
	if (c->nids == c->capids) {
		size_t cap = c->capids ? c->capids * 2 : 8;
		uint64_t *ids = realloc(c->ids, cap * sizeof(*ids));
		if (!ids) {
			/* Keep the newest: that is the one that will be uploaded. */
			if (c->nids)
				c->ids[c->nids - 1] = id;
			return;
		}
		c->ids = ids;
		c->capids = cap;
	}
	c->ids[c->nids++] = id;
}

void upl_coll_trim(struct ucoll *c, uint64_t id)
{
	size_t k = 0;
	while (k < c->nids && c->ids[k] <= id)
		k++;
	memmove(c->ids, c->ids + k, (c->nids - k) * sizeof(*c->ids));
	c->nids -= k;
}

lease *upl_lease(upl *u, struct ucoll *c)
{
	pthread_mutex_lock(&u->mu);
	if (!c->lease) {
		char key[S3_KEY_MAX + 1];
		char self[LEASE_OWNER_MAX];
		/* The STORE's lock proves every earlier process of this host and STORE gone. */
		snprintf(self, sizeof(self), "%s/%s/", u->host_id, store_instance(u->st));
		if (layout_lease_key(u->prefix, c->name, key, sizeof(key)) == 0 &&
		    lease_new(u->ctl, key, u->owner, u->ttl_s, &c->lease) == 0 &&
		    lease_set_self_prefix(c->lease, self) < 0) {
			lease_free(c->lease);
			c->lease = NULL;
		}
	}
	lease *l = c->lease;
	pthread_mutex_unlock(&u->mu);
	return l;
}

/* The sweeper's view of the lease: the same object the swap holds. */
static lease *upl_lease_for(void *arg, const char *coll)
{
	upl *u = arg;
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = upl_coll_get(u, coll);
	pthread_mutex_unlock(&u->mu);
	return c ? upl_lease(u, c) : NULL;
}

lease *upl_lease_of(upl *u, const char *coll)
{
	return upl_lease_for(u, coll);
}

/*
 * Is this multipart upload the one the thread has in flight? Between the
 * create and its answer the id is not known yet: every upload of that
 * key counts as in flight then (the sweep aborts it next time if not).
 */
static bool upl_in_flight(void *arg, const char *key, const char *upload_id)
{
	upl *u = arg;
	pthread_mutex_lock(&u->mu);
	bool yes = u->inflight_key[0] && strcmp(u->inflight_key, key) == 0 &&
		   (!u->inflight_id[0] || strcmp(u->inflight_id, upload_id) == 0);
	pthread_mutex_unlock(&u->mu);
	return yes;
}

/* ---- events ---- */

void upl_published(void *ctx, const char *coll, uint64_t id)
{
	upl *u = ctx;
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = upl_coll_get(u, coll);
	if (c) {
		upl_coll_push(c, id);
		c->next_try = 0; /* a new snapshot: try at once, even after a failure */
	}
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	if (u->sw)
		sweeper_watch(u->sw, coll); /* outside u->mu: the two locks are never nested */
}

/* ---- the thread ---- */

/* With u->mu held: the next collection with work due, round robin; *wait_s if none. */
static struct ucoll *upl_next_job(upl *u, double *wait_s)
{
	double now = mono_now(), soonest = -1;
	struct ucoll *start = u->served && u->served->next ? u->served->next : u->colls;
	struct ucoll *c = start;
	if (!c)
		goto none;
	do {
		if (c->nids || c->swap_pending) {
			if (c->next_try <= now)
				return c;
			if (soonest < 0 || c->next_try < soonest)
				soonest = c->next_try;
		}
		c = c->next ? c->next : u->colls;
	} while (c != start);
none:
	*wait_s = soonest < 0 ? -1 : soonest - now;
	return NULL;
}

static void *upl_main(void *arg)
{
	upl *u = arg;
	pthread_mutex_lock(&u->mu);
	while (!u->stop) {
		double wait;
		struct ucoll *c = upl_next_job(u, &wait);
		if (!c) {
			mono_cond_wait(&u->cv, &u->mu, wait);
			continue;
		}
		u->served = c;
		bool upload = c->nids > 0;
		uint64_t id = upload ? c->ids[c->nids - 1] : 0;
		pthread_mutex_unlock(&u->mu);
		if (upload)
			upl_upload(u, c, id);
		else
			upl_swap(u, c);
		pthread_mutex_lock(&u->mu);
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* ---- life cycle ---- */

/*
 * The owner names this process: host id, STORE instance, pid and a random
 * part. Host and instance let a restart on the same STORE take over the
 * lease its killed predecessor left at once (lease_set_self_prefix).
 */
static void upl_make_owner(upl *u)
{
	unsigned char rnd[6];
	char rhex[13];
	int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ufd < 0 || read(ufd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(rnd, &ts.tv_nsec,
		       sizeof(rnd) < sizeof(ts.tv_nsec) ? sizeof(rnd) : sizeof(ts.tv_nsec));
	}
	if (ufd >= 0)
		close(ufd);
	hex_encode(rnd, sizeof(rnd), rhex);
	snprintf(u->owner, sizeof(u->owner), "%s/%s/%ld/%s", u->host_id, store_instance(u->st),
		 (long)getpid(), rhex);
	srand((unsigned)getpid() ^ (unsigned)rnd[0] << 8 ^ (unsigned)rnd[1] << 16);
}

int upl_start(store *st, const struct upl_config *cfg, upl **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!layout_host_id_valid(cfg->host_id)) {
		snprintf(err, errlen,
			 "host id \"%s\" is not valid (1-64 characters of A-Z a-z 0-9 . _ -)",
			 cfg->host_id ? cfg->host_id : "");
		return -EINVAL;
	}
	upl *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = layout_prefix_normalize(cfg->prefix, u->prefix, sizeof(u->prefix));
	if (rc < 0) {
		snprintf(err, errlen,
			 "prefix \"%s\" is not usable (no leading '/', no \"//\", no "
			 "control characters, at most %d bytes)",
			 cfg->prefix, LAYOUT_PREFIX_MAX - 2);
		free(u);
		return rc;
	}
	u->st = st;
	upl_copy(u->host_id, sizeof(u->host_id), cfg->host_id);
	upl_copy(u->bucket, sizeof(u->bucket), cfg->s3->bucket);
	u->part_size = cfg->part_size ? cfg->part_size : UPL_DEFAULT_PART;
	u->parallel = cfg->parallel ? cfg->parallel : UPL_DEFAULT_PARALLEL;
	u->ttl_s = cfg->lease_ttl_s ? cfg->lease_ttl_s : UPL_DEFAULT_TTL;
	u->hist_max = cfg->keep > UPL_HISTORY_MIN ? cfg->keep - 1 : UPL_HISTORY_MIN;
	if (u->hist_max > LEASE_HISTORY_MAX)
		u->hist_max = LEASE_HISTORY_MAX;
	u->enabled = cfg->enabled;
	u->cluster = cfg->cluster;
	u->swapped = cfg->swapped;
	u->swapped_ctx = cfg->swapped_ctx;
	atomic_init(&u->cancel, false);
	pthread_mutex_init(&u->mu, NULL);
	mono_cond_init(&u->cv);
	upl_make_owner(u);

	struct s3_config ctl = *cfg->s3;
	ctl.retry = (struct s3_retry){.max_attempts = 3, .base_ms = 200, .cap_ms = 2000};
	ctl.connect_timeout_s = 5;
	ctl.timeout_s = 10; /* a lease or pointer call, retries included: well inside the margin */
	struct s3_config hk = ctl;
	hk.timeout_s = 60; /* listings of many keys */
	if ((rc = s3_client_new(cfg->s3, &u->data, err, errlen)) < 0 ||
	    (rc = s3_client_new(&ctl, &u->ctl, err, errlen)) < 0 ||
	    (rc = s3_client_new(&hk, &u->hk, err, errlen)) < 0) {
		upl_stop(u);
		return rc;
	}

	char **names = NULL;
	size_t n = 0;
	if ((rc = store_collections(st, &names, &n)) < 0) {
		snprintf(err, errlen, "cannot list the collections of %s: %s", store_root(st),
			 strerror(-rc));
		upl_stop(u);
		return rc;
	}
	/* In a cluster nothing is redone: what a compactor merged and did not swap is merged again. */
	for (size_t i = 0; i < n && !u->cluster; i++)
		upl_load_coll(u, names[i]);

	if (u->enabled) {
		struct sweeper_config sc = {
			.c = u->hk,
			.prefix = u->prefix,
			.rules = {.keep = cfg->keep,
				  .grace_s = cfg->grace_s,
				  .host_id = u->host_id,
				  .in_flight = upl_in_flight,
				  .in_flight_arg = u},
			.margin_s = (double)u->ttl_s / 3.0,
			.lease_for = upl_lease_for,
			.lease_arg = u,
			.only_if_held = u->cluster,
		};
		if ((rc = sweeper_start(&sc, &u->sw, err, errlen)) < 0) {
			store_names_free(names, n);
			upl_stop(u);
			return rc;
		}
		/* The first passes run beside the first uploads: stale uploads of a crash go. */
		for (size_t i = 0; i < n; i++)
			sweeper_watch(u->sw, names[i]);
		if ((rc = pthread_create(&u->thread, NULL, upl_main, u)) != 0) {
			snprintf(err, errlen, "cannot start the uploader thread: %s", strerror(rc));
			store_names_free(names, n);
			upl_stop(u);
			return -rc;
		}
		u->thread_started = true;
	}
	store_names_free(names, n);
	*out = u;
	return 0;
}

void upl_stop(upl *u)
{
	if (!u)
		return;
	/* Every S3 call in flight ends now; what runs after (clean-up) gets the linger. */
	atomic_store(&u->cancel, true);
	s3_client *clients[] = {u->data, u->ctl, u->hk};
	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
		if (clients[i])
			s3_client_cancel(clients[i], UPL_LINGER_MS);
	pthread_mutex_lock(&u->mu);
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	if (u->thread_started)
		pthread_join(u->thread, NULL);
	sweeper_stop(u->sw); /* before the leases go: it holds them */
	while (u->colls) {
		struct ucoll *c = u->colls;
		u->colls = c->next;
		lease_free(c->lease);
		lease_history_free(&c->swap_hist);
		free(c->ids);
		free(c);
	}
	s3_client_free(u->hk);
	s3_client_free(u->ctl);
	s3_client_free(u->data);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
}
