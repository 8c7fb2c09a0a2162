/*
 * s3_upload — multipart uploads (create, parts, complete, abort, list)
 * and the parallel, verified whole-file upload built on them.
 */
#include "s3.h"

#include "hex.h"
#include "s3_i.h"
#include "xalloc.h"
#include "s3_xml.h"
#include "sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ---- multipart ---------------------------------------------------------- */

int s3_multipart_create(s3_client *c, const char *key, const struct s3_put_opts *opts,
			char **upload_id, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf sb[S3I_META_MAX + 1];
	memset(sb, 0, sizeof(sb));
	*upload_id = NULL;
	int rc = s3i_req_init(c, &rq, "POST", key, err);
	if (rc)
		return rc;
	rq.detail = "CreateMultipartUpload";
	rq.query = "uploads=";
	rq.body.kind = BODY_MEM;
	rq.body.mem = (const unsigned char *)"";
	if (opts) {
		struct s3_put_opts o = *opts;
		o.if_match = NULL;
		o.if_none_match = false;
		rq.cancel[0] = opts->cancel;
		rc = s3i_put_headers(c, &rq, &o, sb, S3I_META_MAX + 1, err);
	}
	if (!rc) {
		struct s3_error e;
		rc = s3i_body_digest(&rq.body, NULL, &e);
		if (rc && err)
			*err = e;
	}
	if (!rc)
		rc = s3i_request(c, &rq, &rs, err);
	if (!rc) {
		char why[256];
		if (s3xml_parse_initiate(rq.sink.mem.buf, rq.sink.mem.len, upload_id, why,
					 sizeof(why)))
			rc = s3i_protocol_error(c, &rq, err, why);
	}
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	for (size_t i = 0; i <= S3I_META_MAX; i++)
		sbuf_free(&sb[i]);
	return rc;
}

/* One part; cancel2 lets the upload stop its other parts once one has failed. */
static int upload_part(s3_client *c, const char *key, const char *upload_id, unsigned number,
		       int fd, uint64_t off, uint64_t len, const atomic_bool *cancel,
		       const atomic_bool *cancel2, struct s3_part *part, unsigned char md5[16],
		       unsigned *retries, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	char detail[48];
	sbuf q = SBUF_INIT;
	int rc = s3i_req_init(c, &rq, "PUT", key, err);
	if (rc)
		return rc;
	if (number < 1 || number > S3_MAX_PARTS || !upload_id || !*upload_id)
		return s3i_bad_arg(c, &rq, err, "part number out of 1..10000 or no upload id");
	snprintf(detail, sizeof(detail), "part %u", number);
	rq.detail = detail;
	sbuf_addf(&q, "partNumber=%u", number);
	s3i_query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rq.body.kind = BODY_FD;
	rq.body.fd = fd;
	rq.body.off = off;
	rq.body.len = len;
	rq.cancel[0] = cancel;
	rq.cancel[1] = cancel2;
	struct s3_error e;
	s3i_error_init(c, &rq, &e);
	rc = s3i_body_digest(&rq.body, cancel2, &e);
	if (rc) {
		if (err)
			*err = e;
	} else {
		s3i_add_header(&rq, "content-md5", rq.body.md5_b64);
		rc = s3i_request(c, &rq, &rs, err);
	}
	if (!rc && !rs.etag[0])
		rc = s3i_protocol_error(c, &rq, err, "UploadPart answer has no ETag");
	if (!rc) {
		part->number = number;
		part->size = len;
		s3i_copy(part->etag, sizeof(part->etag), rs.etag);
		if (md5)
			memcpy(md5, rq.body.md5, 16);
	}
	if (retries)
		*retries += rq.retries;
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	sbuf_free(&q);
	return rc;
}

int s3_multipart_upload_part(s3_client *c, const char *key, const char *upload_id, unsigned number,
			     int fd, uint64_t off, uint64_t len, const atomic_bool *cancel,
			     struct s3_part *part, unsigned *retries, struct s3_error *err)
{
	return upload_part(c, key, upload_id, number, fd, off, len, cancel, NULL, part, NULL,
			   retries, err);
}

/* CompleteMultipartUpload may answer 200 with an <Error> inside: that is a failure. */
static int check_complete(struct resp *rs, void *arg, struct s3_error *e)
{
	struct req *rq = arg;
	struct s3xml_error x;
	char tag[S3_ETAG_MAX], why[256];
	int rc = s3xml_parse_complete(rq->sink.mem.buf, rq->sink.mem.len, tag, sizeof(tag), &x, why,
				      sizeof(why));
	if (rc == -EAGAIN) {
		e->http_status = (int)rs->status;
		s3i_copy(e->code, sizeof(e->code), x.code[0] ? x.code : "InternalError");
		s3i_copy(e->message, sizeof(e->message), x.message);
		s3i_copy(e->request_id, sizeof(e->request_id),
			 x.request_id[0] ? x.request_id : rs->request_id);
		return -EIO;
	}
	if (rc) {
		e->http_status = (int)rs->status;
		s3i_copy(e->transport, sizeof(e->transport), why);
		return -EPROTO;
	}
	s3i_copy(rs->etag, sizeof(rs->etag), tag);
	return 0;
}

int s3_multipart_complete(s3_client *c, const char *key, const char *upload_id,
			  const struct s3_part *parts, size_t n, char etag[S3_ETAG_MAX],
			  struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf q = SBUF_INIT, xml = SBUF_INIT;
	etag[0] = '\0';
	int rc = s3i_req_init(c, &rq, "POST", key, err);
	if (rc)
		return rc;
	rq.detail = "CompleteMultipartUpload";
	if (!n || n > S3_MAX_PARTS || !upload_id || !*upload_id)
		return s3i_bad_arg(c, &rq, err, "no parts, too many parts, or no upload id");
	sbuf_adds(&xml,
		  "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (size_t i = 0; i < n; i++) {
		if (i && parts[i].number <= parts[i - 1].number) {
			sbuf_free(&xml);
			return s3i_bad_arg(c, &rq, err, "part numbers are not ascending");
		}
		/* The quoted form, as S3 hands ETags out: AWS and radosgw both take it. */
		char bare[S3_ETAG_MAX];
		s3i_etag_copy(bare, parts[i].etag, strlen(parts[i].etag));
		sbuf_addf(&xml, "<Part><PartNumber>%u</PartNumber><ETag>\"", parts[i].number);
		s3i_xml_escape(&xml, bare);
		sbuf_adds(&xml, "\"</ETag></Part>");
	}
	sbuf_adds(&xml, "</CompleteMultipartUpload>");
	s3i_query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rq.check = check_complete;
	rq.check_arg = &rq;
	/*
	 * S3 may take minutes to assemble a large object, sending spaces
	 * meanwhile or nothing at all: no low-speed cut-off, a deadline that
	 * grows with the number of parts.
	 */
	rq.slow = true;
	rq.timeout_ms = c->slow_timeout_ms + (unsigned)n * 100u;
	rc = s3i_request_xml(c, &rq, &xml, &rs, err);
	if (!rc)
		s3i_copy(etag, S3_ETAG_MAX, rs.etag);
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	sbuf_free(&q);
	sbuf_free(&xml);
	return rc;
}

int s3_multipart_abort(s3_client *c, const char *key, const char *upload_id, struct s3_error *err)
{
	struct req rq;
	struct resp rs = {0};
	sbuf q = SBUF_INIT;
	struct s3_error e;
	int rc = s3i_req_init(c, &rq, "DELETE", key, err);
	if (rc)
		return rc;
	rq.detail = "AbortMultipartUpload";
	if (!upload_id || !*upload_id)
		return s3i_bad_arg(c, &rq, err, "no upload id");
	rq.slow = true; /* the server frees every part before it answers */
	s3i_query_add(&q, "uploadId", upload_id);
	rq.query = sbuf_str(&q);
	rc = s3i_request(c, &rq, &rs, &e);
	if (rc == -ENOENT && strcmp(e.code, "NoSuchUpload") == 0)
		rc = 0;
	if (rc && err)
		*err = e;
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	sbuf_free(&q);
	return rc;
}

int s3_multipart_list(s3_client *c, const char *prefix, struct s3_multipart **out, size_t *n,
		      struct s3_error *err)
{
	struct s3_multipart *items = NULL;
	size_t count = 0, cap = 0;
	char *key_marker = NULL, *id_marker = NULL;
	int rc = 0;
	for (;;) {
		struct req rq;
		struct resp rs = {0};
		sbuf q = SBUF_INIT;
		s3i_req_init(c, &rq, "GET", NULL, err);
		rq.detail = "ListMultipartUploads";
		/*
		 * No encoding-type=url here: radosgw 16 then encodes the keys but
		 * leaves out <EncodingType>, so the answer cannot be read right.
		 */
		s3i_query_add(&q, "uploads", NULL);
		if (prefix && *prefix)
			s3i_query_add(&q, "prefix", prefix);
		if (key_marker)
			s3i_query_add(&q, "key-marker", key_marker);
		if (id_marker)
			s3i_query_add(&q, "upload-id-marker", id_marker);
		rq.query = sbuf_str(&q);
		rc = s3i_request(c, &rq, &rs, err);
		struct s3xml_uploads page = {0};
		if (!rc) {
			char why[256];
			if (s3xml_parse_uploads(rq.sink.mem.buf, rq.sink.mem.len, &page, why,
						sizeof(why)))
				rc = s3i_protocol_error(c, &rq, err, why);
		}
		for (size_t i = 0; !rc && i < page.n; i++) {
			if (count == cap) {
				cap = cap ? cap * 2 : 16;
				struct s3_multipart *m = realloc(items, cap * sizeof(*m));
				if (!m)
					xalloc_die("in the S3 client");
				items = m;
			}
			items[count].key = page.items[i].key;
			items[count].upload_id = page.items[i].upload_id;
			items[count].initiated = page.items[i].initiated;
			page.items[i].key = page.items[i].upload_id = NULL;
			count++;
		}
		bool more = !rc && page.truncated;
		if (more && key_marker && strcmp(key_marker, page.next_key_marker) == 0 &&
		    id_marker && page.next_upload_id_marker &&
		    strcmp(id_marker, page.next_upload_id_marker) == 0) {
			rc = s3i_protocol_error(c, &rq, err, "the same upload markers twice");
			more = false;
		}
		free(key_marker);
		free(id_marker);
		key_marker = id_marker = NULL;
		if (more) {
			key_marker = page.next_key_marker;
			id_marker = page.next_upload_id_marker;
			page.next_key_marker = page.next_upload_id_marker = NULL;
		}
		s3xml_uploads_free(&page);
		s3i_resp_clear(&rs);
		s3i_req_free(&rq);
		sbuf_free(&q);
		if (!more)
			break;
	}
	free(key_marker);
	free(id_marker);
	if (rc) {
		s3_multipart_list_free(items, count);
		items = NULL;
		count = 0;
	}
	*out = items;
	*n = count;
	return rc;
}

void s3_multipart_list_free(struct s3_multipart *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].key);
		free(u[i].upload_id);
	}
	free(u);
}

/* ---- whole-file upload -------------------------------------------------- */

/* State shared by the part threads of one upload. */
struct upload {
	s3_client *c;
	const char *key;
	const char *upload_id;
	int fd;
	uint64_t size, part_size;
	unsigned n_parts;
	const struct s3_upload_opts *opts;
	struct s3_part *parts;    /* parts[i] written only by the thread that took part i+1 */
	unsigned char (*md5)[16]; /* likewise */
	atomic_bool stop;         /* set when a part failed: the others stop too */
	atomic_uint retries;

	pthread_mutex_t mu;
	unsigned next;       /* index of the next part to send; protected by mu */
	uint64_t done;       /* bytes acknowledged; protected by mu */
	int rc;              /* first failure; protected by mu */
	struct s3_error err; /* its error; protected by mu */
};

static void *upload_worker(void *arg)
{
	struct upload *u = arg;
	for (;;) {
		pthread_mutex_lock(&u->mu);
		unsigned i = u->next;
		bool go = i < u->n_parts && !atomic_load(&u->stop);
		if (go)
			u->next++;
		pthread_mutex_unlock(&u->mu);
		if (!go)
			break;
		uint64_t off = (uint64_t)i * u->part_size;
		uint64_t len = u->size - off < u->part_size ? u->size - off : u->part_size;
		struct s3_error e;
		unsigned retries = 0;
		int rc = upload_part(u->c, u->key, u->upload_id, i + 1, u->fd, off, len,
				     u->opts->cancel, &u->stop, &u->parts[i], u->md5[i], &retries,
				     &e);
		atomic_fetch_add(&u->retries, retries);
		pthread_mutex_lock(&u->mu);
		if (rc) {
			/* A part stopped because another failed is not the story: keep the first. */
			if (!u->rc && !(rc == -ECANCELED && atomic_load(&u->stop))) {
				u->rc = rc;
				u->err = e;
			}
			atomic_store(&u->stop, true);
		} else {
			u->done += len;
			if (u->opts->progress)
				u->opts->progress(u->opts->progress_arg, u->done, u->size);
		}
		pthread_mutex_unlock(&u->mu);
	}
	return NULL;
}

/* The ETag S3 gives a multipart object: MD5 of the parts' MD5s, "-", the part count. */
static void multipart_etag(unsigned char (*md5)[16], unsigned n, char out[S3_ETAG_MAX])
{
	unsigned char d[16];
	unsigned int dl = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		xalloc_die("in the S3 client");
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	for (unsigned i = 0; i < n; i++)
		EVP_DigestUpdate(ctx, md5[i], 16);
	EVP_DigestFinal_ex(ctx, d, &dl);
	EVP_MD_CTX_free(ctx);
	char h[33];
	hex_encode(d, 16, h);
	snprintf(out, S3_ETAG_MAX, "%s-%u", h, n);
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static int upload_multipart(s3_client *c, const char *key, int fd, uint64_t size,
			    uint64_t part_size, const struct s3_upload_opts *o,
			    struct s3_upload_result *res, char expect[S3_ETAG_MAX],
			    char complete_etag[S3_ETAG_MAX], struct s3_error *err)
{
	struct s3_put_opts po = {.content_type = o->content_type,
				 .meta = o->meta,
				 .n_meta = o->n_meta,
				 .cancel = o->cancel};
	char *upload_id = NULL;
	struct s3_error ce = {0};
	int rc = s3_multipart_create(c, key, &po, &upload_id, &ce);
	res->retries += ce.attempts > 1 ? ce.attempts - 1 : 0;
	if (rc) {
		if (err)
			*err = ce;
		return rc;
	}
	if (o->started)
		o->started(o->started_arg, upload_id);

	struct upload u = {.c = c,
			   .key = key,
			   .upload_id = upload_id,
			   .fd = fd,
			   .size = size,
			   .part_size = part_size,
			   .opts = o};
	u.n_parts = (unsigned)((size + part_size - 1) / part_size);
	u.parts = xcalloc(u.n_parts, sizeof(*u.parts));
	u.md5 = xcalloc(u.n_parts, sizeof(*u.md5));
	pthread_mutex_init(&u.mu, NULL);
	unsigned nthreads = o->parallel ? o->parallel : S3I_DEFAULT_PARALLEL;
	if (nthreads > S3I_MAX_PARALLEL)
		nthreads = S3I_MAX_PARALLEL;
	if (nthreads > u.n_parts)
		nthreads = u.n_parts;
	pthread_t tids[S3I_MAX_PARALLEL];
	unsigned started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, upload_worker, &u) != 0)
			break;
	if (!started)
		upload_worker(&u); /* no thread to be had: do it here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	rc = u.rc;
	if (!rc && o->cancel && atomic_load(o->cancel))
		rc = -ECANCELED;
	if (rc && err)
		*err = u.err;
	res->retries += atomic_load(&u.retries);

	if (!rc) {
		struct s3_error e;
		rc = s3_multipart_complete(c, key, upload_id, u.parts, u.n_parts, complete_etag, &e);
		res->retries += e.attempts > 1 ? e.attempts - 1 : 0;
		if (rc == -ENOENT && strcmp(e.code, "NoSuchUpload") == 0 && e.attempts > 1) {
			/*
			 * An earlier attempt completed the upload but its answer was
			 * lost: the object is there. The HEAD that follows decides.
			 */
			diag_say(&c->diag, LOG_INFO,
				 "s3: CompleteMultipartUpload of s3://%s/%s answered NoSuchUpload on a retry; "
				 "checking the object",
				 c->bucket, key);
			complete_etag[0] = '\0';
			rc = 0;
		} else if (rc && err) {
			*err = e;
		}
	}
	if (rc) {
		/* Leave no orphan: parts of an unfinished upload cost storage until aborted. */
		struct s3_error ae;
		if (s3_multipart_abort(c, key, upload_id, &ae)) {
			char msg[1024];
			s3_error_format(&ae, msg, sizeof(msg));
			diag_say(&c->diag, LOG_WARNING,
				 "s3: could not abort the unfinished upload %s: %s", upload_id, msg);
		}
	} else {
		multipart_etag(u.md5, u.n_parts, expect);
		res->parts = u.n_parts;
	}
	pthread_mutex_destroy(&u.mu);
	free(u.parts);
	free(u.md5);
	free(upload_id);
	return rc;
}

int s3_upload_file(s3_client *c, const char *key, const char *path, const struct s3_upload_opts *opts,
		   struct s3_upload_result *res, struct s3_error *err)
{
	struct s3_upload_opts o = opts ? *opts : (struct s3_upload_opts){0};
	struct s3_upload_result r = {0};
	struct req rq;
	if (s3i_req_init(c, &rq, "PUT", key, err))
		return -EINVAL;
	uint64_t part_size = o.part_size ? o.part_size : S3I_DEFAULT_PART_SIZE;
	if (part_size < S3_MIN_PART_SIZE || part_size > S3_MAX_PART_SIZE)
		return s3i_bad_arg(c, &rq, err, "part size must be between 5 MiB and 5 GiB");
	uint64_t threshold = o.multipart_threshold ? o.multipart_threshold : part_size;
	if (threshold > S3_MAX_PART_SIZE)
		threshold = S3_MAX_PART_SIZE;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int saved = 0;
	if (fd < 0 || fstat(fd, &st) != 0)
		saved = errno;
	else if (!S_ISREG(st.st_mode))
		saved = EINVAL;
	if (saved) {
		if (fd >= 0)
			close(fd);
		if (err) {
			s3i_error_init(c, &rq, err);
			err->sys_errno = saved;
			snprintf(err->transport, sizeof(err->transport), "opening %.200s", path);
		}
		return -saved;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t size = (uint64_t)st.st_size;
	char expect[S3_ETAG_MAX] = "", sent_etag[S3_ETAG_MAX] = "";
	int rc;
	if (size <= threshold) {
		struct s3_put_opts po = {.content_type = o.content_type,
					 .meta = o.meta,
					 .n_meta = o.n_meta,
					 .cancel = o.cancel,
					 .if_none_match = o.create_only,
					 .identical_ok = o.create_only};
		struct body b = {.kind = BODY_FD, .fd = fd, .off = 0, .len = size};
		struct s3_put_result pr;
		unsigned char md5[16];
		rc = s3i_put_body(c, key, &b, &po, &pr, md5, err);
		r.retries += pr.retries;
		if (!rc) {
			/* The MD5 of what was sent is the ETag of an object stored unencrypted. */
			hex_encode(md5, 16, expect);
			s3i_copy(sent_etag, sizeof(sent_etag), pr.etag);
			if (o.progress)
				o.progress(o.progress_arg, size, size);
		}
	} else {
		if (size > part_size * S3_MAX_PARTS)
			part_size = round_up((size + S3_MAX_PARTS - 1) / S3_MAX_PARTS, 1u << 20);
		rc = upload_multipart(c, key, fd, size, part_size, &o, &r, expect, sent_etag, err);
	}
	close(fd);

	if (!rc) {
		/* Confirm what S3 now holds: size, and the ETag the upload produced. */
		struct s3_object_info info;
		struct s3_error e;
		rc = s3_head(c, key, &info, &e);
		if (rc) {
			if (err)
				*err = e;
		} else {
			r.retries += info.retries;
			r.size = info.size;
			s3i_copy(r.etag, sizeof(r.etag), info.etag);
			r.etag_is_md5 = strcmp(info.etag, expect) == 0;
			const char *why = NULL;
			if (info.size != size)
				why = "the object's size is not the file's";
			else if (sent_etag[0] && strcmp(sent_etag, info.etag) != 0)
				why = "the object's ETag is not the one the upload answered (overwritten?)";
			else if (!sent_etag[0] && !r.etag_is_md5 &&
				 !(r.parts && strchr(expect, '-') &&
				   s3i_ends_with(info.etag, strchr(expect, '-'))))
				/* Encrypted objects have other ETags, but still "-N" for N parts. */
				why = "the object's ETag does not match what was sent";
			if (why) {
				if (err) {
					s3i_error_init(c, &rq, err);
					s3i_copy(err->method, sizeof(err->method), "HEAD");
					snprintf(err->transport, sizeof(err->transport),
						 "%s: %" PRIu64 " bytes, ETag %s; sent %" PRIu64
						 " bytes, ETag %s",
						 why, info.size, info.etag, size,
						 sent_etag[0] ? sent_etag : expect);
				}
				rc = -EIO;
			}
			s3_object_info_free(&info);
		}
	}
	if (res)
		*res = r;
	return rc;
}
