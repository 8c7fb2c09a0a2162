/*
 * cl_status — what the cluster adds to status and metrics: memory only,
 * under cl->mu (the vfs calls in with its own lock held).
 */
#include "cluster_i.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "jsonx.h"

static const char *cl_role_name(enum cl_role r)
{
	switch (r) {
	case CL_LEAD: return "compactor";
	case CL_SYNC:
	case CL_REBASE: return "becoming compactor";
	case CL_FOLLOW: break;
	}
	return "follower";
}

static json_t *cl_coll_json(cluster *cl, const struct ccl *c)
{
	json_t *o = json_object();
	/* A lease that ran out is not held, whether or not the coordinator has stepped down yet. */
	bool here = c->role != CL_FOLLOW && mono_now() < c->lease_until;
	jsonx_set(o, "role", jsonx_str(here ? cl_role_name(c->role) : "follower"));
	json_t *l = json_object();
	jsonx_set(l, "holder",
		  here                 ? jsonx_str(cl->host)
		  : c->holder.owner[0] ? jsonx_str(c->holder.owner)
				       : json_null());
	jsonx_set(l, "token", jsonx_u64(c->holder.token));
	jsonx_set(l, "held_here", json_boolean(here));
	jsonx_set(o, "lease", l);
	if (c->ptr_present) {
		json_t *p = json_object();
		jsonx_set(p, "generation", jsonx_u64(c->ptr.generation));
		jsonx_set(p, "id", jsonx_u64(c->ptr.id));
		jsonx_set(p, "host", jsonx_str(c->ptr.host));
		jsonx_set(p, "sha256", jsonx_str(c->ptr.sha256));
		jsonx_set(o, "pointer", p);
	} else {
		jsonx_set(o, "pointer", json_null());
	}
	uint64_t lag = c->ptr_present && c->ptr.generation > c->applied_generation
			       ? c->ptr.generation - c->applied_generation
			       : 0;
	jsonx_set(o, "applied_generation", jsonx_u64(c->applied_generation));
	jsonx_set(o, "lag_generations", jsonx_u64(lag));
	jsonx_set(o, "lag_seconds", jsonx_real(lag ? mono_now() - c->ptr_changed_at : 0.0, 3));
	jsonx_set(o, "outbox", jsonx_u64(c->outbox));
	jsonx_set(o, "in_flight", jsonx_u64(c->in_flight));
	jsonx_set(o, "shipped", jsonx_u64(c->shipped));
	jsonx_set(o, "imported", jsonx_u64(c->imported));
	jsonx_set(o, "deleted", jsonx_u64(c->deleted));
	jsonx_set(o, "relayed", jsonx_u64(c->relayed));
	jsonx_set(o, "remote_rejected", jsonx_u64(c->remote_rejected));
	jsonx_set(o, "last_error", c->error[0] ? jsonx_str(c->error) : json_null());
	return o;
}

static void cl_metrics(cluster *cl, sbuf *m)
{
	static const char *const names[] = {
		"snapfs_cluster_compactor",          "snapfs_cluster_pointer_generation",
		"snapfs_cluster_applied_generation", "snapfs_cluster_lag_generations",
		"snapfs_cluster_lag_seconds",        "snapfs_cluster_outbox_deltas",
		"snapfs_cluster_in_flight_deltas",   "snapfs_cluster_shipped_total",
		"snapfs_cluster_imported_total",     "snapfs_cluster_deleted_total",
		"snapfs_cluster_relayed_total",      "snapfs_cluster_remote_rejected_total",
	};
	static const char *const help[] = {
		"1 if this host compacts the collection",
		"pointer generation last seen",
		"pointer generation published here",
		"generations the pointer is ahead of this host",
		"seconds since the pointer moved, while this host is behind",
		"deltas acknowledged here, not yet shipped to S3",
		"deltas shipped by this host that no published snapshot holds yet",
		"deltas shipped by this host",
		"deltas imported from S3 by this host as compactor",
		"deltas deleted from S3 once a published snapshot held them",
		"refused deltas relayed to the host that sent them",
		"deltas of this host refused by the compactor",
	};
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		sbuf_addf(m, "# HELP %s %s\n# TYPE %s %s\n", names[k], help[k], names[k],
			  strstr(names[k], "_total") ? "counter" : "gauge");
		for (const struct ccl *c = cl->colls; c; c = c->next) {
			uint64_t lag = c->ptr_present && c->ptr.generation > c->applied_generation
					       ? c->ptr.generation - c->applied_generation
					       : 0;
			double v[] = {c->role == CL_LEAD && mono_now() < c->lease_until,
				      (double)(c->ptr_present ? c->ptr.generation : 0),
				      (double)c->applied_generation,
				      (double)lag,
				      lag ? mono_now() - c->ptr_changed_at : 0.0,
				      (double)c->outbox,
				      (double)c->in_flight,
				      (double)c->shipped,
				      (double)c->imported,
				      (double)c->deleted,
				      (double)c->relayed,
				      (double)c->remote_rejected};
			sbuf_addf(m, "%s{collection=\"%s\"} %.15g\n", names[k], c->name, v[k]);
		}
	}
}

void cluster_status(void *ctx, const char *coll, json_t *status, sbuf *metrics)
{
	cluster *cl = ctx;
	pthread_mutex_lock(&cl->mu);
	if (coll) {
		for (struct ccl *c = cl->colls; c; c = c->next)
			if (!strcmp(c->name, coll))
				jsonx_set(status, "cluster", cl_coll_json(cl, c));
	} else if (status) {
		json_t *o = json_object();
		jsonx_set(o, "host", jsonx_str(cl->host));
		jsonx_set(o, "instance", jsonx_str(cl->inst));
		jsonx_set(o, "role",
			  jsonx_str(cl->role == CLUSTER_ROLE_FOLLOWER    ? "follower"
				    : cl->role == CLUSTER_ROLE_COMPACTOR ? "compactor"
									 : "auto"));
		jsonx_set(o, "poll_ms", jsonx_u64((uint64_t)(cl->poll_s * 1000.0 + 0.5)));
		jsonx_set(o, "last_error", cl->error[0] ? jsonx_str(cl->error) : json_null());
		jsonx_set(status, "cluster", o);
	} else if (metrics) {
		cl_metrics(cl, metrics);
	}
	pthread_mutex_unlock(&cl->mu);
}
