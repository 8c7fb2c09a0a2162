/*
 * cluster — life cycle, the host claim and the coordinator thread: which
 * collections the cluster has, and which of them this host compacts.
 * See cluster.h for the design and cluster_i.h for the layout.
 *
 * Roles, per collection, moved only by the coordinator:
 *
 *   FOLLOW --lease taken--> SYNC --pointer's snapshot local--> REBASE
 *     ^                                                          |
 *     |                       compactor_rebased -----------------+--> LEAD
 *     +------- lease lost or taken (any of SYNC, REBASE, LEAD) -------+
 *
 * The coordinator keeps one hold on the lease while the role is not
 * FOLLOW and renews it every pass once a third of the ttl is gone; the
 * uploader and the sweeper only ever add holds under it.
 */
#include "cluster.h"
#include "cluster_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"

/* ---- shared helpers ------------------------------------------------------- */

bool cl_stopping(cluster *cl)
{
	return atomic_load(&cl->cancel);
}

struct ccl *cl_coll_get(cluster *cl, const char *name)
{
	for (struct ccl *c = cl->colls; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	if (!store_name_valid(name))
		return NULL;
	struct ccl *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->role = CL_FOLLOW;
	c->imports_dirty = true;
	c->next = cl->colls;
	cl->colls = c;
	return c;
}

struct ccl **cl_colls(cluster *cl, size_t *n)
{
	pthread_mutex_lock(&cl->mu);
	size_t k = 0;
	for (struct ccl *c = cl->colls; c; c = c->next)
		k++;
	struct ccl **v = calloc(k ? k : 1, sizeof(*v));
	*n = 0;
	if (v)
		for (struct ccl *c = cl->colls; c; c = c->next)
			v[(*n)++] = c;
	pthread_mutex_unlock(&cl->mu);
	return v;
}

bool cl_wait(cluster *cl, bool *kick, double seconds)
{
	pthread_mutex_lock(&cl->mu);
	double until = mono_now() + seconds;
	while (!cl->stop && !*kick) {
		double left = until - mono_now();
		if (left <= 0)
			break;
		mono_cond_wait(&cl->cv, &cl->mu, left);
	}
	*kick = false;
	bool go = !cl->stop;
	pthread_mutex_unlock(&cl->mu);
	return go;
}

void cl_error(cluster *cl, struct ccl *c, const char *what, const struct s3_error *e, int rc)
{
	char msg[512], detail[1100] = "";
	if (cl_stopping(cl))
		return;
	if (e && (e->http_status || e->curl_code || e->method[0]))
		s3_error_format(e, detail, sizeof(detail));
	else
		snprintf(detail, sizeof(detail), "%s", strerror(rc < 0 ? -rc : rc));
	snprintf(msg, sizeof(msg), "%s: %s", what, detail);
	pthread_mutex_lock(&cl->mu);
	char *slot = c ? c->error : cl->error;
	bool fresh = strcmp(slot, msg) != 0;
	snprintf(slot, sizeof(c->error), "%s", msg);
	pthread_mutex_unlock(&cl->mu);
	if (fresh)
		log_warn("cluster: %s%s%s", c ? c->name : "", c ? ": " : "", msg);
}

void cl_clear_error(cluster *cl, struct ccl *c)
{
	pthread_mutex_lock(&cl->mu);
	(c ? c->error : cl->error)[0] = '\0';
	pthread_mutex_unlock(&cl->mu);
}

int cl_fetch_tmp(cluster *cl, s3_client *c3, const char *coll, const char *key, const char *leaf,
		 char tmp[PATH_MAX], char *sha256, struct s3_object_info *info, struct s3_error *e)
{
	int rc = store_path(cl->st, coll, STORE_AREA_STAGING, leaf, tmp, PATH_MAX);
	if (rc < 0)
		return rc;
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct s3_get_opts go = {.cancel = &cl->cancel};
	rc = s3_get_fd_opts(c3, key, &go, fd, sha256, info, e);
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
		s3_object_info_free(info);
	}
	close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int cl_local_path(cluster *cl, const char *coll, uint64_t id, char *buf, size_t len)
{
	char leaf[STORE_NAME_MAX + 48], idname[24];
	store_id_format(id, idname, sizeof(idname));
	snprintf(leaf, sizeof(leaf), "%s/%s.sqlite3", idname, coll);
	return store_path(cl->st, coll, STORE_AREA_SNAPSHOTS, leaf, buf, len);
}

/* ---- collections ---------------------------------------------------------- */

struct cl_found {
	cluster *cl;
	char (*names)[STORE_NAME_MAX + 1];
	size_t n, cap;
};

static int cl_found_one(void *arg, const struct s3_object *o)
{
	struct cl_found *f = arg;
	if (!o->is_prefix)
		return 0;
	const char *name = o->key + strlen(f->cl->prefix);
	size_t len = strlen(name);
	if (len < 2 || len > STORE_NAME_MAX + 1 || name[len - 1] != '/')
		return 0;
	char n[STORE_NAME_MAX + 1];
	memcpy(n, name, len - 1);
	n[len - 1] = '\0';
	if (!store_name_valid(n))
		return 0;
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;
		void *p = realloc(f->names, cap * sizeof(*f->names));
		if (!p)
			return -ENOMEM;
		f->names = p;
		f->cap = cap;
	}
	memcpy(f->names[f->n++], n, sizeof(n));
	return 0;
}

/* Writes the markers of local collections; creates here what other hosts made. */
static void cl_discover(cluster *cl)
{
	size_t n;
	struct ccl **v = cl_colls(cl, &n);
	for (size_t i = 0; v && i < n && !cl_stopping(cl); i++) {
		pthread_mutex_lock(&cl->mu);
		bool known = v[i]->marker_written;
		pthread_mutex_unlock(&cl->mu);
		char key[S3_KEY_MAX + 1];
		struct s3_error e;
		if (known || layout_marker_key(cl->prefix, v[i]->name, key, sizeof(key)) < 0)
			continue;
		char doc[256];
		int len = snprintf(doc, sizeof(doc),
				   "{\"collection\":\"%s\",\"created_by\":\"%s\"}\n", v[i]->name,
				   cl->host);
		struct s3_put_opts po = {.content_type = "application/json", .if_none_match = true};
		struct s3_put_result pr;
		int rc = s3_put_buf(cl->coord_c, key, doc, (size_t)len, &po, &pr, &e);
		if (rc == 0 || rc == -ESTALE) {
			pthread_mutex_lock(&cl->mu);
			v[i]->marker_written = true;
			pthread_mutex_unlock(&cl->mu);
		} else {
			cl_error(cl, v[i], "writing the collection's marker", &e, rc);
		}
	}
	free(v);

	struct cl_found f = {.cl = cl};
	struct s3_error e;
	int rc = s3_list(cl->coord_c, cl->prefix, "/", cl_found_one, &f, &e);
	if (rc < 0) {
		cl_error(cl, NULL, "listing the collections", &e, rc);
		free(f.names);
		return;
	}
	for (size_t i = 0; i < f.n && !cl_stopping(cl); i++) {
		pthread_mutex_lock(&cl->mu);
		bool here = false;
		for (struct ccl *c = cl->colls; c; c = c->next)
			here = here || !strcmp(c->name, f.names[i]);
		pthread_mutex_unlock(&cl->mu);
		if (here)
			continue;
		/* A prefix is a collection only with its marker (or a pointer: made before markers were). */
		char key[S3_KEY_MAX + 1], pkey[S3_KEY_MAX + 1];
		struct s3_object_info info;
		if (layout_marker_key(cl->prefix, f.names[i], key, sizeof(key)) < 0 ||
		    layout_pointer_key(cl->prefix, f.names[i], pkey, sizeof(pkey)) < 0)
			continue;
		rc = s3_head(cl->coord_c, key, &info, &e);
		if (rc == -ENOENT)
			rc = s3_head(cl->coord_c, pkey, &info, &e);
		if (rc == 0)
			s3_object_info_free(&info);
		if (rc == -ENOENT)
			continue;
		if (rc < 0) {
			cl_error(cl, NULL, "looking at a collection of the cluster", &e, rc);
			continue;
		}
		rc = cl->hooks.appeared(cl->hooks.ctx, f.names[i]);
		if (rc < 0 && rc != -EEXIST) {
			log_err("cluster: %s: cannot create the collection another host made: %s",
				f.names[i], strerror(-rc));
			continue;
		}
		log_info("cluster: %s: collection made by another host, now here too", f.names[i]);
		pthread_mutex_lock(&cl->mu);
		struct ccl *c = cl_coll_get(cl, f.names[i]);
		if (c)
			c->marker_written = true;
		cl->follow_kick = true;
		pthread_cond_broadcast(&cl->cv);
		pthread_mutex_unlock(&cl->mu);
	}
	free(f.names);
}

/* ---- leases and roles ----------------------------------------------------- */

/* c's role goes back to FOLLOW: the hold is given up, the compactor drops its work. */
static void cl_step_down(cluster *cl, struct ccl *c, const char *why)
{
	struct s3_error e;
	pthread_mutex_lock(&cl->mu);
	bool held = c->hold;
	enum cl_role was = c->role;
	c->hold = false;
	c->role = CL_FOLLOW;
	cl_lead_forget(c);
	pthread_mutex_unlock(&cl->mu);
	if (held)
		lease_drop(c->lease, &e); /* a 412 (taken since) is not ours to release */
	if (was != CL_FOLLOW) {
		compactor_rebase(cl->comp, c->name, NULL);
		log_warn("cluster: %s: no longer the compactor: %s; what it merged and did not publish is dropped "
			 "(every delta is still in S3)",
			 c->name, why);
	}
}

/* Takes the lease of c if it may and it is free; renews it while held. */
static void cl_lease_pass(cluster *cl, struct ccl *c)
{
	struct s3_error e;
	struct lease_state holder;
	memset(&e, 0, sizeof(e));
	pthread_mutex_lock(&cl->mu);
	bool held = c->hold;
	pthread_mutex_unlock(&cl->mu);
	if (!c->lease)
		c->lease = upl_lease_of(cl->u, c->name); /* the coordinator's alone to set and use */
	if (!c->lease)
		return;
	if (held) {
		double left = lease_remaining(c->lease);
		if (left > (double)cl->ttl_s * 2.0 / 3.0)
			return;
		if (left <= 0) {
			cl_step_down(cl, c, "the lease ran out before it could be renewed");
			return;
		}
		int rc = lease_hold(c->lease, (double)cl->ttl_s * 2.0 / 3.0, &holder, &e);
		if (rc == 0) {
			double until = mono_now() + lease_remaining(c->lease);
			lease_drop(c->lease, &e); /* balance: the coordinator's own hold stays */
			pthread_mutex_lock(&cl->mu);
			c->lease_until = until;
			pthread_mutex_unlock(&cl->mu);
			return;
		}
		if (rc == -EBUSY) {
			char why[LEASE_OWNER_MAX + 64];
			snprintf(why, sizeof(why), "the lease was taken by %s", holder.owner);
			cl_step_down(cl, c, why);
			return;
		}
		cl_error(cl, c, "renewing the lease", &e, rc);
		if (lease_remaining(c->lease) <= 0)
			cl_step_down(cl, c, "the lease ran out before it could be renewed");
		return;
	}
	if (cl->role == CLUSTER_ROLE_FOLLOWER)
		return;
	struct lease_state st;
	char etag[S3_ETAG_MAX];
	bool present;
	char key[S3_KEY_MAX + 1];
	if (layout_lease_key(cl->prefix, c->name, key, sizeof(key)) < 0)
		return;
	/* Role auto lets a free lease be for a few polls: a host that prefers it takes it first. */
	if (cl->role == CLUSTER_ROLE_AUTO) {
		int rc = lease_read(cl->coord_c, key, &st, etag, &present, &e);
		if (rc < 0) {
			cl_error(cl, c, "reading the lease", &e, rc);
			return;
		}
		bool free_now = !present || st.expires == 0;
		pthread_mutex_lock(&cl->mu);
		c->holder = present ? st : (struct lease_state){0};
		c->free_polls = free_now ? c->free_polls + 1 : 0;
		bool wait = free_now && c->free_polls <= CLUSTER_AUTO_DEFER;
		pthread_mutex_unlock(&cl->mu);
		if (wait)
			return;
	}
	int rc = lease_hold(c->lease, (double)cl->ttl_s * 2.0 / 3.0, &holder, &e);
	if (rc == -EBUSY) {
		pthread_mutex_lock(&cl->mu);
		c->holder = holder;
		pthread_mutex_unlock(&cl->mu);
		return;
	}
	if (rc < 0) {
		cl_error(cl, c, "taking the lease", &e, rc);
		return;
	}
	double until = mono_now() + lease_remaining(c->lease);
	pthread_mutex_lock(&cl->mu);
	c->hold = true;
	c->role = CL_SYNC;
	c->lease_until = until;
	c->lease_taken_at = mono_now();
	c->free_polls = 0;
	snprintf(c->holder.owner, sizeof(c->holder.owner), "%s", "(this host)");
	c->holder.token = lease_token(c->lease);
	cl->follow_kick = true;
	pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
	log_info("cluster: %s: took the compactor lease (token %" PRIu64
		 "); making the pointer's snapshot local",
		 c->name, lease_token(c->lease));
}

/* SYNC -> REBASE -> LEAD, as the follower and the compactor get there. */
static void cl_advance(cluster *cl, struct ccl *c)
{
	pthread_mutex_lock(&cl->mu);
	enum cl_role role = c->role;
	uint64_t ticket = c->rebase_ticket;
	bool present = c->ptr_present;
	/* Only a pointer read after the lease was taken says where to start from. */
	bool fresh = c->ptr_polled && c->ptr_read_at > c->lease_taken_at;
	uint64_t applied = c->applied_generation, gen = c->ptr.generation, id = c->applied_id;
	bool ours = !strcmp(c->ptr.host, cl->host) && c->ptr.lease_token == c->holder.token;
	if (role == CL_LEAD && present && gen != applied && !ours) {
		/* The pointer moved, and not by us: make it local and start over from it. */
		c->role = role = CL_SYNC;
		c->lease_taken_at = mono_now();
		cl_lead_forget(c); /* the rebase empties queue/: import everything again */
		cl->follow_kick = true;
		pthread_cond_broadcast(&cl->cv);
		log_warn("cluster: %s: the pointer moved to generation %" PRIu64
			 " by %s while this host compacts; "
			 "starting over from it",
			 c->name, gen, c->ptr.host);
		fresh = false;
	}
	pthread_mutex_unlock(&cl->mu);
	if (role == CL_SYNC) {
		if (!fresh || (present && applied != gen))
			return; /* the follower is still reading the pointer or making it local */
		char db[PATH_MAX];
		if (present && cl_local_path(cl, c->name, id, db, sizeof(db)) < 0)
			return;
		uint64_t t = compactor_rebase(cl->comp, c->name, present ? db : NULL);
		pthread_mutex_lock(&cl->mu);
		c->rebase_ticket = t;
		c->role = t ? CL_REBASE : CL_SYNC;
		pthread_mutex_unlock(&cl->mu);
	} else if (role == CL_REBASE && compactor_rebased(cl->comp, c->name) >= ticket) {
		pthread_mutex_lock(&cl->mu);
		c->role = CL_LEAD;
		cl_lead_forget(c);
		c->imports_dirty = true;
		cl->lead_kick = true;
		pthread_cond_broadcast(&cl->cv);
		pthread_mutex_unlock(&cl->mu);
		log_info("cluster: %s: this host is the compactor (generation %" PRIu64 ")",
			 c->name, gen);
	}
}

static void *cl_coord_main(void *arg)
{
	cluster *cl = arg;
	do {
		cl_beat(cl);
		cl_discover(cl);
		size_t n;
		struct ccl **v = cl_colls(cl, &n);
		for (size_t i = 0; v && i < n && !cl_stopping(cl); i++) {
			cl_lease_pass(cl, v[i]);
			cl_advance(cl, v[i]);
		}
		free(v);
	} while (cl_wait(cl, &cl->coord_kick, cl->poll_s));
	/* Leaving: give up the leases we hold, so that another host need not wait them out. */
	size_t n;
	struct ccl **v = cl_colls(cl, &n);
	for (size_t i = 0; v && i < n; i++) {
		pthread_mutex_lock(&cl->mu);
		bool held = v[i]->hold;
		v[i]->hold = false;
		pthread_mutex_unlock(&cl->mu);
		struct s3_error e;
		if (held && v[i]->lease)
			lease_drop(v[i]->lease, &e);
	}
	free(v);
	return NULL;
}

/* ---- life cycle ----------------------------------------------------------- */

int cluster_prepare(store *st, char *err, size_t errlen)
{
	char **names;
	size_t n;
	int rc = store_collections(st, &names, &n);
	if (rc < 0) {
		snprintf(err, errlen, "cannot list the collections of %s: %s", store_root(st),
			 strerror(-rc));
		return rc;
	}
	store_set_outbox_intake(st, true);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if ((rc = store_queue_to_outbox(st, names[i])) < 0 ||
		    (rc = store_live_replace(st, names[i], NULL)) < 0)
			snprintf(err, errlen, "collection %s: cannot enter cluster mode: %s",
				 names[i], strerror(-rc));
	}
	store_names_free(names, n);
	return rc;
}

static int cl_client(const struct s3_config *base, unsigned timeout_s, s3_client **out, char *err,
		     size_t errlen)
{
	struct s3_config c = *base;
	if (timeout_s) {
		c.retry = (struct s3_retry){.max_attempts = 3, .base_ms = 200, .cap_ms = 2000};
		c.connect_timeout_s = 5;
		c.timeout_s = timeout_s;
	}
	return s3_client_new(&c, out, err, errlen);
}

int cluster_new(store *st, const struct cluster_config *cfg, cluster **out, char *err, size_t errlen)
{
	*out = NULL;
	cluster *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->st = st;
	cl->hooks = cfg->hooks;
	snprintf(cl->prefix, sizeof(cl->prefix), "%s", cfg->prefix);
	snprintf(cl->host, sizeof(cl->host), "%s", cfg->host_id);
	snprintf(cl->inst, sizeof(cl->inst), "%s", store_instance(st));
	cl->role = cfg->role;
	cl->poll_s = (cfg->poll_ms ? cfg->poll_ms : CLUSTER_DEFAULT_POLL_MS) / 1000.0;
	cl->ttl_s = cfg->lease_ttl_s ? cfg->lease_ttl_s : 60;
	cl->part_size = cfg->part_size;
	cl->parallel = cfg->parallel;
	atomic_init(&cl->cancel, false);
	pthread_mutex_init(&cl->mu, NULL);
	mono_cond_init(&cl->cv);
	int rc;
	/* The coordinator's calls must end well inside a third of the lease. */
	unsigned short_s = cl->ttl_s / 4 > 3 ? cl->ttl_s / 4 : 3;
	if ((rc = cl_client(cfg->s3, short_s, &cl->coord_c, err, errlen)) < 0 ||
	    (rc = cl_client(cfg->s3, 0, &cl->ship_c, err, errlen)) < 0 ||
	    (rc = cl_client(cfg->s3, 0, &cl->follow_c, err, errlen)) < 0 ||
	    (rc = cl_client(cfg->s3, 0, &cl->lead_c, err, errlen)) < 0) {
		cluster_free(cl);
		return rc;
	}
	*out = cl;
	return 0;
}

int cluster_run(cluster *cl, compactor *comp, upl *u, char *err, size_t errlen)
{
	cl->comp = comp;
	cl->u = u;
	char **names;
	size_t n;
	int rc = store_collections(cl->st, &names, &n);
	if (rc < 0) {
		snprintf(err, errlen, "cannot list the collections of %s: %s", store_root(cl->st),
			 strerror(-rc));
		return rc;
	}
	/*
	 * What outbox/ holds now (recovery put incoming/ leftovers there): from
	 * here on every delta queued counts one up (cluster_kick_ship) and
	 * every delta shipped one down, so status never lists a directory.
	 */
	for (size_t i = 0; i < n; i++) {
		store_delta *d = NULL;
		size_t nd = 0;
		store_area_list(cl->st, names[i], STORE_AREA_OUTBOX, &d, &nd);
		store_deltas_free(d, nd);
		pthread_mutex_lock(&cl->mu);
		struct ccl *c = cl_coll_get(cl, names[i]);
		if (c)
			c->outbox = nd;
		pthread_mutex_unlock(&cl->mu);
	}
	store_names_free(names, n);
	void *(*mains[4])(void *) = {cl_coord_main, cl_ship_main, cl_follow_main, cl_lead_main};
	pthread_t *ts[4] = {&cl->coord_t, &cl->ship_t, &cl->follow_t, &cl->lead_t};
	for (int i = 0; i < 4; i++) {
		if ((rc = -pthread_create(ts[i], NULL, mains[i], cl)) < 0) {
			snprintf(err, errlen, "cannot start a cluster thread: %s", strerror(-rc));
			return rc;
		}
		cl->started[i] = true;
	}
	log_info("cluster: host %s (STORE instance %s) in s3://%s/%s, role %s, poll %.0f ms, lease ttl %u s",
		 cl->host, cl->inst, s3_client_bucket(cl->coord_c), cl->prefix,
		 cl->role == CLUSTER_ROLE_FOLLOWER    ? "follower"
		 : cl->role == CLUSTER_ROLE_COMPACTOR ? "compactor"
						      : "auto",
		 cl->poll_s * 1000.0, cl->ttl_s);
	return 0;
}

void cluster_stop(cluster *cl)
{
	if (!cl)
		return;
	pthread_mutex_lock(&cl->mu);
	cl->stop = true;
	pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
	/* Downloads and shipments stop now; the coordinator may still give its leases up. */
	atomic_store(&cl->cancel, true);
	s3_client *cs[4] = {cl->ship_c, cl->follow_c, cl->lead_c, cl->coord_c};
	pthread_t ts[4] = {cl->ship_t, cl->follow_t, cl->lead_t, cl->coord_t};
	bool started[4] = {cl->started[1], cl->started[2], cl->started[3], cl->started[0]};
	for (int i = 0; i < 3; i++)
		if (cs[i])
			s3_client_cancel(cs[i], 100);
	for (int i = 0; i < 3; i++)
		if (started[i])
			pthread_join(ts[i], NULL);
	if (cl->coord_c)
		s3_client_cancel(cl->coord_c, 500); /* the lease releases get half a second */
	if (started[3])
		pthread_join(ts[3], NULL);
	memset(cl->started, 0, sizeof(cl->started));
}

void cluster_free(cluster *cl)
{
	if (!cl)
		return;
	cluster_stop(cl);
	s3_client *cs[4] = {cl->ship_c, cl->follow_c, cl->lead_c, cl->coord_c};
	for (int i = 0; i < 4; i++)
		s3_client_free(cs[i]);
	while (cl->colls) {
		struct ccl *c = cl->colls;
		cl->colls = c->next;
		free(c->imports);
		free(c);
	}
	pthread_cond_destroy(&cl->cv);
	pthread_mutex_destroy(&cl->mu);
	free(cl);
}

void cluster_kick_ship(cluster *cl, const char *coll)
{
	pthread_mutex_lock(&cl->mu);
	struct ccl *c = cl_coll_get(cl, coll);
	if (c)
		c->outbox++;
	cl->ship_kick = true;
	pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
}

void cluster_collection_made(cluster *cl, const char *coll)
{
	pthread_mutex_lock(&cl->mu);
	cl_coll_get(cl, coll);
	cl->coord_kick = true;
	pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
}

void cluster_swapped(void *ctx, const char *coll, uint64_t id, const struct lease_pointer *p,
		     const char *etag)
{
	cluster *cl = ctx;
	pthread_mutex_lock(&cl->mu);
	struct ccl *c = cl_coll_get(cl, coll);
	if (c) {
		c->ptr_present = true;
		c->ptr = *p;
		snprintf(c->ptr_etag, sizeof(c->ptr_etag), "%s", etag);
		c->ptr_changed_at = mono_now();
		c->applied_generation = p->generation;
		c->applied_id = id;
		snprintf(c->applied_sha, sizeof(c->applied_sha), "%s", p->sha256);
		c->applied_at = mono_now();
		c->imports_dirty = true;
		cl->lead_kick = true;
		pthread_cond_broadcast(&cl->cv);
	}
	pthread_mutex_unlock(&cl->mu);
}
