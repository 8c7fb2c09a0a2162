/*
 * uploader — ships sealed snapshots to S3 and swaps the pointer (see
 * uploader.h for the layout and the order of steps).
 *
 * One thread serves every collection, one job at a time: an upload (of
 * the newest published snapshot not yet uploaded) or a pending pointer
 * swap (after the lease was busy). Each collection has its own "not
 * before" time, so a collection that waits (lease busy, S3 failing) does
 * not hold the others up. The thread makes no FUSE or vfs call; the
 * compactor tells it about snapshots (upl_published) and the vfs reads
 * its status (upl_status), both under u->mu only.
 *
 * Two S3 clients: `data` (default retries: uploads ride out long
 * outages) and `ctl` for the lease, the pointer and the multipart
 * housekeeping, with few retries and short timeouts, so that one
 * conditional PUT cannot outlast the margin the lease keeps (lease.h)
 * and a stop is not held up.
 *
 * The SHA-256 compared with the manifest is computed from the file's
 * bytes by a second thread while the upload runs, on the same open file
 * (the upload reads /proc/self/fd/N: the same inode even if retention
 * unlinks the name meanwhile). The client hashes (SHA-256, MD5) what it
 * sends and the HEAD after the upload confirms size and ETag, so the
 * object holds the bytes of that file.
 */
#include "uploader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"
#include "layout.h"
#include "jread.h"
#include "lease.h"
#include "log.h"
#include "manifest.h"

#define UPL_DEFAULT_PART (16ull << 20)
#define UPL_DEFAULT_PARALLEL 4
#define UPL_DEFAULT_TTL 60
#define UPL_SLOW_RETRY_S 60.0 /* errors that cannot go away */
#define UPL_MAX_BACKOFF_S 60.0
#define UPL_RECORD "upload.json"

struct ucoll {
	struct ucoll *next;
	char name[STORE_NAME_MAX + 1];
	/* Protected by u->mu (down to the thread-only part). */
	uint64_t *ids; /* published, not yet uploaded, ascending */
	size_t nids, capids;
	const char *state; /* "idle", "uploading", "swapping", "conflict", "failed" */
	uint64_t bytes_done, bytes_total;
	bool have_last;
	struct lease_pointer last; /* last uploaded (objects verified); written_at: when */
	uint64_t pointer_generation;
	char lease_desc[LEASE_OWNER_MAX + 64];
	char last_error[1400]; /* "" if none */
	/* A swap still to do after the upload of `swap` (lease busy, S3 failed). */
	bool swap_pending;
	struct lease_pointer swap;     /* the new pointer value but its generation */
	char swap_if_match[S3_ETAG_MAX]; /* the pointer's ETag before the upload; "" absent */
	uint64_t swap_base_generation;
	unsigned failures_in_row;
	double next_try; /* monotonic seconds */
	/* Used by the uploader thread only. */
	bool cleaned;         /* our stale multipart uploads were aborted */
	unsigned busy_in_row; /* lease found busy, in a row */
	lease *lease;
	/* metrics */
	uint64_t n_uploads, n_bytes, n_retries, n_failures, n_conflicts;
	double last_seconds;
	bool lease_held;
};

struct upl {
	store *st;
	s3_client *data;
	s3_client *ctl;
	char prefix[LAYOUT_PREFIX_MAX];
	char host_id[LAYOUT_HOST_ID_MAX + 1];
	char owner[LEASE_OWNER_MAX];
	uint64_t part_size;
	unsigned parallel;
	unsigned ttl_s;
	bool enabled;
	atomic_bool cancel; /* set by upl_stop: abandons the upload in progress */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;            /* protected by mu */
	struct ucoll *colls;  /* protected by mu; entries are never freed before upl_stop */
	struct ucoll *served; /* the last collection served (round robin); protected by mu */
	bool thread_started;
	pthread_t thread;
};

static double upl_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies src into dst[cap], cut short if it does not fit. */
static void upl_copy(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- paths ---- */

static int upl_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int upl_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len || (size_t)n > S3_KEY_MAX ? -ENAMETOOLONG : 0;
}

/* ---- collections ---- */

/* With u->mu held. */
static struct ucoll *ucoll_find(upl *u, const char *name)
{
	for (struct ucoll *c = u->colls; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* With u->mu held: finds or adds. NULL only if out of memory or the name is bad. */
static struct ucoll *ucoll_get(upl *u, const char *name)
{
	struct ucoll *c = ucoll_find(u, name);
	if (c || !store_name_valid(name))
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	upl_copy(c->name, sizeof(c->name), name);
	c->state = u->enabled ? "idle" : "off";
	upl_copy(c->lease_desc, sizeof(c->lease_desc), "free");
	/* Keep the list sorted, for stable status and metrics. */
	struct ucoll **pp = &u->colls;
	while (*pp && strcmp((*pp)->name, name) < 0)
		pp = &(*pp)->next;
	c->next = *pp;
	*pp = c;
	return c;
}

/* With u->mu held. */
static void ucoll_push_id(struct ucoll *c, uint64_t id)
{
	if (c->nids && c->ids[c->nids - 1] >= id)
		return;
	if (c->nids == c->capids) {
		size_t cap = c->capids ? c->capids * 2 : 8;
		uint64_t *ids = realloc(c->ids, cap * sizeof(*ids));
		if (!ids) {
			/* Keep the newest: that is the one that will be uploaded. */
			if (c->nids)
				c->ids[c->nids - 1] = id;
			return;
		}
		c->ids = ids;
		c->capids = cap;
	}
	c->ids[c->nids++] = id;
}

/* With u->mu held: forgets ids up to and including id. */
static void ucoll_trim(struct ucoll *c, uint64_t id)
{
	size_t k = 0;
	while (k < c->nids && c->ids[k] <= id)
		k++;
	memmove(c->ids, c->ids + k, (c->nids - k) * sizeof(*c->ids));
	c->nids -= k;
}

/* ---- the local record: STORE/collections/COLL/upload.json ---- */

static int upl_record_path(upl *u, const char *coll, char *buf, size_t len)
{
	return store_path(u->st, coll, STORE_AREA_COLLECTION, UPL_RECORD, buf, len);
}

/* pointer: "pending" (objects uploaded, swap not done), "swapped" or "conflict". */
static void upl_record_write(upl *u, const char *coll, const struct lease_pointer *p,
			     const char *pointer, uint64_t generation)
{
	char path[PATH_MAX];
	if (upl_record_path(u, coll, path, sizeof(path)) < 0)
		return;
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "{\"format\": 1, \"pointer\": \"%s\", \"pointer_generation\": %" PRIu64
		      ", \"id\": %" PRIu64 ", \"host\": ",
		  pointer, generation, p->id);
	sbuf_add_json_str(&b, p->host);
	sbuf_adds(&b, ", \"key\": ");
	sbuf_add_json_str(&b, p->db_key);
	sbuf_adds(&b, ", \"manifest_key\": ");
	sbuf_add_json_str(&b, p->manifest_key);
	sbuf_addf(&b, ", \"size\": %" PRIu64 ", \"etag\": ", p->size);
	sbuf_add_json_str(&b, p->etag);
	sbuf_adds(&b, ", \"sha256\": ");
	sbuf_add_json_str(&b, p->sha256);
	sbuf_addf(&b, ", \"at\": %" PRId64 "}\n", p->written_at);
	int rc = fsx_write_atomic(path, b.buf, b.len);
	if (rc < 0)
		log_warn("upload: %s: cannot write %s: %s", coll, path, strerror(-rc));
	sbuf_free(&b);
}

/*
 * Reads upload.json: 0 with *p and *done (the pointer step was finished,
 * swapped or conflict), -ENOENT if there is none, -EINVAL if unreadable.
 */
static int upl_record_read(upl *u, const char *coll, struct lease_pointer *p, bool *done,
			   uint64_t *generation)
{
	char path[PATH_MAX], *doc = NULL, pointer[16] = "";
	size_t len;
	uint64_t format = 0;
	int rc = upl_record_path(u, coll, path, sizeof(path));
	if (rc < 0)
		return rc;
	if ((rc = fsx_read_all(path, &doc, &len)) < 0)
		return rc;
	memset(p, 0, sizeof(*p));
	const struct jread_field f[] = {
		{"format", JREAD_U64, &format, 0, NULL, 0, false},
		{"pointer", JREAD_STR, pointer, sizeof(pointer), NULL, 0, false},
		{"pointer_generation", JREAD_U64, generation, 0, NULL, 0, false},
		{"id", JREAD_U64, &p->id, 0, NULL, 0, false},
		{"host", JREAD_STR, p->host, sizeof(p->host), NULL, 0, false},
		{"key", JREAD_STR, p->db_key, sizeof(p->db_key), NULL, 0, false},
		{"manifest_key", JREAD_STR, p->manifest_key, sizeof(p->manifest_key), NULL, 0, false},
		{"size", JREAD_U64, &p->size, 0, NULL, 0, false},
		{"etag", JREAD_STR, p->etag, sizeof(p->etag), NULL, 0, false},
		{"sha256", JREAD_STR, p->sha256, sizeof(p->sha256), NULL, 0, false},
		{"at", JREAD_I64, &p->written_at, 0, NULL, 0, false},
	};
	rc = jread_object(doc, f, sizeof(f) / sizeof(f[0]));
	free(doc);
	if (rc < 0 || format != 1) {
		log_warn("upload: %s: %s is not an upload record; the newest snapshot will be uploaded "
			 "again",
			 coll, path);
		return -EINVAL;
	}
	*done = strcmp(pointer, "pending") != 0;
	return 0;
}

/* At start: what is left to upload for coll, from its record and snapshots. */
static void upl_load_coll(upl *u, const char *name)
{
	struct lease_pointer rec;
	bool done = false, have = false;
	uint64_t gen = 0, *ids = NULL;
	size_t n = 0;
	if (upl_record_read(u, name, &rec, &done, &gen) == 0)
		have = true;
	int rc = store_snapshots(u->st, name, &ids, &n);
	if (rc < 0)
		log_warn("upload: %s: cannot list snapshots: %s", name, strerror(-rc));
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = ucoll_get(u, name);
	if (c) {
		if (have) {
			c->have_last = true;
			c->last = rec;
			c->pointer_generation = gen;
		}
		for (size_t i = 0; i < n; i++)
			/* Not done: the recorded snapshot is uploaded again. */
			if (!have || ids[i] > rec.id || (!done && ids[i] == rec.id))
				ucoll_push_id(c, ids[i]);
	}
	pthread_mutex_unlock(&u->mu);
	free(ids);
}

/* ---- status ---- */

static void upl_time_iso(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void upl_status(void *ctx, const char *coll, sbuf *out)
{
	upl *u = ctx;
	pthread_mutex_lock(&u->mu);
	if (!coll) {
		static const struct {
			const char *name, *type, *help;
		} m[] = {
			{"snapfs_uploads_total", "counter", "Snapshots uploaded to S3."},
			{"snapfs_upload_bytes_total", "counter", "Bytes of snapshot databases uploaded."},
			{"snapfs_upload_retries_total", "counter", "S3 requests retried by the uploader."},
			{"snapfs_upload_failures_total", "counter", "Upload or pointer attempts that failed."},
			{"snapfs_lease_held", "gauge", "1 while this host holds the collection's lease."},
			{"snapfs_upload_seconds", "gauge", "Duration of the last upload (seconds)."},
			{"snapfs_pointer_conflicts_total", "counter",
			 "Pointer swaps refused because another host moved the pointer."},
		};
		for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
			sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
				  m[i].type);
			for (struct ucoll *c = u->colls; c; c = c->next) {
				sbuf_addf(out, "%s{collection=\"%s\"} ", m[i].name, c->name);
				switch (i) {
				case 0: sbuf_addf(out, "%" PRIu64 "\n", c->n_uploads); break;
				case 1: sbuf_addf(out, "%" PRIu64 "\n", c->n_bytes); break;
				case 2: sbuf_addf(out, "%" PRIu64 "\n", c->n_retries); break;
				case 3: sbuf_addf(out, "%" PRIu64 "\n", c->n_failures); break;
				case 4: sbuf_addf(out, "%d\n", c->lease_held ? 1 : 0); break;
				case 5: sbuf_addf(out, "%.3f\n", c->last_seconds); break;
				default: sbuf_addf(out, "%" PRIu64 "\n", c->n_conflicts); break;
				}
			}
		}
		pthread_mutex_unlock(&u->mu);
		return;
	}
	struct ucoll *c = ucoll_find(u, coll);
	sbuf_adds(out, ", \"upload\": {\"state\": ");
	if (!c) {
		sbuf_add_json_str(out, u->enabled ? "idle" : "off");
		sbuf_adds(out, ", \"bytes_done\": 0, \"bytes_total\": 0, \"last_uploaded_id\": null, "
			       "\"last_uploaded\": null, \"lag\": 0, \"pointer_generation\": null, "
			       "\"lease\": \"free\", \"last_error\": null}");
		pthread_mutex_unlock(&u->mu);
		return;
	}
	sbuf_add_json_str(out, u->enabled ? c->state : "off");
	sbuf_addf(out, ", \"bytes_done\": %" PRIu64 ", \"bytes_total\": %" PRIu64, c->bytes_done,
		  c->bytes_total);
	if (c->have_last) {
		char at[32];
		upl_time_iso(c->last.written_at, at, sizeof(at));
		sbuf_addf(out, ", \"last_uploaded_id\": %" PRIu64 ", \"last_uploaded\": {\"id\": %" PRIu64
			       ", \"key\": ",
			  c->last.id, c->last.id);
		sbuf_add_json_str(out, c->last.db_key);
		sbuf_adds(out, ", \"manifest_key\": ");
		sbuf_add_json_str(out, c->last.manifest_key);
		sbuf_addf(out, ", \"size\": %" PRIu64 ", \"etag\": ", c->last.size);
		sbuf_add_json_str(out, c->last.etag);
		sbuf_adds(out, ", \"sha256\": ");
		sbuf_add_json_str(out, c->last.sha256);
		sbuf_addf(out, ", \"at\": %" PRId64 ", \"at_iso\": \"%s\"}", c->last.written_at, at);
	} else {
		sbuf_adds(out, ", \"last_uploaded_id\": null, \"last_uploaded\": null");
	}
	sbuf_addf(out, ", \"lag\": %zu, \"pointer_generation\": ", c->nids);
	if (c->pointer_generation)
		sbuf_addf(out, "%" PRIu64, c->pointer_generation);
	else
		sbuf_adds(out, "null");
	sbuf_adds(out, ", \"lease\": ");
	sbuf_add_json_str(out, c->lease_desc);
	sbuf_adds(out, ", \"last_error\": ");
	if (c->last_error[0])
		sbuf_add_json_str(out, c->last_error);
	else
		sbuf_adds(out, "null");
	sbuf_adds(out, "}");
	pthread_mutex_unlock(&u->mu);
}

/* ---- events ---- */

void upl_published(void *ctx, const char *coll, uint64_t id)
{
	upl *u = ctx;
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = ucoll_get(u, coll);
	if (c) {
		ucoll_push_id(c, id);
		c->next_try = 0; /* a new snapshot: try at once, even after a failure */
	}
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

/* ---- one job ---- */

static uint64_t upl_retries_now(upl *u)
{
	struct s3_stats a, b;
	s3_client_stats(u->data, &a);
	s3_client_stats(u->ctl, &b);
	return a.retries + b.retries;
}

/*
 * A failed attempt: state "failed", the message in status and the log,
 * and the next try after a backoff (slow for errors that cannot go away).
 */
static void upl_fail(upl *u, struct ucoll *c, const char *what, const struct s3_error *e, int rc)
{
	char msg[1400], detail[1100];
	bool permanent;
	if (e && (e->http_status || e->curl_code || e->transport[0] || e->sys_errno)) {
		s3_error_format(e, detail, sizeof(detail));
		permanent = !s3_error_retryable(e) && e->http_status >= 400 && e->http_status < 500;
	} else {
		upl_copy(detail, sizeof(detail), strerror(rc < 0 ? -rc : rc));
		permanent = false;
	}
	snprintf(msg, sizeof(msg), "%s: %s", what, detail);
	pthread_mutex_lock(&u->mu);
	c->state = "failed";
	upl_copy(c->last_error, sizeof(c->last_error), msg);
	c->n_failures++;
	c->failures_in_row++;
	double wait = UPL_SLOW_RETRY_S;
	if (!permanent) {
		unsigned n = c->failures_in_row > 6 ? 6 : c->failures_in_row;
		wait = (double)(1u << n) * (0.5 + (double)(rand() % 1000) / 2000.0);
		if (wait > UPL_MAX_BACKOFF_S)
			wait = UPL_MAX_BACKOFF_S;
	}
	c->next_try = upl_mono() + wait;
	pthread_mutex_unlock(&u->mu);
	log_warn("upload: %s: %s; %s in %.0f s", c->name, msg,
		 permanent ? "this will not go away by itself: trying again" : "retrying", wait);
}

/* Aborts multipart uploads of this host under PREFIX/COLL/snapshots/ (left by a crash). */
static int upl_abort_stale(upl *u, struct ucoll *c, struct s3_error *err)
{
	char pfx[S3_KEY_MAX + 1];
	int rc = layout_snapshots_prefix(u->prefix, c->name, pfx, sizeof(pfx));
	if (rc < 0)
		return rc;
	struct s3_multipart *mp = NULL;
	size_t n = 0, aborted = 0;
	/* On the control client: short, bounded retries, so that a stop is not held up. */
	if ((rc = s3_multipart_list(u->ctl, pfx, &mp, &n, err)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct layout_snap s;
		/* A snapshot key of this host: another host's uploads are never ours to abort. */
		if (!layout_parse_snapshot_key(u->prefix, c->name, mp[i].key, &s) ||
		    strcmp(s.host, u->host_id) != 0)
			continue;
		rc = s3_multipart_abort(u->ctl, mp[i].key, mp[i].upload_id, err);
		if (rc == 0)
			aborted++;
	}
	s3_multipart_list_free(mp, n);
	if (aborted)
		log_info("upload: %s: aborted %zu multipart upload(s) of host %s left by an earlier run",
			 c->name, aborted, u->host_id);
	return rc;
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
	fsx_hex(sha, FSX_SHA256_LEN, h->hex);
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

static void upl_swap(upl *u, struct ucoll *c);

/*
 * Uploads snapshot id of c and then swaps the pointer. Runs on the
 * uploader thread without u->mu.
 */
static void upl_upload(upl *u, struct ucoll *c, uint64_t id)
{
	struct s3_error e;
	char dir[PATH_MAX], dbpath[PATH_MAX], mpath[PATH_MAX], ids[24], leaf[STORE_NAME_MAX + 16];
	char ptr_key[S3_KEY_MAX + 1], sdir[LAYOUT_DIR_MAX];
	struct lease_pointer cur, p = {0};
	char cur_etag[S3_ETAG_MAX];
	bool cur_present;
	char *mdoc = NULL;
	size_t mlen = 0;
	int fd = -1, rc;
	uint64_t retries0 = upl_retries_now(u);
	double t0 = upl_mono();
	memset(&e, 0, sizeof(e));

	pthread_mutex_lock(&u->mu);
	c->state = "uploading";
	c->bytes_done = 0;
	c->bytes_total = 0;
	c->swap_pending = false; /* a newer snapshot supersedes a swap still to do */
	pthread_mutex_unlock(&u->mu);

	store_id_format(id, ids, sizeof(ids));
	snprintf(leaf, sizeof(leaf), "%s.sqlite3", c->name);
	if ((rc = store_path(u->st, c->name, STORE_AREA_SNAPSHOTS, ids, dir, sizeof(dir))) < 0 ||
	    (rc = upl_fmt(dbpath, sizeof(dbpath), "%s/%s", dir, leaf)) < 0 ||
	    (rc = upl_fmt(mpath, sizeof(mpath), "%s/MANIFEST.json", dir)) < 0 ||
	    (rc = layout_snapshot_dir(id, u->host_id, store_instance(u->st), sdir, sizeof(sdir))) < 0 ||
	    (rc = layout_snapshot_key(u->prefix, c->name, sdir, leaf, p.db_key, sizeof(p.db_key))) < 0 ||
	    (rc = layout_snapshot_key(u->prefix, c->name, sdir, "MANIFEST.json", p.manifest_key,
				      sizeof(p.manifest_key))) < 0 ||
	    (rc = layout_pointer_key(u->prefix, c->name, ptr_key, sizeof(ptr_key))) < 0) {
		upl_fail(u, c, "snapshot path or key too long", NULL, rc);
		return;
	}

	/* The manifest first: if retention took the snapshot, a newer one is there. */
	if ((rc = fsx_read_all(mpath, &mdoc, &mlen)) < 0 ||
	    (fd = open(dbpath, O_RDONLY | O_CLOEXEC)) < 0) {
		if (rc == 0)
			rc = -errno;
		free(mdoc);
		if (rc == -ENOENT) {
			log_info("upload: %s: snapshot %s was retired before it was uploaded; skipping it",
				 c->name, ids);
			pthread_mutex_lock(&u->mu);
			ucoll_trim(c, id);
			c->state = "idle";
			pthread_mutex_unlock(&u->mu);
			return;
		}
		char what[PATH_MAX + 64];
		snprintf(what, sizeof(what), "cannot read snapshot %s", dir);
		upl_fail(u, c, what, NULL, rc);
		return;
	}
	uint64_t msize, mid;
	char msha[65];
	struct stat stt;
	if (manifest_read_basic(mdoc, &msize, msha, &mid) < 0 || mid != id) {
		upl_fail(u, c, "snapshot manifest unreadable or of another id; not uploaded", NULL,
			 -EINVAL);
		goto out;
	}
	if (fstat(fd, &stt) < 0 || (uint64_t)stt.st_size != msize) {
		upl_fail(u, c, "snapshot file size is not the manifest's; not uploaded", NULL, -EINVAL);
		goto out;
	}
	pthread_mutex_lock(&u->mu);
	c->bytes_total = msize;
	pthread_mutex_unlock(&u->mu);

	if (!c->cleaned) {
		if ((rc = upl_abort_stale(u, c, &e)) < 0) {
			upl_fail(u, c, "listing or aborting stale multipart uploads", &e, rc);
			goto out;
		}
		c->cleaned = true;
	}
	/* The pointer as it is before we upload: the swap is conditional on it. */
	if ((rc = lease_pointer_get(u->ctl, ptr_key, &cur, cur_etag, &cur_present, &e)) < 0) {
		upl_fail(u, c, "reading the pointer", &e, rc);
		goto out;
	}

	struct upl_hash h = {.fd = fd, .cancel = &u->cancel, .rc = -EINTR};
	pthread_t ht;
	bool hashing = pthread_create(&ht, NULL, upl_hash_main, &h) == 0;
	char fdpath[64];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	char ids_meta[24];
	snprintf(ids_meta, sizeof(ids_meta), "%" PRIu64, id);
	const struct s3_meta meta[] = {
		{"snapfs-sha256", msha}, {"snapfs-id", ids_meta}, {"snapfs-host", u->host_id}};
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
	};
	struct s3_upload_result res = {0};
	rc = s3_upload_file(u->data, p.db_key, fdpath, &uo, &res, &e);
	if (hashing)
		pthread_join(ht, NULL);
	else
		upl_hash_main(&h); /* no thread to spare: hash after the upload */
	if (atomic_load(&u->cancel))
		goto out; /* stopping: the upload was aborted, upload.json says nothing new */
	if (rc < 0) {
		upl_fail(u, c, "uploading the snapshot database", &e, rc);
		goto out;
	}
	if (h.rc < 0 || h.size != msize || strcmp(h.hex, msha) != 0) {
		char what[512];
		if (h.rc < 0)
			snprintf(what, sizeof(what), "reading %.300s to hash it: %s", dbpath, strerror(-h.rc));
		else
			snprintf(what, sizeof(what),
				 "%.200s: SHA-256 of the file is %s (%" PRIu64 " bytes) but the manifest says %s "
				 "(%" PRIu64 " bytes); pointer not moved",
				 dbpath, h.hex, h.size, msha, msize);
		upl_fail(u, c, what, NULL, -EIO);
		goto out;
	}
	/* Create-only: the key is this snapshot's for good (layout.h); a re-upload
	 * after a crash finds the same bytes there, which counts as written. */
	struct s3_put_opts po = {.content_type = "application/json", .cancel = &u->cancel,
				 .if_none_match = true, .identical_ok = true};
	struct s3_put_result pr;
	if ((rc = s3_put_buf(u->data, p.manifest_key, mdoc, mlen, &po, &pr, &e)) < 0) {
		if (!atomic_load(&u->cancel))
			upl_fail(u, c, "uploading the manifest", &e, rc);
		goto out;
	}

	double secs = upl_mono() - t0;
	p.id = id;
	upl_copy(p.host, sizeof(p.host), u->host_id);
	upl_copy(p.sha256, sizeof(p.sha256), msha);
	p.size = res.size;
	upl_copy(p.etag, sizeof(p.etag), res.etag);
	p.written_at = (int64_t)time(NULL);
	upl_record_write(u, c->name, &p, "pending", cur_present ? cur.generation : 0);
	log_info("upload: %s: snapshot %s uploaded to s3://%s/%s (%" PRIu64 " bytes in %u part(s), "
		 "%.1f s, %.1f MB/s, ETag %s, %u retries)",
		 c->name, ids, s3_client_bucket(u->data), p.db_key, res.size, res.parts, secs,
		 secs > 0 ? (double)res.size / secs / 1e6 : 0.0, res.etag, res.retries);

	pthread_mutex_lock(&u->mu);
	c->have_last = true;
	c->last = p;
	ucoll_trim(c, id);
	c->n_uploads++;
	c->n_bytes += res.size;
	c->last_seconds = secs;
	c->n_retries += upl_retries_now(u) - retries0;
	retries0 = upl_retries_now(u);
	c->bytes_done = res.size;
	c->swap_pending = true;
	c->swap = p;
	upl_copy(c->swap_if_match, sizeof(c->swap_if_match), cur_present ? cur_etag : "");
	c->swap_base_generation = cur_present ? cur.generation : 0;
	c->failures_in_row = 0;
	pthread_mutex_unlock(&u->mu);
	free(mdoc);
	close(fd);
	upl_swap(u, c);
	return;
out:
	pthread_mutex_lock(&u->mu);
	c->n_retries += upl_retries_now(u) - retries0;
	pthread_mutex_unlock(&u->mu);
	free(mdoc);
	if (fd >= 0)
		close(fd);
}

/*
 * Takes the lease, swaps the pointer to c->swap if it is still where it
 * was before the upload, releases the lease.
 */
static void upl_swap(upl *u, struct ucoll *c)
{
	struct s3_error e;
	struct lease_state holder;
	char ptr_key[S3_KEY_MAX + 1], lease_key[S3_KEY_MAX + 1], if_match[S3_ETAG_MAX];
	struct lease_pointer p;
	uint64_t retries0 = upl_retries_now(u);
	int rc;
	memset(&e, 0, sizeof(e));

	pthread_mutex_lock(&u->mu);
	c->state = "swapping";
	p = c->swap;
	p.generation = c->swap_base_generation + 1;
	upl_copy(if_match, sizeof(if_match), c->swap_if_match);
	pthread_mutex_unlock(&u->mu);

	if ((rc = layout_pointer_key(u->prefix, c->name, ptr_key, sizeof(ptr_key))) < 0 ||
	    (rc = layout_lease_key(u->prefix, c->name, lease_key, sizeof(lease_key))) < 0) {
		upl_fail(u, c, "pointer key too long", NULL, rc);
		return;
	}
	if (!c->lease && (rc = lease_new(u->ctl, lease_key, u->owner, u->ttl_s, &c->lease)) < 0) {
		upl_fail(u, c, "making the lease", NULL, rc);
		return;
	}
	rc = lease_acquire(c->lease, &holder, &e);
	if (rc == -EBUSY) {
		char until[32], msg[LEASE_OWNER_MAX + 160];
		upl_time_iso(holder.expires, until, sizeof(until));
		/* Holders release right after their swap: look again soon, then less often,
		 * and never later than just after the lease runs out. */
		int64_t left = holder.expires - (int64_t)time(NULL);
		unsigned k = c->busy_in_row < 6 ? c->busy_in_row : 6;
		c->busy_in_row++;
		double wait = 0.25 * (double)(1u << k) * (1.0 + (double)(rand() % 1000) / 1000.0);
		if (wait > (double)left + 1)
			wait = left < 0 ? 0.5 : (double)left + 1;
		if (wait > UPL_MAX_BACKOFF_S / 2)
			wait = UPL_MAX_BACKOFF_S / 2;
		snprintf(msg, sizeof(msg), "held by %s until %s", holder.owner, until);
		pthread_mutex_lock(&u->mu);
		upl_copy(c->lease_desc, sizeof(c->lease_desc), msg);
		snprintf(c->last_error, sizeof(c->last_error),
			 "lease %s (token %" PRIu64 "); pointer not written, snapshot %08" PRIu64
			 " waits for the lease",
			 msg, holder.token, p.id);
		c->next_try = upl_mono() + wait;
		c->n_retries += upl_retries_now(u) - retries0;
		pthread_mutex_unlock(&u->mu);
		log_info("upload: %s: lease %s; pointer not written, trying again in %.1f s", c->name,
			 msg, wait);
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
	rc = lease_pointer_swap(c->lease, ptr_key, &p, if_match, (double)u->ttl_s / 3.0, new_etag, &e);
	int swap_rc = rc;
	struct s3_error swap_e = e;

	struct s3_error re;
	if (lease_release(c->lease, &re) < 0) {
		char detail[1100];
		s3_error_format(&re, detail, sizeof(detail));
		log_warn("upload: %s: releasing the lease: %s (it expires by itself)", c->name, detail);
	}
	pthread_mutex_lock(&u->mu);
	c->lease_held = false;
	upl_copy(c->lease_desc, sizeof(c->lease_desc), "free");
	c->n_retries += upl_retries_now(u) - retries0;
	pthread_mutex_unlock(&u->mu);

	if (swap_rc == 0) {
		upl_record_write(u, c->name, &uploaded, "swapped", p.generation);
		pthread_mutex_lock(&u->mu);
		c->pointer_generation = p.generation;
		c->swap_pending = false;
		c->state = "idle";
		c->last_error[0] = '\0';
		c->failures_in_row = 0;
		pthread_mutex_unlock(&u->mu);
		log_info("upload: %s: pointer s3://%s/%s now names snapshot %08" PRIu64
			 " of %s (generation %" PRIu64 ", lease token %" PRIu64 ")",
			 c->name, s3_client_bucket(u->ctl), ptr_key, p.id, p.host, p.generation,
			 p.lease_token);
		return;
	}
	if (swap_rc == -ESTALE) {
		struct lease_pointer now;
		bool present = false;
		char msg[LEASE_HOST_MAX + 256];
		if (lease_pointer_get(u->ctl, ptr_key, &now, NULL, &present, &e) == 0 && present)
			snprintf(msg, sizeof(msg),
				 "pointer moved by %s to generation %" PRIu64
				 " (snapshot %08" PRIu64 "); ours (%08" PRIu64 ") not written over it",
				 now.host, now.generation, now.id, p.id);
		else
			snprintf(msg, sizeof(msg),
				 "pointer changed since it was read; ours (%08" PRIu64 ") not written over it",
				 p.id);
		upl_record_write(u, c->name, &uploaded, "conflict", present ? now.generation : 0);
		pthread_mutex_lock(&u->mu);
		c->state = "conflict";
		if (present)
			c->pointer_generation = now.generation;
		upl_copy(c->last_error, sizeof(c->last_error), msg);
		c->swap_pending = false;
		c->n_conflicts++;
		c->failures_in_row = 0;
		pthread_mutex_unlock(&u->mu);
		log_warn("upload: %s: %s", c->name, msg);
		return;
	}
	upl_fail(u, c, swap_rc == -ENOLCK ? "lease too short to write the pointer" : "writing the pointer",
		 &swap_e, swap_rc);
}

/* ---- the thread ---- */

/* With u->mu held: the next collection with work due, round robin; *wait_s if none. */
static struct ucoll *upl_next_job(upl *u, double *wait_s)
{
	double now = upl_mono(), soonest = -1;
	struct ucoll *start = u->served && u->served->next ? u->served->next : u->colls;
	struct ucoll *c = start;
	if (!c)
		goto none;
	do {
		if (c->nids || c->swap_pending) {
			if (c->next_try <= now)
				return c;
			if (soonest < 0 || c->next_try < soonest)
				soonest = c->next_try;
		}
		c = c->next ? c->next : u->colls;
	} while (c != start);
none:
	*wait_s = soonest < 0 ? -1 : soonest - now;
	return NULL;
}

/*
 * At start: aborts this host's multipart uploads left by an earlier run in
 * every collection. A failure here is not reported: the first upload of
 * the collection tries again and says why it failed.
 */
static void upl_cleanup_all(upl *u)
{
	pthread_mutex_lock(&u->mu);
	struct ucoll *c = u->colls;
	while (c && !u->stop) {
		pthread_mutex_unlock(&u->mu);
		struct s3_error e;
		if (upl_abort_stale(u, c, &e) == 0)
			c->cleaned = true;
		pthread_mutex_lock(&u->mu);
		c = c->next; /* entries are never freed while the thread runs */
	}
	pthread_mutex_unlock(&u->mu);
}

static void *upl_main(void *arg)
{
	upl *u = arg;
	upl_cleanup_all(u);
	pthread_mutex_lock(&u->mu);
	while (!u->stop) {
		double wait;
		struct ucoll *c = upl_next_job(u, &wait);
		if (!c) {
			if (wait < 0) {
				pthread_cond_wait(&u->cv, &u->mu);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + wait;
				ts.tv_sec = (time_t)t;
				ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
				pthread_cond_timedwait(&u->cv, &u->mu, &ts);
			}
			continue;
		}
		u->served = c;
		bool upload = c->nids > 0;
		uint64_t id = upload ? c->ids[c->nids - 1] : 0;
		pthread_mutex_unlock(&u->mu);
		if (upload)
			upl_upload(u, c, id);
		else
			upl_swap(u, c);
		pthread_mutex_lock(&u->mu);
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* ---- life cycle ---- */

int upl_start(store *st, const struct upl_config *cfg, upl **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!layout_host_id_valid(cfg->host_id)) {
		snprintf(err, errlen, "host id \"%s\" is not valid (1-64 characters of A-Z a-z 0-9 . _ -)",
			 cfg->host_id ? cfg->host_id : "");
		return -EINVAL;
	}
	upl *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = layout_prefix_normalize(cfg->prefix, u->prefix, sizeof(u->prefix));
	if (rc < 0) {
		snprintf(err, errlen, "prefix \"%s\" is not usable (no leading '/', no \"//\", no "
				      "control characters, at most %d bytes)",
			 cfg->prefix, LAYOUT_PREFIX_MAX - 2);
		free(u);
		return rc;
	}
	u->st = st;
	upl_copy(u->host_id, sizeof(u->host_id), cfg->host_id);
	u->part_size = cfg->part_size ? cfg->part_size : UPL_DEFAULT_PART;
	u->parallel = cfg->parallel ? cfg->parallel : UPL_DEFAULT_PARALLEL;
	u->ttl_s = cfg->lease_ttl_s ? cfg->lease_ttl_s : UPL_DEFAULT_TTL;
	u->enabled = cfg->enabled;
	atomic_init(&u->cancel, false);
	pthread_mutex_init(&u->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&u->cv, &ca);
	pthread_condattr_destroy(&ca);

	/* The owner names this process: host id, pid and a random part. */
	unsigned char rnd[6];
	char rhex[13];
	int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ufd < 0 || read(ufd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(rnd, &ts.tv_nsec, sizeof(rnd) < sizeof(ts.tv_nsec) ? sizeof(rnd) : sizeof(ts.tv_nsec));
	}
	if (ufd >= 0)
		close(ufd);
	fsx_hex(rnd, sizeof(rnd), rhex);
	snprintf(u->owner, sizeof(u->owner), "%s/%ld/%s", u->host_id, (long)getpid(), rhex);
	srand((unsigned)getpid() ^ (unsigned)rnd[0] << 8 ^ (unsigned)rnd[1] << 16);

	struct s3_config ctl = *cfg->s3;
	ctl.retry = (struct s3_retry){.max_attempts = 3, .base_ms = 200, .cap_ms = 2000};
	ctl.connect_timeout_s = 5;
	ctl.timeout_s = 10; /* a lease or pointer call, retries included: well inside the margin */
	if ((rc = s3_client_new(cfg->s3, &u->data, err, errlen)) < 0 ||
	    (rc = s3_client_new(&ctl, &u->ctl, err, errlen)) < 0) {
		upl_stop(u);
		return rc;
	}

	char **names = NULL;
	size_t n = 0;
	if ((rc = store_collections(st, &names, &n)) < 0) {
		snprintf(err, errlen, "cannot list the collections of %s: %s", store_root(st),
			 strerror(-rc));
		upl_stop(u);
		return rc;
	}
	for (size_t i = 0; i < n; i++)
		upl_load_coll(u, names[i]);
	store_names_free(names, n);

	if (u->enabled) {
		if ((rc = pthread_create(&u->thread, NULL, upl_main, u)) != 0) {
			snprintf(err, errlen, "cannot start the uploader thread: %s", strerror(rc));
			upl_stop(u);
			return -rc;
		}
		u->thread_started = true;
	}
	*out = u;
	return 0;
}

void upl_stop(upl *u)
{
	if (!u)
		return;
	atomic_store(&u->cancel, true);
	pthread_mutex_lock(&u->mu);
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	if (u->thread_started)
		pthread_join(u->thread, NULL);
	while (u->colls) {
		struct ucoll *c = u->colls;
		u->colls = c->next;
		lease_free(c->lease);
		free(c->ids);
		free(c);
	}
	s3_client_free(u->ctl);
	s3_client_free(u->data);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
}
