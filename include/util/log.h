/*
 * log — one line per event, to stderr (foreground) or syslog (daemon).
 *
 * Messages name what happened, on what (collection, delta, path) and why.
 * Thread-safe: each call emits one whole line.
 */
#ifndef SNAPFS_LOG_H
#define SNAPFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Before log_init, messages go to stderr at LOG_INFO and above. */
void log_init(bool use_syslog, int min_level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
