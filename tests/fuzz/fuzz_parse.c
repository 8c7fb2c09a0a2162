/*
 * fuzz_parse — parse_uint, parse_size and parse_duration_ms (parse.h):
 * the numbers that mount options (-o keep=, max_delta_size=,
 * s3_part_size=, ...) and the tools take from the command line and from
 * /etc/fstab.
 *
 * The input is the option value (up to its first NUL). Each parser is
 * checked against a reference written here from the grammar in parse.h
 * alone (a different method: the whole spelling is matched first, then
 * converted with 128-bit arithmetic), so a wrong acceptance, a wrong
 * refusal, a wrong value or a wrong error code all abort. Every value
 * accepted is also printed back in its shortest exact spelling and must
 * parse to itself.
 */
#include "fuzz.h"
#include "parse.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>

#define REF_TOO_BIG ((unsigned __int128)UINT64_MAX + 1) /* past every range here */

/* The leading [0-9]+ of s as a number (REF_TOO_BIG past 64 bits); *tail after them. False if none. */
static bool ref_lead(const char *s, unsigned __int128 *v, const char **tail)
{
	const char *p = s;
	*v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		*v = *v * 10 + (unsigned)(*p - '0');
		if (*v > UINT64_MAX)
			*v = REF_TOO_BIG;
	}
	*tail = p;
	return p > s;
}

/* v * mul into *out, or -ERANGE past 64 bits. */
static int ref_scale(unsigned __int128 v, uint64_t mul, uint64_t *out)
{
	unsigned __int128 r = v * mul;
	if (r > UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)r;
	return 0;
}

static int ref_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned __int128 v;
	const char *t;
	if (!ref_lead(s, &v, &t) || *t)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}

static int ref_size(const char *s, uint64_t *out)
{
	unsigned __int128 v;
	const char *t;
	if (!ref_lead(s, &v, &t))
		return -EINVAL;
	static const char units[] = "kKmMgGtT";
	const char *u = *t ? strchr(units, *t) : NULL;
	uint64_t mul = 1;
	if (u) {
		mul = 1ull << (10 * ((u - units) / 2 + 1));
		t++;
		if (!strcmp(t, "B") || !strcmp(t, "iB"))
			t += strlen(t);
	}
	return *t ? -EINVAL : ref_scale(v, mul, out);
}

static int ref_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1000},   {"s", 1000},    {"ms", 1},
		     {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	unsigned __int128 v;
	const char *t;
	if (!ref_lead(s, &v, &t))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(t, units[i].unit))
			return ref_scale(v, units[i].ms, out);
	return -EINVAL;
}

/*
 * Whether the parser's answer rc agrees with the reference's rrc. One
 * tie is allowed: parse.c answers -ERANGE as soon as the leading digits
 * overflow, before it looks at what follows them, so a spelling that is
 * both too big and malformed ("99999999999999999999x") may be either.
 */
static bool codes_agree(int rc, int rrc, const char *s)
{
	if (rc == rrc)
		return true;
	unsigned __int128 v;
	const char *t;
	return rc == -ERANGE && rrc == -EINVAL && ref_lead(s, &v, &t) && v == REF_TOO_BIG;
}

static void check_uint(const char *s, unsigned min, unsigned max)
{
	unsigned got = 12345, want = 12345;
	int rc = parse_uint(s, min, max, &got);
	int rrc = ref_uint(s, min, max, &want);
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_uint(\"%s\", %u, %u) = %d, the grammar says %d",
		   s, min, max, rc, rrc);
	if (rc == 0) {
		FUZZ_CHECK(got == want, "parse_uint(\"%s\") = %u, the grammar says %u", s, got, want);
		char back[32];
		snprintf(back, sizeof(back), "%u", got);
		unsigned again = 0;
		FUZZ_CHECK(parse_uint(back, min, max, &again) == 0 && again == got,
			   "parse_uint(\"%s\") does not read back %u", back, got);
	} else {
		FUZZ_CHECK(got == 12345, "parse_uint(\"%s\") failed (%d) but wrote %u", s, rc, got);
	}
}

/* The shortest exact spelling of a size: the largest unit that divides it. */
static void size_spell(uint64_t v, char *buf, size_t len, const char *suffix)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (u < 3 && v && (v & 1023) == 0) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c%s", v, units[u], suffix);
}

static void check_size(const char *s)
{
	uint64_t got = 12345, want = 12345;
	int rc = parse_size(s, &got);
	int rrc = ref_size(s, &want);
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_size(\"%s\") = %d, the grammar says %d", s, rc,
		   rrc);
	if (rc == 0) {
		FUZZ_CHECK(got == want, "parse_size(\"%s\") = %" PRIu64 ", the grammar says %" PRIu64,
			   s, got, want);
		static const char *const suffixes[] = {"", "B", "iB"};
		for (size_t i = 0; i < 3; i++) {
			char back[40];
			uint64_t again = 0;
			size_spell(got, back, sizeof(back), suffixes[i]);
			FUZZ_CHECK(parse_size(back, &again) == 0 && again == got,
				   "parse_size(\"%s\") does not read back %" PRIu64, back, got);
		}
	} else {
		FUZZ_CHECK(got == 12345, "parse_size(\"%s\") failed (%d) but wrote a value", s, rc);
	}
}

static void check_duration(const char *s)
{
	uint64_t got = 12345, want = 12345;
	int rc = parse_duration_ms(s, &got);
	int rrc = ref_duration(s, &want);
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_duration_ms(\"%s\") = %d, the grammar says %d",
		   s, rc, rrc);
	if (rc == 0) {
		FUZZ_CHECK(got == want,
			   "parse_duration_ms(\"%s\") = %" PRIu64 ", the grammar says %" PRIu64, s,
			   got, want);
		char back[40];
		uint64_t again = 0;
		snprintf(back, sizeof(back), "%" PRIu64 "ms", got);
		FUZZ_CHECK(parse_duration_ms(back, &again) == 0 && again == got,
			   "parse_duration_ms(\"%s\") does not read back %" PRIu64, back, got);
	} else {
		FUZZ_CHECK(got == 12345, "parse_duration_ms(\"%s\") failed (%d) but wrote a value",
			   s, rc);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	check_uint(s, 0, UINT_MAX);
	check_uint(s, 1, 1000);
	check_uint(s, 5u << 20, 3u << 30);
	check_size(s);
	check_duration(s);
	free(s);
	return 0;
}
