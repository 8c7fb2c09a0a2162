/*
 * tap — the few assertions the unit tests need. Each CHECK that fails
 * prints file:line and the expression and counts a failure; tap_done()
 * prints "N passed, N failed" and returns the exit code.
 */
#ifndef SNAPFS_TAP_H
#define SNAPFS_TAP_H

#include <stdio.h>

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

/* Makes a fresh temporary directory (under $TMPDIR or /tmp) and returns its path. */
const char *tap_tmpdir(void);
int tap_done(void);

#endif
