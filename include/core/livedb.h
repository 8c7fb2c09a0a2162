/*
 * livedb — a collection's live database and its ledger.
 *
 * Ownership: a livedb connection belongs to the compactor thread that
 * opened it; it is never shared. The live file is never exposed through
 * the mount: only sealed copies are (see seal.h).
 *
 * The ledger is the table _snapfs_ledger (seq INTEGER PRIMARY KEY,
 * sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL, applied_at INTEGER NOT
 * NULL). A delta's ledger row is written in the same transaction as its
 * rows, so a delta is applied exactly once even when it is queued twice
 * or the process dies between commit and removal from the queue.
 */
#ifndef SNAPFS_LIVEDB_H
#define SNAPFS_LIVEDB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

typedef struct livedb livedb;

enum livedb_outcome {
	LIVEDB_APPLIED = 0,
	LIVEDB_DUPLICATE = 1, /* its sha256 is in the ledger: nothing done */
	LIVEDB_REJECTED = 2,  /* the delta is bad: live untouched, reason says why */
	LIVEDB_FAILED =
		3, /* failed for a reason of its own (unreadable, a merge statement): try later */
};

/* A ledger row. */
typedef struct livedb_entry {
	int64_t seq;
	char sha256[65];
	char *name;
	int64_t applied_at; /* unix seconds */
} livedb_entry;

/*
 * Opens (creating) the live database in WAL mode with the ledger table.
 * cancel (may be NULL): once it reads true, whatever runs on the
 * connection stops and fails with -ECANCELED (its transaction rolled
 * back), so that a stop never waits for a long merge. diag (may be NULL)
 * receives what return values cannot carry (a ROLLBACK that failed after
 * an error, every step of a close that failed).
 */
int livedb_open(const char *path, const atomic_bool *cancel, const struct diag *diag, livedb **out,
		char *err, size_t len);

/*
 * Applies one delta atomically: in one transaction, checks the ledger,
 * checks the delta (delta_check), merges it (delta_apply) and writes its
 * ledger row. Returns an enum livedb_outcome, or a negative errno when
 * something other than the delta failed (disk full, I/O on live), or
 * -ECANCELED on a stop: then live is untouched and the delta should stay
 * queued. reason/err in msg. *seq receives the delta's ledger seq: the
 * new row's (APPLIED) or the row that already holds it (DUPLICATE).
 */
int livedb_apply(livedb *db, const char *delta_path, const char *delta_name, const char *sha256_hex,
		 int64_t *seq, char *msg, size_t len);
/* What livedb_apply_file learnt of the file besides the outcome. */
struct livedb_file {
	char sha256[65]; /* its SHA-256, 64 lower-case hex digits, when hash_rc is 0 */
	uint64_t size;   /* bytes hashed */
	int hash_rc;     /* 0, the negative errno of reading it, or -ECANCELED (a stop) */
	bool hash_known; /* the hash came from the caller's livedb_known_hash, not from reading */
	/* Milliseconds: hashing (beside the merge), checking it (both halves), merging and committing. */
	double hash_ms, check_ms, apply_ms;
};

/*
 * A delta's hash taken elsewhere (while it was written into incoming/):
 * get runs on the thread beside the merge and may wait; it returns true
 * with the 64 lower-case hex digits of this very file's SHA-256, or false,
 * and the file is then hashed as usual.
 */
struct livedb_known_hash {
	bool (*get)(void *arg, char hex[65]);
	void *arg;
};

/*
 * livedb_apply with what was learnt on the way: the merge runs on this
 * thread while a second one finishes the delta's check (integrity, row
 * scans: see delta_check_begin) and then takes the delta's SHA-256 from
 * known (NULL: none) or, failing that, reads the file for it; a failing
 * check interrupts the merge. The ledger is consulted once both are done,
 * and a delta already there is rolled back as a duplicate (its merge was
 * wasted work, which only a delta sent twice costs). A file that cannot
 * be read makes the outcome LIVEDB_FAILED (file->hash_rc says why).
 */
int livedb_apply_file(livedb *db, const char *delta_path, const char *delta_name,
		      const struct livedb_known_hash *known, struct livedb_file *file, int64_t *seq,
		      char *msg, size_t len);

/*
 * Switches the connection from WAL to the rollback journal until it is
 * closed: WAL would write a large delta's pages twice. livedb_apply and
 * livedb_apply_file do it themselves before a delta of LIVEDB_BULK_BYTES
 * or more. Only between transactions. 0, a negative errno (err says why)
 * or -ECANCELED.
 */
int livedb_bulk(livedb *db, char *err, size_t len);
#define LIVEDB_BULK_BYTES (64u << 20)

/* Ledger rows with seq > after, ascending. Free with livedb_entries_free. */
int livedb_ledger_since(livedb *db, int64_t after, livedb_entry **out, size_t *n);
void livedb_entries_free(livedb_entry *e, size_t n);
/* Largest ledger seq (0 if empty). */
int livedb_ledger_max(livedb *db, int64_t *out);
/* The same for a database file (a sealed snapshot), opened read-only; err says why not. */
int livedb_ledger_max_file(const char *path, int64_t *out, char *err, size_t len);

/*
 * Checkpoints the WAL with TRUNCATE, closes the connection and checks
 * that the close succeeded and that no -wal content is left. The handle
 * is freed whatever the result. Only after 0 may the file be copied.
 */
int livedb_close(livedb *db, char *err, size_t len);
/*
 * Closes without the checkpoint, for a stop that must not wait on one:
 * committed frames stay in the -wal file, where the next livedb_open
 * finds them. The file must not be copied before a livedb_close.
 */
void livedb_abandon(livedb *db);

#endif
