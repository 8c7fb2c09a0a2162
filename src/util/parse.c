/*
 * parse — strict number, size and duration parsers (see parse.h).
 *
 * strtoull alone is too lenient for options: it skips blanks, takes a
 * sign ("-3" wraps to a huge number) and stops quietly at garbage. Every
 * parser here starts from digits_u64, which takes only [0-9]+ and
 * reports overflow.
 */
#include "parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Leading decimal digits of s into *v; *end past them. -EINVAL if none, -ERANGE on overflow. */
static int digits_u64(const char *s, uint64_t *v, const char **end)
{
	uint64_t x = 0;
	const char *p = s;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	if (p == s)
		return -EINVAL;
	*v = x;
	*end = p;
	return 0;
}

int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	uint64_t v;
	const char *end;
	int rc = s ? digits_u64(s, &v, &end) : -EINVAL;
	if (rc < 0)
		return rc;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	uint64_t v;
	const char *end;
	int rc = s ? digits_u64(s, &v, &end) : -EINVAL;
	if (rc < 0)
		return rc;
	unsigned shift = 0;
	switch (*end) {
	case 'k':
	case 'K': shift = 10; break;
	case 'm':
	case 'M': shift = 20; break;
	case 'g':
	case 'G': shift = 30; break;
	case 't':
	case 'T': shift = 40; break;
	default: break;
	}
	if (shift) {
		end++;
		if (!strcmp(end, "iB"))
			end += 2;
		else if (!strcmp(end, "B"))
			end += 1;
	}
	if (*end)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1000},   {"ms", 1},      {"s", 1000},
		     {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	uint64_t v;
	const char *end;
	int rc = s ? digits_u64(s, &v, &end) : -EINVAL;
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return -ERANGE;
		*out = v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}
