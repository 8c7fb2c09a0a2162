/*
 * diag — formats a library's report and hands it to its owner's sink
 * (see diag.h). Formatting happens only when someone listens.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>

void diag_say(const struct diag *d, int level, const char *fmt, ...)
{
	if (!d || !d->fn)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->fn(d->ctx, level, msg);
}
