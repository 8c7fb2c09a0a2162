/*
 * ctl — what the files of snapfs-ctl share: snapfsctl.c (command line,
 * verify, restore, pointer) and ctl_bucket.c (ls, sweep, repair: the
 * commands that look at or change a collection's part of the bucket).
 *
 * Every command prints one JSON line on success; errors go to stderr
 * saying what failed, on which key, and why.
 */
#ifndef SNAPFS_CTL_H
#define SNAPFS_CTL_H

#include <jansson.h>
#include <stdbool.h>

#define CTL_OK 0
#define CTL_FAIL 1
#define CTL_USAGE 2
#define CTL_BAD 3

/* Prints doc as one JSON line on stdout and frees it. */
void ctl_print(json_t *doc);

#if SNAPFS_WITH_S3 /* the rest is the bucket commands' (not built with -Ds3=disabled) */
#include "layout.h"
#include "s3.h"
#include "sweep.h"

struct ctl_opts {
	const char *bucket, *prefix, *endpoint, *region, *profile;
	char nprefix[LAYOUT_PREFIX_MAX]; /* prefix, normalized */
	unsigned keep;                   /* --keep N|all (0: all) */
	unsigned grace_s;                /* --grace */
	unsigned upload_age_s;           /* --upload-age */
	bool dry_run;
};

/* Collection names (malloc'd) under prefix. */
struct ctl_names {
	const char *prefix;
	char **v;
	size_t n, cap;
};
/* The collections given (checked), or all of those under the prefix. A CTL_ code. */
int ctl_colls(s3_client *c, const struct ctl_opts *o, char **given, int ngiven,
	      struct ctl_names *out);
void ctl_names_free(struct ctl_names *cn);
/* An RFC 3339 time. */
json_t *ctl_time_json(int64_t t);

/* "what: the formatted S3 error" on stderr. */
void ctl_s3_error(const char *what, const struct s3_error *e);
/*
 * Finds the snapshot directory SNAPSHOT names in coll: a directory name
 * (ID-HOST-INST, or the older ID-HOST), or an id ("42", "00000042"), or
 * ID-HOST, as long as exactly one snapshot in the bucket has both its
 * objects and matches. CTL_OK with dir filled, else CTL_FAIL or
 * CTL_USAGE with the reason (and the candidates) on stderr.
 */
int ctl_find_snapshot(s3_client *c, const struct ctl_opts *o, const char *coll, const char *snap,
		      char dir[LAYOUT_DIR_MAX]);

int ctl_ls(s3_client *c, const struct ctl_opts *o, char **colls, int n);
int ctl_sweep(s3_client *c, const struct ctl_opts *o, char **colls, int n);
int ctl_repair(s3_client *c, const struct ctl_opts *o, const char *coll, const char *snap);
/* ctl_cluster.c: the cluster's hosts and, per collection, lease, pointer and deltas per host. */
int ctl_cluster(s3_client *c, const struct ctl_opts *o, char **colls, int n);
#endif

#endif
