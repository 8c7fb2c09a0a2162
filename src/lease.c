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
 *  - the pointer is never written without the lease and a margin left.
 */
#include "lease.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jread.h"

struct lease {
	s3_client *c;
	char *key;
	char owner[LEASE_OWNER_MAX];
	unsigned ttl_s;
	bool held;
	uint64_t token;
	char etag[S3_ETAG_MAX]; /* of our last write of the lease object */
	double deadline;        /* monotonic seconds: held until then */
};

static double lease_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
		{"owner", JREAD_STR, st->owner, sizeof(st->owner), NULL, 0, false},
		{"token", JREAD_U64, &st->token, 0, NULL, 0, false},
		{"expires", JREAD_I64, &st->expires, 0, NULL, 0, false},
		{"acquired_at", JREAD_I64, &st->acquired_at, 0, NULL, 0, true},
		{"ttl", JREAD_U64, &st->ttl, 0, NULL, 0, true},
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
	*out = l;
	return 0;
}

void lease_free(lease *l)
{
	if (!l)
		return;
	free(l->key);
	free(l);
}

/* Fills err (if any) for a document that is not what it should be. */
static void lease_bad_doc(s3_client *c, const char *key, const char *what, struct s3_error *err)
{
	if (!err)
		return;
	memset(err, 0, sizeof(*err));
	lease_copy(err->method, sizeof(err->method), "GET");
	lease_copy(err->bucket, sizeof(err->bucket), s3_client_bucket(c));
	lease_copy(err->key, sizeof(err->key), key);
	snprintf(err->transport, sizeof(err->transport), "%s", what);
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
	if (rc < 0) {
		if (err)
			*err = e;
		return rc;
	}
	if (etag)
		lease_copy(etag, S3_ETAG_MAX, info.etag);
	s3_object_info_free(&info);
	if (strlen(data) != len) { /* a NUL inside */
		free(data);
		lease_bad_doc(c, key, "not a JSON document (NUL byte)", err);
		return -EPROTO;
	}
	*doc = data;
	*present = true;
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
	free(doc);
	if (rc < 0) {
		lease_bad_doc(c, key, "not a lease document (owner, token, expires)", err);
		return -EPROTO;
	}
	return 0;
}

/*
 * One conditional PUT of our lease document with token; on success the
 * lease is held until the monotonic time taken before sending.
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
	double t0 = lease_mono();
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

int lease_acquire(lease *l, struct lease_state *holder, struct s3_error *err)
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

double lease_remaining(const lease *l)
{
	if (!l->held)
		return 0;
	return l->deadline - lease_mono();
}

uint64_t lease_token(const lease *l)
{
	return l->token;
}

int lease_release(lease *l, struct s3_error *err)
{
	if (!l->held && !l->etag[0])
		return 0;
	char etag[S3_ETAG_MAX];
	lease_copy(etag, sizeof(etag), l->etag);
	int rc = lease_put(l, l->token, 0, etag, err);
	l->held = false;
	l->etag[0] = '\0';
	if (rc == -ESTALE)
		return 0; /* taken over since: it is not ours to release */
	return rc;
}

/* ---- the pointer ---- */

void lease_pointer_json(const struct lease_pointer *p, sbuf *out)
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
	sbuf_addf(out, ", \"lease_token\": %" PRIu64 ", \"written_at\": %" PRId64 "}\n",
		  p->lease_token, p->written_at);
}

static bool lease_is_sha_hex(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

int lease_pointer_parse(const char *json, struct lease_pointer *p)
{
	memset(p, 0, sizeof(*p));
	const struct jread_field keys[] = {
		{"db", JREAD_STR, p->db_key, sizeof(p->db_key), NULL, 0, false},
		{"manifest", JREAD_STR, p->manifest_key, sizeof(p->manifest_key), NULL, 0, false},
	};
	const struct jread_field f[] = {
		{"generation", JREAD_U64, &p->generation, 0, NULL, 0, false},
		{"id", JREAD_U64, &p->id, 0, NULL, 0, false},
		{"host", JREAD_STR, p->host, sizeof(p->host), NULL, 0, false},
		{"keys", JREAD_OBJ, NULL, 0, keys, 2, false},
		{"sha256", JREAD_STR, p->sha256, sizeof(p->sha256), NULL, 0, false},
		{"size", JREAD_U64, &p->size, 0, NULL, 0, false},
		{"etag", JREAD_STR, p->etag, sizeof(p->etag), NULL, 0, false},
		{"lease_token", JREAD_U64, &p->lease_token, 0, NULL, 0, false},
		{"written_at", JREAD_I64, &p->written_at, 0, NULL, 0, false},
	};
	if (jread_object(json, f, sizeof(f) / sizeof(f[0])) < 0 || !lease_is_sha_hex(p->sha256) ||
	    !p->db_key[0] || !p->manifest_key[0]) {
		memset(p, 0, sizeof(*p));
		return -EINVAL;
	}
	return 0;
}

int lease_pointer_get(s3_client *c, const char *key, struct lease_pointer *p,
		      char etag[S3_ETAG_MAX], bool *present, struct s3_error *err)
{
	char *doc;
	memset(p, 0, sizeof(*p));
	int rc = lease_get_doc(c, key, &doc, etag, present, err);
	if (rc < 0 || !*present)
		return rc;
	rc = lease_pointer_parse(doc, p);
	free(doc);
	if (rc < 0) {
		lease_bad_doc(c, key, "not a pointer document (generation, id, host, keys, sha256, ...)",
			      err);
		return -EPROTO;
	}
	return 0;
}

static bool lease_pointer_same(const struct lease_pointer *a, const struct lease_pointer *b)
{
	return a->generation == b->generation && a->id == b->id && !strcmp(a->host, b->host) &&
	       !strcmp(a->db_key, b->db_key) && !strcmp(a->sha256, b->sha256) &&
	       a->lease_token == b->lease_token && a->written_at == b->written_at;
}

int lease_pointer_swap(lease *l, const char *key, struct lease_pointer *p, const char *if_match,
		       double margin_s, char new_etag[S3_ETAG_MAX], struct s3_error *err)
{
	if (lease_remaining(l) <= margin_s) {
		if (err) {
			memset(err, 0, sizeof(*err));
			lease_copy(err->method, sizeof(err->method), "PUT");
			lease_copy(err->bucket, sizeof(err->bucket), s3_client_bucket(l->c));
			lease_copy(err->key, sizeof(err->key), key);
			snprintf(err->transport, sizeof(err->transport),
				 "not written: the lease has %.1f s left, less than the %.1f s margin",
				 lease_remaining(l), margin_s);
		}
		return -ENOLCK;
	}
	p->lease_token = l->token;
	sbuf b = SBUF_INIT;
	lease_pointer_json(p, &b);
	struct s3_put_opts po = {.content_type = "application/json"};
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
		if (lease_pointer_get(l->c, key, &now, etag, &present, &e2) == 0 && present &&
		    lease_pointer_same(&now, p)) {
			lease_copy(pr.etag, sizeof(pr.etag), etag);
			rc = 0;
		}
	}
	if (rc == 0 && new_etag)
		lease_copy(new_etag, S3_ETAG_MAX, pr.etag);
	return rc;
}
