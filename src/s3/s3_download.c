/*
 * s3_download — a whole object into a file with parallel ranged GETs,
 * hashed in order while later ranges are still on their way.
 *
 * A HEAD gives the size and the ETag; every range is then asked for with
 * If-Match on that ETag, so the file holds bytes of one version of the
 * object or the download fails (-ESTALE): an object replaced midway is
 * never stitched together from two versions.
 *
 * Threads: up to `parallel` workers take the next range (d->next, under
 * d->mu) and write it in place with pwrite; the calling thread waits for
 * the ranges in order (d->done, under d->mu, signalled on d->cv) and
 * hashes each one by reading it back from the file, usually from the
 * page cache. The first failure sets d->stop, which every worker's
 * requests watch (their second cancel flag), and is the one reported.
 * Nothing is held across an S3 call or a read.
 */
#include "s3.h"

#include "hex.h"
#include "s3_i.h"
#include "xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#define DL_DEFAULT_PART (16ull << 20)
#define DL_MIN_PART (1ull << 20)
#define DL_HASH_BUF (1u << 20)

struct dl {
	s3_client *c;
	const char *key;
	int fd;
	const struct s3_download_opts *o;
	char etag[S3_ETAG_MAX];
	uint64_t size, part;
	size_t nparts;
	atomic_bool stop; /* set on the first failure: the other ranges give up */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Protected by mu. */
	size_t next;      /* the next range a worker takes */
	bool *done;       /* range i is in the file */
	unsigned retries; /* over every range */
	int rc;           /* the first failure, 0 if none */
	struct s3_error err;
};

/* Records the first failure and stops the rest. With d->mu held. */
static void dl_fail(struct dl *d, int rc, const struct s3_error *e)
{
	if (!d->rc) {
		d->rc = rc;
		if (e)
			d->err = *e;
	}
	atomic_store(&d->stop, true);
	pthread_cond_broadcast(&d->cv);
}

/* GETs range i into its place in the file. */
static int dl_range(struct dl *d, size_t i, struct s3_error *e, unsigned *retries)
{
	uint64_t first = (uint64_t)i * d->part;
	uint64_t last = first + d->part - 1 < d->size - 1 ? first + d->part - 1 : d->size - 1;
	struct s3_range r = {first, last};
	struct s3_get_opts go = {.range = &r,
				 .if_match = d->etag,
				 .cancel = d->o->cancel,
				 .offset = first,
				 .keep_size = true};
	struct req rq;
	struct resp rs = {0};
	int rc = s3i_req_init(d->c, &rq, "GET", d->key, e);
	if (rc)
		return rc;
	char detail[48];
	snprintf(detail, sizeof(detail), "range %zu of %zu", i + 1, d->nparts);
	rq.detail = detail;
	rq.sink.kind = SINK_FD;
	rq.sink.fd = d->fd;
	rq.sink.base = first;
	rc = s3i_get(d->c, &rq, &rs, &go, &d->stop, e);
	if (rc == 0 && rq.sink.written != last - first + 1) {
		s3i_error_init(d->c, &rq, e);
		snprintf(e->transport, sizeof(e->transport),
			 "received %" PRIu64 " bytes of the %" PRIu64 " asked for", rq.sink.written,
			 last - first + 1);
		rc = -EIO;
	}
	*retries += rq.retries;
	s3i_resp_clear(&rs);
	s3i_req_free(&rq);
	return rc;
}

static void *dl_worker(void *arg)
{
	struct dl *d = arg;
	pthread_mutex_lock(&d->mu);
	while (!d->rc && d->next < d->nparts) {
		size_t i = d->next++;
		pthread_mutex_unlock(&d->mu);
		struct s3_error e;
		unsigned retries = 0;
		memset(&e, 0, sizeof(e));
		int rc = dl_range(d, i, &e, &retries);
		pthread_mutex_lock(&d->mu);
		d->retries += retries;
		if (rc)
			dl_fail(d, rc, &e);
		else
			d->done[i] = true;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Hashes bytes [off, off+len) of the file into sha. */
static int dl_hash(struct dl *d, EVP_MD_CTX *sha, unsigned char *buf, uint64_t off, uint64_t len)
{
	while (len) {
		size_t want = len < DL_HASH_BUF ? (size_t)len : DL_HASH_BUF;
		ssize_t n = pread(d->fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		EVP_DigestUpdate(sha, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * The calling thread's part: hashes range after range as they land.
 * With no worker running (none could be started) it fetches them too.
 */
static void dl_follow(struct dl *d, EVP_MD_CTX *sha, bool fetch)
{
	unsigned char *buf = xmalloc(DL_HASH_BUF);
	if (fetch)
		dl_worker(d);
	for (size_t i = 0; i < d->nparts; i++) {
		pthread_mutex_lock(&d->mu);
		while (!d->rc && !d->done[i])
			pthread_cond_wait(&d->cv, &d->mu);
		bool failed = d->rc != 0;
		pthread_mutex_unlock(&d->mu);
		if (failed)
			break;
		uint64_t off = (uint64_t)i * d->part;
		uint64_t len = d->size - off < d->part ? d->size - off : d->part;
		int rc = dl_hash(d, sha, buf, off, len);
		if (rc) {
			struct s3_error e;
			memset(&e, 0, sizeof(e));
			e.sys_errno = -rc;
			s3i_copy(e.transport, sizeof(e.transport),
				 "reading back what was downloaded, to hash it");
			pthread_mutex_lock(&d->mu);
			dl_fail(d, rc, &e);
			pthread_mutex_unlock(&d->mu);
			break;
		}
		if (d->o->progress)
			d->o->progress(d->o->progress_arg, off + len, d->size);
	}
	free(buf);
}

/* HEADs the object: its size and the ETag every range must match. */
static int dl_head(struct dl *d, struct s3_error *err)
{
	struct s3_object_info info;
	int rc = s3_head(d->c, d->key, &info, err);
	if (rc)
		return rc;
	d->size = info.size;
	s3i_copy(d->etag, sizeof(d->etag), d->o->if_match ? d->o->if_match : info.etag);
	bool same = !d->o->if_match || strcmp(info.etag, d->etag) == 0;
	s3_object_info_free(&info);
	if (!same || !d->etag[0]) {
		if (err) {
			memset(err, 0, sizeof(*err));
			s3i_copy(err->method, sizeof(err->method), "HEAD");
			s3i_copy(err->bucket, sizeof(err->bucket), s3_client_bucket(d->c));
			s3i_copy(err->key, sizeof(err->key), d->key);
			s3i_copy(err->transport, sizeof(err->transport),
				 same ? "the object has no ETag to hold its ranges to"
				      : "the object is not the version asked for (its ETag differs)");
			err->precondition_failed = !same;
		}
		return same ? -EPROTO : -ESTALE;
	}
	if (d->o->max_size && d->size > d->o->max_size) {
		if (err) {
			memset(err, 0, sizeof(*err));
			s3i_copy(err->key, sizeof(err->key), d->key);
			snprintf(err->transport, sizeof(err->transport),
				 "the object is %" PRIu64 " bytes, more than the %" PRIu64 " allowed",
				 d->size, d->o->max_size);
			err->sys_errno = EFBIG;
		}
		return -EFBIG;
	}
	return 0;
}

int s3_download_file(s3_client *c, const char *key, int fd, const struct s3_download_opts *opts,
		     struct s3_download_result *res, struct s3_error *err)
{
	static const struct s3_download_opts none = {0};
	struct dl d = {.c = c, .key = key, .fd = fd, .o = opts ? opts : &none};
	memset(res, 0, sizeof(*res));
	int rc = dl_head(&d, err);
	if (rc)
		return rc;
	d.part = d.o->part_size ? d.o->part_size : DL_DEFAULT_PART;
	if (d.part < DL_MIN_PART)
		d.part = DL_MIN_PART;
	d.nparts = d.size ? (size_t)((d.size + d.part - 1) / d.part) : 0;
	d.done = xcalloc(d.nparts, sizeof(*d.done));
	atomic_init(&d.stop, false);
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	if (!sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL))
		xalloc_die("in the S3 client (SHA-256)");

	unsigned want = d.o->parallel ? d.o->parallel : S3I_DEFAULT_PARALLEL;
	if (want > S3I_MAX_PARALLEL)
		want = S3I_MAX_PARALLEL;
	if (want > d.nparts)
		want = (unsigned)d.nparts;
	pthread_t tids[S3I_MAX_PARALLEL];
	unsigned started = 0;
	while (started < want && pthread_create(&tids[started], NULL, dl_worker, &d) == 0)
		started++;
	dl_follow(&d, sha, started == 0);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);

	rc = d.rc;
	if (!rc && ftruncate(fd, (off_t)d.size) != 0) {
		rc = -errno;
		memset(&d.err, 0, sizeof(d.err));
		s3i_copy(d.err.key, sizeof(d.err.key), key);
		d.err.sys_errno = errno;
		s3i_copy(d.err.transport, sizeof(d.err.transport), "truncating the output file");
	}
	if (!rc) {
		unsigned char md[32];
		unsigned int mdlen = 0;
		EVP_DigestFinal_ex(sha, md, &mdlen);
		hex_encode(md, 32, res->sha256);
		res->size = d.size;
		s3i_copy(res->etag, sizeof(res->etag), d.etag);
		res->parts = (unsigned)d.nparts;
	} else if (err) {
		*err = d.err;
	}
	res->retries = d.retries;
	EVP_MD_CTX_free(sha);
	pthread_cond_destroy(&d.cv);
	pthread_mutex_destroy(&d.mu);
	free(d.done);
	return rc;
}
