/*
 * store_i.h — what the files of the store module share (not an interface;
 * store.h is):
 *
 *   store.c          open, lock, marker, names, paths, collections
 *   store_fs.c       file-system helpers and name parsing
 *   store_queue.c    the queue and rejected/
 *   store_snap.c     snapshot ids, staging, publishing, removal
 *   store_recover.c  crash recovery of a collection
 *
 * Every helper here returns 0 or a negative errno and logs what failed
 * (the store is the one core module that logs: its failures are on
 * paths its callers never see).
 */
#ifndef SNAPFS_STORE_I_H
#define SNAPFS_STORE_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "diag.h"
#include "store.h"

/* What the store reports besides its return values goes to its owner's sink (diag.h). */
#define store_say(s, level, ...) diag_say(&(s)->diag, level, __VA_ARGS__)

#define MARKER_NAME "SNAPFS-STORE"
#define MARKER_TMP MARKER_NAME ".tmp" /* what fsx_write_atomic leaves on a crash */
#define LOCK_NAME ".lock"
#define COLLECTIONS "collections"
#define NEXT_ID "next-id"
#define LATEST "latest"
#define LATEST_TMP "latest.tmp"
#define REASON_SUFFIX ".reason"
#define REASON_TMP_SUFFIX ".reason.tmp"
#define SEQ_DIGITS 16
#define ID_DIGITS 8

struct store {
	char *root;  /* absolute, so paths stay valid after a daemon's chdir("/") */
	int lock_fd; /* STORE/.lock, flock()ed LOCK_EX while the store is open */

	pthread_mutex_t seq_mu;
	uint64_t next_seq; /* next queue sequence number; protected by seq_mu */
	/* Deltas from incoming/ go to outbox/ (a cluster member); set before anything is queued. */
	bool outbox_intake;

	char instance[STORE_INSTANCE_LEN + 1]; /* from the marker; fixed once open */
	/* Modes of what the store makes (STORE_OPEN_GROUP adds group read); fixed once open. */
	mode_t dir_mode;    /* 0700 or 0750 */
	mode_t sealed_mode; /* published snapshot files: 0400 or 0440 */

	struct diag diag; /* the owner's sink, from store_open; fixed once open */

	pthread_mutex_t mu;   /* next-id files, rejected/ names, latest */
	unsigned long tmp_nr; /* suffix for .creating-/.removing- names; protected by mu */
};

/* The sub-directories of a collection, in the order they are created. */
extern const char *const store_coll_subdirs[6];
/* Each area's directory or file name inside a collection (NULL: the collection itself). */
extern const char *const store_area_names[];

int store_fmt_path(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool store_has_suffix(const char *s, const char *suffix);
bool store_all_digits(const char *s, size_t n);
bool store_parse_u64(const char *s, size_t n, uint64_t *out);
bool store_leaf_valid(const char *leaf);
int store_fsync_file(const store *s, const char *path);
int store_sync_dir(const store *s, const char *dir);
int store_rename_noreplace(const char *from, const char *to);
int store_list_dir(const char *dir, char ***out, size_t *n);
/* As store_list_dir, saying "cannot list DIR: why" through s when it fails. */
int store_list(const store *s, const char *dir, char ***out, size_t *n);
int store_cmp_str(const void *a, const void *b);
int store_cmp_u64(const void *a, const void *b);
bool store_is_dir_at(const char *dir, const char *name);
bool store_is_reg_at(const char *dir, const char *name);
int store_max_id_in(const store *s, const char *dir, uint64_t *max, bool *found);
bool store_queue_name_parse(const char *fname, uint64_t *seq, const char **name);
/* A name a delta may be queued under (one non-dot component, <= STORE_DELTA_NAME_MAX): 0, -EINVAL or -ENAMETOOLONG, said. */
int store_queue_name_ok(const store *s, const char *coll, const char *name);
/*
 * Renames from into area (queue/ or outbox/) as SEQ-name under the next
 * arrival number, both under seq_mu: a delta visible there means every
 * smaller number is there already (or never will be). *seq (may be NULL).
 */
int store_seq_rename(store *s, const char *coll, enum store_area area, const char *from,
		     const char *name, uint64_t *seq);
/* Where deltas made complete in incoming/ go: queue/, or outbox/ in a cluster. */
static inline enum store_area store_intake(const store *s)
{
	return s->outbox_intake ? STORE_AREA_OUTBOX : STORE_AREA_QUEUE;
}
int store_coll_path(const store *s, const char *coll, enum store_area area, const char *leaf,
		    char *buf, size_t len);
int store_reject_file(store *s, const char *coll, const char *src, const char *srcdir,
		      const char *name, const char *reason);
bool store_latest_target(const char *latest, uint64_t *id);
int store_latest_set(store *s, const char *coll, uint64_t id);
int store_next_id_read(const store *s, const char *path, uint64_t *v);
int store_next_id_write(const store *s, const char *path, uint64_t v);
int store_id_floor(store *s, const char *coll, uint64_t *floor, char *nid, size_t nidlen);
bool store_is_reason_name(const char *name);
/* store_queue.c: after a crash, every delta in rejected/ has its reason and no reason is orphaned. */
void store_recover_rejected(store *s, const char *coll);
/* store.c */
int store_seq_raise(store *s, const char *coll);

#endif
