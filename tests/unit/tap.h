/*
 * tap — the unit tests' assertions, reported as TAP (meson's protocol
 * 'tap'): each check prints "ok N - what" or "not ok N - file:line: what"
 * on standard output, tap_done() prints the plan "1..N" and returns the
 * exit code. Everything else a test says goes through tap_note, as TAP
 * comments ("# ..."), so nothing it prints can pass for a result.
 */
#ifndef SNAPFS_TAP_H
#define SNAPFS_TAP_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

extern int tap_passed;
extern int tap_failed;

/* Records one result; on failure the detail (may be NULL) follows as a comment. */
void tap_result(bool ok, const char *file, int line, const char *what, const char *detail);
/* A TAP comment: each line of the formatted text prefixed with "# ". */
void tap_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records one named case (a test vector, say) without a source line. */
void tap_case(bool ok, const char *name);

#define CHECK(expr) tap_result((expr) != 0, __FILE__, __LINE__, #expr, NULL)

/* Integers (any width) compared as long long; a failure shows both values. */
#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                        \
		char tap_d_[96];                                                                   \
		snprintf(tap_d_, sizeof(tap_d_), "%lld != %lld", tap_a_, tap_b_);                  \
		tap_result(tap_a_ == tap_b_, __FILE__, __LINE__, #a " == " #b, tap_d_);            \
	} while (0)

/* Strings; a failure shows both. */
#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *tap_a_ = (a), *tap_b_ = (b);                                           \
		char tap_d_[1024];                                                                 \
		snprintf(tap_d_, sizeof(tap_d_), "\"%.500s\" != \"%.500s\"",                       \
			 tap_a_ ? tap_a_ : "(null)", tap_b_ ? tap_b_ : "(null)");                  \
		tap_result(tap_a_ &&tap_b_ && !strcmp(tap_a_, tap_b_), __FILE__, __LINE__,         \
			   #a " == " #b, tap_d_);                                                  \
	} while (0)

/* Makes a fresh temporary directory (under $TMPDIR or /tmp) and returns its path. */
const char *tap_tmpdir(void);
/* Prints the plan and a summary comment; 0 if every check passed, else 1. */
int tap_done(void);
/* Nothing can be tested here: says why as a TAP skip and returns 77. */
int tap_skip_all(const char *why);

#endif
