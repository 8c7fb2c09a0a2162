/*
 * lease — lease object and compare-and-swap pointer on top of s3_client
 * (see lease.h for the protocol and what it guarantees).
 *
 * Invariants kept here:
 *  - every write of the lease or the pointer is conditional (If-None-
 *    Match: * or If-Match on an ETag we read or wrote);
 *  - the token only grows: a takeover writes the token read + 1, a
 *    renewal or release keeps it;
 *  - the local deadline is taken before the acquiring PUT is sent, so it
 *    can only be earlier than the expiry other hosts go by;
 *  - the pointer is never written without the lease and a margin left,
 *    and its PUT is bounded by what is left of the lease;
 *  - l->mu protects the lease's state (held, token, etag, deadline,
 *    holds) and is held across the S3 calls that change it, so that two
 *    threads of the process never race each other on the object.
 */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "mono.h"

/* Lease and pointer documents nest 4 deep (pointer, history, entry, keys). */
#define LEASE_DOC_DEPTH 16
/* Beyond a watched lease's ttl before it counts as expired (plus 1 % of the ttl for clock rates). */
#define LEASE_WATCH_MARGIN_S 2.0

struct lease {
	s3_client *c;
	char *key;
	char owner[LEASE_OWNER_MAX];
	unsigned ttl_s;
	pthread_mutex_t mu;
	/* Protected by mu. */
	bool held;
	unsigned holds; /* users in this process (lease_hold) */
	uint64_t token;
	char etag[S3_ETAG_MAX]; /* of our last write of the lease object */
	double deadline;        /* monotonic seconds: held until then */
	/*
	 * Another owner's lease is judged by watching it, never by its
	 * wall-clock expires (our clock may be minutes off theirs): the ETag
	 * we last read, and the monotonic time of the first read that
	 * returned it. The holder's lease ends at most ttl after that read.
	 */
	char seen_etag[S3_ETAG_MAX];
	double seen_at;
	char *self_prefix; /* owners starting with it are dead processes of ours (may be NULL) */
};

/* Copies src into dst[cap], cut short if it does not fit. */
static void lease_copy(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- the lease ---- */

int lease_state_parse(const char *json, struct lease_state *st)
{
	json_t *root;
	const char *owner;
	json_int_t token, expires, acquired_at = 0, ttl = 0;
	memset(st, 0, sizeof(*st));
	if (jsonx_load(json, LEASE_DOC_DEPTH, &root) < 0)
		return -EINVAL;
	int rc = json_unpack(root, "{s:s, s:I, s:I, s?I, s?I}", "owner", &owner, "token", &token,
			     "expires", &expires, "acquired_at", &acquired_at, "ttl", &ttl) < 0 ||
				 token < 0 || ttl < 0 ||
				 jsonx_copy(st->owner, sizeof(st->owner), owner) < 0
			 ? -EINVAL
			 : 0;
	json_decref(root);
	if (rc < 0) {
		memset(st, 0, sizeof(*st));
		return rc;
	}
	st->token = (uint64_t)token;
	st->expires = expires;
	st->acquired_at = acquired_at;
	st->ttl = (uint64_t)ttl;
	return 0;
}

void lease_state_json(const struct lease_state *st, sbuf *out)
{
	json_t *o = json_object();
	jsonx_set(o, "owner", jsonx_str(st->owner));
	jsonx_set(o, "token", jsonx_u64(st->token));
	jsonx_set(o, "expires", jsonx_int(st->expires));
	jsonx_set(o, "acquired_at", jsonx_int(st->acquired_at));
	jsonx_set(o, "ttl", jsonx_u64(st->ttl));
	jsonx_dump(o, 0, out);
	sbuf_adds(out, "\n");
	json_decref(o);
}

int lease_new(s3_client *c, const char *key, const char *owner, unsigned ttl_s, lease **out)
{
	*out = NULL;
	if (!c || !key || !*key || !owner || !*owner || strlen(owner) >= LEASE_OWNER_MAX || !ttl_s)
		return -EINVAL;
	lease *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->key = strdup(key);
	if (!l->key) {
		free(l);
		return -ENOMEM;
	}
	l->c = c;
	lease_copy(l->owner, sizeof(l->owner), owner);
	l->ttl_s = ttl_s;
	pthread_mutex_init(&l->mu, NULL);
	*out = l;
	return 0;
}

int lease_set_self_prefix(lease *l, const char *prefix)
{
	char *p = prefix && *prefix ? strdup(prefix) : NULL;
	if (prefix && *prefix && !p)
		return -ENOMEM;
	pthread_mutex_lock(&l->mu);
	free(l->self_prefix);
	l->self_prefix = p;
	pthread_mutex_unlock(&l->mu);
	return 0;
}

void lease_free(lease *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l->self_prefix);
	free(l->key);
	free(l);
}

/*
 * Fills err (if any) for a document that is not what it should be: what
 * it should be, and the start of what is there (escaped: it may be any
 * bytes), so that an operator sees what went wrong with which key.
 */
static void lease_bad_doc(s3_client *c, const char *key, const char *what, const char *doc,
			  struct s3_error *err)
{
	if (!err)
		return;
	memset(err, 0, sizeof(*err));
	lease_copy(err->method, sizeof(err->method), "GET");
	lease_copy(err->bucket, sizeof(err->bucket), s3_client_bucket(c));
	lease_copy(err->key, sizeof(err->key), key);
	sbuf b = SBUF_INIT;
	sbuf_adds(&b, what);
	if (doc) {
		char start[49];
		lease_copy(start, sizeof(start), doc);
		sbuf_adds(&b, "; it begins ");
		json_t *js = jsonx_str(start);
		jsonx_dump(js, JSON_ENCODE_ANY, &b);
		json_decref(js);
	}
	lease_copy(err->transport, sizeof(err->transport), sbuf_str(&b));
	sbuf_free(&b);
}

/* GETs a small document: 0 with *doc (malloc'd) and etag, or *present false. timeout_ms 0: the client's. */
static int lease_get_doc(s3_client *c, const char *key, char **doc, char etag[S3_ETAG_MAX],
			 bool *present, unsigned timeout_ms, struct s3_error *err)
{
	void *data = NULL;
	size_t len = 0;
	struct s3_object_info info;
	struct s3_error e;
	*doc = NULL;
	*present = false;
	if (etag)
		etag[0] = '\0';
	struct s3_get_opts go = {.timeout_ms = timeout_ms};
	int rc = s3_get_buf_opts(c, key, &go, LEASE_DOC_MAX, (void **)&data, &len, &info, &e);
	/* Only a missing key is "absent": a missing bucket (also 404) is an error. */
	if (rc == -ENOENT &&
	    (!strcmp(e.code, "NoSuchKey") || !strcmp(e.code, "NotFound") || !e.code[0]))
		return 0;
	if (rc == -EFBIG) {
		/* Not one of our documents; its ETag all the same, for a repair. */
		*present = true;
		if (etag && s3_head(c, key, &info, NULL) == 0) {
			lease_copy(etag, S3_ETAG_MAX, info.etag);
			s3_object_info_free(&info);
		}
		lease_bad_doc(c, key, "larger than 1 MiB: not a lease or pointer document", NULL,
			      err);
		return -EPROTO;
	}
	if (rc < 0) {
		if (err)
			*err = e;
		return rc;
	}
	*present = true;
	if (etag)
		lease_copy(etag, S3_ETAG_MAX, info.etag);
	s3_object_info_free(&info);
	if (strlen(data) != len) { /* a NUL inside */
		lease_bad_doc(c, key, "not a JSON document (NUL byte)", data, err);
		free(data);
		return -EPROTO;
	}
	*doc = data;
	return 0;
}

/* lease_read within timeout_ms (0: the client's deadline). */
static int lease_read_within(s3_client *c, const char *key, struct lease_state *st,
			     char etag[S3_ETAG_MAX], bool *present, unsigned timeout_ms,
			     struct s3_error *err)
{
	char *doc;
	memset(st, 0, sizeof(*st));
	int rc = lease_get_doc(c, key, &doc, etag, present, timeout_ms, err);
	if (rc < 0 || !*present)
		return rc;
	rc = lease_state_parse(doc, st);
	if (rc < 0) {
		lease_bad_doc(c, key, "not a lease document (owner, token, expires)", doc, err);
		rc = -EPROTO;
	}
	free(doc);
	return rc;
}

int lease_read(s3_client *c, const char *key, struct lease_state *st, char etag[S3_ETAG_MAX],
	       bool *present, struct s3_error *err)
{
	return lease_read_within(c, key, st, etag, present, 0, err);
}

static double lease_remaining_locked(const lease *l)
{
	return l->held ? l->deadline - mono_now() : 0;
}

/*
 * While the lease is held, each call made to keep it must end before the
 * lease does: a renewal stalled past it would leave this process
 * believing it compacts while another may already have taken over. The
 * milliseconds left (at least 1), or 0 (the client's deadline) when the
 * lease is not held. With l->mu.
 */
static unsigned lease_call_ms(const lease *l)
{
	if (!l->held)
		return 0;
	double left = l->deadline - mono_now();
	return left < 0.001 ? 1 : (unsigned)(left * 1000.0);
}

/*
 * One conditional PUT of our lease document with token; on success the
 * lease is held until the monotonic time taken before sending. With l->mu.
 */
static int lease_put(lease *l, uint64_t token, int64_t expires, const char *if_match,
		     struct s3_error *err)
{
	struct lease_state st = {0};
	if (token > (uint64_t)INT64_MAX)
		return -EOVERFLOW; /* a JSON integer holds no more: the token could not grow */
	lease_copy(st.owner, sizeof(st.owner), l->owner);
	st.token = token;
	st.acquired_at = (int64_t)time(NULL);
	st.expires = expires < 0 ? st.acquired_at + (int64_t)l->ttl_s : expires;
	st.ttl = l->ttl_s;
	sbuf b = SBUF_INIT;
	lease_state_json(&st, &b);
	struct s3_put_opts po = {.content_type = "application/json", .timeout_ms = lease_call_ms(l)};
	if (if_match)
		po.if_match = if_match;
	else
		po.if_none_match = true;
	struct s3_put_result pr;
	double t0 = mono_now();
	int rc = s3_put_buf(l->c, l->key, b.buf, b.len, &po, &pr, err);
	sbuf_free(&b);
	if (rc == -ESTALE) {
		/* Lost a race, or a retried PUT whose first attempt landed: look. */
		struct lease_state now;
		char etag[S3_ETAG_MAX];
		bool present;
		struct s3_error e2;
		if (lease_read(l->c, l->key, &now, etag, &present, &e2) == 0 && present &&
		    strcmp(now.owner, l->owner) == 0 && now.token == token &&
		    now.expires == st.expires) {
			lease_copy(pr.etag, sizeof(pr.etag), etag);
			rc = 0;
		}
	}
	if (rc < 0)
		return rc;
	lease_copy(l->etag, sizeof(l->etag), pr.etag);
	l->token = token;
	if (expires == 0) {
		l->held = false;
	} else {
		l->held = true;
		l->deadline = t0 + (double)l->ttl_s;
	}
	return 0;
}

/*
 * Whether cur, read now with ETag etag and owned by someone else, may be
 * taken over: released (expires 0); held by an earlier process of ours
 * (self_prefix); or seen unchanged for its ttl and a margin on our own
 * monotonic clock. A lease that changed since the last read starts a new
 * watch. With l->mu.
 */
static bool lease_may_take(lease *l, const struct lease_state *cur, const char *etag, double read_at)
{
	if (cur->expires == 0)
		return true;
	if (l->self_prefix && strncmp(cur->owner, l->self_prefix, strlen(l->self_prefix)) == 0)
		return true;
	if (strcmp(l->seen_etag, etag) != 0) {
		lease_copy(l->seen_etag, sizeof(l->seen_etag), etag);
		l->seen_at = read_at;
		return false;
	}
	double ttl = (double)(cur->ttl ? cur->ttl : l->ttl_s);
	return mono_now() >= l->seen_at + ttl + LEASE_WATCH_MARGIN_S + ttl / 100.0;
}

/* Takes the lease or renews ours, as lease.h says. With l->mu. */
static int lease_acquire(lease *l, struct lease_state *holder, struct s3_error *err)
{
	struct lease_state cur;
	char etag[S3_ETAG_MAX];
	bool present;
	if (holder)
		memset(holder, 0, sizeof(*holder));
	for (int round = 0; round < 2; round++) {
		int rc = lease_read_within(l->c, l->key, &cur, etag, &present, lease_call_ms(l), err);
		if (rc < 0)
			return rc;
		/* After the read: the holder's last write, if any, was sent before it. */
		double read_at = mono_now();
		if (!present) {
			rc = lease_put(l, 1, -1, NULL, err);
		} else if (strcmp(cur.owner, l->owner) == 0 && cur.expires != 0) {
			rc = lease_put(l, cur.token, -1, etag, err); /* renew: same token */
		} else if (strcmp(cur.owner, l->owner) == 0 ||
			   lease_may_take(l, &cur, etag, read_at)) {
			rc = lease_put(l, cur.token + 1, -1, etag, err); /* takeover: fencing */
		} else {
			if (holder)
				*holder = cur;
			l->held = false;
			return -EBUSY;
		}
		if (rc != -ESTALE)
			return rc;
		/* Someone wrote it between our read and our PUT: read again. */
	}
	if (holder) {
		bool p2;
		struct s3_error e2;
		if (lease_read(l->c, l->key, &cur, NULL, &p2, &e2) == 0 && p2)
			*holder = cur;
	}
	l->held = false;
	return -EBUSY;
}

int lease_hold(lease *l, double min_left_s, struct lease_state *holder, struct s3_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	if (lease_remaining_locked(l) <= min_left_s)
		rc = lease_acquire(l, holder, err);
	if (rc < 0 && l->held && lease_remaining_locked(l) <= 0)
		l->held = false; /* it ran out while S3 could not be reached */
	if (rc == 0)
		l->holds++;
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lease_hold_if_held(lease *l, double min_left_s)
{
	pthread_mutex_lock(&l->mu);
	int rc = lease_remaining_locked(l) > min_left_s ? 0 : -ENOLCK;
	if (rc == 0)
		l->holds++;
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lease_hold_over(lease *l, const char *etag, uint64_t token, struct s3_error *err)
{
	pthread_mutex_lock(&l->mu);
	int rc = lease_put(l, token, -1, etag, err);
	if (rc == 0)
		l->holds++;
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lease_drop(lease *l, struct s3_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	if (l->holds && --l->holds == 0 && (l->held || l->etag[0])) {
		char etag[S3_ETAG_MAX];
		lease_copy(etag, sizeof(etag), l->etag);
		rc = lease_put(l, l->token, 0, etag, err);
		l->held = false;
		l->etag[0] = '\0';
		if (rc == -ESTALE)
			rc = 0; /* taken over since: it is not ours to release */
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

double lease_remaining(lease *l)
{
	pthread_mutex_lock(&l->mu);
	double left = lease_remaining_locked(l);
	pthread_mutex_unlock(&l->mu);
	return left;
}

uint64_t lease_token(lease *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t token = l->token;
	pthread_mutex_unlock(&l->mu);
	return token;
}

/* ---- the pointer ---- */

void lease_history_free(struct lease_history *h)
{
	if (!h)
		return;
	free(h->prev);
	h->prev = NULL;
	h->n = 0;
}

int lease_history_next(const struct lease_pointer *cur, const struct lease_history *cur_h,
		       size_t max, struct lease_history *out)
{
	out->prev = NULL;
	out->n = 0;
	if (max > LEASE_HISTORY_MAX)
		max = LEASE_HISTORY_MAX;
	if (!max)
		return 0;
	out->prev = calloc(max, sizeof(*out->prev));
	if (!out->prev)
		return -ENOMEM;
	struct lease_prev *p = &out->prev[out->n++];
	p->generation = cur->generation;
	lease_copy(p->db_key, sizeof(p->db_key), cur->db_key);
	lease_copy(p->manifest_key, sizeof(p->manifest_key), cur->manifest_key);
	p->written_at = cur->written_at;
	/* Only older generations follow: the history stays strictly descending. */
	for (size_t i = 0; cur_h && i < cur_h->n && out->n < max; i++)
		if (cur_h->prev[i].generation < out->prev[out->n - 1].generation)
			out->prev[out->n++] = cur_h->prev[i];
	return 0;
}

static json_t *lease_keys_json(const char *db, const char *manifest)
{
	json_t *k = json_object();
	jsonx_set(k, "db", jsonx_str(db));
	jsonx_set(k, "manifest", jsonx_str(manifest));
	return k;
}

json_t *lease_pointer_to_json(const struct lease_pointer *p, const struct lease_history *h)
{
	json_t *o = json_object();
	jsonx_set(o, "generation", jsonx_u64(p->generation));
	jsonx_set(o, "id", jsonx_u64(p->id));
	jsonx_set(o, "host", jsonx_str(p->host));
	jsonx_set(o, "keys", lease_keys_json(p->db_key, p->manifest_key));
	jsonx_set(o, "sha256", jsonx_str(p->sha256));
	jsonx_set(o, "size", jsonx_u64(p->size));
	jsonx_set(o, "etag", jsonx_str(p->etag));
	jsonx_set(o, "lease_token", jsonx_u64(p->lease_token));
	jsonx_set(o, "written_at", jsonx_int(p->written_at));
	if (h) {
		json_t *arr = json_array();
		for (size_t i = 0; i < h->n; i++) {
			json_t *e = json_object();
			jsonx_set(e, "generation", jsonx_u64(h->prev[i].generation));
			jsonx_set(e, "keys",
				  lease_keys_json(h->prev[i].db_key, h->prev[i].manifest_key));
			jsonx_set(e, "written_at", jsonx_int(h->prev[i].written_at));
			jsonx_push(arr, e);
		}
		jsonx_set(o, "history", arr);
	}
	return o;
}

void lease_pointer_json(const struct lease_pointer *p, const struct lease_history *h, sbuf *out)
{
	json_t *o = lease_pointer_to_json(p, h);
	jsonx_dump(o, 0, out);
	sbuf_adds(out, "\n");
	json_decref(o);
}

static bool lease_is_sha_hex(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

/* One history entry: every field there, keys not empty and fitting; else -EINVAL. */
static int lease_prev_parse(json_t *v, struct lease_prev *e)
{
	const char *db, *manifest;
	json_int_t generation, written_at;
	memset(e, 0, sizeof(*e));
	if (json_unpack(v, "{s:I, s:{s:s, s:s}, s:I}", "generation", &generation, "keys", "db", &db,
			"manifest", &manifest, "written_at", &written_at) < 0 ||
	    generation < 0 || jsonx_copy(e->db_key, sizeof(e->db_key), db) < 0 ||
	    jsonx_copy(e->manifest_key, sizeof(e->manifest_key), manifest) < 0 || !e->db_key[0] ||
	    !e->manifest_key[0])
		return -EINVAL;
	e->generation = (uint64_t)generation;
	e->written_at = written_at;
	return 0;
}

/*
 * A pointer's history array into h (NULL: each entry checked only). With
 * h, generations must strictly descend; past LEASE_HISTORY_MAX entries
 * (more than any writer keeps) the oldest are dropped. 0, -EINVAL or
 * -ENOMEM.
 */
static int lease_history_parse(json_t *arr, struct lease_history *h)
{
	size_t i, cap = 0;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		struct lease_prev e;
		if (lease_prev_parse(v, &e) < 0)
			return -EINVAL;
		if (!h)
			continue;
		if (h->n && e.generation >= h->prev[h->n - 1].generation)
			return -EINVAL;
		if (h->n == LEASE_HISTORY_MAX)
			continue;
		if (h->n == cap) {
			cap = cap ? cap * 2 : 8;
			struct lease_prev *n = realloc(h->prev, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			h->prev = n;
		}
		h->prev[h->n++] = e;
	}
	return 0;
}

int lease_pointer_parse(const char *json, struct lease_pointer *p, struct lease_history *h)
{
	json_t *root = NULL, *hist = NULL;
	const char *host, *db, *manifest, *sha, *etag;
	json_int_t generation = 0, id = 0, size = 0, token = 0, written_at = 0;
	int rc = -EINVAL;
	memset(p, 0, sizeof(*p));
	if (h) {
		h->prev = NULL;
		h->n = 0;
	}
	if (jsonx_load(json, LEASE_DOC_DEPTH, &root) == 0 &&
	    json_unpack(root, "{s:I, s:I, s:s, s:{s:s, s:s}, s:s, s:I, s:s, s:I, s:I, s?o}",
			"generation", &generation, "id", &id, "host", &host, "keys", "db", &db,
			"manifest", &manifest, "sha256", &sha, "size", &size, "etag", &etag,
			"lease_token", &token, "written_at", &written_at, "history", &hist) == 0 &&
	    generation >= 0 && id >= 0 && size >= 0 && token >= 0 &&
	    jsonx_copy(p->host, sizeof(p->host), host) == 0 &&
	    jsonx_copy(p->db_key, sizeof(p->db_key), db) == 0 &&
	    jsonx_copy(p->manifest_key, sizeof(p->manifest_key), manifest) == 0 &&
	    jsonx_copy(p->sha256, sizeof(p->sha256), sha) == 0 &&
	    jsonx_copy(p->etag, sizeof(p->etag), etag) == 0 && lease_is_sha_hex(p->sha256) &&
	    p->db_key[0] && p->manifest_key[0] && (!hist || json_is_array(hist)))
		rc = hist ? lease_history_parse(hist, h) : 0;
	/* The history is older than the pointer. */
	if (rc == 0 && h && h->n && h->prev[0].generation >= (uint64_t)generation)
		rc = -EINVAL;
	json_decref(root);
	if (rc < 0) {
		memset(p, 0, sizeof(*p));
		lease_history_free(h);
		return rc;
	}
	p->generation = (uint64_t)generation;
	p->id = (uint64_t)id;
	p->size = (uint64_t)size;
	p->lease_token = (uint64_t)token;
	p->written_at = written_at;
	return 0;
}

int lease_pointer_get(s3_client *c, const char *key, struct lease_pointer *p, struct lease_history *h,
		      char etag[S3_ETAG_MAX], bool *present, struct s3_error *err)
{
	char *doc;
	memset(p, 0, sizeof(*p));
	if (h) {
		h->prev = NULL;
		h->n = 0;
	}
	int rc = lease_get_doc(c, key, &doc, etag, present, 0, err);
	if (rc < 0 || !*present)
		return rc;
	rc = lease_pointer_parse(doc, p, h);
	if (rc == -EINVAL) {
		lease_bad_doc(c, key,
			      "not a pointer document (generation, id, host, keys, sha256, size, etag, "
			      "lease_token, written_at, history)",
			      doc, err);
		rc = -EPROTO;
	}
	free(doc);
	return rc;
}

static bool lease_pointer_same(const struct lease_pointer *a, const struct lease_pointer *b)
{
	return a->generation == b->generation && a->id == b->id && !strcmp(a->host, b->host) &&
	       !strcmp(a->db_key, b->db_key) && !strcmp(a->sha256, b->sha256) &&
	       a->lease_token == b->lease_token && a->written_at == b->written_at;
}

/* Not written: the PUT would not end safely before the lease does. */
#define LEASE_SAFETY_S 1.0

int lease_pointer_swap(lease *l, const char *key, struct lease_pointer *p,
		       const struct lease_history *h, const char *if_match, double margin_s,
		       char new_etag[S3_ETAG_MAX], struct s3_error *err)
{
	double left = lease_remaining(l);
	if (left <= margin_s || left <= LEASE_SAFETY_S) {
		if (err) {
			memset(err, 0, sizeof(*err));
			lease_copy(err->method, sizeof(err->method), "PUT");
			lease_copy(err->bucket, sizeof(err->bucket), s3_client_bucket(l->c));
			lease_copy(err->key, sizeof(err->key), key);
			snprintf(err->transport, sizeof(err->transport),
				 "not written: the lease has %.1f s left, less than the %.1f s margin",
				 left, margin_s);
		}
		return -ENOLCK;
	}
	p->lease_token = lease_token(l);
	sbuf b = SBUF_INIT;
	lease_pointer_json(p, h, &b);
	/* The PUT ends before the lease does, or is abandoned. */
	struct s3_put_opts po = {.content_type = "application/json",
				 .timeout_ms = (unsigned)((left - LEASE_SAFETY_S) * 1000)};
	if (if_match && *if_match)
		po.if_match = if_match;
	else
		po.if_none_match = true;
	struct s3_put_result pr;
	int rc = s3_put_buf(l->c, key, b.buf, b.len, &po, &pr, err);
	sbuf_free(&b);
	if (rc == -ESTALE) {
		/* Moved — unless what is there is our own write (a retried PUT). */
		struct lease_pointer now;
		char etag[S3_ETAG_MAX];
		bool present;
		struct s3_error e2;
		if (lease_pointer_get(l->c, key, &now, NULL, etag, &present, &e2) == 0 && present &&
		    lease_pointer_same(&now, p)) {
			lease_copy(pr.etag, sizeof(pr.etag), etag);
			rc = 0;
		}
	}
	if (rc == 0 && new_etag)
		lease_copy(new_etag, S3_ETAG_MAX, pr.etag);
	return rc;
}
