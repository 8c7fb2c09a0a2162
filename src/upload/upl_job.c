/*
 * upl_job — one upload of a snapshot and one pointer swap (see
 * uploader.h for the order of steps). Runs on the uploader thread only,
 * without u->mu except to publish state.
 *
 * The SHA-256 compared with the manifest is computed from the file's
 * bytes by a second thread while the upload runs, on the same open file
 * (the upload reads /proc/self/fd/N: the same inode even if retention
 * unlinks the name meanwhile). The client hashes (SHA-256, MD5) what it
 * sends and the HEAD after the upload confirms size and ETag, so the
 * object holds the bytes of that file.
 */
#include "uploader_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "log.h"
#include "mono.h"
#include "rfc3339.h"
#include "manifest.h"

#define UPL_SLOW_RETRY_S 60.0 /* errors that cannot go away by themselves */
#define UPL_MAX_BACKOFF_S 60.0
#define UPL_FULL_BACKOFF_MIN_S 5.0 /* a full server: soon again, space may be freed any time */

static uint64_t upl_retries_now(upl *u)
{
	struct s3_stats a, b;
	s3_client_stats(u->data, &a);
	s3_client_stats(u->ctl, &b);
	return a.retries + b.retries;
}

/*
 * A failed attempt: state "failed", the message in status and the log,
 * and the next try after a backoff (slow for errors that cannot go away,
 * such as a pointer that is not a pointer document; sooner for a full
 * server, which may get space back at any time). corrupt names the
 * document that is not one (NULL if that is not the cause).
 */
static void upl_fail_doc(upl *u, struct ucoll *c, const char *what, const struct s3_error *e,
			 int rc, const char *corrupt)
{
	if (atomic_load(&u->cancel))
		return; /* stopping: what failed was cancelled, not wrong */
	char msg[UPL_ERR_MAX], detail[1100];
	bool permanent = corrupt != NULL, full = false, has_e = false;
	if (e && (e->http_status || e->curl_code || e->transport[0] || e->sys_errno)) {
		has_e = true;
		s3_error_format(e, detail, sizeof(detail));
		full = s3_error_no_space(e);
		permanent = permanent || (!full && !s3_error_retryable(e) &&
					  e->http_status >= 400 && e->http_status < 500);
	} else {
		upl_copy(detail, sizeof(detail), strerror(rc < 0 ? -rc : rc));
	}
	sbuf b = SBUF_INIT;
	if (full)
		sbuf_adds(&b, "the S3 server is full or over quota: ");
	sbuf_addf(&b, "%s: %s", what, detail);
	if (full)
		sbuf_adds(&b, "; local snapshots are still published, and the newest is shipped once "
			      "space is freed");
	else if (corrupt)
		sbuf_addf(&b,
			  "; uploads of %s wait until it is repaired (snapfs-ctl repair --bucket %s "
			  "--prefix '%s' %s)",
			  c->name, u->bucket, u->prefix, c->name);
	upl_copy(msg, sizeof(msg), sbuf_str(&b));
	sbuf_free(&b);
	pthread_mutex_lock(&u->mu);
	c->state = "failed";
	upl_copy(c->last_error, sizeof(c->last_error), msg);
	upl_copy(c->error_code, sizeof(c->error_code), has_e ? e->code : "");
	c->server_full = full;
	c->corrupt = corrupt;
	c->n_failures++;
	unsigned n = c->failures_in_row > 6 ? 6 : c->failures_in_row;
	c->failures_in_row++;
	double wait = UPL_SLOW_RETRY_S;
	if (full) {
		wait = UPL_FULL_BACKOFF_MIN_S * (double)(1u << (n > 4 ? 4 : n));
	} else if (!permanent) {
		wait = (double)(1u << n) * (0.5 + (double)(rand() % 1000) / 2000.0);
	}
	if (wait > UPL_MAX_BACKOFF_S)
		wait = UPL_MAX_BACKOFF_S;
	c->next_try = mono_now() + wait;
	pthread_mutex_unlock(&u->mu);
	log_warn("upload: %s: %s; %s in %.0f s", c->name, msg,
		 permanent ? "this will not go away by itself: trying again" : "retrying", wait);
}

static void upl_fail(upl *u, struct ucoll *c, const char *what, const struct s3_error *e, int rc)
{
	upl_fail_doc(u, c, what, e, rc, NULL);
}

/* With u->mu held: the pointer names what we uploaded: nothing is wrong any more. */
static void upl_all_clear(struct ucoll *c)
{
	c->state = "idle";
	c->last_error[0] = c->error_code[0] = '\0';
	c->server_full = false;
	c->corrupt = NULL;
	c->failures_in_row = 0;
}

struct upl_hash {
	int fd;
	const atomic_bool *cancel;
	char hex[FSX_SHA256_HEX];
	uint64_t size;
	int rc;
};

/* Hashes the whole file at fd (pread: the upload's reads do not move it). */
static void *upl_hash_main(void *arg)
{
	struct upl_hash *h = arg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *buf = malloc(1 << 20);
	uint64_t off = 0;
	h->rc = 0;
	if (!md || !buf || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		h->rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (h->cancel && atomic_load(h->cancel)) {
			h->rc = -ECANCELED;
			goto out;
		}
		ssize_t r = pread(h->fd, buf, 1 << 20, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			h->rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)r);
		off += (uint64_t)r;
	}
	unsigned char sha[FSX_SHA256_LEN];
	unsigned len = 0;
	EVP_DigestFinal_ex(md, sha, &len);
	hex_encode(sha, FSX_SHA256_LEN, h->hex);
	h->size = off;
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return NULL;
}

struct upl_progress {
	upl *u;
	struct ucoll *c;
};

static void upl_on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct upl_progress *p = arg;
	pthread_mutex_lock(&p->u->mu);
	p->c->bytes_done = done;
	p->c->bytes_total = total;
	pthread_mutex_unlock(&p->u->mu);
}

/* The multipart upload just created is ours and in flight: the sweep must not abort it. */
static void upl_on_started(void *arg, const char *upload_id)
{
	upl *u = arg;
	pthread_mutex_lock(&u->mu);
	upl_copy(u->inflight_id, sizeof(u->inflight_id), upload_id);
	pthread_mutex_unlock(&u->mu);
}

static void upl_set_inflight(upl *u, const char *key)
{
	pthread_mutex_lock(&u->mu);
	upl_copy(u->inflight_key, sizeof(u->inflight_key), key);
	u->inflight_id[0] = '\0';
	pthread_mutex_unlock(&u->mu);
}

/* Reads the pointer before an upload; reports a pointer that is not one. */
static int upl_read_pointer(upl *u, struct ucoll *c, const char *key, struct lease_pointer *cur,
			    struct lease_history *h, char etag[S3_ETAG_MAX], bool *present)
{
	struct s3_error e;
	int rc = lease_pointer_get(u->ctl, key, cur, h, etag, present, &e);
	if (rc == -EPROTO)
		upl_fail_doc(u, c, "the pointer is not a pointer document", &e, rc, "pointer");
	else if (rc < 0)
		upl_fail(u, c, "reading the pointer", &e, rc);
	return rc;
}

/* One snapshot on its way up: where it is on disk and where it goes. */
struct upl_snap {
	uint64_t id;
	char ids[24];
	char dbpath[PATH_MAX];
	char ptr_key[S3_KEY_MAX + 1];
	struct lease_pointer p; /* the pointer that will name it: keys now, the rest once uploaded */
	char *mdoc;             /* the manifest's bytes, uploaded as they are */
	size_t mlen;
	uint64_t msize;
	char msha[65];
	int fd; /* the database, open for the whole upload (retention may unlink its name) */
};

static void upl_snap_close(struct upl_snap *s)
{
	free(s->mdoc);
	s->mdoc = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/*
 * Finds snapshot id on disk, opens it and checks it against its
 * manifest. 0: ready; 1: retention took it (a newer one is there), skip
 * it; <0: failed, and said so in c's state.
 */
static int upl_snap_open(upl *u, struct ucoll *c, uint64_t id, struct upl_snap *s)
{
	char dir[PATH_MAX], mpath[PATH_MAX], leaf[STORE_NAME_MAX + 16], sdir[LAYOUT_DIR_MAX];
	struct lease_pointer *p = &s->p;
	int rc;
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->id = id;
	store_id_format(id, s->ids, sizeof(s->ids));
	snprintf(leaf, sizeof(leaf), "%s.sqlite3", c->name);
	if ((rc = store_path(u->st, c->name, STORE_AREA_SNAPSHOTS, s->ids, dir, sizeof(dir))) < 0 ||
	    (rc = upl_fmt(s->dbpath, sizeof(s->dbpath), "%s/%s", dir, leaf)) < 0 ||
	    (rc = upl_fmt(mpath, sizeof(mpath), "%s/MANIFEST.json", dir)) < 0 ||
	    (rc = layout_snapshot_dir(id, u->host_id, store_instance(u->st), sdir, sizeof(sdir))) < 0 ||
	    (rc = layout_snapshot_key(u->prefix, c->name, sdir, leaf, p->db_key, sizeof(p->db_key))) <
		    0 ||
	    (rc = layout_snapshot_key(u->prefix, c->name, sdir, "MANIFEST.json", p->manifest_key,
				      sizeof(p->manifest_key))) < 0 ||
	    (rc = layout_pointer_key(u->prefix, c->name, s->ptr_key, sizeof(s->ptr_key))) < 0) {
		upl_fail(u, c, "snapshot path or key too long", NULL, rc);
		return rc;
	}

	/* The manifest first: if retention took the snapshot, a newer one is there. */
	if ((rc = fsx_read_all(mpath, &s->mdoc, &s->mlen)) < 0 ||
	    (s->fd = open(s->dbpath, O_RDONLY | O_CLOEXEC)) < 0) {
		if (rc == 0)
			rc = -errno;
		upl_snap_close(s);
		if (rc == -ENOENT) {
			log_info("upload: %s: snapshot %s was retired before it was uploaded; skipping it",
				 c->name, s->ids);
			pthread_mutex_lock(&u->mu);
			upl_coll_trim(c, id);
			c->state = "idle";
			pthread_mutex_unlock(&u->mu);
			return 1;
		}
		char what[PATH_MAX + 64];
		snprintf(what, sizeof(what), "cannot read snapshot %s", dir);
		upl_fail(u, c, what, NULL, rc);
		return rc;
	}
	uint64_t mid;
	struct stat stt;
	if (manifest_read_basic(s->mdoc, &s->msize, s->msha, &mid) < 0 || mid != id) {
		upl_fail(u, c, "snapshot manifest unreadable or of another id; not uploaded", NULL,
			 -EINVAL);
		upl_snap_close(s);
		return -EINVAL;
	}
	if (fstat(s->fd, &stt) < 0 || (uint64_t)stt.st_size != s->msize) {
		upl_fail(u, c, "snapshot file size is not the manifest's; not uploaded", NULL,
			 -EINVAL);
		upl_snap_close(s);
		return -EINVAL;
	}
	return 0;
}

/*
 * Uploads the database (create-only, hashed by a second thread as it
 * goes, the hash checked against the manifest) and then the manifest.
 * 0, or <0 and c's state says why (nothing, if stopping).
 */
static int upl_send(upl *u, struct ucoll *c, struct upl_snap *s, struct s3_upload_result *res)
{
	struct s3_error e;
	memset(&e, 0, sizeof(e));
	struct upl_hash h = {.fd = s->fd, .cancel = &u->cancel, .rc = -EINTR};
	pthread_t ht;
	bool hashing = pthread_create(&ht, NULL, upl_hash_main, &h) == 0;
	char fdpath[64];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", s->fd);
	char ids_meta[24];
	snprintf(ids_meta, sizeof(ids_meta), "%" PRIu64, s->id);
	const struct s3_meta meta[] = {{"snapfs-sha256", s->msha},
				       {"snapfs-id", ids_meta},
				       {"snapfs-host", u->host_id}};
	struct upl_progress prog = {u, c};
	struct s3_upload_opts uo = {
		.part_size = u->part_size,
		.parallel = u->parallel,
		.content_type = "application/vnd.sqlite3",
		.meta = meta,
		.n_meta = sizeof(meta) / sizeof(meta[0]),
		.progress = upl_on_progress,
		.progress_arg = &prog,
		.cancel = &u->cancel,
		.create_only = true,
		.started = upl_on_started,
		.started_arg = u,
	};
	upl_set_inflight(u, s->p.db_key);
	int rc = s3_upload_file(u->data, s->p.db_key, fdpath, &uo, res, &e);
	upl_set_inflight(u, "");
	if (hashing)
		pthread_join(ht, NULL);
	else
		upl_hash_main(&h); /* no thread to spare: hash after the upload */
	if (atomic_load(&u->cancel))
		return -ECANCELED; /* stopping: the upload was aborted, upload.json says nothing new */
	if (rc < 0) {
		upl_fail(u, c, "uploading the snapshot database", &e, rc);
		return rc;
	}
	if (h.rc < 0 || h.size != s->msize || strcmp(h.hex, s->msha) != 0) {
		char what[512];
		if (h.rc < 0)
			snprintf(what, sizeof(what), "reading %.300s to hash it: %s", s->dbpath,
				 strerror(-h.rc));
		else
			snprintf(what, sizeof(what),
				 "%.200s: SHA-256 of the file is %s (%" PRIu64
				 " bytes) but the manifest says %s "
				 "(%" PRIu64 " bytes); pointer not moved",
				 s->dbpath, h.hex, h.size, s->msha, s->msize);
		upl_fail(u, c, what, NULL, -EIO);
		return -EIO;
	}
	/* Create-only: the key is this snapshot's for good (layout.h); a re-upload
	 * after a crash finds the same bytes there, which counts as written. */
	struct s3_put_opts po = {.content_type = "application/json",
				 .cancel = &u->cancel,
				 .if_none_match = true,
				 .identical_ok = true};
	struct s3_put_result pr;
	if ((rc = s3_put_buf(u->data, s->p.manifest_key, s->mdoc, s->mlen, &po, &pr, &e)) < 0) {
		upl_fail(u, c, "uploading the manifest", &e, rc);
		return rc;
	}
	return 0;
}

/* The pointer already names this snapshot (swapped before a crash the record did not see). */
static void upl_already_swapped(upl *u, struct ucoll *c, const struct upl_snap *s,
				const struct lease_pointer *cur)
{
	log_info("upload: %s: the pointer already names snapshot %s (generation %" PRIu64 ")",
		 c->name, s->ids, cur->generation);
	upl_record_write(u, c->name, cur, "swapped", cur->generation);
	pthread_mutex_lock(&u->mu);
	c->have_last = true;
	c->last = *cur;
	c->pointer_generation = cur->generation;
	upl_coll_trim(c, s->id);
	upl_all_clear(c);
	pthread_mutex_unlock(&u->mu);
}

void upl_upload(upl *u, struct ucoll *c, uint64_t id)
{
	struct upl_snap s;
	struct lease_pointer cur;
	struct lease_history cur_h = {0};
	char cur_etag[S3_ETAG_MAX];
	bool cur_present;
	uint64_t retries0 = upl_retries_now(u);
	double t0 = mono_now();

	pthread_mutex_lock(&u->mu);
	c->state = "uploading";
	c->bytes_done = 0;
	c->bytes_total = 0;
	c->swap_pending = false; /* a newer snapshot supersedes a swap still to do */
	pthread_mutex_unlock(&u->mu);

	if (upl_snap_open(u, c, id, &s) != 0)
		return;
	pthread_mutex_lock(&u->mu);
	c->bytes_total = s.msize;
	pthread_mutex_unlock(&u->mu);

	/* The pointer as it is before we upload: the swap is conditional on it. */
	if (upl_read_pointer(u, c, s.ptr_key, &cur, &cur_h, cur_etag, &cur_present) < 0)
		goto out;
	if (cur_present && strcmp(cur.db_key, s.p.db_key) == 0 && strcmp(cur.sha256, s.msha) == 0) {
		upl_already_swapped(u, c, &s, &cur);
		goto out;
	}
	struct s3_upload_result res = {0};
	if (upl_send(u, c, &s, &res) < 0)
		goto out;

	struct lease_pointer *p = &s.p;
	double secs = mono_now() - t0;
	p->id = id;
	upl_copy(p->host, sizeof(p->host), u->host_id);
	upl_copy(p->sha256, sizeof(p->sha256), s.msha);
	p->size = res.size;
	upl_copy(p->etag, sizeof(p->etag), res.etag);
	p->written_at = (int64_t)time(NULL);
	upl_record_write(u, c->name, p, "pending", cur_present ? cur.generation : 0);
	log_info("upload: %s: snapshot %s uploaded to s3://%s/%s (%" PRIu64 " bytes in %u part(s), "
		 "%.1f s, %.1f MB/s, ETag %s, %u retries)",
		 c->name, s.ids, s3_client_bucket(u->data), p->db_key, res.size, res.parts, secs,
		 secs > 0 ? (double)res.size / secs / 1e6 : 0.0, res.etag, res.retries);

	/* The pointer we write carries the one it replaces at the head of its history. */
	lease_history_free(&c->swap_hist);
	if (cur_present && lease_history_next(&cur, &cur_h, u->hist_max, &c->swap_hist) < 0)
		log_warn("upload: %s: out of memory: the next pointer carries no history", c->name);
	pthread_mutex_lock(&u->mu);
	c->have_last = true;
	c->last = *p;
	upl_coll_trim(c, id);
	c->n_uploads++;
	c->n_bytes += res.size;
	c->last_seconds = secs;
	c->n_retries += upl_retries_now(u) - retries0;
	c->bytes_done = res.size;
	c->swap_pending = true;
	c->swap = *p;
	upl_copy(c->swap_if_match, sizeof(c->swap_if_match), cur_present ? cur_etag : "");
	c->swap_base_generation = cur_present ? cur.generation : 0;
	c->failures_in_row = 0;
	c->server_full = false;
	c->corrupt = NULL;
	pthread_mutex_unlock(&u->mu);
	upl_snap_close(&s);
	lease_history_free(&cur_h);
	upl_swap(u, c);
	return;
out:
	pthread_mutex_lock(&u->mu);
	c->n_retries += upl_retries_now(u) - retries0;
	pthread_mutex_unlock(&u->mu);
	upl_snap_close(&s);
	lease_history_free(&cur_h);
}

/* The lease is someone else's: say whose, and look again later. */
static void upl_lease_busy(upl *u, struct ucoll *c, const struct lease_state *holder, uint64_t id)
{
	char until[32], msg[LEASE_OWNER_MAX + 160];
	rfc3339_format(holder->expires, until);
	/* Holders release right after their swap: look again soon, then less often,
	 * and never later than just after the lease runs out. */
	int64_t left = holder->expires - (int64_t)time(NULL);
	unsigned k = c->busy_in_row < 6 ? c->busy_in_row : 6;
	c->busy_in_row++;
	double wait = 0.25 * (double)(1u << k) * (1.0 + (double)(rand() % 1000) / 1000.0);
	if (wait > (double)left + 1)
		wait = left < 0 ? 0.5 : (double)left + 1;
	if (wait > UPL_MAX_BACKOFF_S / 2)
		wait = UPL_MAX_BACKOFF_S / 2;
	snprintf(msg, sizeof(msg), "held by %s until %s", holder->owner, until);
	pthread_mutex_lock(&u->mu);
	upl_copy(c->lease_desc, sizeof(c->lease_desc), msg);
	snprintf(c->last_error, sizeof(c->last_error),
		 "lease %s (token %" PRIu64 "); pointer not written, snapshot %08" PRIu64
		 " waits for the lease",
		 msg, holder->token, id);
	c->next_try = mono_now() + wait;
	pthread_mutex_unlock(&u->mu);
	log_info("upload: %s: lease %s; pointer not written, trying again in %.1f s", c->name, msg,
		 wait);
}

/* The pointer names the uploaded snapshot now (generation p->generation). */
static void upl_swapped(upl *u, struct ucoll *c, const struct lease_pointer *uploaded,
			const struct lease_pointer *p, const char *ptr_key, const char *etag)
{
	upl_record_write(u, c->name, uploaded, "swapped", p->generation);
	lease_history_free(&c->swap_hist);
	pthread_mutex_lock(&u->mu);
	c->pointer_generation = p->generation;
	c->swap_pending = false;
	upl_all_clear(c);
	pthread_mutex_unlock(&u->mu);
	log_info("upload: %s: pointer s3://%s/%s now names snapshot %08" PRIu64
		 " of %s (generation %" PRIu64 ", lease token %" PRIu64 ")",
		 c->name, s3_client_bucket(u->ctl), ptr_key, p->id, p->host, p->generation,
		 p->lease_token);
	if (u->sw)
		sweeper_kick(u->sw, c->name);
	if (u->swapped)
		u->swapped(u->swapped_ctx, c->name, uploaded->id, p, etag);
}

/*
 * A cluster member that is not (or no longer) the compactor of c: the
 * snapshot it sealed stays local and the pointer is not written; the
 * deltas it holds are still in S3 for the compactor.
 */
static void upl_not_compactor(upl *u, struct ucoll *c, uint64_t id)
{
	lease_history_free(&c->swap_hist);
	pthread_mutex_lock(&u->mu);
	c->swap_pending = false;
	c->state = "idle";
	upl_all_clear(c);
	pthread_mutex_unlock(&u->mu);
	log_info("upload: %s: snapshot %08" PRIu64
		 " stays local: this host is not the collection's compactor "
		 "(its deltas are still in S3 for the one that is)",
		 c->name, id);
}

/* Another writer moved the pointer since it was read: ours is not written over it. */
static void upl_conflict(upl *u, struct ucoll *c, const struct lease_pointer *uploaded, uint64_t id,
			 const char *ptr_key)
{
	struct s3_error e;
	struct lease_pointer now;
	bool present = false;
	char msg[LEASE_HOST_MAX + 256];
	if (lease_pointer_get(u->ctl, ptr_key, &now, NULL, NULL, &present, &e) == 0 && present)
		snprintf(msg, sizeof(msg),
			 "pointer moved by %s to generation %" PRIu64 " (snapshot %08" PRIu64
			 "); ours (%08" PRIu64 ") not written over it",
			 now.host, now.generation, now.id, id);
	else
		snprintf(msg, sizeof(msg),
			 "pointer changed since it was read; ours (%08" PRIu64
			 ") not written over it",
			 id);
	upl_record_write(u, c->name, uploaded, "conflict", present ? now.generation : 0);
	lease_history_free(&c->swap_hist);
	pthread_mutex_lock(&u->mu);
	c->state = "conflict";
	if (present)
		c->pointer_generation = now.generation;
	upl_copy(c->last_error, sizeof(c->last_error), msg);
	c->error_code[0] = '\0';
	c->swap_pending = false;
	c->n_conflicts++;
	c->failures_in_row = 0;
	pthread_mutex_unlock(&u->mu);
	log_warn("upload: %s: %s", c->name, msg);
}

/*
 * Holds the lease, swaps the pointer to c->swap if it is still where it
 * was before the upload, drops the hold (the lease is released unless the
 * sweeper holds it too).
 */
static void upl_swap_once(upl *u, struct ucoll *c)
{
	struct s3_error e;
	struct lease_state holder;
	char ptr_key[S3_KEY_MAX + 1], if_match[S3_ETAG_MAX];
	struct lease_pointer p;
	double margin = (double)u->ttl_s / 3.0;
	int rc;
	memset(&e, 0, sizeof(e));

	pthread_mutex_lock(&u->mu);
	c->state = "swapping";
	p = c->swap;
	p.generation = c->swap_base_generation + 1;
	upl_copy(if_match, sizeof(if_match), c->swap_if_match);
	pthread_mutex_unlock(&u->mu);

	if ((rc = layout_pointer_key(u->prefix, c->name, ptr_key, sizeof(ptr_key))) < 0) {
		upl_fail(u, c, "pointer key too long", NULL, rc);
		return;
	}
	lease *l = upl_lease(u, c);
	if (!l) {
		upl_fail(u, c, "making the lease", NULL, -ENOMEM);
		return;
	}
	if (u->cluster) {
		if (lease_hold_if_held(l, margin) < 0) {
			upl_not_compactor(u, c, p.id);
			return;
		}
		rc = 0;
	} else {
		rc = lease_hold(l, margin, &holder, &e);
	}
	if (rc == -EBUSY) {
		upl_lease_busy(u, c, &holder, p.id);
		return;
	}
	if (rc == -EPROTO) {
		upl_fail_doc(u, c, "the lease is not a lease document", &e, rc, "lease");
		return;
	}
	if (rc < 0) {
		upl_fail(u, c, "taking the lease", &e, rc);
		return;
	}
	pthread_mutex_lock(&u->mu);
	c->busy_in_row = 0;
	c->lease_held = true;
	upl_copy(c->lease_desc, sizeof(c->lease_desc), "held");
	pthread_mutex_unlock(&u->mu);

	char new_etag[S3_ETAG_MAX];
	struct lease_pointer uploaded = p;
	p.written_at = (int64_t)time(NULL);
	rc = lease_pointer_swap(l, ptr_key, &p, &c->swap_hist, if_match, margin, new_etag, &e);
	int swap_rc = rc;
	struct s3_error swap_e = e;

	struct s3_error re;
	if (lease_drop(l, &re) < 0 && !atomic_load(&u->cancel)) {
		char detail[1100];
		s3_error_format(&re, detail, sizeof(detail));
		log_warn("upload: %s: releasing the lease: %s (it expires by itself)", c->name,
			 detail);
	}
	pthread_mutex_lock(&u->mu);
	c->lease_held = false;
	upl_copy(c->lease_desc, sizeof(c->lease_desc), "free");
	pthread_mutex_unlock(&u->mu);

	if (swap_rc == 0)
		upl_swapped(u, c, &uploaded, &p, ptr_key, new_etag);
	else if (swap_rc == -ESTALE)
		upl_conflict(u, c, &uploaded, p.id, ptr_key);
	else
		upl_fail(u, c,
			 swap_rc == -ENOLCK ? "lease too short to write the pointer"
					    : "writing the pointer",
			 &swap_e, swap_rc);
}

void upl_swap(upl *u, struct ucoll *c)
{
	/* Retries on every path count, a failed one's included. */
	uint64_t retries0 = upl_retries_now(u);
	upl_swap_once(u, c);
	pthread_mutex_lock(&u->mu);
	c->n_retries += upl_retries_now(u) - retries0;
	pthread_mutex_unlock(&u->mu);
}
