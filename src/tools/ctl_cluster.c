/*
 * ctl_cluster — snapfs-ctl cluster: what an operator needs to see of a
 * cluster sharing a bucket and prefix (snapfs(8), MANY HOSTS), read from
 * S3 alone: the hosts' claims, and per collection its marker, lease,
 * pointer, and the deltas each host shipped that no snapshot the pointer
 * names holds yet (and those refused, on their way back). Reads only.
 */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "layout.h"
#include "lease.h"

#define CTL_CLAIM_MAX (64u << 10)

/* Every .cluster/hosts/HOST.json as {host, instance, pid, beat, modified}. */
static int ctl_hosts(s3_client *c, const struct ctl_opts *o, json_t *list)
{
	char pfx[S3_KEY_MAX + 1];
	struct s3_object *obj = NULL;
	size_t n = 0;
	struct s3_error e;
	snprintf(pfx, sizeof(pfx), "%s.cluster/hosts/", o->nprefix);
	if (s3_list_all(c, pfx, &obj, &n, &e) < 0) {
		ctl_s3_error("listing the hosts' claims", &e);
		return CTL_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		void *doc = NULL;
		size_t len;
		struct s3_object_info info;
		json_t *h = NULL;
		if (s3_get_buf(c, obj[i].key, NULL, CTL_CLAIM_MAX, &doc, &len, &info, &e) == 0) {
			s3_object_info_free(&info);
			if (jsonx_load(doc, 4, &h) < 0)
				h = NULL;
		}
		free(doc);
		if (!h)
			h = json_object();
		jsonx_set(h, "key", jsonx_str(obj[i].key));
		jsonx_set(h, "modified", ctl_time_json(obj[i].last_modified));
		jsonx_push(list, h);
	}
	s3_objects_free(obj, n);
	return CTL_OK;
}

/* {HOST: {"count", "bytes"}} of the deltas (area "deltas" or "rejected") of coll. */
static int ctl_deltas(s3_client *c, const struct ctl_opts *o, const char *coll, const char *area,
		      json_t **out)
{
	char pfx[S3_KEY_MAX + 1];
	struct s3_object *obj = NULL;
	size_t n = 0;
	struct s3_error e;
	*out = json_object();
	if (layout_deltas_prefix(o->nprefix, coll, area, NULL, pfx, sizeof(pfx)) < 0)
		return CTL_USAGE;
	if (s3_list_all(c, pfx, &obj, &n, &e) < 0) {
		ctl_s3_error("listing the deltas", &e);
		return CTL_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		struct layout_delta d;
		if (!layout_parse_delta_key(o->nprefix, coll, area, obj[i].key, &d))
			continue;
		json_t *h = json_object_get(*out, d.host);
		if (!h) {
			h = json_object();
			jsonx_set(h, "count", jsonx_u64(0));
			jsonx_set(h, "bytes", jsonx_u64(0));
			jsonx_set(*out, d.host, h);
		}
		jsonx_set(h, "count",
			  jsonx_u64((uint64_t)json_integer_value(json_object_get(h, "count")) + 1));
		jsonx_set(h, "bytes",
			  jsonx_u64((uint64_t)json_integer_value(json_object_get(h, "bytes")) +
				    obj[i].size));
	}
	s3_objects_free(obj, n);
	return CTL_OK;
}

static int ctl_cluster_coll(s3_client *c, const struct ctl_opts *o, const char *coll, json_t *list)
{
	char key[S3_KEY_MAX + 1], etag[S3_ETAG_MAX];
	struct s3_error e;
	struct s3_object_info info;
	json_t *j = json_object();
	jsonx_set(j, "collection", jsonx_str(coll));
	bool marker = layout_marker_key(o->nprefix, coll, key, sizeof(key)) == 0 &&
		      s3_head(c, key, &info, &e) == 0;
	if (marker)
		s3_object_info_free(&info);
	jsonx_set(j, "marker", json_boolean(marker));
	struct lease_state st;
	bool present = false;
	if (layout_lease_key(o->nprefix, coll, key, sizeof(key)) == 0 &&
	    lease_read(c, key, &st, etag, &present, &e) == 0 && present) {
		json_t *l = json_object();
		jsonx_set(l, "owner", jsonx_str(st.owner));
		jsonx_set(l, "token", jsonx_u64(st.token));
		jsonx_set(l, "released", json_boolean(st.expires == 0));
		jsonx_set(l, "expires", st.expires ? ctl_time_json(st.expires) : json_null());
		jsonx_set(l, "ttl", jsonx_u64(st.ttl));
		jsonx_set(j, "lease", l);
	} else {
		jsonx_set(j, "lease", json_null());
	}
	struct lease_pointer p;
	present = false;
	if (layout_pointer_key(o->nprefix, coll, key, sizeof(key)) == 0 &&
	    lease_pointer_get(c, key, &p, NULL, etag, &present, &e) == 0 && present) {
		json_t *pj = json_object();
		jsonx_set(pj, "generation", jsonx_u64(p.generation));
		jsonx_set(pj, "id", jsonx_u64(p.id));
		jsonx_set(pj, "host", jsonx_str(p.host));
		jsonx_set(pj, "sha256", jsonx_str(p.sha256));
		jsonx_set(pj, "size", jsonx_u64(p.size));
		jsonx_set(pj, "lease_token", jsonx_u64(p.lease_token));
		jsonx_set(pj, "written_at", ctl_time_json(p.written_at));
		jsonx_set(j, "pointer", pj);
	} else {
		jsonx_set(j, "pointer", json_null());
	}
	json_t *d, *r;
	int ret = ctl_deltas(c, o, coll, "deltas", &d);
	jsonx_set(j, "pending_deltas", d);
	if (ret == CTL_OK)
		ret = ctl_deltas(c, o, coll, "rejected", &r), jsonx_set(j, "refused_deltas", r);
	jsonx_push(list, j);
	return ret;
}

int ctl_cluster(s3_client *c, const struct ctl_opts *o, char **colls, int n)
{
	struct ctl_names cn;
	int ret = ctl_colls(c, o, colls, n, &cn);
	if (ret != CTL_OK)
		return ret;
	json_t *out = json_object(), *hosts = json_array(), *list = json_array();
	jsonx_set(out, "bucket", jsonx_str(s3_client_bucket(c)));
	jsonx_set(out, "prefix", jsonx_str(o->nprefix));
	jsonx_set(out, "hosts", hosts);
	jsonx_set(out, "collections", list);
	ret = ctl_hosts(c, o, hosts);
	for (size_t i = 0; i < cn.n && ret == CTL_OK; i++)
		ret = ctl_cluster_coll(c, o, cn.v[i], list);
	if (ret == CTL_OK)
		ctl_print(out);
	else
		json_decref(out);
	ctl_names_free(&cn);
	return ret;
}
