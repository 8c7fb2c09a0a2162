/*
 * main_s3 — the daemon's S3 upload as main sees it: the -o s3_* options,
 * checked (and the credentials found) before anything is mounted or
 * created, the uploader started after daemonizing and stopped after the
 * compactor.
 *
 * Two implementations, one per build: main_s3.c (meson -Ds3=enabled)
 * and main_s3_off.c (-Ds3=disabled, no libcurl or expat), where any
 * s3_* option is refused with "built without S3" and everything else
 * does nothing. main parses the options the same way in both, so that a
 * build without S3 never answers "unknown option".
 */
#ifndef SNAPFS_MAIN_S3_H
#define SNAPFS_MAIN_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "vfs.h"

/*
 * The -o s3_*= options as fuse_opt left them: strings, NULL if not given
 * (see snapfs(8)). main owns them; they must outlive the main_s3.
 */
struct main_s3_opts {
	char *bucket;
	char *prefix;
	char *endpoint;
	char *region;
	char *profile;
	char *part_size;
	char *parallel;
	char *upload;
	char *lease_ttl;
	char *host_id;
	char *keep;
	char *grace;
};

typedef struct main_s3 main_s3;

/* The S3 part of snapfs -h. */
const char *main_s3_help(void);
/*
 * Checks the options and finds the credentials (environment or AWS files
 * only). 0 with *out NULL when no S3 option was given, 0 with *out set,
 * or -1 with what and why in err (nothing to free then).
 */
int main_s3_prepare(const struct main_s3_opts *o, main_s3 **out, char *err, size_t errlen);
/*
 * After daemonizing (the uploader runs threads): starts the uploader on
 * st, adds its status to v's, and logs where snapshots go. The
 * credentials are forgotten here whatever happens. -1 with err.
 */
int main_s3_start(main_s3 *s, store *st, vfs *v, char *err, size_t errlen);
/* The compactor published snapshot id of coll. s may be NULL. */
void main_s3_published(main_s3 *s, const char *coll, uint64_t id);
/* After the compactor has stopped: stops the uploader and frees s. s may be NULL. */
void main_s3_stop(main_s3 *s);

#endif
