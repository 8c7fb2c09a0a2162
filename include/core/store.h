/*
 * store — the on-disk layout of a snapfs STORE directory.
 *
 *   STORE/
 *     SNAPFS-STORE              marker: "snapfs-store\nformat 1\ninstance HEX\n"
 *     .lock                     flock()ed by the one process that mounts it
 *     collections/NAME/
 *       live.db                 the compactor's live database (WAL mode)
 *       next-id                 next snapshot id, decimal; replaced durably
 *       incoming/               files being written through the mount
 *       queue/SEQ-DELTANAME     queued deltas (SEQ: 16 zero-padded digits)
 *       staging/                half-made snapshots; emptied at start
 *       snapshots/ID/           ID: 8 zero-padded digits (wider past 99999999)
 *         NAME.sqlite3, MANIFEST.json
 *       rejected/DELTANAME      plus DELTANAME.reason (one line)
 *       outbox/SEQ-DELTANAME    a cluster member's acknowledged deltas, not
 *                               yet shipped to S3 (store_set_outbox_intake)
 *       latest -> snapshots/ID  symlink, replaced atomically
 *
 * The store knows nothing of FUSE or SQLite. It guarantees:
 *  - a queued delta is on disk (file and both directories fsynced) before
 *    store_queue_add() returns (store_queue_move + store_queue_sync for
 *    callers whose writer fsynced the file already);
 *  - snapshot ids handed out by store_id_alloc() never repeat, even
 *    across crashes (next-id is advanced durably before the id is used,
 *    and is never below the largest id found on disk);
 *  - a snapshot directory appears under snapshots/ only whole (it is
 *    renamed from staging/ after its content was fsynced).
 *
 * Thread safety: all functions may be called from any thread; the store
 * serialises its own state (queue sequence, id counters) internally.
 * Functions return 0 or a negative errno; what failed, on what path and
 * why, and what recovery cleaned up, go to the diag sink given to
 * store_open (diag.h; NULL: nowhere). The store never logs.
 */
#ifndef SNAPFS_STORE_H
#define SNAPFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

#define STORE_FORMAT 1
#define STORE_NAME_MAX 64
#define STORE_INSTANCE_LEN 16 /* hex digits of a store's instance id */
/* Longest delta name: queue/ names are SEQ (16 digits) "-" NAME, within NAME_MAX (255). */
#define STORE_DELTA_NAME_MAX 238

/* store_open flags */
#define STORE_OPEN_GROUP 1u /* the STORE's group may read it: dirs 0750, sealed files 0440 */

typedef struct store store;

enum store_area {
	STORE_AREA_COLLECTION, /* collections/NAME */
	STORE_AREA_LIVE_DB,    /* collections/NAME/live.db */
	STORE_AREA_INCOMING,   /* collections/NAME/incoming */
	STORE_AREA_QUEUE,      /* collections/NAME/queue */
	STORE_AREA_STAGING,    /* collections/NAME/staging */
	STORE_AREA_SNAPSHOTS,  /* collections/NAME/snapshots */
	STORE_AREA_REJECTED,   /* collections/NAME/rejected */
	STORE_AREA_OUTBOX,     /* collections/NAME/outbox (a cluster member's deltas to ship) */
};

/* A queued delta. */
typedef struct store_delta {
	uint64_t seq; /* arrival order */
	char *name;   /* the name it was given in incoming/ */
	char *path;   /* absolute path of the queued file */
} store_delta;

/*
 * Opens (creating if missing) the store at root and takes its lock.
 * Refuses, with a message in err: a non-empty directory without the
 * marker (it belongs to something else), a newer format, a store locked
 * by another process (already mounted).
 * Modes: the store root (and what the store makes) is 0700, sealed
 * snapshot files 0400, .lock 0600; STORE_OPEN_GROUP lets the group read
 * (0750, 0440). The root's mode is set at every open.
 */
int store_open(const char *root, unsigned flags, const struct diag *diag, store **out, char *err,
	       size_t errlen);
void store_close(store *s);
/* Writes the caller's pid into the lock file again (after a daemon's fork). */
void store_note_pid(store *s);
const char *store_root(const store *s);
/*
 * The store's instance id: STORE_INSTANCE_LEN random hex digits made
 * when the store was created (or first opened by a snapfs that knows
 * them), never changed. A STORE deleted and made again gets a new one,
 * so names built from it (S3 keys) never collide with an old store's.
 */
const char *store_instance(const store *s);

/* Collection names: 1-64 characters of [A-Za-z0-9_-], first one alphanumeric. */
bool store_name_valid(const char *name);
/* A usable delta file name: one non-dot path component of at most NAME_MAX bytes. */
bool store_delta_name_valid(const char *name);
/* Sorted, malloc'd array of malloc'd names; free with store_names_free. */
int store_collections(store *s, char ***names, size_t *n);
void store_names_free(char **names, size_t n);
/* -EEXIST if it exists, -EINVAL if the name is not valid. Durable. */
int store_collection_create(store *s, const char *name);
/* -ENOTEMPTY if it holds snapshots or queued deltas, -ENOENT if missing. */
int store_collection_remove(store *s, const char *name);

/*
 * Writes the path of area (and, if leaf is not NULL, of leaf inside it)
 * into buf. -ENAMETOOLONG if it does not fit.
 */
int store_path(const store *s, const char *coll, enum store_area area, const char *leaf, char *buf,
	       size_t len);

/*
 * Crash recovery for one collection, run before the compactor starts on
 * it: empties staging/, removes a stale latest.tmp, raises next-id above
 * every id on disk, gives directories and sealed files the store's modes
 * and, with incoming (only before anything can write into incoming/),
 * moves every non-dot file left in incoming/ into the queue (a file
 * whose writer died midway is queued too; validation rejects it).
 * Dot-files in incoming/ stay. rejected/ is repaired: a reason whose
 * delta never arrived (a crash between the two) and fsx crumbs are
 * removed, a delta without a reason gets one. A file that cannot be queued goes to
 * rejected/ with the reason (counted in *quarantined): a negative errno
 * means the collection itself could not be recovered, never one file.
 */
int store_recover(store *s, const char *coll, bool incoming, uint64_t *quarantined);

/*
 * Queues incoming/NAME: renames it to queue/SEQ-NAME under the next
 * arrival number (*seq). Only a rename: the caller made the content
 * durable before (the writer's close fsynced it) and calls
 * store_queue_sync after, outside its own locks. -ENAMETOOLONG for a name
 * over STORE_DELTA_NAME_MAX bytes.
 */
int store_queue_move(store *s, const char *coll, const char *name, uint64_t *seq);
/* fsyncs queue/ and incoming/ of coll: what store_queue_move did is durable. */
int store_queue_sync(store *s, const char *coll);
/* fsync of the file, store_queue_move, store_queue_sync: all durable on return. */
int store_queue_add(store *s, const char *coll, const char *name, uint64_t *seq);
/* The queue in arrival order. Free with store_deltas_free. */
int store_queue_list(store *s, const char *coll, store_delta **out, size_t *n);
void store_deltas_free(store_delta *d, size_t n);
/* Removes a delta from the queue (after it was applied). Durable. */
int store_queue_remove(store *s, const char *coll, const store_delta *d);
/* As store_queue_list and store_queue_remove, for STORE_AREA_QUEUE or STORE_AREA_OUTBOX. */
int store_area_list(store *s, const char *coll, enum store_area area, store_delta **out, size_t *n);
int store_area_remove(store *s, const char *coll, enum store_area area, const store_delta *d);

/* ---- a cluster member's store (store_cluster.c) ---- */

/*
 * From now on, deltas made complete in incoming/ (store_queue_move,
 * store_queue_add, and store_recover's leftovers) go to outbox/, to be
 * shipped, instead of queue/, which then holds only what the compactor
 * is given (store_queue_import). Call before anything is queued.
 */
void store_set_outbox_intake(store *s, bool on);
/*
 * Renames file (in the same file system, its content already fsynced)
 * into queue/ as SEQ-name under the next arrival number, and syncs
 * queue/. For deltas that did not come through incoming/.
 */
int store_queue_import(store *s, const char *coll, const char *file, const char *name, uint64_t *seq);
/*
 * Entering cluster mode: moves what queue/ holds to outbox/, except
 * deltas imported from the cluster (names store_remote_name_valid
 * accepts), which are deleted: the cluster still has them. Durable.
 */
int store_queue_to_outbox(store *s, const char *coll);
/* Whether name is a delta imported from the cluster: "@HOST@LEAF" (see layout.h). */
bool store_remote_name(const char *name);
/*
 * Puts file (fsynced, in the same file system) into rejected/ as name
 * (or name.1, ...) with reason: a delta this host shipped that the
 * cluster's compactor refused. Durable.
 */
int store_reject_import(store *s, const char *coll, const char *file, const char *name,
			const char *reason);
/* Removes rejected/leaf and its reason (relayed to the cluster). Durable. */
int store_rejected_remove(store *s, const char *coll, const char *leaf);
/* next-id of coll becomes at least id + 1, durably: id is never handed out. */
int store_id_reserve(store *s, const char *coll, uint64_t id);
/*
 * Replaces coll's live database by a copy of db (NULL: none at all):
 * live.db and its -wal and -shm are removed, the copy is made beside it,
 * fsynced and renamed into place, and the directory fsynced. Only the
 * thread that owns the live database may call it, with it closed.
 */
int store_live_replace(store *s, const char *coll, const char *db);
/*
 * Moves a queued delta to rejected/NAME (NAME.1, NAME.2... if taken) and
 * writes NAME.reason holding reason and a newline. Durable.
 */
int store_reject(store *s, const char *coll, const store_delta *d, const char *reason);
/* Number of delta files (not .reason files) in rejected/. */
int store_rejected_count(store *s, const char *coll, uint64_t *n);
/* Removes the oldest delta files of rejected/ (with their reasons) beyond max; *removed says how many. */
int store_rejected_prune(store *s, const char *coll, uint64_t max, uint64_t *removed);

/* Hands out the next snapshot id, advancing next-id durably first. */
int store_id_alloc(store *s, const char *coll, uint64_t *id);
/* Formats an id as its directory name ("00000042"). buf: at least 21 bytes. */
void store_id_format(uint64_t id, char *buf, size_t len);
/* Parses a directory name made by store_id_format; false if it is not one. */
bool store_id_parse(const char *name, uint64_t *id);
/* Creates an empty staging/ID directory and writes its path into buf. */
int store_staging_create(store *s, const char *coll, uint64_t id, char *buf, size_t len);
/*
 * Publishes staging/ID: fsyncs the files in it and the directory,
 * renames it to snapshots/ID, fsyncs snapshots/, then points latest at
 * it (symlink latest.tmp, rename over latest, fsync the collection dir).
 */
int store_publish(store *s, const char *coll, uint64_t id);
/* Published snapshot ids, ascending. Free with free(). */
int store_snapshots(store *s, const char *coll, uint64_t **ids, size_t *n);
/* Removes snapshots/ID (retention). Durable. */
int store_snapshot_remove(store *s, const char *coll, uint64_t id);

#endif
