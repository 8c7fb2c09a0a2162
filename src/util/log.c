/*
 * log — one line per event, to stderr or syslog.
 *
 * A single vfprintf-style call per message keeps lines whole when several
 * threads log at once (stdio locks the stream for the call; syslog sends
 * one datagram per call).
 */
#include "log.h"

#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static bool use_syslog;
static int min_level = LOG_INFO;

void log_init(bool syslog_on, int level)
{
	use_syslog = syslog_on;
	min_level = level;
	if (use_syslog)
		openlog("snapfs", LOG_PID, LOG_DAEMON);
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE:
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

void log_msg(int level, const char *fmt, ...)
{
	if (level > min_level)
		return;
	char raw[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* Names in messages come from users: one line, no raw bytes (sbuf_add_text). */
	sbuf esc = SBUF_INIT;
	sbuf_add_text(&esc, raw);
	const char *msg = sbuf_str(&esc);
	if (use_syslog) {
		syslog(level, "%s", msg);
		sbuf_free(&esc);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ snapfs %s: %s\n", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		level_name(level), msg);
	sbuf_free(&esc);
}

static void log_diag(void *ctx, int level, const char *msg)
{
	(void)ctx;
	log_msg(level, "%s", msg);
}

const struct diag log_sink = {log_diag, NULL};
