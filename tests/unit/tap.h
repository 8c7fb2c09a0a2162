/*
 * tap — the few assertions the unit tests need. Each CHECK that fails
 * prints file:line and the expression and counts a failure; tap_done()
 * prints "N passed, N failed" and returns the exit code.
 */
#ifndef SNAPFS_TAP_H
#define SNAPFS_TAP_H

#include <stdio.h>
#include <string.h>

extern int tap_passed;
extern int tap_failed;

#define CHECK(expr)                                                                        \
	do {                                                                               \
		if (expr) {                                                                \
			tap_passed++;                                                      \
		} else {                                                                   \
			tap_failed++;                                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
		}                                                                          \
	} while (0)

/* Integers (any width) compared as long long; a failure prints both values. */
#define CHECK_EQ(a, b)                                                                     \
	do {                                                                               \
		long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                \
		if (tap_a_ == tap_b_) {                                                    \
			tap_passed++;                                                      \
		} else {                                                                   \
			tap_failed++;                                                      \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s: %lld != %lld\n",  \
				__FILE__, __LINE__, #a, #b, tap_a_, tap_b_);               \
		}                                                                          \
	} while (0)

/* Strings; a failure prints both. */
#define CHECK_STR(a, b)                                                                    \
	do {                                                                               \
		const char *tap_a_ = (a), *tap_b_ = (b);                                   \
		if (tap_a_ && tap_b_ && !strcmp(tap_a_, tap_b_)) {                         \
			tap_passed++;                                                      \
		} else {                                                                   \
			tap_failed++;                                                      \
			fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s: \"%s\" != \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, tap_a_ ? tap_a_ : "(null)",    \
				tap_b_ ? tap_b_ : "(null)");                               \
		}                                                                          \
	} while (0)

/* Makes a fresh temporary directory (under $TMPDIR or /tmp) and returns its path. */
const char *tap_tmpdir(void);
int tap_done(void);

#endif
