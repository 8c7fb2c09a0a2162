/*
 * rfc3339 — the one spelling of a wall-clock time snapfs shows: UTC,
 * seconds, "2026-11-28T23:54:19Z" (status, manifests, tools, logs of
 * leases).
 */
#ifndef SNAPFS_RFC3339_H
#define SNAPFS_RFC3339_H

#include <stdint.h>

#define RFC3339_LEN 32 /* room for any 64-bit year, with the NUL */

/* Writes t (seconds since the epoch) into out and returns out. */
const char *rfc3339_format(int64_t t, char out[RFC3339_LEN]);

#endif
