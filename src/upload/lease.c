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

#include "jread.h"
#include "mono.h"

struct lease {
	s3_client *c;
	char *key;
	char owner[LEASE_OWNER_MAX];
	unsigned ttl_s;
	pthread_mutex_t mu;
	/* Protected by mu. */
	bool held;
	unsigned holds;         /* users in this process (lease_hold) */
	uint64_t token;
	char etag[S3_ETAG_MAX]; /* of our last write of the lease object */
	double deadline;        /* monotonic seconds: held until then */
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

static int lease_state_parse(const char *json, struct lease_state *st)
{
	memset(st, 0, sizeof(*st));
	const struct jread_field f[] = {
		{"owner", JREAD_STR, st->owner, sizeof(st->owner), NULL, 0, false, NULL, NULL},
		{"token", JREAD_U64, &st->token, 0, NULL, 0, false, NULL, NULL},
		{"expires", JREAD_I64, &st->expires, 0, NULL, 0, false, NULL, NULL},
		{"acquired_at", JREAD_I64, &st->acquired_at, 0, NULL, 0, true, NULL, NULL},
		{"ttl", JREAD_U64, &st->ttl, 0, NULL, 0, true, NULL, NULL},
	};
	return jread_object(json, f, sizeof(f) / sizeof(f[0]));
}

static void lease_state_json(const struct lease_state *st, sbuf *out)
{
	sbuf_adds(out, "{\"owner\": ");
	sbuf_add_json_str(out, st->owner);
	sbuf_addf(out,
		  ", \"token\": %" PRIu64 ", \"expires\": %" PRId64 ", \"acquired_at\": %" PRId64
		  ", \"ttl\": %" PRIu64 "}\n",
		  st->token, st->expires, st->acquired_at, st->ttl);
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

void lease_free(lease *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
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
		sbuf_add_json_str(&b, start);
	}
	lease_copy(err->transport, sizeof(err->transport), sbuf_str(&b));
	sbuf_free(&b);
}

/* GETs a small document: 0 with *doc (malloc'd) and etag, or *present false. */
static int lease_get_doc(s3_client *c, const char *key, char **doc, char etag[S3_ETAG_MAX],
			 bool *present, struct s3_error *err)
{
	void *data = NULL;
	size_t len = 0;
	struct s3_object_info info;
	struct s3_error e;
	*doc = NULL;
	*present = false;
	if (etag)
		etag[0] = '\0';
	int rc = s3_get_buf(c, key, NULL, LEASE_DOC_MAX, &data, &len, &info, &e);
	/* Only a missing key is "absent": a missing bucket (also 404) is an error. */
	if (rc == -ENOENT && (!strcmp(e.code, "NoSuchKey") || !strcmp(e.code, "NotFound") || !e.code[0]))
		return 0;
	if (rc == -EFBIG) {
		/* Not one of our documents; its ETag all the same, for a repair. */
		*present = true;
		if (etag && s3_head(c, key, &info, NULL) == 0) {
			lease_copy(etag, S3_ETAG_MAX, info.etag);
			s3_object_info_free(&info);
		}
		lease_bad_doc(c, key, "larger than 1 MiB: not a lease or pointer document", NULL, err);
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

int lease_read(s3_client *c, const char *key, struct lease_state *st, char etag[S3_ETAG_MAX],
	       bool *present, struct s3_error *err)
{
	char *doc;
	memset(st, 0, sizeof(*st));
	int rc = lease_get_doc(c, key, &doc, etag, present, err);
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

/*
 * One conditional PUT of our lease document with token; on success the
 * lease is held until the monotonic time taken before sending. With l->mu.
 */
static int lease_put(lease *l, uint64_t token, int64_t expires, const char *if_match,
		     struct s3_error *err)
{
	struct lease_state st = {0};
	lease_copy(st.owner, sizeof(st.owner), l->owner);
	st.token = token;
	st.acquired_at = (int64_t)time(NULL);
	st.expires = expires < 0 ? st.acquired_at + (int64_t)l->ttl_s : expires;
	st.ttl = l->ttl_s;
	sbuf b = SBUF_INIT;
	lease_state_json(&st, &b);
	struct s3_put_opts po = {.content_type = "application/json"};
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
		    strcmp(now.owner, l->owner) == 0 && now.token == token && now.expires == st.expires) {
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

/* Takes the lease or renews ours, as lease.h says. With l->mu. */
static int lease_acquire(lease *l, struct lease_state *holder, struct s3_error *err)
{
	struct lease_state cur;
	char etag[S3_ETAG_MAX];
	bool present;
	if (holder)
		memset(holder, 0, sizeof(*holder));
	for (int round = 0; round < 2; round++) {
		int rc = lease_read(l->c, l->key, &cur, etag, &present, err);
		if (rc < 0)
			return rc;
		int64_t now = (int64_t)time(NULL);
		if (!present) {
			rc = lease_put(l, 1, -1, NULL, err);
		} else if (strcmp(cur.owner, l->owner) == 0 && cur.expires > now) {
			rc = lease_put(l, cur.token, -1, etag, err); /* renew: same token */
		} else if (cur.expires <= now) {
			if (cur.token == UINT64_MAX)
				return -EOVERFLOW;
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

static double lease_remaining_locked(const lease *l)
{
	return l->held ? l->deadline - mono_now() : 0;
}

int lease_hold(lease *l, double min_left_s, struct lease_state *holder, struct s3_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	if (lease_remaining_locked(l) <= min_left_s)
		rc = lease_acquire(l, holder, err);
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

void lease_pointer_json(const struct lease_pointer *p, const struct lease_history *h, sbuf *out)
{
	sbuf_addf(out, "{\"generation\": %" PRIu64 ", \"id\": %" PRIu64 ", \"host\": ", p->generation,
		  p->id);
	sbuf_add_json_str(out, p->host);
	sbuf_adds(out, ", \"keys\": {\"db\": ");
	sbuf_add_json_str(out, p->db_key);
	sbuf_adds(out, ", \"manifest\": ");
	sbuf_add_json_str(out, p->manifest_key);
	sbuf_adds(out, "}, \"sha256\": ");
	sbuf_add_json_str(out, p->sha256);
	sbuf_addf(out, ", \"size\": %" PRIu64 ", \"etag\": ", p->size);
	sbuf_add_json_str(out, p->etag);
	sbuf_addf(out, ", \"lease_token\": %" PRIu64 ", \"written_at\": %" PRId64, p->lease_token,
		  p->written_at);
	if (h) {
		sbuf_adds(out, ", \"history\": [");
		for (size_t i = 0; i < h->n; i++) {
			sbuf_addf(out, "%s{\"generation\": %" PRIu64 ", \"keys\": {\"db\": ", i ? ", " : "",
				  h->prev[i].generation);
			sbuf_add_json_str(out, h->prev[i].db_key);
			sbuf_adds(out, ", \"manifest\": ");
			sbuf_add_json_str(out, h->prev[i].manifest_key);
			sbuf_addf(out, "}, \"written_at\": %" PRId64 "}", h->prev[i].written_at);
		}
		sbuf_adds(out, "]");
	}
	sbuf_adds(out, "}\n");
}

static bool lease_is_sha_hex(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

/* Reading a history: each element lands in cur, then is appended. */
struct lease_hist_read {
	struct lease_prev cur;
	struct lease_history *h; /* NULL: check only */
	size_t cap;
	bool bad;
};

static int lease_hist_take(void *arg)
{
	struct lease_hist_read *r = arg;
	struct lease_prev *last = r->h && r->h->n ? &r->h->prev[r->h->n - 1] : NULL;
	if (!r->cur.db_key[0] || !r->cur.manifest_key[0] || (last && r->cur.generation >= last->generation))
		return -1; /* every entry names its objects; generations strictly descend */
	if (!r->h)
		return 0;
	if (r->h->n == LEASE_HISTORY_MAX)
		return 0; /* more than any writer keeps: the oldest are dropped */
	if (r->h->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct lease_prev *n = realloc(r->h->prev, cap * sizeof(*n));
		if (!n) {
			r->bad = true;
			return -1;
		}
		r->h->prev = n;
		r->cap = cap;
	}
	r->h->prev[r->h->n++] = r->cur;
	return 0;
}

int lease_pointer_parse(const char *json, struct lease_pointer *p, struct lease_history *h)
{
	memset(p, 0, sizeof(*p));
	struct lease_hist_read hr = {.h = h};
	if (h) {
		h->prev = NULL;
		h->n = 0;
	}
	const struct jread_field keys[] = {
		{"db", JREAD_STR, p->db_key, sizeof(p->db_key), NULL, 0, false, NULL, NULL},
		{"manifest", JREAD_STR, p->manifest_key, sizeof(p->manifest_key), NULL, 0, false, NULL, NULL},
	};
	const struct jread_field hkeys[] = {
		{"db", JREAD_STR, hr.cur.db_key, sizeof(hr.cur.db_key), NULL, 0, false, NULL, NULL},
		{"manifest", JREAD_STR, hr.cur.manifest_key, sizeof(hr.cur.manifest_key), NULL, 0, false,
		 NULL, NULL},
	};
	const struct jread_field hist[] = {
		{"generation", JREAD_U64, &hr.cur.generation, 0, NULL, 0, false, NULL, NULL},
		{"keys", JREAD_OBJ, NULL, 0, hkeys, 2, false, NULL, NULL},
		{"written_at", JREAD_I64, &hr.cur.written_at, 0, NULL, 0, false, NULL, NULL},
	};
	const struct jread_field f[] = {
		{"generation", JREAD_U64, &p->generation, 0, NULL, 0, false, NULL, NULL},
		{"id", JREAD_U64, &p->id, 0, NULL, 0, false, NULL, NULL},
		{"host", JREAD_STR, p->host, sizeof(p->host), NULL, 0, false, NULL, NULL},
		{"keys", JREAD_OBJ, NULL, 0, keys, 2, false, NULL, NULL},
		{"sha256", JREAD_STR, p->sha256, sizeof(p->sha256), NULL, 0, false, NULL, NULL},
		{"size", JREAD_U64, &p->size, 0, NULL, 0, false, NULL, NULL},
		{"etag", JREAD_STR, p->etag, sizeof(p->etag), NULL, 0, false, NULL, NULL},
		{"lease_token", JREAD_U64, &p->lease_token, 0, NULL, 0, false, NULL, NULL},
		{"written_at", JREAD_I64, &p->written_at, 0, NULL, 0, false, NULL, NULL},
		{"history", JREAD_ARR, NULL, 0, hist, 3, true, lease_hist_take, &hr},
	};
	if (jread_object(json, f, sizeof(f) / sizeof(f[0])) < 0 || hr.bad || !lease_is_sha_hex(p->sha256) ||
	    !p->db_key[0] || !p->manifest_key[0] ||
	    (h && h->n && h->prev[0].generation >= p->generation)) {
		memset(p, 0, sizeof(*p));
		lease_history_free(h);
		return hr.bad ? -ENOMEM : -EINVAL;
	}
	return 0;
}

int lease_pointer_get(s3_client *c, const char *key, struct lease_pointer *p,
		      struct lease_history *h, char etag[S3_ETAG_MAX], bool *present,
		      struct s3_error *err)
{
	char *doc;
	memset(p, 0, sizeof(*p));
	if (h) {
		h->prev = NULL;
		h->n = 0;
	}
	int rc = lease_get_doc(c, key, &doc, etag, present, err);
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
				 "not written: the lease has %.1f s left, less than the %.1f s margin", left,
				 margin_s);
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
