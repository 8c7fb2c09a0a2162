/*
 * parse — strict parsers for the numbers that options and tools take.
 *
 * Each accepts exactly the spelling documented below and nothing else:
 * no leading blanks or signs, no trailing garbage, no overflow. They
 * return 0, or -EINVAL for text that is not such a number and -ERANGE
 * for one outside the allowed range; reporting is the caller's job.
 */
#ifndef SNAPFS_PARSE_H
#define SNAPFS_PARSE_H

#include <stdint.h>

/* A decimal whole number in [min, max]: "0", "42". */
int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/*
 * A size in bytes: decimal digits with an optional K, M, G or T suffix
 * (powers of 1024, either case), optionally followed by "B" or "iB":
 * "123", "64K", "16M", "5MiB", "1G".
 */
int parse_size(const char *s, uint64_t *out);

/*
 * A duration, in milliseconds: decimal digits with an optional unit
 * "ms", "s", "m", "h" or "d"; a bare number means seconds: "500ms",
 * "30", "30s", "10m", "2h", "7d".
 */
int parse_duration_ms(const char *s, uint64_t *out);

#endif
