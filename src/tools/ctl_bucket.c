/*
 * ctl_bucket — snapfs-ctl's commands on a collection's part of the bucket:
 *
 *   ls      what is there, per collection: the pointer, each snapshot with
 *           its role (pointer, kept, newer, expired, orphan) and what the
 *           sweep would do with it, multipart uploads, unknown keys;
 *   sweep   the daemon's sweep run by hand (--dry-run: only say what it
 *           would delete), under the collection's lease like the daemon;
 *   repair  replaces a lease.json or pointer.json that is not a document
 *           of its kind, by compare-and-swap on its ETag, holding the lease.
 *
 * The rules are sweep.h's, with the options' keep, grace and upload age.
 * snapfs-ctl knows of no upload in flight: it aborts only multipart
 * uploads older than the upload age, whoever's they are.
 */
#include "ctl.h"
#include "rfc3339.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"
#include "lease.h"
#include "manifest.h"
#include "sbuf.h"
#include "store.h"

#define CTL_LEASE_TTL 60
#define CTL_MARGIN_S 20.0
#define CTL_MANIFEST_MAX (16u << 20)

void ctl_s3_error(const char *what, const struct s3_error *e)
{
	char buf[1500];
	s3_error_format(e, buf, sizeof(buf));
	fprintf(stderr, "snapfs-ctl: %s: %s\n", what, buf);
}

static struct sweep_rules ctl_rules(const struct ctl_opts *o)
{
	struct sweep_rules r = {.keep = o->keep,
				.grace_s = o->grace_s,
				.upload_age_s = o->upload_age_s};
	return r;
}

/* snapfs-ctl/HOST/PID/RANDOM: one process, as the daemon's owners are. */
static void ctl_owner(char *buf, size_t len)
{
	char host[65] = "unknown";
	unsigned char rnd[6] = {0};
	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, (int)getpid(), sizeof(rnd));
	snprintf(buf, len, "snapfs-ctl/%s/%ld/%02x%02x%02x%02x%02x%02x", host, (long)getpid(),
		 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

json_t *ctl_time_json(int64_t t)
{
	char when[RFC3339_LEN];
	rfc3339_format(t, when);
	return jsonx_str(when);
}

/* ---- the collections under the prefix ---- */

/* A listing with delimiter '/': one "PREFIX/COLL/" entry per collection. */
static int ctl_name_one(void *arg, const struct s3_object *o)
{
	struct ctl_names *cn = arg;
	size_t plen = strlen(cn->prefix), klen = strlen(o->key);
	if (!o->is_prefix || klen <= plen + 1)
		return 0;
	char name[STORE_NAME_MAX + 2];
	size_t nlen = klen - plen - 1;
	if (nlen > STORE_NAME_MAX)
		return 0;
	memcpy(name, o->key + plen, nlen);
	name[nlen] = '\0';
	if (!store_name_valid(name))
		return 0;
	if (cn->n == cn->cap) {
		cn->cap = cn->cap ? cn->cap * 2 : 16;
		char **v = realloc(cn->v, cn->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		cn->v = v;
	}
	if (!(cn->v[cn->n] = strdup(name)))
		return -ENOMEM;
	cn->n++;
	return 0;
}

void ctl_names_free(struct ctl_names *cn)
{
	for (size_t i = 0; i < cn->n; i++)
		free(cn->v[i]);
	free(cn->v);
}

int ctl_colls(s3_client *c, const struct ctl_opts *o, char **given, int ngiven, struct ctl_names *out)
{
	memset(out, 0, sizeof(*out));
	out->prefix = o->nprefix;
	for (int i = 0; i < ngiven; i++) {
		if (!store_name_valid(given[i])) {
			fprintf(stderr, "snapfs-ctl: \"%s\" is not a collection name\n", given[i]);
			ctl_names_free(out);
			return CTL_USAGE;
		}
		struct s3_object o1 = {.is_prefix = true};
		char key[S3_KEY_MAX + 1];
		snprintf(key, sizeof(key), "%s%s/", o->nprefix, given[i]);
		o1.key = key;
		if (ctl_name_one(out, &o1) < 0) {
			ctl_names_free(out);
			return CTL_FAIL;
		}
	}
	if (ngiven)
		return CTL_OK;
	struct s3_error e;
	int rc = s3_list(c, o->nprefix, "/", ctl_name_one, out, &e);
	if (rc < 0) {
		ctl_s3_error("listing the collections", &e);
		ctl_names_free(out);
		return CTL_FAIL;
	}
	return CTL_OK;
}

/* ---- a plan as JSON ---- */

/* The snapshot directory of a key (null if it is not a snapshot key). */
static json_t *ctl_dir_json(const struct ctl_opts *o, const char *coll, const char *key)
{
	struct layout_snap s;
	if (!layout_parse_snapshot_key(o->nprefix, coll, key, &s))
		return json_null();
	return jsonx_str_or_null(s.dir);
}

static json_t *ctl_pointer_json(const struct ctl_opts *o, const char *coll,
				const struct sweep_plan *p)
{
	if (!p->pointer_present || p->pointer_rc != 0)
		return json_null();
	json_t *ptr = json_object(), *hist = json_array();
	jsonx_set(ptr, "generation", jsonx_u64(p->pointer.generation));
	jsonx_set(ptr, "snapshot", ctl_dir_json(o, coll, p->pointer.db_key));
	jsonx_set(ptr, "key", jsonx_str(p->pointer.db_key));
	jsonx_set(ptr, "written_at", jsonx_int(p->pointer.written_at));
	jsonx_set(ptr, "lease_token", jsonx_u64(p->pointer.lease_token));
	for (size_t i = 0; i < p->history.n; i++) {
		json_t *e = json_object();
		jsonx_set(e, "generation", jsonx_u64(p->history.prev[i].generation));
		jsonx_set(e, "snapshot", ctl_dir_json(o, coll, p->history.prev[i].db_key));
		jsonx_set(e, "written_at", jsonx_int(p->history.prev[i].written_at));
		jsonx_push(hist, e);
	}
	jsonx_set(ptr, "history", hist);
	return ptr;
}

static json_t *ctl_snap_json(const struct sweep_snap *s)
{
	json_t *e = json_object();
	jsonx_set(e, "snapshot", jsonx_str(s->name.dir));
	jsonx_set(e, "id", jsonx_u64(s->name.id));
	jsonx_set(e, "host", jsonx_str(s->name.host));
	jsonx_set(e, "instance", jsonx_str_or_null(s->name.inst));
	jsonx_set(e, "role", jsonx_str(sweep_role_name(s->role)));
	jsonx_set(e, "action", jsonx_str(sweep_action_name(s->action)));
	jsonx_set(e, "generation", s->generation ? jsonx_u64(s->generation) : json_null());
	jsonx_set(e, "objects", jsonx_u64(s->objects));
	jsonx_set(e, "complete", json_boolean(s->has_db && s->has_manifest));
	jsonx_set(e, "bytes", jsonx_u64(s->bytes));
	jsonx_set(e, "last_modified", ctl_time_json(s->newest));
	jsonx_set(e, "unneeded_since",
		  s->action != SWEEP_KEEP ? jsonx_int(s->unneeded_since) : json_null());
	return e;
}

static json_t *ctl_upload_json(const struct sweep_upload *u)
{
	json_t *e = json_object();
	jsonx_set(e, "key", jsonx_str(u->key));
	jsonx_set(e, "upload_id", jsonx_str(u->upload_id));
	jsonx_set(e, "host", jsonx_str(u->name.host));
	jsonx_set(e, "initiated", ctl_time_json(u->initiated));
	jsonx_set(e, "stale", json_boolean(u->abort));
	jsonx_set(e, "why", jsonx_str(u->why));
	return e;
}

static json_t *ctl_plan_json(const struct ctl_opts *o, const char *coll, const struct sweep_plan *p)
{
	json_t *out = json_object(), *snaps = json_array(), *ups = json_array(), *del = json_object();
	jsonx_set(out, "collection", jsonx_str(coll));
	jsonx_set(out, "pointer", ctl_pointer_json(o, coll, p));
	jsonx_set(out, "pointer_corrupt", json_boolean(p->pointer_rc != 0));
	for (size_t i = 0; i < p->nsnaps; i++)
		jsonx_push(snaps, ctl_snap_json(&p->snaps[i]));
	jsonx_set(out, "snapshots", snaps);
	for (size_t i = 0; i < p->nuploads; i++)
		jsonx_push(ups, ctl_upload_json(&p->uploads[i]));
	jsonx_set(out, "uploads", ups);
	jsonx_set(out, "unknown_keys", jsonx_u64(p->unknown));
	jsonx_set(out, "objects", jsonx_u64(p->objects));
	jsonx_set(out, "bytes", jsonx_u64(p->bytes));
	jsonx_set(out, "snapshots_kept", jsonx_u64(p->kept));
	jsonx_set(del, "snapshots", jsonx_u64(p->del_snaps));
	jsonx_set(del, "objects", jsonx_u64(p->del_objects));
	jsonx_set(del, "bytes", jsonx_u64(p->del_bytes));
	jsonx_set(out, "to_delete", del);
	jsonx_set(out, "uploads_to_abort", jsonx_u64(p->aborts));
	jsonx_set(out, "blocked", jsonx_str_or_null(p->blocked));
	return out;
}

/* A command's output object, with the bucket, prefix and rules it ran with. */
static json_t *ctl_rules_json(const struct ctl_opts *o)
{
	json_t *out = json_object(), *rules = json_object();
	jsonx_set(out, "bucket", jsonx_str(o->bucket));
	jsonx_set(out, "prefix", jsonx_str(o->nprefix));
	jsonx_set(rules, "keep", o->keep ? jsonx_u64(o->keep) : jsonx_str("all"));
	jsonx_set(rules, "grace_s", jsonx_u64(o->grace_s));
	jsonx_set(rules, "upload_age_s", jsonx_u64(o->upload_age_s));
	jsonx_set(out, "rules", rules);
	return out;
}

/* ---- ls, sweep ---- */

int ctl_ls(s3_client *c, const struct ctl_opts *o, char **colls, int n)
{
	struct ctl_names cn;
	int ret = ctl_colls(c, o, colls, n, &cn);
	if (ret != CTL_OK)
		return ret;
	struct sweep_rules r = ctl_rules(o);
	json_t *out = ctl_rules_json(o), *list = json_array();
	jsonx_set(out, "collections", list);
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < cn.n; i++) {
		struct sweep_plan p;
		struct s3_error e;
		if (sweep_plan(c, o->nprefix, cn.v[i], &r, now, &p, &e) < 0) {
			char what[128];
			snprintf(what, sizeof(what), "%s: listing the collection", cn.v[i]);
			ctl_s3_error(what, &e);
			ret = CTL_FAIL;
			break;
		}
		jsonx_push(list, ctl_plan_json(o, cn.v[i], &p));
		sweep_plan_free(&p);
	}
	if (ret == CTL_OK)
		ctl_print(out);
	else
		json_decref(out);
	ctl_names_free(&cn);
	return ret;
}

/* One collection: plan, take the lease, run, release. */
static int ctl_sweep_one(s3_client *c, const struct ctl_opts *o, const char *coll,
			 const char *owner, json_t *swept)
{
	struct sweep_rules r = ctl_rules(o);
	struct sweep_plan p;
	struct s3_error e;
	char lease_key[S3_KEY_MAX + 1], what[160];
	if (sweep_plan(c, o->nprefix, coll, &r, (int64_t)time(NULL), &p, &e) < 0) {
		snprintf(what, sizeof(what), "%s: listing the collection", coll);
		ctl_s3_error(what, &e);
		return CTL_FAIL;
	}
	lease *l = NULL;
	struct lease_state holder;
	int ret = CTL_OK;
	if (layout_lease_key(o->nprefix, coll, lease_key, sizeof(lease_key)) < 0 ||
	    lease_new(c, lease_key, owner, CTL_LEASE_TTL, &l) < 0) {
		fprintf(stderr, "snapfs-ctl: %s: cannot make the lease\n", coll);
		sweep_plan_free(&p);
		return CTL_FAIL;
	}
	int rc = lease_hold(l, CTL_MARGIN_S, &holder, &e);
	if (rc == -EBUSY) {
		char until[RFC3339_LEN];
		rfc3339_format(holder.expires, until);
		fprintf(stderr,
			"snapfs-ctl: %s: the lease is held by %s until %s: only its holder deletes; "
			"nothing deleted, try again later\n",
			coll, holder.owner, until);
		ret = CTL_FAIL;
	} else if (rc < 0) {
		snprintf(what, sizeof(what), "%s: taking the lease", coll);
		ctl_s3_error(what, &e);
		ret = CTL_FAIL;
	}
	struct sweep_result res = {0};
	if (ret == CTL_OK) {
		rc = sweep_run(c, o->nprefix, coll, &p, l, CTL_MARGIN_S, &res, &e);
		if (rc < 0) {
			snprintf(what, sizeof(what), "%s: deleting behind the pointer", coll);
			ctl_s3_error(what, &e);
			ret = CTL_FAIL;
		}
		if (lease_drop(l, &e) < 0) {
			snprintf(what, sizeof(what),
				 "%s: releasing the lease (it expires by itself)", coll);
			ctl_s3_error(what, &e);
		}
	}
	lease_free(l);
	size_t waiting = 0;
	for (size_t i = 0; i < p.nsnaps; i++)
		waiting += p.snaps[i].action == SWEEP_WAIT;
	if (ret == CTL_OK) {
		json_t *done = json_object();
		jsonx_set(done, "collection", jsonx_str(coll));
		jsonx_set(done, "deleted_snapshots", jsonx_u64(res.deleted_snaps));
		jsonx_set(done, "deleted_objects", jsonx_u64(res.deleted_objects));
		jsonx_set(done, "deleted_bytes", jsonx_u64(res.deleted_bytes));
		jsonx_set(done, "aborted_uploads", jsonx_u64(res.aborted));
		jsonx_set(done, "objects", jsonx_u64(p.objects - res.deleted_objects));
		jsonx_set(done, "bytes", jsonx_u64(p.bytes - res.deleted_bytes));
		jsonx_set(done, "waiting_for_grace", jsonx_u64(waiting));
		jsonx_set(done, "blocked", jsonx_str_or_null(p.blocked));
		jsonx_push(swept, done);
	}
	sweep_plan_free(&p);
	return ret;
}

int ctl_sweep(s3_client *c, const struct ctl_opts *o, char **colls, int n)
{
	if (o->dry_run)
		return ctl_ls(c, o, colls, n); /* the plan is what a dry run shows */
	struct ctl_names cn;
	int ret = ctl_colls(c, o, colls, n, &cn);
	if (ret != CTL_OK)
		return ret;
	char owner[LEASE_OWNER_MAX];
	ctl_owner(owner, sizeof(owner));
	json_t *out = ctl_rules_json(o), *swept = json_array();
	jsonx_set(out, "swept", swept);
	for (size_t i = 0; i < cn.n && ret == CTL_OK; i++)
		ret = ctl_sweep_one(c, o, cn.v[i], owner, swept);
	if (ret == CTL_OK)
		ctl_print(out);
	else
		json_decref(out);
	ctl_names_free(&cn);
	return ret;
}

/* ---- finding a snapshot ---- */

struct ctl_find {
	const struct ctl_opts *o;
	const char *coll;
	char (*dirs)[LAYOUT_DIR_MAX];
	unsigned *leaves; /* bit 0: database, bit 1: manifest */
	size_t n, cap;
};

static int ctl_find_one(void *arg, const struct s3_object *o)
{
	struct ctl_find *f = arg;
	struct layout_snap s;
	if (!layout_parse_snapshot_key(f->o->nprefix, f->coll, o->key, &s))
		return 0;
	if (!f->n || strcmp(f->dirs[f->n - 1], s.dir) != 0) {
		if (f->n == f->cap) {
			f->cap = f->cap ? f->cap * 2 : 64;
			void *d = realloc(f->dirs, f->cap * sizeof(*f->dirs));
			void *l = d ? realloc(f->leaves, f->cap * sizeof(*f->leaves)) : NULL;
			if (d)
				f->dirs = d;
			if (!l)
				return -ENOMEM;
			f->leaves = l;
		}
		memcpy(f->dirs[f->n], s.dir, LAYOUT_DIR_MAX);
		f->leaves[f->n++] = 0;
	}
	f->leaves[f->n - 1] |= s.leaf == LAYOUT_LEAF_DB ? 1u : 2u;
	return 0;
}

int ctl_find_snapshot(s3_client *c, const struct ctl_opts *o, const char *coll, const char *snap,
		      char dir[LAYOUT_DIR_MAX])
{
	char pfx[S3_KEY_MAX + 1];
	struct s3_error e;
	struct ctl_find f = {.o = o, .coll = coll};
	if (layout_snapshots_prefix(o->nprefix, coll, pfx, sizeof(pfx)) < 0)
		return CTL_USAGE;
	if (s3_list(c, pfx, NULL, ctl_find_one, &f, &e) < 0) {
		ctl_s3_error("listing the snapshots", &e);
		free(f.dirs);
		free(f.leaves);
		return CTL_FAIL;
	}
	/*
	 * What SNAPSHOT asks for: a directory there (exactly), else ID-HOST
	 * (any instance of that host's STOREs), else an id (any host).
	 */
	struct layout_snap want;
	bool named = layout_parse_dir(snap, &want);
	uint64_t id = 0;
	if (!named) {
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(snap, &end, 10);
		if (!*snap || *end || errno || snap[0] < '0' || snap[0] > '9') {
			fprintf(stderr,
				"snapfs-ctl: \"%s\" is not a snapshot: give its id (42), ID-HOST or "
				"the directory ID-HOST-INST as snapfs-ctl ls shows it\n",
				snap);
			free(f.dirs);
			free(f.leaves);
			return CTL_USAGE;
		}
		id = v;
	}
	size_t match = 0, which = 0;
	bool exact = false;
	sbuf cands = SBUF_INIT;
	for (size_t i = 0; i < f.n && named && !exact; i++)
		if (strcmp(f.dirs[i], want.dir) == 0) {
			exact = true;
			match = 1;
			which = i;
		}
	for (size_t i = 0; i < f.n && !exact; i++) {
		struct layout_snap s;
		if (!layout_parse_dir(f.dirs[i], &s) || f.leaves[i] != 3)
			continue;
		if (named ? (!want.inst[0] && s.id == want.id && strcmp(s.host, want.host) == 0)
			  : s.id == id) {
			sbuf_addf(&cands, " %s", s.dir);
			which = i;
			match++;
		}
	}
	int ret = CTL_OK;
	if (match == 1 && f.leaves[which] == 3) {
		memcpy(dir, f.dirs[which], LAYOUT_DIR_MAX);
	} else if (match == 1) {
		fprintf(stderr,
			"snapfs-ctl: %s: snapshot %s is not whole in the bucket (a database or "
			"manifest object is missing)\n",
			coll, f.dirs[which]);
		ret = CTL_FAIL;
	} else if (!match) {
		fprintf(stderr,
			"snapfs-ctl: %s: no snapshot \"%s\" in s3://%s/%s (snapfs-ctl ls lists "
			"those there)\n",
			coll, snap, s3_client_bucket(c), pfx);
		ret = CTL_FAIL;
	} else {
		fprintf(stderr,
			"snapfs-ctl: %s: \"%s\" names several snapshots:%s; give the whole name\n",
			coll, snap, sbuf_str(&cands));
		ret = CTL_USAGE;
	}
	sbuf_free(&cands);
	free(f.dirs);
	free(f.leaves);
	return ret;
}

/* ---- repair ---- */

/*
 * The pointer a repair writes: SNAPSHOT (or the newest whole snapshot in
 * the bucket), checked against its manifest, generation 1, no history.
 */
static int ctl_repair_target(s3_client *c, const struct ctl_opts *o, const char *coll,
			     const char *snap, struct lease_pointer *p)
{
	char dir[LAYOUT_DIR_MAX], leaf[STORE_NAME_MAX + 16];
	struct s3_error e;
	memset(p, 0, sizeof(*p));
	if (snap) {
		int ret = ctl_find_snapshot(c, o, coll, snap, dir);
		if (ret != CTL_OK)
			return ret;
	} else {
		struct sweep_rules r = {.keep = 0};
		struct sweep_plan pl;
		if (sweep_plan(c, o->nprefix, coll, &r, (int64_t)time(NULL), &pl, &e) < 0) {
			ctl_s3_error("listing the snapshots", &e);
			return CTL_FAIL;
		}
		const struct sweep_snap *best = NULL;
		for (size_t i = 0; i < pl.nsnaps; i++)
			if (pl.snaps[i].has_db && pl.snaps[i].has_manifest &&
			    (!best || pl.snaps[i].db_modified > best->db_modified))
				best = &pl.snaps[i];
		if (best)
			memcpy(dir, best->name.dir, LAYOUT_DIR_MAX);
		sweep_plan_free(&pl);
		if (!best) {
			fprintf(stderr,
				"snapfs-ctl: %s: no whole snapshot in the bucket for the pointer to "
				"name\n",
				coll);
			return CTL_FAIL;
		}
	}
	snprintf(leaf, sizeof(leaf), "%s.sqlite3", coll);
	struct layout_snap s;
	layout_parse_dir(dir, &s);
	if (layout_snapshot_key(o->nprefix, coll, dir, leaf, p->db_key, sizeof(p->db_key)) < 0 ||
	    layout_snapshot_key(o->nprefix, coll, dir, "MANIFEST.json", p->manifest_key,
				sizeof(p->manifest_key)) < 0)
		return CTL_USAGE;
	void *mdoc = NULL;
	size_t mlen;
	struct s3_object_info info;
	if (s3_get_buf(c, p->manifest_key, NULL, CTL_MANIFEST_MAX, &mdoc, &mlen, &info, &e) < 0) {
		ctl_s3_error("reading the manifest", &e);
		return CTL_FAIL;
	}
	s3_object_info_free(&info);
	uint64_t msize, mid;
	int mrc = manifest_read_basic(mdoc, &msize, p->sha256, &mid);
	free(mdoc);
	if (mrc < 0 || mid != s.id) {
		fprintf(stderr, "snapfs-ctl: s3://%s/%s is not the manifest of snapshot %s\n",
			s3_client_bucket(c), p->manifest_key, dir);
		return CTL_BAD;
	}
	if (s3_head(c, p->db_key, &info, &e) < 0) {
		ctl_s3_error("looking at the snapshot database", &e);
		return CTL_FAIL;
	}
	bool same = info.size == msize;
	snprintf(p->etag, sizeof(p->etag), "%s", info.etag);
	s3_object_info_free(&info);
	if (!same) {
		fprintf(stderr, "snapfs-ctl: s3://%s/%s is not the size its manifest says\n",
			s3_client_bucket(c), p->db_key);
		return CTL_BAD;
	}
	p->generation = 1;
	p->id = s.id;
	snprintf(p->host, sizeof(p->host), "%s", s.host);
	p->size = msize;
	p->written_at = (int64_t)time(NULL);
	return CTL_OK;
}

int ctl_repair(s3_client *c, const struct ctl_opts *o, const char *coll, const char *snap)
{
	char lease_key[S3_KEY_MAX + 1], ptr_key[S3_KEY_MAX + 1], owner[LEASE_OWNER_MAX];
	char lease_etag[S3_ETAG_MAX], ptr_etag[S3_ETAG_MAX];
	struct lease_state ls, holder;
	struct lease_pointer cur;
	struct s3_error e;
	bool lpresent, ppresent;
	if (!store_name_valid(coll) ||
	    layout_lease_key(o->nprefix, coll, lease_key, sizeof(lease_key)) < 0 ||
	    layout_pointer_key(o->nprefix, coll, ptr_key, sizeof(ptr_key)) < 0) {
		fprintf(stderr, "snapfs-ctl: \"%s\" is not a collection name\n", coll);
		return CTL_USAGE;
	}
	int lrc = lease_read(c, lease_key, &ls, lease_etag, &lpresent, &e);
	if (lrc < 0 && lrc != -EPROTO) {
		ctl_s3_error("reading the lease", &e);
		return CTL_FAIL;
	}
	int prc = lease_pointer_get(c, ptr_key, &cur, NULL, ptr_etag, &ppresent, &e);
	if (prc < 0 && prc != -EPROTO) {
		ctl_s3_error("reading the pointer", &e);
		return CTL_FAIL;
	}
	if (lrc == 0 && prc == 0) {
		json_t *out = json_object();
		jsonx_set(out, "collection", jsonx_str(coll));
		jsonx_set(out, "lease", jsonx_str("ok"));
		jsonx_set(out, "pointer", jsonx_str(ppresent ? "ok" : "absent"));
		jsonx_set(out, "repaired", json_false());
		ctl_print(out);
		return CTL_OK;
	}

	/* Hold the lease: take it over a corrupt document by If-Match, or take it as usual. */
	lease *l = NULL;
	ctl_owner(owner, sizeof(owner));
	if (lease_new(c, lease_key, owner, CTL_LEASE_TTL, &l) < 0) {
		fprintf(stderr, "snapfs-ctl: %s: cannot make the lease\n", coll);
		return CTL_FAIL;
	}
	int rc;
	uint64_t token = 0;
	if (lrc == -EPROTO) {
		/* The fencing token must grow: past any the pointer was written under. */
		token = (prc == 0 && ppresent ? cur.lease_token : 0) + 1;
		rc = lease_hold_over(l, lease_etag, token, &e);
	} else {
		rc = lease_hold(l, CTL_MARGIN_S, &holder, &e);
	}
	if (rc == -EBUSY) {
		char until[RFC3339_LEN];
		rfc3339_format(holder.expires, until);
		fprintf(stderr,
			"snapfs-ctl: %s: the lease is held by %s until %s; nothing changed, try "
			"again later\n",
			coll, holder.owner, until);
		lease_free(l);
		return CTL_FAIL;
	}
	if (rc < 0) {
		ctl_s3_error(lrc == -EPROTO ? "replacing the lease" : "taking the lease", &e);
		lease_free(l);
		return CTL_FAIL;
	}
	int ret = CTL_OK;
	struct lease_pointer p;
	if (prc == -EPROTO) {
		ret = ctl_repair_target(c, o, coll, snap, &p);
		if (ret == CTL_OK && (rc = lease_pointer_swap(l, ptr_key, &p, NULL, ptr_etag,
							      CTL_MARGIN_S, NULL, &e)) < 0) {
			ctl_s3_error(rc == -ESTALE
					     ? "replacing the pointer (it changed meanwhile: nothing "
					       "written)"
					     : "replacing the pointer",
				     &e);
			ret = CTL_FAIL;
		}
	}
	if (lease_drop(l, &e) < 0)
		ctl_s3_error("releasing the lease (it expires by itself)", &e);
	lease_free(l);
	if (ret != CTL_OK)
		return ret;
	json_t *out = json_object();
	jsonx_set(out, "collection", jsonx_str(coll));
	if (lrc == -EPROTO) {
		char lease_desc[64];
		snprintf(lease_desc, sizeof(lease_desc), "replaced (token %" PRIu64 ", released)",
			 token);
		jsonx_set(out, "lease", jsonx_str(lease_desc));
	} else {
		jsonx_set(out, "lease", jsonx_str("ok"));
	}
	if (prc == -EPROTO) {
		jsonx_set(out, "pointer", jsonx_str("replaced"));
		jsonx_set(out, "snapshot", ctl_dir_json(o, coll, p.db_key));
		jsonx_set(out, "generation", jsonx_u64(p.generation));
	} else {
		jsonx_set(out, "pointer", jsonx_str(ppresent ? "ok" : "absent"));
	}
	jsonx_set(out, "repaired", json_true());
	ctl_print(out);
	return CTL_OK;
}
