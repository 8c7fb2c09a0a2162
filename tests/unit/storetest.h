/*
 * storetest — what the store unit tests (test_store.c, test_store_queue.c)
 * share: a fresh directory per case, files put and looked at, a store
 * opened or the test ends.
 */
#ifndef SNAPFS_STORETEST_H
#define SNAPFS_STORETEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

/* The store's reports, on stderr beside the test's own output. */
extern const struct diag test_sink;

/* A new temporary directory (malloc'd path). */
char *fresh_dir(void);
/* Writes text to path, or aborts. */
void put(const char *path, const char *text);
/* Writes text to leaf in an area of a collection. */
void putf(const store *s, const char *coll, enum store_area area, const char *leaf, const char *text);
bool exists(const char *path);
bool exists_in(const store *s, const char *coll, enum store_area area, const char *leaf);
/* path holds exactly want. */
bool file_is(const char *path, const char *want);
/* Opens the store at root, or ends the test. */
store *open_ok(const char *root);
/* How many entries dir holds (dot files included). */
size_t entries(const char *dir);
mode_t mode_of(const char *path);
/* The collection's latest link points at target. */
bool latest_is(const store *s, const char *coll, const char *target);
/* Allocates an id, stages a snapshot of two small files and publishes it. */
void make_snapshot(store *s, const char *coll, uint64_t *id);

#endif
