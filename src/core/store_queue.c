/*
 * store_queue — the durable queue of deltas and rejected/: queueing
 * (a rename under the arrival sequence), listing in arrival order,
 * removal, rejection with a one-line reason, and the rejected/ cap.
 */
#include "store.h"
#include "store_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "sbuf.h"

/* ---- queue ---------------------------------------------------------------- */

int store_queue_name_ok(const store *s, const char *coll, const char *name)
{
	if (!store_delta_name_valid(name)) {
		store_say(s, LOG_ERR,
			  "store: %s: refusing to queue \"%s\": not a plain non-dot file name",
			  coll, name);
		return -EINVAL;
	}
	if (strlen(name) > STORE_DELTA_NAME_MAX) {
		store_say(s, LOG_ERR, "store: %s: cannot queue %s: a delta name has at most %d bytes",
			  coll, name, STORE_DELTA_NAME_MAX);
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * Moves incoming/NAME into the queue. The name comes from a user; it is
 * checked to be one non-dot component and used for nothing but that.
 */
int store_queue_move(store *s, const char *coll, const char *name, uint64_t *seq)
{
	char in[PATH_MAX];
	int rc;
	if ((rc = store_queue_name_ok(s, coll, name)) < 0)
		return rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_INCOMING, name, in, sizeof(in))) < 0)
		return rc;
	struct stat st;
	if (lstat(in, &st) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot queue delta %s: %s", coll, in,
			  strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		store_say(s, LOG_ERR, "store: %s: not queuing %s: not a regular file", coll, in);
		return -EINVAL;
	}

	/* Sequence and rename under one lock: a delta visible in queue/ means
	 * every smaller sequence number is already there (or never will be),
	 * so the compactor never sees arrivals out of order. */
	if ((rc = store_seq_rename(s, coll, store_intake(s), in, name, seq)) < 0)
		return rc;
	store_say(s, LOG_DEBUG, "store: %s: queued delta %s", coll, name);
	return 0;
}

int store_seq_rename(store *s, const char *coll, enum store_area area, const char *from,
		     const char *name, uint64_t *seq)
{
	char q[PATH_MAX], leaf[NAME_MAX + 32];
	pthread_mutex_lock(&s->seq_mu);
	uint64_t n = s->next_seq;
	snprintf(leaf, sizeof(leaf), "%0*llu-%s", SEQ_DIGITS, (unsigned long long)n, name);
	int rc = store_coll_path(s, coll, area, leaf, q, sizeof(q));
	if (rc == 0) {
		if ((rc = store_rename_noreplace(from, q)) < 0)
			store_say(s, LOG_ERR, "store: %s: cannot queue delta: rename %s to %s: %s",
				  coll, from, q, strerror(-rc));
		else
			s->next_seq = n + 1;
	}
	pthread_mutex_unlock(&s->seq_mu);
	if (rc == 0 && seq)
		*seq = n;
	return rc;
}

int store_queue_sync(store *s, const char *coll)
{
	char indir[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_INCOMING, NULL, indir, sizeof(indir))) < 0 ||
	    (rc = store_coll_path(s, coll, store_intake(s), NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	/* queue/ (or outbox/) first: if only that is lost to a crash the delta is back in incoming/, never gone. */
	if ((rc = store_sync_dir(s, qdir)) < 0 || (rc = store_sync_dir(s, indir)) < 0)
		return rc;
	return 0;
}

int store_queue_add(store *s, const char *coll, const char *name, uint64_t *seq)
{
	char in[PATH_MAX];
	int rc;
	if ((rc = store_queue_name_ok(s, coll, name)) < 0)
		return rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_INCOMING, name, in, sizeof(in))) < 0)
		return rc;
	/* Its content must be on disk before its name says "queued". */
	int fd = open(in, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot open delta %s: %s", coll, in, strerror(-rc));
		return rc;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = fstat(fd, &st) < 0 ? -errno : -EINVAL;
		store_say(s, LOG_ERR, "store: %s: not queuing %s: %s", coll, in,
			  rc == -EINVAL ? "not a regular file" : strerror(-rc));
		close(fd);
		return rc;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: fsync delta %s: %s", coll, in, strerror(-rc));
		close(fd);
		return rc;
	}
	close(fd);
	if ((rc = store_queue_move(s, coll, name, seq)) < 0)
		return rc;
	return store_queue_sync(s, coll);
}

static int cmp_delta(const void *a, const void *b)
{
	const store_delta *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int store_queue_list(store *s, const char *coll, store_delta **out, size_t *n)
{
	return store_area_list(s, coll, STORE_AREA_QUEUE, out, n);
}

int store_area_list(store *s, const char *coll, enum store_area area, store_delta **out, size_t *n)
{
	char qdir[PATH_MAX];
	*out = NULL;
	*n = 0;
	if (area != STORE_AREA_QUEUE && area != STORE_AREA_OUTBOX)
		return -EINVAL;
	int rc = store_coll_path(s, coll, area, NULL, qdir, sizeof(qdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = store_list(s, qdir, &names, &cnt)) < 0)
		return rc;
	store_delta *d = calloc(cnt ? cnt : 1, sizeof(*d));
	size_t k = 0;
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		uint64_t seq;
		const char *name;
		/* Anything that is not SEQ-NAME and a regular file is not ours. */
		if (!store_queue_name_parse(names[i], &seq, &name) ||
		    !store_is_reg_at(qdir, names[i]))
			continue;
		char p[PATH_MAX];
		if (store_fmt_path(p, sizeof(p), "%s/%s", qdir, names[i]) < 0)
			continue;
		d[k].seq = seq;
		d[k].name = strdup(name);
		d[k].path = strdup(p);
		if (!d[k].name || !d[k].path) {
			k++;
			rc = -ENOMEM;
			goto out;
		}
		k++;
	}
	qsort(d, k, sizeof(*d), cmp_delta);
	*out = d;
	*n = k;
	d = NULL;
out:
	if (d)
		store_deltas_free(d, k);
	store_names_free(names, cnt);
	if (rc < 0)
		store_say(s, LOG_ERR, "store: %s: cannot list %s: %s", coll, qdir, strerror(-rc));
	return rc;
}

void store_deltas_free(store_delta *d, size_t n)
{
	if (!d)
		return;
	for (size_t i = 0; i < n; i++) {
		free(d[i].name);
		free(d[i].path);
	}
	free(d);
}

/* The file of d in area, rebuilt from seq and name rather than d->path. */
static int queue_file(const store *s, const char *coll, enum store_area area, const store_delta *d,
		      char *buf, size_t len)
{
	char leaf[NAME_MAX + 32];
	if (!d->name || !store_delta_name_valid(d->name)) {
		store_say(s, LOG_ERR, "store: %s: not a queued delta name: \"%s\"", coll,
			  d->name ? d->name : "");
		return -EINVAL;
	}
	if (store_fmt_path(leaf, sizeof(leaf), "%0*llu-%s", SEQ_DIGITS, (unsigned long long)d->seq,
			   d->name) < 0)
		return -ENAMETOOLONG;
	return store_coll_path(s, coll, area, leaf, buf, len);
}

int store_queue_remove(store *s, const char *coll, const store_delta *d)
{
	return store_area_remove(s, coll, STORE_AREA_QUEUE, d);
}

int store_area_remove(store *s, const char *coll, enum store_area area, const store_delta *d)
{
	char q[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if (area != STORE_AREA_QUEUE && area != STORE_AREA_OUTBOX)
		return -EINVAL;
	if ((rc = queue_file(s, coll, area, d, q, sizeof(q))) < 0 ||
	    (rc = store_coll_path(s, coll, area, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	if (unlink(q) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot remove delta %s: %s", coll, q,
			  strerror(-rc));
		return rc;
	}
	return store_sync_dir(s, qdir);
}

/* rejected/ names that belong to reasons, never to deltas. */
bool store_is_reason_name(const char *name)
{
	return store_has_suffix(name, REASON_SUFFIX) || store_has_suffix(name, REASON_TMP_SUFFIX);
}

/*
 * Picks a free name in rejected/ for a delta called name: name, name.1,
 * name.2..., such that neither it nor its .reason exists, and that never
 * itself looks like a reason file (so store_rejected_count stays exact).
 * Called with s->mu held.
 */
static int reject_name(const char *rdir, const char *name, char *out, size_t len)
{
	/* Leave room for ".NNNNNNNNNN" and ".reason.tmp" within NAME_MAX. */
	size_t keep = strlen(name);
	size_t room = NAME_MAX - (sizeof(REASON_TMP_SUFFIX) - 1) - 11;
	if (keep > room)
		keep = room;
	for (unsigned i = 0; i < 100000; i++) {
		char cand[NAME_MAX + 1], p[PATH_MAX];
		if (i == 0)
			snprintf(cand, sizeof(cand), "%.*s", (int)keep, name);
		else
			snprintf(cand, sizeof(cand), "%.*s.%u", (int)keep, name, i);
		if (store_is_reason_name(cand) || cand[0] == '.')
			continue;
		struct stat st;
		int rc = store_fmt_path(p, sizeof(p), "%s/%s", rdir, cand);
		if (rc < 0)
			return rc;
		if (lstat(p, &st) == 0)
			continue;
		if (errno != ENOENT)
			return -errno;
		if ((rc = store_fmt_path(p, sizeof(p), "%s/%s" REASON_SUFFIX, rdir, cand)) < 0)
			return rc;
		if (lstat(p, &st) == 0)
			continue;
		if (errno != ENOENT)
			return -errno;
		snprintf(out, len, "%s", cand);
		return 0;
	}
	return -EEXIST;
}

/*
 * Moves src (a file of srcdir) to rejected/ under a free name made from
 * name, and writes its .reason; then fsyncs rejected/ and srcdir. The
 * reason is one line: control characters and bytes that are not UTF-8
 * are escaped (sbuf_add_text), so a delta's name cannot forge a line.
 */
int store_reject_file(store *s, const char *coll, const char *src, const char *srcdir,
		      const char *name, const char *reason)
{
	char rdir[PATH_MAX], dst[PATH_MAX], rpath[PATH_MAX], cand[NAME_MAX + 1];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir))) < 0)
		return rc;
	sbuf line = SBUF_INIT;
	sbuf_add_text(&line, reason ? reason : "");
	sbuf_adds(&line, "\n");

	pthread_mutex_lock(&s->mu);
	if ((rc = reject_name(rdir, name, cand, sizeof(cand))) < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot find a free name in %s for delta %s: %s",
			  coll, rdir, name, strerror(-rc));
		goto out;
	}
	if ((rc = store_fmt_path(dst, sizeof(dst), "%s/%s", rdir, cand)) < 0 ||
	    (rc = store_fmt_path(rpath, sizeof(rpath), "%s/%s" REASON_SUFFIX, rdir, cand)) < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot reject delta %s: path too long", coll, name);
		goto out;
	}
	/*
	 * Reason first (durably), then the delta. A crash in between leaves
	 * the delta where it was (queued: rejected again, the same reason
	 * found again) and a reason without its delta, which recovery removes
	 * (store_recover_rejected). The other order left, after a kill, a
	 * rejected delta whose reason was lost for good.
	 */
	if ((rc = fsx_write_atomic(rpath, line.buf, line.len)) < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot write %s: %s", coll, rpath, strerror(-rc));
		goto out;
	}
	if ((rc = store_rename_noreplace(src, dst)) < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot reject delta: rename %s to %s: %s", coll,
			  src, dst, strerror(-rc));
		unlink(rpath);
		goto out;
	}
	if ((rc = store_sync_dir(s, rdir)) < 0 || (rc = store_sync_dir(s, srcdir)) < 0)
		goto out;
	store_say(s, LOG_INFO, "store: %s: rejected delta %s as %s: %.*s", coll, name, cand,
		  (int)line.len - 1, line.buf);
out:
	pthread_mutex_unlock(&s->mu);
	sbuf_free(&line);
	return rc;
}

void store_recover_rejected(store *s, const char *coll)
{
	char rdir[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
	char **names;
	size_t n;
	if (store_coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir)) < 0 ||
	    store_list_dir(rdir, &names, &n) < 0)
		return;
	bool changed = false;
	for (size_t i = 0; i < n; i++) {
		const char *name = names[i];
		size_t len = strlen(name);
		struct stat st;
		if (store_fmt_path(p, sizeof(p), "%s/%s", rdir, name) < 0)
			continue;
		if (store_has_suffix(name, REASON_TMP_SUFFIX)) {
			/* fsx_write_atomic's crumb: the reason it was writing is written again, or was not needed. */
			changed |= unlink(p) == 0;
		} else if (store_has_suffix(name, REASON_SUFFIX)) {
			/* A reason whose delta never got here (a crash between the two): the delta is still queued. */
			if (store_fmt_path(q, sizeof(q), "%s/%.*s", rdir,
					   (int)(len - strlen(REASON_SUFFIX)), name) == 0 &&
			    lstat(q, &st) < 0 && errno == ENOENT) {
				store_say(s, LOG_INFO,
					  "store: %s: removing %s: its delta was not rejected after all (a crash in between)",
					  coll, p);
				changed |= unlink(p) == 0;
			}
		} else if (name[0] != '.' &&
			   store_fmt_path(q, sizeof(q), "%s/%s" REASON_SUFFIX, rdir, name) == 0 &&
			   lstat(q, &st) < 0 && errno == ENOENT) {
			/* Left by a snapfs that moved the delta first: say so rather than leave it unexplained. */
			static const char lost[] =
				"rejected, but its reason was lost when snapfs stopped in the middle of "
				"writing it; the log of that run says why\n";
			if (fsx_write_atomic(q, lost, sizeof(lost) - 1) == 0)
				changed = true;
		}
	}
	store_names_free(names, n);
	if (changed)
		store_sync_dir(s, rdir);
}

int store_reject(store *s, const char *coll, const store_delta *d, const char *reason)
{
	char q[PATH_MAX], qdir[PATH_MAX];
	int rc;
	if ((rc = queue_file(s, coll, STORE_AREA_QUEUE, d, q, sizeof(q))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	return store_reject_file(s, coll, q, qdir, d->name, reason);
}

struct rejected_file {
	char *name;
	struct timespec mtime;
};

static int cmp_rejected(const void *a, const void *b)
{
	const struct rejected_file *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

int store_rejected_prune(store *s, const char *coll, uint64_t max, uint64_t *removed)
{
	char rdir[PATH_MAX], p[PATH_MAX];
	*removed = 0;
	int rc = store_coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = store_list(s, rdir, &names, &cnt)) < 0)
		return rc;
	struct rejected_file *f = calloc(cnt ? cnt : 1, sizeof(*f));
	size_t k = 0;
	if (!f) {
		store_names_free(names, cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cnt; i++) {
		struct stat st;
		if (names[i][0] == '.' || store_is_reason_name(names[i]) ||
		    store_fmt_path(p, sizeof(p), "%s/%s", rdir, names[i]) < 0 ||
		    lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		f[k].name = names[i];
		f[k].mtime = st.st_mtim;
		k++;
	}
	if (k > max) {
		/* Oldest first (when they were rejected: the rename keeps mtime, so by arrival). */
		qsort(f, k, sizeof(*f), cmp_rejected);
		for (size_t i = 0; i < k - max; i++) {
			if (store_fmt_path(p, sizeof(p), "%s/%s", rdir, f[i].name) < 0 ||
			    unlink(p) < 0)
				continue;
			(*removed)++;
			if (store_fmt_path(p, sizeof(p), "%s/%s" REASON_SUFFIX, rdir, f[i].name) == 0)
				unlink(p);
		}
		if (*removed) {
			store_say(s, LOG_INFO,
				  "store: %s: removed the %llu oldest deltas from rejected/ (rejected_max=%llu)",
				  coll, (unsigned long long)*removed, (unsigned long long)max);
			rc = store_sync_dir(s, rdir);
		}
	}
	free(f);
	store_names_free(names, cnt);
	return rc;
}

int store_rejected_count(store *s, const char *coll, uint64_t *n)
{
	char rdir[PATH_MAX];
	*n = 0;
	int rc = store_coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir));
	if (rc < 0)
		return rc;
	char **names;
	size_t cnt;
	if ((rc = store_list(s, rdir, &names, &cnt)) < 0)
		return rc;
	for (size_t i = 0; i < cnt; i++)
		if (names[i][0] != '.' && !store_is_reason_name(names[i]) &&
		    store_is_reg_at(rdir, names[i]))
			(*n)++;
	store_names_free(names, cnt);
	return 0;
}
