/* rfc3339 — UTC times as "YYYY-MM-DDTHH:MM:SSZ" (see rfc3339.h). */
#include "rfc3339.h"

#include <time.h>

const char *rfc3339_format(int64_t t, char out[RFC3339_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || !strftime(out, RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm))
		out[0] = '\0';
	return out;
}
