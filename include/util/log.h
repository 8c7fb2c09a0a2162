/*
 * log — one line per event, to stderr (foreground) or syslog (daemon).
 *
 * Messages name what happened, on what (collection, delta, path) and why.
 * Only the owners of threads (main, the compactor, the uploader, the
 * sweeper, the vfs on the FUSE threads) log; libraries report through the
 * diag sink their owner gives them (diag.h), which is log_sink here.
 * Thread-safe: each call emits one whole line.
 */
#ifndef SNAPFS_LOG_H
#define SNAPFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

#include "diag.h"

/* Before log_init, messages go to stderr at LOG_INFO and above. */
void log_init(bool use_syslog, int min_level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A diag sink that writes to this log: what the daemon's threads give their libraries. */
extern const struct diag log_sink;

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
