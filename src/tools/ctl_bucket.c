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
	struct sweep_rules r = {.keep = o->keep, .grace_s = o->grace_s, .upload_age_s = o->upload_age_s};
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
	snprintf(buf, len, "snapfs-ctl/%s/%ld/%02x%02x%02x%02x%02x%02x", host, (long)getpid(), rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

/* ---- the collections under the prefix ---- */

struct ctl_names {
	const char *prefix;
	char **v;
	size_t n, cap;
};

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

static void ctl_names_free(struct ctl_names *cn)
{
	for (size_t i = 0; i < cn->n; i++)
		free(cn->v[i]);
	free(cn->v);
}

/* The collections given, or all of those under the prefix. */
static int ctl_colls(s3_client *c, const struct ctl_opts *o, char **given, int ngiven,
		     struct ctl_names *out)
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

static void ctl_str_or_null(sbuf *out, const char *s)
{
	if (s && *s)
		sbuf_add_json_str(out, s);
	else
		sbuf_adds(out, "null");
}

static void ctl_dir_of(const struct ctl_opts *o, const char *coll, const char *key,
		       char dir[LAYOUT_DIR_MAX])
{
	struct layout_snap s;
	dir[0] = '\0';
	if (layout_parse_snapshot_key(o->nprefix, coll, key, &s))
		memcpy(dir, s.dir, LAYOUT_DIR_MAX);
}

static void ctl_plan_json(const struct ctl_opts *o, const char *coll, const struct sweep_plan *p,
			  sbuf *out)
{
	char when[32], dir[LAYOUT_DIR_MAX];
	sbuf_adds(out, "{\"collection\": ");
	sbuf_add_json_str(out, coll);
	sbuf_adds(out, ", \"pointer\": ");
	if (p->pointer_present && p->pointer_rc == 0) {
		ctl_dir_of(o, coll, p->pointer.db_key, dir);
		sbuf_addf(out, "{\"generation\": %" PRIu64 ", \"snapshot\": ", p->pointer.generation);
		ctl_str_or_null(out, dir);
		sbuf_adds(out, ", \"key\": ");
		sbuf_add_json_str(out, p->pointer.db_key);
		sbuf_addf(out, ", \"written_at\": %" PRId64 ", \"lease_token\": %" PRIu64 ", \"history\": [",
			  p->pointer.written_at, p->pointer.lease_token);
		for (size_t i = 0; i < p->history.n; i++) {
			ctl_dir_of(o, coll, p->history.prev[i].db_key, dir);
			sbuf_addf(out, "%s{\"generation\": %" PRIu64 ", \"snapshot\": ", i ? ", " : "",
				  p->history.prev[i].generation);
			ctl_str_or_null(out, dir);
			sbuf_addf(out, ", \"written_at\": %" PRId64 "}", p->history.prev[i].written_at);
		}
		sbuf_adds(out, "]}");
	} else {
		sbuf_adds(out, "null");
	}
	sbuf_addf(out, ", \"pointer_corrupt\": %s, \"snapshots\": [", p->pointer_rc ? "true" : "false");
	for (size_t i = 0; i < p->nsnaps; i++) {
		const struct sweep_snap *s = &p->snaps[i];
		rfc3339_format(s->newest, when);
		sbuf_adds(out, i ? ", {\"snapshot\": " : "{\"snapshot\": ");
		sbuf_add_json_str(out, s->name.dir);
		sbuf_addf(out, ", \"id\": %" PRIu64 ", \"host\": ", s->name.id);
		sbuf_add_json_str(out, s->name.host);
		sbuf_adds(out, ", \"instance\": ");
		ctl_str_or_null(out, s->name.inst);
		sbuf_addf(out, ", \"role\": \"%s\", \"action\": \"%s\", \"generation\": ",
			  sweep_role_name(s->role), sweep_action_name(s->action));
		if (s->generation)
			sbuf_addf(out, "%" PRIu64, s->generation);
		else
			sbuf_adds(out, "null");
		sbuf_addf(out, ", \"objects\": %u, \"complete\": %s, \"bytes\": %" PRIu64
			       ", \"last_modified\": \"%s\", \"unneeded_since\": ",
			  s->objects, s->has_db && s->has_manifest ? "true" : "false", s->bytes, when);
		if (s->action != SWEEP_KEEP)
			sbuf_addf(out, "%" PRId64, s->unneeded_since);
		else
			sbuf_adds(out, "null");
		sbuf_adds(out, "}");
	}
	sbuf_adds(out, "], \"uploads\": [");
	for (size_t i = 0; i < p->nuploads; i++) {
		const struct sweep_upload *u = &p->uploads[i];
		rfc3339_format(u->initiated, when);
		sbuf_adds(out, i ? ", {\"key\": " : "{\"key\": ");
		sbuf_add_json_str(out, u->key);
		sbuf_adds(out, ", \"upload_id\": ");
		sbuf_add_json_str(out, u->upload_id);
		sbuf_adds(out, ", \"host\": ");
		sbuf_add_json_str(out, u->name.host);
		sbuf_addf(out, ", \"initiated\": \"%s\", \"stale\": %s, \"why\": ", when,
			  u->abort ? "true" : "false");
		sbuf_add_json_str(out, u->why);
		sbuf_adds(out, "}");
	}
	sbuf_addf(out,
		  "], \"unknown_keys\": %zu, \"objects\": %" PRIu64 ", \"bytes\": %" PRIu64
		  ", \"snapshots_kept\": %" PRIu64 ", \"to_delete\": {\"snapshots\": %zu, \"objects\": %" PRIu64
		  ", \"bytes\": %" PRIu64 "}, \"uploads_to_abort\": %zu, \"blocked\": ",
		  p->unknown, p->objects, p->bytes, p->kept, p->del_snaps, p->del_objects, p->del_bytes,
		  p->aborts);
	ctl_str_or_null(out, p->blocked);
	sbuf_adds(out, "}");
}

static void ctl_rules_json(const struct ctl_opts *o, sbuf *out)
{
	sbuf_adds(out, "\"bucket\": ");
	sbuf_add_json_str(out, o->bucket);
	sbuf_adds(out, ", \"prefix\": ");
	sbuf_add_json_str(out, o->nprefix);
	sbuf_adds(out, ", \"rules\": {\"keep\": ");
	if (o->keep)
		sbuf_addf(out, "%u", o->keep);
	else
		sbuf_adds(out, "\"all\"");
	sbuf_addf(out, ", \"grace_s\": %u, \"upload_age_s\": %u}", o->grace_s, o->upload_age_s);
}

/* ---- ls, sweep ---- */

int ctl_ls(s3_client *c, const struct ctl_opts *o, char **colls, int n)
{
	struct ctl_names cn;
	int ret = ctl_colls(c, o, colls, n, &cn);
	if (ret != CTL_OK)
		return ret;
	struct sweep_rules r = ctl_rules(o);
	sbuf out = SBUF_INIT;
	sbuf_adds(&out, "{");
	ctl_rules_json(o, &out);
	sbuf_adds(&out, ", \"collections\": [");
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
		if (i)
			sbuf_adds(&out, ", ");
		ctl_plan_json(o, cn.v[i], &p, &out);
		sweep_plan_free(&p);
	}
	sbuf_adds(&out, "]}\n");
	if (ret == CTL_OK)
		fputs(sbuf_str(&out), stdout);
	sbuf_free(&out);
	ctl_names_free(&cn);
	return ret;
}

/* One collection: plan, take the lease, run, release. */
static int ctl_sweep_one(s3_client *c, const struct ctl_opts *o, const char *coll, const char *owner,
			 sbuf *out)
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
		char until[32];
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
			snprintf(what, sizeof(what), "%s: releasing the lease (it expires by itself)", coll);
			ctl_s3_error(what, &e);
		}
	}
	lease_free(l);
	size_t waiting = 0;
	for (size_t i = 0; i < p.nsnaps; i++)
		waiting += p.snaps[i].action == SWEEP_WAIT;
	if (ret == CTL_OK) {
		sbuf_adds(out, "{\"collection\": ");
		sbuf_add_json_str(out, coll);
		sbuf_addf(out,
			  ", \"deleted_snapshots\": %zu, \"deleted_objects\": %" PRIu64
			  ", \"deleted_bytes\": %" PRIu64 ", \"aborted_uploads\": %zu"
			  ", \"objects\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"waiting_for_grace\": %zu"
			  ", \"blocked\": ",
			  res.deleted_snaps, res.deleted_objects, res.deleted_bytes, res.aborted,
			  p.objects - res.deleted_objects, p.bytes - res.deleted_bytes, waiting);
		ctl_str_or_null(out, p.blocked);
		sbuf_adds(out, "}");
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
	sbuf out = SBUF_INIT;
	sbuf_adds(&out, "{");
	ctl_rules_json(o, &out);
	sbuf_adds(&out, ", \"swept\": [");
	for (size_t i = 0; i < cn.n && ret == CTL_OK; i++) {
		if (i)
			sbuf_adds(&out, ", ");
		ret = ctl_sweep_one(c, o, cn.v[i], owner, &out);
	}
	sbuf_adds(&out, "]}\n");
	if (ret == CTL_OK)
		fputs(sbuf_str(&out), stdout);
	sbuf_free(&out);
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
			fprintf(stderr, "snapfs-ctl: \"%s\" is not a snapshot: give its id (42), ID-HOST or "
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
		if (named ? (!want.inst[0] && s.id == want.id && strcmp(s.host, want.host) == 0) : s.id == id) {
			sbuf_addf(&cands, " %s", s.dir);
			which = i;
			match++;
		}
	}
	int ret = CTL_OK;
	if (match == 1 && f.leaves[which] == 3) {
		memcpy(dir, f.dirs[which], LAYOUT_DIR_MAX);
	} else if (match == 1) {
		fprintf(stderr, "snapfs-ctl: %s: snapshot %s is not whole in the bucket (a database or "
				"manifest object is missing)\n",
			coll, f.dirs[which]);
		ret = CTL_FAIL;
	} else if (!match) {
		fprintf(stderr, "snapfs-ctl: %s: no snapshot \"%s\" in s3://%s/%s (snapfs-ctl ls lists "
				"those there)\n",
			coll, snap, s3_client_bucket(c), pfx);
		ret = CTL_FAIL;
	} else {
		fprintf(stderr, "snapfs-ctl: %s: \"%s\" names several snapshots:%s; give the whole name\n",
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
			fprintf(stderr, "snapfs-ctl: %s: no whole snapshot in the bucket for the pointer to "
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
	if (!store_name_valid(coll) || layout_lease_key(o->nprefix, coll, lease_key, sizeof(lease_key)) < 0 ||
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
		printf("{\"collection\": \"%s\", \"lease\": \"ok\", \"pointer\": \"%s\", \"repaired\": false}\n",
		       coll, ppresent ? "ok" : "absent");
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
		char until[32];
		rfc3339_format(holder.expires, until);
		fprintf(stderr, "snapfs-ctl: %s: the lease is held by %s until %s; nothing changed, try "
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
		if (ret == CTL_OK &&
		    (rc = lease_pointer_swap(l, ptr_key, &p, NULL, ptr_etag, CTL_MARGIN_S, NULL, &e)) < 0) {
			ctl_s3_error(rc == -ESTALE ? "replacing the pointer (it changed meanwhile: nothing "
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
	sbuf out = SBUF_INIT;
	sbuf_adds(&out, "{\"collection\": ");
	sbuf_add_json_str(&out, coll);
	if (lrc == -EPROTO)
		sbuf_addf(&out, ", \"lease\": \"replaced (token %" PRIu64 ", released)\"", token);
	else
		sbuf_adds(&out, ", \"lease\": \"ok\"");
	if (prc == -EPROTO) {
		char dir[LAYOUT_DIR_MAX];
		ctl_dir_of(o, coll, p.db_key, dir);
		sbuf_adds(&out, ", \"pointer\": \"replaced\", \"snapshot\": ");
		sbuf_add_json_str(&out, dir);
		sbuf_addf(&out, ", \"generation\": %" PRIu64, p.generation);
	} else {
		sbuf_addf(&out, ", \"pointer\": \"%s\"", ppresent ? "ok" : "absent");
	}
	sbuf_adds(&out, ", \"repaired\": true}\n");
	fputs(sbuf_str(&out), stdout);
	sbuf_free(&out);
	return CTL_OK;
}
