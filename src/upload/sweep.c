/*
 * sweep — the plan (what the rule of sweep.h keeps and deletes) and its
 * execution (DeleteObjects, AbortMultipartUpload).
 *
 * What must stay true:
 *  - a key is deleted only if layout_parse_snapshot_key recognises it,
 *    it is not in the pointer's snapshot, and the plan says delete;
 *  - no snapshot is deleted unless the lease is held with a margin and
 *    the pointer, read again just before, is where the plan read it or
 *    further on (the pointer only moves forward, to newer objects, so a
 *    snapshot unneeded then is unneeded now);
 *  - the plan is computed from one listing: objects that appear after it
 *    are not in it, so they cannot be deleted by it.
 */
#include "sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "xalloc.h"

/* ---- the plan ---- */

const char *sweep_role_name(enum sweep_role r)
{
	static const char *const names[] = {"pointer", "kept", "newer", "expired", "orphan"};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

const char *sweep_action_name(enum sweep_action a)
{
	static const char *const names[] = {"keep", "wait", "delete"};
	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

/* The directory of a key under snapshots/ ("" if it is not one of ours). */
static void sweep_dir_of(const char *prefix, const char *coll, const char *key,
			 char dir[LAYOUT_DIR_MAX])
{
	struct layout_snap s;
	dir[0] = '\0';
	if (layout_parse_snapshot_key(prefix, coll, key, &s))
		memcpy(dir, s.dir, sizeof(s.dir));
}

struct sweep_collect {
	const char *prefix, *coll;
	struct sweep_plan *p;
	size_t cap;
};

/* Groups the listing (in key order, so a directory's objects are adjacent) by directory. */
static int sweep_collect_one(void *arg, const struct s3_object *o)
{
	struct sweep_collect *sc = arg;
	struct sweep_plan *p = sc->p;
	struct layout_snap s;
	if (o->is_prefix || !layout_parse_snapshot_key(sc->prefix, sc->coll, o->key, &s)) {
		p->unknown++;
		return 0;
	}
	struct sweep_snap *last = p->nsnaps ? &p->snaps[p->nsnaps - 1] : NULL;
	if (!last || strcmp(last->name.dir, s.dir) != 0) {
		if (p->nsnaps == sc->cap) {
			sc->cap = sc->cap ? sc->cap * 2 : 64;
			struct sweep_snap *n = xreallocarray(p->snaps, sc->cap, sizeof(*n));
			p->snaps = n;
		}
		last = &p->snaps[p->nsnaps++];
		memset(last, 0, sizeof(*last));
		last->name = s;
		last->name.leaf = LAYOUT_LEAF_NONE;
	}
	if (s.leaf == LAYOUT_LEAF_DB) {
		last->has_db = true;
		last->db_modified = o->last_modified;
	} else
		last->has_manifest = true;
	last->objects++;
	last->bytes += o->size;
	if (o->last_modified > last->newest)
		last->newest = o->last_modified;
	p->objects++;
	p->bytes += o->size;
	return 0;
}

/* When the pointer came to name generation g: 0 if neither it nor its history says. */
static int64_t sweep_written_at(const struct sweep_plan *p, uint64_t g)
{
	if (g == p->pointer.generation)
		return p->pointer.written_at;
	for (size_t i = 0; i < p->history.n; i++)
		if (p->history.prev[i].generation == g)
			return p->history.prev[i].written_at;
	return 0;
}

static void sweep_due(struct sweep_plan *p, struct sweep_snap *s, int64_t since,
		      const struct sweep_rules *r, int64_t now)
{
	s->unneeded_since = since;
	int64_t due = since + (int64_t)r->grace_s;
	if (now >= due) {
		s->action = SWEEP_DELETE;
		p->del_snaps++;
		p->del_objects += s->objects;
		p->del_bytes += s->bytes;
	} else {
		s->action = SWEEP_WAIT;
		if (!p->next_due || due < p->next_due)
			p->next_due = due;
	}
}

/* Decides each snapshot's role and action (the rule of sweep.h). */
static void sweep_decide(const char *prefix, const char *coll, const struct sweep_rules *r,
			 int64_t now, struct sweep_plan *p)
{
	const struct lease_pointer *ptr = &p->pointer;
	char tdir[LAYOUT_DIR_MAX] = "";
	struct sweep_snap *target = NULL;
	if (p->pointer_present && p->pointer_rc == 0) {
		sweep_dir_of(prefix, coll, ptr->db_key, tdir);
		for (size_t i = 0; tdir[0] && i < p->nsnaps; i++)
			if (strcmp(p->snaps[i].name.dir, tdir) == 0 && p->snaps[i].has_db)
				target = &p->snaps[i];
	}
	if (!p->pointer_present)
		snprintf(p->blocked, sizeof(p->blocked),
			 "no pointer yet: nothing is deleted before one is written");
	else if (p->pointer_rc)
		snprintf(p->blocked, sizeof(p->blocked),
			 "the pointer is not a pointer document: nothing is deleted until it is repaired");
	else if (!tdir[0])
		snprintf(p->blocked, sizeof(p->blocked),
			 "the pointer names %s, which is not a snapshot key of this collection: nothing is deleted",
			 ptr->db_key);
	else if (!target)
		snprintf(p->blocked, sizeof(p->blocked),
			 "the pointer names %s, which is not in the bucket: nothing is deleted",
			 ptr->db_key);
	else if (r->keep == 0)
		snprintf(p->blocked, sizeof(p->blocked),
			 "retention is off (keep all): no snapshot is deleted");

	/* The oldest time the history remembers: a forgotten snapshot was replaced no later. */
	int64_t oldest_known = ptr->written_at;
	if (p->history.n)
		oldest_known = p->history.prev[p->history.n - 1].written_at;

	for (size_t i = 0; i < p->nsnaps; i++) {
		struct sweep_snap *s = &p->snaps[i];
		s->action = SWEEP_KEEP;
		if (target && s == target) {
			s->role = SWEEP_POINTER;
			s->generation = ptr->generation;
			continue;
		}
		for (size_t h = 0; h < p->history.n && !s->generation; h++) {
			char hdir[LAYOUT_DIR_MAX];
			sweep_dir_of(prefix, coll, p->history.prev[h].db_key, hdir);
			if (strcmp(hdir, s->name.dir) == 0)
				s->generation = p->history.prev[h].generation;
		}
		if (!target) {
			/* Nothing to measure against: roles as far as they can be told, all kept. */
			s->role = s->generation ? SWEEP_KEPT : SWEEP_NEWER;
			continue;
		}
		if (s->generation) {
			if (r->keep == 0 || s->generation + r->keep > ptr->generation) {
				s->role = SWEEP_KEPT;
				continue;
			}
			/* It left the keep window when generation g+keep was written. */
			s->role = SWEEP_EXPIRED;
			int64_t left_window = sweep_written_at(p, s->generation + r->keep);
			sweep_due(p, s, left_window ? left_window : ptr->written_at, r, now);
			continue;
		}
		/* Not older than the pointer's database object: maybe about to be swapped in. */
		if (s->newest >= target->db_modified) {
			s->role = SWEEP_NEWER;
			continue;
		}
		s->role = SWEEP_ORPHAN;
		if (r->keep)
			sweep_due(p, s, s->newest > oldest_known ? s->newest : oldest_known, r, now);
	}
	for (size_t i = 0; i < p->nsnaps; i++)
		if (p->snaps[i].action == SWEEP_KEEP)
			p->kept++;
}

/* Decides for each multipart upload under snapshots/. */
static int sweep_uploads(s3_client *c, const char *pfx, const char *prefix, const char *coll,
			 const struct sweep_rules *r, int64_t now, struct sweep_plan *p,
			 struct s3_error *err)
{
	struct s3_multipart *mp = NULL;
	size_t n = 0;
	int rc = s3_multipart_list(c, pfx, &mp, &n, err);
	if (rc < 0)
		return rc;
	p->uploads = xcalloc(n, sizeof(*p->uploads));
	unsigned age = r->upload_age_s ? r->upload_age_s : SWEEP_DEFAULT_UPLOAD_AGE_S;
	for (size_t i = 0; i < n; i++) {
		struct layout_snap s;
		if (!layout_parse_snapshot_key(prefix, coll, mp[i].key, &s)) {
			p->unknown++;
			continue;
		}
		struct sweep_upload *u = &p->uploads[p->nuploads++];
		u->key = mp[i].key;
		u->upload_id = mp[i].upload_id;
		mp[i].key = mp[i].upload_id = NULL;
		u->initiated = mp[i].initiated;
		u->name = s;
		u->ours = r->host_id && strcmp(s.host, r->host_id) == 0;
		if (u->ours) {
			/* Asked after the listing: an upload started since is not in it. */
			if (r->in_flight && r->in_flight(r->in_flight_arg, u->key, u->upload_id)) {
				u->why = "in flight";
			} else {
				u->abort = true;
				u->why = "of this host, not in flight: left by an earlier run or a failed abort";
			}
		} else if (now - (int64_t)u->initiated >= (int64_t)age) {
			u->abort = true;
			u->why = "of another host, initiated longer ago than the upload age";
		} else {
			u->why = "of another host, may still be in flight";
			int64_t due = (int64_t)u->initiated + (int64_t)age;
			if (!p->next_due || due < p->next_due)
				p->next_due = due;
		}
		if (u->abort)
			p->aborts++;
	}
	s3_multipart_list_free(mp, n);
	return 0;
}

int sweep_plan(s3_client *c, const char *prefix, const char *coll, const struct sweep_rules *r,
	       int64_t now, struct sweep_plan *out, struct s3_error *err)
{
	char ptr_key[S3_KEY_MAX + 1], pfx[S3_KEY_MAX + 1];
	memset(out, 0, sizeof(*out));
	int rc;
	if ((rc = layout_pointer_key(prefix, coll, ptr_key, sizeof(ptr_key))) < 0 ||
	    (rc = layout_snapshots_prefix(prefix, coll, pfx, sizeof(pfx))) < 0)
		return rc;
	/* The pointer first: whatever the listing then shows was there when it was read. */
	struct s3_error pe;
	rc = lease_pointer_get(c, ptr_key, &out->pointer, &out->history, out->pointer_etag,
			       &out->pointer_present, &pe);
	if (rc == -EPROTO) {
		out->pointer_rc = rc;
	} else if (rc < 0) {
		if (err)
			*err = pe;
		return rc;
	}
	struct sweep_collect sc = {.prefix = prefix, .coll = coll, .p = out};
	if ((rc = s3_list(c, pfx, NULL, sweep_collect_one, &sc, err)) < 0 ||
	    (rc = sweep_uploads(c, pfx, prefix, coll, r, now, out, err)) < 0) {
		sweep_plan_free(out);
		return rc;
	}
	sweep_decide(prefix, coll, r, now, out);
	return 0;
}

void sweep_plan_free(struct sweep_plan *p)
{
	lease_history_free(&p->history);
	free(p->snaps);
	for (size_t i = 0; i < p->nuploads; i++) {
		free(p->uploads[i].key);
		free(p->uploads[i].upload_id);
	}
	free(p->uploads);
	memset(p, 0, sizeof(*p));
}

/* ---- running it ---- */

/* Is the pointer still where the plan read it, or further on? */
static int sweep_pointer_still(s3_client *c, const char *ptr_key, const struct sweep_plan *p,
			       struct s3_error *err)
{
	struct lease_pointer now;
	char etag[S3_ETAG_MAX];
	bool present;
	int rc = lease_pointer_get(c, ptr_key, &now, NULL, etag, &present, err);
	if (rc < 0)
		return rc;
	if (!present || now.generation < p->pointer.generation ||
	    (now.generation == p->pointer.generation && strcmp(etag, p->pointer_etag) != 0)) {
		if (err) {
			memset(err, 0, sizeof(*err));
			snprintf(err->method, sizeof(err->method), "GET");
			snprintf(err->bucket, sizeof(err->bucket), "%s", s3_client_bucket(c));
			snprintf(err->key, sizeof(err->key), "%s", ptr_key);
			snprintf(err->transport, sizeof(err->transport),
				 "the pointer is not where the sweep read it (generation %" PRIu64
				 " then, %s now): nothing deleted",
				 p->pointer.generation, present ? "another" : "none");
		}
		return -ESTALE;
	}
	return 0;
}

/* Is there still time on the lease for one more request? */
static bool sweep_leased(lease *l, double margin_s)
{
	return l && lease_remaining(l) > margin_s;
}

int sweep_run(s3_client *c, const char *prefix, const char *coll, const struct sweep_plan *p,
	      lease *l, double margin_s, struct sweep_result *res, struct s3_error *err)
{
	memset(res, 0, sizeof(*res));
	int rc = 0;
	for (size_t i = 0; i < p->nuploads && rc == 0; i++) {
		const struct sweep_upload *u = &p->uploads[i];
		if (!u->abort || (!u->ours && !sweep_leased(l, margin_s)))
			continue;
		rc = s3_multipart_abort(c, u->key, u->upload_id, err);
		if (rc == 0) {
			res->aborted++;
			res->aborted_ours += u->ours;
		} else
			res->failed++;
	}
	if (rc || !p->del_snaps || p->blocked[0] || !sweep_leased(l, margin_s))
		return rc;

	char ptr_key[S3_KEY_MAX + 1];
	if ((rc = layout_pointer_key(prefix, coll, ptr_key, sizeof(ptr_key))) < 0 ||
	    (rc = sweep_pointer_still(c, ptr_key, p, err)) < 0)
		return rc;

	/* Batches of whole snapshots (both objects in the same request), at most S3_DELETE_MAX keys. */
	char leaf[LAYOUT_DIR_MAX + 16];
	snprintf(leaf, sizeof(leaf), "%s.sqlite3", coll);
	const char **keys = xcalloc(S3_DELETE_MAX, sizeof(*keys));
	char(*bufs)[S3_KEY_MAX + 1] = xcalloc(S3_DELETE_MAX, sizeof(*bufs));
	size_t i = 0;
	while (i < p->nsnaps && rc == 0) {
		size_t nk = 0;
		uint64_t bytes = 0, nsnaps = 0;
		for (; i < p->nsnaps && nk + 2 <= S3_DELETE_MAX; i++) {
			const struct sweep_snap *s = &p->snaps[i];
			if (s->action != SWEEP_DELETE)
				continue;
			if (s->has_db && layout_snapshot_key(prefix, coll, s->name.dir, leaf,
							     bufs[nk], sizeof(bufs[nk])) == 0)
				keys[nk] = bufs[nk], nk++;
			if (s->has_manifest &&
			    layout_snapshot_key(prefix, coll, s->name.dir, "MANIFEST.json",
						bufs[nk], sizeof(bufs[nk])) == 0)
				keys[nk] = bufs[nk], nk++;
			bytes += s->bytes;
			nsnaps++;
		}
		if (!nk)
			break;
		if (!sweep_leased(l, margin_s)) {
			rc = -ENOLCK;
			if (err) {
				memset(err, 0, sizeof(*err));
				snprintf(err->transport, sizeof(err->transport),
					 "the lease has less than %.1f s left: the rest waits for the next sweep",
					 margin_s);
			}
			break;
		}
		size_t failed = 0;
		rc = s3_delete_objects(c, keys, nk, &failed, err);
		if (rc == 0) {
			res->deleted_objects += nk;
			res->deleted_bytes += bytes;
			res->deleted_snaps += nsnaps;
		} else {
			/* Which of the batch went is not known object by object: count none. */
			res->failed += failed;
		}
	}
	free(keys);
	free(bufs);
	return rc;
}
