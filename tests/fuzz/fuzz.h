/*
 * fuzz — what every fuzz target in tests/fuzz/ shares.
 *
 * Each fuzz_*.c defines LLVMFuzzerTestOneInput. Linked with libFuzzer
 * (meson -Dfuzz=true, clang) it is a fuzzer; linked with replay.c it is
 * the replay test that every build runs over the seed corpus and the
 * regression inputs. Targets assert what their module promises with
 * FUZZ_CHECK: a wrong answer aborts like a crash, so libFuzzer saves the
 * input and the replay test fails on it.
 *
 * Only static inline helpers here, so that a target that does not use
 * one does not warn.
 */
#ifndef SNAPFS_FUZZ_H
#define SNAPFS_FUZZ_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The exit status of a replayed open finding that failed as known (replay --open). */
#define FUZZ_OPEN_STATUS 86

static inline void fuzz_fail(bool open, const char *file, int line, const char *expr,
			     const char *fmt, ...) __attribute__((format(printf, 5, 6), noreturn));

static inline void fuzz_fail(bool open, const char *file, int line, const char *expr,
			     const char *fmt, ...)
{
	fprintf(stderr, "%s:%d: %s: %s\n  ", file, line, open ? "open finding" : "invariant failed",
		expr);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	if (open && getenv("SNAPFS_FUZZ_OPEN_EXIT"))
		_exit(FUZZ_OPEN_STATUS);
	abort();
}

/* Aborts with file:line, the condition and a message when cond is false. */
#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(false, __FILE__, __LINE__, #cond, __VA_ARGS__);                  \
	} while (0)

/* Whether SNAPFS_FUZZ_STRICT=1: the checks of known, still open findings abort too. */
static inline bool fuzz_strict(void)
{
	const char *s = getenv("SNAPFS_FUZZ_STRICT"); /* not cached: replay sets it in a child */
	return s && !strcmp(s, "1");
}

/* Whether SNAPFS_FUZZ_VERBOSE=1: targets say what they did with each input (to see what a seed reaches). */
static inline bool fuzz_verbose(void)
{
	static int verbose = -1;
	if (verbose < 0) {
		const char *s = getenv("SNAPFS_FUZZ_VERBOSE");
		verbose = s && !strcmp(s, "1");
	}
	return verbose;
}

/*
 * A check that a known, still open finding breaks (see tests/fuzz/open/
 * and RELIABILITY.md). It aborts only under SNAPFS_FUZZ_STRICT=1, so
 * that fuzzing goes on looking for new findings meanwhile; the replay
 * test runs tests/fuzz/open/ strictly and expects every input there to
 * still fail. Once the bug is fixed, the check becomes a FUZZ_CHECK and
 * its inputs move to regressions/.
 */
#define FUZZ_OPEN(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond) && fuzz_strict())                                                      \
			fuzz_fail(true, __FILE__, __LINE__, #cond, __VA_ARGS__);                   \
	} while (0)

/* The setup of a target failed (not the code under test): say so and stop. */
#define FUZZ_SETUP(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz setup failed: " __VA_ARGS__);                        \
			fputc('\n', stderr);                                                       \
			exit(2);                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of the input (inputs may hold NUL bytes: C APIs see the part before). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	FUZZ_SETUP(s, "out of memory");
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
static inline size_t fuzz_utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned lo = 0x80, hi = 0xbf;
	size_t n;
	if (p >= end)
		return 0;
	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf) {
		n = 2;
	} else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		lo = *p == 0xe0 ? 0xa0 : 0x80;
		hi = *p == 0xed ? 0x9f : 0xbf;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		lo = *p == 0xf0 ? 0x90 : 0x80;
		hi = *p == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static inline bool fuzz_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		size_t n = fuzz_utf8_len(p, end);
		if (!n)
			return false;
		p += n;
	}
	return true;
}

/*
 * s with every byte that does not begin a well-formed UTF-8 sequence
 * replaced by U+FFFD (EF BF BD), malloc'd: what snapfs's JSON writer
 * (jsonx.h) promises to make of a name that is not UTF-8.
 */
static inline char *fuzz_utf8_fix(const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	char *out = malloc(3 * (size_t)(end - p) + 1);
	FUZZ_SETUP(out, "out of memory");
	size_t n = 0;
	while (p < end) {
		size_t k = fuzz_utf8_len(p, end);
		if (k) {
			memcpy(out + n, p, k);
			n += k;
			p += k;
		} else {
			memcpy(out + n, "\xef\xbf\xbd", 3);
			n += 3;
			p++;
		}
	}
	out[n] = '\0';
	return out;
}

/* One line of text a person reads (a reason, an error): no control character at all. */
static inline bool fuzz_one_line(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static inline bool fuzz_is_lower_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* A small deterministic mix of the input, to derive numbers from it. */
static inline uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < size; i++) {
		h ^= data[i];
		h *= 1099511628211ull;
	}
	return h;
}

#endif
