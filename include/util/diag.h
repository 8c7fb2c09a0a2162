/*
 * diag — how a library reports what its return values cannot carry.
 *
 * Libraries (util, s3, core but the compactor) never log: they return an
 * error that says what failed, on what and why (a negative errno and an
 * error buffer). What a return value cannot carry (a retry, a leftover
 * removed at start, the step that failed deep inside a durable rename)
 * goes to the diag sink the library's owner gave it when it made it. The
 * owner decides where that goes: the daemon's threads send it to the log
 * (log_sink in log.h), a tool to its stderr, a test nowhere.
 *
 * Levels are syslog's (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG).
 * A sink is called from whatever thread the library runs on; it must be
 * thread-safe and must not call back into the library.
 */
#ifndef SNAPFS_DIAG_H
#define SNAPFS_DIAG_H

#include <syslog.h>

typedef void diag_fn(void *ctx, int level, const char *msg);

struct diag {
	diag_fn *fn; /* NULL: reports go nowhere */
	void *ctx;
};

/* Formats and hands one report to d; does nothing when d or d->fn is NULL. */
void diag_say(const struct diag *d, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
