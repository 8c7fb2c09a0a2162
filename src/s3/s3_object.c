/*
 * s3_object — single objects (PUT, HEAD, GET, DELETE) and listings, on
 * top of the request engine (s3_request.c).
 */
#include "s3.h"

#include "hex.h"
#include "s3_i.h"
#include "xalloc.h"
#include "s3_xml.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

/* ---- objects ------------------------------------------------------------ */

/* Adds the headers of a PUT's options; their storage (sb) lives as long as the request. */
int s3i_put_headers(s3_client *c, struct req *rq, const struct s3_put_opts *o, sbuf *sb,
		    size_t n_sb, struct s3_error *err)
{
	if (!o)
		return 0;
	if (o->if_none_match && o->if_match)
		return s3i_bad_arg(c, rq, err, "If-None-Match and If-Match together");
	if (o->if_none_match)
		s3i_add_header(rq, "if-none-match", "*");
	if (o->if_match) {
		char etag[S3_ETAG_MAX];
		s3i_etag_copy(etag, o->if_match, strlen(o->if_match));
		if (!*etag || !s3i_clean_value(etag))
			return s3i_bad_arg(c, rq, err, "If-Match ETag is empty or not printable");
		/* radosgw matches only the bare ETag; AWS takes either form. */
		sbuf_adds(&sb[0], etag);
		s3i_add_header(rq, "if-match", sbuf_str(&sb[0]));
		rq->if_match = true;
	}
	if (o->content_type) {
		if (!s3i_clean_value(o->content_type))
			return s3i_bad_arg(c, rq, err, "content type is not printable");
		s3i_add_header(rq, "content-type", o->content_type);
	}
	if (o->n_meta + rq->n_hdrs + 8 > S3I_MAX_HEADERS || o->n_meta + 1 > n_sb)
		return s3i_bad_arg(c, rq, err, "too many metadata entries");
	for (size_t i = 0; i < o->n_meta; i++) {
		if (!s3i_clean_token(o->meta[i].name) || !s3i_clean_value(o->meta[i].value))
			return s3i_bad_arg(c, rq, err,
					   "metadata name or value is not valid in a header");
		sbuf_addf(&sb[i + 1], "x-amz-meta-%s", o->meta[i].name);
		s3i_add_header(rq, sbuf_str(&sb[i + 1]), o->meta[i].value);
	}
	return 0;
}

/*
 * After a create-only PUT found key taken: does the object there hold
 * these very bytes (its size, and the MD5 of the body as its ETag)?
 * etag receives its ETag if so.
 */
static bool same_bytes(s3_client *c, const char *key, const struct body *b, char etag[S3_ETAG_MAX])
{
	struct s3_object_info info;
	char md5hex[33];
	if (s3_head(c, key, &info, NULL) < 0)
		return false;
	hex_encode(b->md5, 16, md5hex);
	bool same = info.size == b->len && strcmp(info.etag, md5hex) == 0;
	if (same)
		s3i_copy(etag, S3_ETAG_MAX, info.etag);
	s3_object_info_free(&info);
	return same;
}

int s3i_put_body(s3_client *c, const char *key, struct body *body, const struct s3_put_opts *o,
		 struct s3_put_result *res, unsigned char md5[16], struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf sb[S3I_META_MAX + 1];
	memset(sb, 0, sizeof(sb));
	int rc = s3i_req_init(c, &rq, "PUT", key, err);
	if (rc)
		return rc;
	rq.body = *body;
	rq.cancel[0] = o ? o->cancel : NULL;
	rc = s3i_put_headers(c, &rq, o, sb, S3I_META_MAX + 1, err);
	if (!rc) {
		struct s3_error e;
		s3i_error_init(c, &rq, &e);
		rc = s3i_body_digest(&rq.body, rq.cancel[0], &e);
		if (rc && err)
			*err = e;
	}
	if (!rc) {
		s3i_add_header(&rq, "content-md5", rq.body.md5_b64);
		rq.timeout_ms = o ? o->timeout_ms : 0;
		rc = s3i_request(c, &rq, &rs, err);
	}
	char same_etag[S3_ETAG_MAX] = "";
	if (rc == -ESTALE && o && o->if_none_match && o->identical_ok &&
	    same_bytes(c, key, &rq.body, same_etag))
		rc = 0;
	if (res) {
		memset(res, 0, sizeof(*res));
		res->retries = rq.retries;
		if (!rc)
			s3i_copy(res->etag, sizeof(res->etag), same_etag[0] ? same_etag : rs.etag);
	}
	if (md5 && !rc)
		memcpy(md5, rq.body.md5, 16);
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	for (size_t i = 0; i <= S3I_META_MAX; i++)
		sbuf_free(&sb[i]);
	return rc;
}

int s3_put_buf(s3_client *c, const char *key, const void *data, size_t len,
	       const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err)
{
	struct body b = {.kind = BODY_MEM, .mem = data, .len = len};
	return s3i_put_body(c, key, &b, opts, res, NULL, err);
}

int s3_put_file(s3_client *c, const char *key, int fd, uint64_t off, uint64_t len,
		const struct s3_put_opts *opts, struct s3_put_result *res, struct s3_error *err)
{
	struct body b = {.kind = BODY_FD, .fd = fd, .off = off, .len = len};
	return s3i_put_body(c, key, &b, opts, res, NULL, err);
}

void s3_object_info_free(struct s3_object_info *info)
{
	if (!info)
		return;
	for (size_t i = 0; i < info->n_meta; i++) {
		free((char *)info->meta[i].name);
		free((char *)info->meta[i].value);
	}
	free(info->meta);
	info->meta = NULL;
	info->n_meta = 0;
}

/* Moves what an answer says about the object into info. */
static void info_fill(struct s3_object_info *info, struct resp *rs, uint64_t body_len,
		      unsigned retries)
{
	memset(info, 0, sizeof(*info));
	info->length = body_len;
	info->size = rs->have_total ? rs->total : rs->have_length ? rs->content_length : body_len;
	s3i_copy(info->etag, sizeof(info->etag), rs->etag);
	s3i_copy(info->content_type, sizeof(info->content_type), rs->content_type);
	info->last_modified = rs->last_modified[0] ? curl_getdate(rs->last_modified, NULL) : 0;
	if (info->last_modified < 0)
		info->last_modified = 0;
	info->meta = rs->meta;
	info->n_meta = rs->n_meta;
	rs->meta = NULL;
	rs->n_meta = 0;
	info->retries = retries;
}

int s3_head(s3_client *c, const char *key, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = s3i_req_init(c, &rq, "HEAD", key, err);
	if (rc)
		return rc;
	rq.want_meta = true;
	rc = s3i_request(c, &rq, &rs, err);
	if (!rc && info) {
		info_fill(info, &rs, 0, rq.retries);
		info->length = 0;
	}
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	return rc;
}

/* Checks a GET's body against what the headers promised. */
static int check_length(struct resp *rs, void *arg, struct s3_error *e)
{
	struct req *rq = arg;
	if (rs->status == 304)
		return 0; /* Not Modified: no body, whatever Content-Length says */
	if (rs->have_length && rq->sink.written != rs->content_length) {
		/* curl catches this too (PARTIAL_FILE); a retry is the answer either way. */
		e->curl_code = CURLE_PARTIAL_FILE;
		snprintf(e->transport, sizeof(e->transport), "received %" PRIu64 " bytes of %" PRIu64,
			 rq->sink.written, rs->content_length);
		return -EIO;
	}
	return 0;
}

int s3i_get(s3_client *c, struct req *rq, struct resp *rs, const struct s3_get_opts *o,
	    const atomic_bool *cancel2, struct s3_error *err)
{
	char rbuf[64], im[S3_ETAG_MAX], inm[S3_ETAG_MAX];
	if (o && o->range) {
		if (o->range->last < o->range->first)
			return s3i_bad_arg(c, rq, err, "range ends before it starts");
		snprintf(rbuf, sizeof(rbuf), "bytes=%" PRIu64 "-%" PRIu64, o->range->first,
			 o->range->last);
		s3i_add_header(rq, "range", rbuf);
	}
	if (o && o->if_match) {
		/* radosgw matches only the bare ETag; AWS takes either form. */
		s3i_etag_copy(im, o->if_match, strlen(o->if_match));
		if (!*im || !s3i_clean_value(im))
			return s3i_bad_arg(c, rq, err, "If-Match ETag is empty or not printable");
		s3i_add_header(rq, "if-match", im);
	}
	if (o && o->if_none_match) {
		s3i_etag_copy(inm, o->if_none_match, strlen(o->if_none_match));
		if (!*inm || !s3i_clean_value(inm))
			return s3i_bad_arg(c, rq, err,
					   "If-None-Match ETag is empty or not printable");
		s3i_add_header(rq, "if-none-match", inm);
		rq->not_modified_ok = true;
	}
	if (o) {
		rq->cancel[0] = o->cancel;
		rq->timeout_ms = o->timeout_ms;
	}
	rq->cancel[1] = cancel2;
	rq->want_meta = true;
	rq->check = check_length;
	rq->check_arg = rq;
	int rc = s3i_request(c, rq, rs, err);
	return rc == 0 && rs->status == 304 ? S3_NOT_MODIFIED : rc;
}

int s3_get_buf_opts(s3_client *c, const char *key, const struct s3_get_opts *o, size_t max,
		    void **data, size_t *len, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	*data = NULL;
	*len = 0;
	int rc = s3i_req_init(c, &rq, "GET", key, err);
	if (rc)
		return rc;
	rq.sink.max = max;
	rc = s3i_get(c, &rq, &rs, o, NULL, err);
	if (rc == 0) {
		*len = rq.sink.mem.len;
		*data = sbuf_detach(&rq.sink.mem);
	}
	if (rc >= 0 && info) /* S3_NOT_MODIFIED: the ETag, and no data */
		info_fill(info, &rs, *len, rq.retries);
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	return rc;
}

int s3_get_buf(s3_client *c, const char *key, const struct s3_range *range, size_t max, void **data,
	       size_t *len, struct s3_object_info *info, struct s3_error *err)
{
	struct s3_get_opts o = {.range = range};
	return s3_get_buf_opts(c, key, &o, max, data, len, info, err);
}

int s3_get_fd_opts(s3_client *c, const char *key, const struct s3_get_opts *o, int fd,
		   char *sha256_hex, struct s3_object_info *info, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = s3i_req_init(c, &rq, "GET", key, err);
	if (rc)
		return rc;
	rq.sink.kind = SINK_FD;
	rq.sink.fd = fd;
	rq.sink.base = o ? o->offset : 0;
	if (sha256_hex && !(rq.sink.sha = EVP_MD_CTX_new()))
		xalloc_die("in the S3 client");
	rc = s3i_get(c, &rq, &rs, o, NULL, err);
	if (rc == 0 && !(o && o->keep_size) &&
	    ftruncate(fd, (off_t)(rq.sink.base + rq.sink.written)) != 0) {
		if (err) {
			s3i_error_init(c, &rq, err);
			err->sys_errno = errno;
			s3i_copy(err->transport, sizeof(err->transport),
				 "truncating the output file");
		}
		rc = -errno;
	}
	if (rc >= 0) {
		if (sha256_hex) {
			unsigned char d[32];
			unsigned int dl = 0;
			EVP_DigestFinal_ex(rq.sink.sha, d, &dl);
			hex_encode(d, 32, sha256_hex);
		}
		if (info)
			info_fill(info, &rs, rq.sink.written, rq.retries);
	}
	EVP_MD_CTX_free(rq.sink.sha);
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	return rc;
}

int s3_get_fd(s3_client *c, const char *key, const struct s3_range *range, int fd, char *sha256_hex,
	      struct s3_object_info *info, struct s3_error *err)
{
	struct s3_get_opts o = {.range = range};
	return s3_get_fd_opts(c, key, &o, fd, sha256_hex, info, err);
}

int s3_delete(s3_client *c, const char *key, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	int rc = s3i_req_init(c, &rq, "DELETE", key, err);
	if (!rc)
		rc = s3i_request(c, &rq, &rs, err);
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	return rc;
}

/* A 200 DeleteObjects answer lists the keys it could not delete. */
static int check_delete(struct resp *rs, void *arg, struct s3_error *e)
{
	struct req *rq = arg;
	struct s3xml_delete d;
	char why[256];
	if (s3xml_parse_delete(rq->sink.mem.buf, rq->sink.mem.len, &d, why, sizeof(why))) {
		e->http_status = (int)rs->status;
		s3i_copy(e->transport, sizeof(e->transport), why);
		return -EPROTO;
	}
	size_t *failed = rq->check_out;
	*failed = 0;
	for (size_t i = 0; i < d.n; i++) {
		if (strcmp(d.errors[i].code, "NoSuchKey") == 0)
			continue; /* gone either way */
		if (!*failed) {
			/* The first one tells the story: its key, the server's code and words. */
			s3i_copy(e->key, sizeof(e->key), d.errors[i].key);
			s3i_copy(e->code, sizeof(e->code), d.errors[i].code);
			s3i_copy(e->message, sizeof(e->message), d.errors[i].message);
			e->http_status = (int)rs->status;
		}
		(*failed)++;
	}
	s3xml_delete_free(&d);
	return 0;
}

int s3_delete_objects(s3_client *c, const char *const *keys, size_t n, size_t *failed,
		      struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf xml = SBUF_INIT;
	size_t nfailed = 0;
	if (failed)
		*failed = 0;
	int rc = s3i_req_init(c, &rq, "POST", NULL, err);
	if (rc)
		return rc;
	rq.detail = "DeleteObjects";
	if (!n || n > S3_DELETE_MAX)
		return s3i_bad_arg(c, &rq, err, "DeleteObjects takes 1 to 1000 keys");
	sbuf_adds(&xml,
		  "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>");
	for (size_t i = 0; i < n; i++) {
		if (!keys[i][0] || strlen(keys[i]) > S3_KEY_MAX || !s3i_clean_value(keys[i])) {
			sbuf_free(&xml);
			return s3i_bad_arg(c, &rq, err, "a key is empty, too long or not printable");
		}
		sbuf_adds(&xml, "<Object><Key>");
		s3i_xml_escape(&xml, keys[i]);
		sbuf_adds(&xml, "</Key></Object>");
	}
	sbuf_adds(&xml, "</Delete>");
	rq.query = "delete=";
	rq.check = check_delete;
	rq.check_arg = &rq;
	rq.check_out = &nfailed;
	/* The server deletes every key before it answers. */
	rq.slow = true;
	rq.timeout_ms = c->slow_timeout_ms + (unsigned)n * 10u;
	struct s3_error e;
	rc = s3i_request_xml(c, &rq, &xml, &rs, &e);
	if (!rc && nfailed) {
		rc = -EIO;
		atomic_fetch_add(&c->failures, 1);
	}
	if (rc && err)
		*err = e;
	if (failed)
		*failed = rc == -EIO && nfailed ? nfailed : rc ? n : 0;
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	sbuf_free(&xml);
	return rc;
}

/* ---- listings ----------------------------------------------------------- */

/* A 2xx answer whose body does not parse: not retried, reported as EPROTO. */
int s3i_protocol_error(s3_client *c, const struct req *rq, struct s3_error *err, const char *why)
{
	if (err) {
		s3i_error_init(c, rq, err);
		err->http_status = 200;
		s3i_copy(err->transport, sizeof(err->transport), why);
	}
	atomic_fetch_add(&c->failures, 1);
	return -EPROTO;
}

int s3_list(s3_client *c, const char *prefix, const char *delimiter, s3_list_fn *fn, void *arg,
	    struct s3_error *err)
{
	char *token = NULL;
	int rc = 0;
	for (;;) {
		struct req rq;
		struct resp rs = {0};
		sbuf q = SBUF_INIT;
		s3i_req_init(c, &rq, "GET", NULL, err);
		rq.detail = "ListObjectsV2";
		s3i_query_add(&q, "list-type", "2");
		s3i_query_add(&q, "encoding-type", "url");
		if (prefix && *prefix)
			s3i_query_add(&q, "prefix", prefix);
		if (delimiter && *delimiter)
			s3i_query_add(&q, "delimiter", delimiter);
		if (token)
			s3i_query_add(&q, "continuation-token", token);
		rq.query = sbuf_str(&q);
		rc = s3i_request(c, &rq, &rs, err);
		struct s3xml_list page = {0};
		if (!rc) {
			char why[256];
			if (s3xml_parse_list(rq.sink.mem.buf, rq.sink.mem.len, &page, why,
					     sizeof(why)))
				rc = s3i_protocol_error(c, &rq, err, why);
			else if (page.truncated && token && strcmp(token, page.next_token) == 0)
				rc = s3i_protocol_error(c, &rq, err,
							"the same continuation token twice");
		}
		for (size_t i = 0; !rc && i < page.n; i++) {
			struct s3xml_object *x = &page.items[i];
			struct s3_object o = {x->key, x->etag, x->size, x->last_modified,
					      x->is_prefix};
			rc = fn(arg, &o);
		}
		free(token);
		token = NULL;
		if (!rc && page.truncated) {
			token = page.next_token;
			page.next_token = NULL;
		}
		s3xml_list_free(&page);
		s3i_resp_clear(&rs);
		s3i_req_free(&rq);
		sbuf_free(&q);
		if (rc || !token)
			break;
	}
	free(token);
	return rc;
}

struct collect {
	struct s3_object *items;
	size_t n, cap;
};

static int collect_one(void *arg, const struct s3_object *o)
{
	struct collect *col = arg;
	if (col->n == col->cap) {
		col->cap = col->cap ? col->cap * 2 : 256;
		struct s3_object *n = realloc(col->items, col->cap * sizeof(*n));
		if (!n)
			xalloc_die("in the S3 client");
		col->items = n;
	}
	struct s3_object *d = &col->items[col->n++];
	*d = *o;
	d->key = xstrdup(o->key);
	d->etag = xstrdup(o->etag);
	return 0;
}

int s3_list_all(s3_client *c, const char *prefix, struct s3_object **out, size_t *n,
		struct s3_error *err)
{
	struct collect col = {0};
	int rc = s3_list(c, prefix, NULL, collect_one, &col, err);
	if (rc) {
		s3_objects_free(col.items, col.n);
		col.items = NULL;
		col.n = 0;
	}
	*out = col.items;
	*n = col.n;
	return rc;
}

void s3_objects_free(struct s3_object *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)o[i].key);
		free((char *)o[i].etag);
	}
	free(o);
}
