/*
 * s3tool — what the two files of snapfs-s3 share: s3tool.c (the command
 * line: options, credentials, the client) and s3tool_cmd.c (one function
 * per command).
 */
#ifndef SNAPFS_S3TOOL_H
#define SNAPFS_S3TOOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "s3.h"

/* Exit codes besides 0. */
#define S3TOOL_FAIL 1 /* the reason is on stderr */
#define S3TOOL_USAGE 2
#define S3TOOL_PRECONDITION 3 /* --if-none-match or --if-match did not hold */

/* The options the commands take (parsed by s3tool.c). */
struct s3tool_opts {
	bool if_none_match;
	const char *if_match;
	const char *content_type;
	const char *range;
	uint64_t part_size, threshold;
	unsigned parallel;
	bool progress;
	const atomic_bool *cancel; /* set by SIGINT/SIGTERM: the running request stops */
	struct s3_meta meta[32];   /* --meta NAME=VALUE; values point into argv */
	size_t n_meta;
};

/* Prints "snapfs-s3: " fmt and a pointer to --help on stderr; returns S3TOOL_USAGE. */
int s3tool_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Runs command name with its arguments a1 and a2 (NULL where the command
 * takes fewer). Returns the exit code.
 */
int s3tool_run(s3_client *c, const char *name, const char *a1, const char *a2,
	       const struct s3tool_opts *co);

#endif
