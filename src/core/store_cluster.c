/*
 * store_cluster — what a STORE does for a cluster member (store.h, "a
 * cluster member's store"): deltas acknowledged into outbox/, deltas
 * from the cluster imported into queue/, ids reserved for snapshots
 * other hosts made, and the live database replaced by a snapshot.
 *
 * Durability is the queue's: a file is fsynced before its name says
 * where it belongs, and the directory after.
 */
#include "store.h"
#include "store_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"

#define COPY_CHUNK (1u << 20)

void store_set_outbox_intake(store *s, bool on)
{
	s->outbox_intake = on;
}

/* "@HOST@INST-SEQ-SHA256": host 1-64 of [A-Za-z0-9._-], 16 hex, 16 digits, 64 hex. */
bool store_remote_name(const char *name)
{
	if (name[0] != '@')
		return false;
	const char *h = name + 1, *at = strchr(h, '@');
	if (!at || at == h || at - h > 64 ||
	    strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
		    (size_t)(at - h))
		return false;
	const char *l = at + 1;
	return strlen(l) == 16 + 1 + 16 + 1 + 64 && strspn(l, "0123456789abcdef") == 16 &&
	       l[16] == '-' && strspn(l + 17, "0123456789") == 16 && l[33] == '-' &&
	       strspn(l + 34, "0123456789abcdef") == 64;
}

int store_queue_import(store *s, const char *coll, const char *file, const char *name, uint64_t *seq)
{
	char qdir[PATH_MAX];
	int rc;
	if ((rc = store_queue_name_ok(s, coll, name)) < 0)
		return rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0)
		return rc;
	if ((rc = store_seq_rename(s, coll, STORE_AREA_QUEUE, file, name, seq)) < 0)
		return rc;
	return store_sync_dir(s, qdir);
}

int store_reject_import(store *s, const char *coll, const char *file, const char *name,
			const char *reason)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(file, '/');
	if (!slash || !store_delta_name_valid(name) || (size_t)(slash - file) >= sizeof(dir))
		return -EINVAL;
	memcpy(dir, file, (size_t)(slash - file));
	dir[slash - file] = '\0';
	return store_reject_file(s, coll, file, dir, name, reason);
}

int store_rejected_remove(store *s, const char *coll, const char *leaf)
{
	char p[PATH_MAX], r[PATH_MAX + 16], rdir[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_REJECTED, leaf, p, sizeof(p))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_REJECTED, NULL, rdir, sizeof(rdir))) < 0)
		return rc;
	snprintf(r, sizeof(r), "%s.reason", p);
	if (unlink(p) < 0 && errno != ENOENT) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll, p, strerror(-rc));
		return rc;
	}
	unlink(r);
	return store_sync_dir(s, rdir);
}

int store_queue_to_outbox(store *s, const char *coll)
{
	char qdir[PATH_MAX], odir[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_QUEUE, NULL, qdir, sizeof(qdir))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_OUTBOX, NULL, odir, sizeof(odir))) < 0)
		return rc;
	if ((rc = fsx_mkdir_p(odir, s->dir_mode)) < 0) {
		store_say(s, LOG_ERR, "store: %s: cannot create %s: %s", coll, odir, strerror(-rc));
		return rc;
	}
	store_delta *d;
	size_t n;
	if ((rc = store_queue_list(s, coll, &d, &n)) < 0)
		return rc;
	size_t moved = 0, dropped = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *leaf = strrchr(d[i].path, '/') + 1;
		char to[PATH_MAX];
		if (store_remote_name(d[i].name)) {
			/* Imported from the cluster, which still has it. */
			if (unlink(d[i].path) < 0 && errno != ENOENT)
				rc = -errno;
			dropped++;
		} else if ((rc = store_fmt_path(to, sizeof(to), "%s/%s", odir, leaf)) == 0 &&
			   (rc = store_rename_noreplace(d[i].path, to)) == 0) {
			moved++;
		}
		if (rc < 0)
			store_say(s, LOG_ERR, "store: %s: cannot move %s to %s: %s", coll,
				  d[i].path, odir, strerror(-rc));
	}
	store_deltas_free(d, n);
	/* outbox/ first: a crash between the two leaves a delta in both, never in neither. */
	int rc2 = store_sync_dir(s, odir);
	if (rc2 == 0)
		rc2 = store_sync_dir(s, qdir);
	if (moved || dropped)
		store_say(s, LOG_INFO,
			  "store: %s: %zu queued delta(s) moved to outbox/ to be shipped, %zu imported "
			  "one(s) dropped (the cluster keeps them)",
			  coll, moved, dropped);
	return rc < 0 ? rc : rc2;
}

int store_id_reserve(store *s, const char *coll, uint64_t id)
{
	char nid[PATH_MAX];
	uint64_t v;
	if (id == UINT64_MAX)
		return -EOVERFLOW;
	pthread_mutex_lock(&s->mu);
	int rc = store_id_floor(s, coll, &v, nid, sizeof(nid));
	if (rc == 0 && v <= id)
		rc = store_next_id_write(s, nid, id + 1);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0)
		store_say(s, LOG_ERR, "store: %s: cannot reserve snapshot id %llu: %s", coll,
			  (unsigned long long)id, strerror(-rc));
	return rc;
}

/* Copies src into the new file dst (0600), fsynced. copy_file_range where it works, else read/write. */
static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		int e = -errno;
		close(in);
		return e;
	}
	int rc = 0;
	bool plain = false;
	char *buf = NULL;
	off_t off = 0;
	for (;;) {
		ssize_t k;
		if (!plain) {
			k = copy_file_range(in, NULL, out, NULL, COPY_CHUNK, 0);
			if (k < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				plain = true;
				if (!(buf = malloc(COPY_CHUNK))) {
					rc = -ENOMEM;
					break;
				}
				continue;
			}
		} else {
			k = pread(in, buf, COPY_CHUNK, off);
			if (k > 0 && (rc = fsx_pwrite_full(out, buf, (size_t)k, off)) < 0)
				break;
		}
		if (k < 0) {
			rc = -errno;
			break;
		}
		if (k == 0)
			break;
		off += k;
	}
	free(buf);
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlink(dst);
	return rc;
}

int store_live_replace(store *s, const char *coll, const char *db)
{
	char live[PATH_MAX], side[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX];
	int rc;
	if ((rc = store_coll_path(s, coll, STORE_AREA_LIVE_DB, NULL, live, sizeof(live))) < 0 ||
	    (rc = store_coll_path(s, coll, STORE_AREA_COLLECTION, NULL, dir, sizeof(dir))) < 0 ||
	    (rc = store_fmt_path(tmp, sizeof(tmp), "%s.replace", live)) < 0)
		return rc;
	/* The WAL first: a -wal left beside the new file would be replayed into it. */
	const char *suffix[] = {"-wal", "-shm", ""};
	for (size_t i = 0; i < 3; i++) {
		if ((rc = store_fmt_path(side, sizeof(side), "%s%s", live, suffix[i])) < 0)
			return rc;
		if (unlink(side) < 0 && errno != ENOENT) {
			rc = -errno;
			store_say(s, LOG_ERR, "store: %s: cannot remove %s: %s", coll, side,
				  strerror(-rc));
			return rc;
		}
	}
	unlink(tmp);
	if (db) {
		if ((rc = copy_file(db, tmp)) < 0) {
			store_say(s, LOG_ERR, "store: %s: cannot copy %s to %s: %s", coll, db, tmp,
				  strerror(-rc));
			return rc;
		}
		if (rename(tmp, live) < 0) {
			rc = -errno;
			unlink(tmp);
			store_say(s, LOG_ERR, "store: %s: cannot rename %s to %s: %s", coll, tmp,
				  live, strerror(-rc));
			return rc;
		}
	}
	return store_sync_dir(s, dir);
}
