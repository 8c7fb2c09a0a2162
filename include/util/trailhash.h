/*
 * trailhash — the SHA-256 of a file computed while it is being written,
 * on a thread of its own that trails the writer.
 *
 * Why: the compactor needs every delta's SHA-256 (the ledger's key), and
 * hashing a 600 MB delta when it is merged took 0.45-0.6 s of the second
 * core, beside the merge, which then ran 30-40 % slower than alone. The
 * mount sees every byte of a delta as it arrives; hashing it then, behind
 * the writer, costs the writer nothing it waits for, and the merge finds
 * the hash done.
 *
 * The contract (what makes a result trustworthy):
 *  - The owner reports every write to the file (trailhash_wrote), in the
 *    order it made them, after the bytes are in the file. The hash only
 *    follows a file written from offset 0 onwards, each write starting
 *    where the last ended. Any other write, or trailhash_break (a
 *    truncate, a failed write), gives the hash up for good: the result is
 *    then "unknown" and the caller hashes the file itself.
 *  - trailhash_end says no write will come any more. The thread then
 *    hashes the rest, takes the file's identity (device, inode, size,
 *    mtime) and closes its descriptor.
 *  - trailhash_result waits for that and gives the hash with the identity;
 *    the caller must compare the identity with the file it is about to
 *    trust the hash for (a file changed behind the owner's back fails it).
 * Knows files, not collections. Thread-safe; reference-counted.
 */
#ifndef SNAPFS_TRAILHASH_H
#define SNAPFS_TRAILHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fsx.h"

typedef struct trailhash trailhash;

struct trailhash_result {
	unsigned char sha256[FSX_SHA256_LEN];
	uint64_t size; /* bytes hashed: the whole file */
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
};

/*
 * Starts hashing the file open as fd, which must be empty and readable:
 * the thread reads it through a descriptor of its own (dup). NULL if it
 * cannot (no memory, no thread, fd not empty or not readable): the file
 * is then hashed later, by whoever needs the hash.
 */
trailhash *trailhash_start(int fd);
/* [off, off + len) was written to the file, which now holds those bytes. */
void trailhash_wrote(trailhash *t, uint64_t off, size_t len);
/* The file changed other than by appending: the hash is given up. */
void trailhash_break(trailhash *t);
/* No more writes: the thread finishes and lets go of the file. */
void trailhash_end(trailhash *t);
/*
 * Waits for the thread (call trailhash_end first), then 0 and *out, or
 * -1 if the hash was given up or reading the file failed.
 */
int trailhash_result(trailhash *t, struct trailhash_result *out);
/* Whether r describes the file st (same device, inode, size and mtime). */
bool trailhash_same_file(const struct trailhash_result *r, const struct stat *st);
trailhash *trailhash_ref(trailhash *t);
/* Drops a reference; the last one ends a thread still running and frees. NULL is fine. */
void trailhash_put(trailhash *t);
/*
 * Waits (at most timeout_ms) until no trailhash thread runs any more;
 * whether none does. Call before the process exits, once every reference
 * is dropped (the threads then stop at once): exit(3) tears OpenSSL down,
 * and a thread still hashing would crash under it.
 */
bool trailhash_drain(unsigned timeout_ms);

#endif
