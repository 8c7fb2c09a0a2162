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

/* [0-9]+ at s: its length, 0 if none. */
static size_t ref_digits(const char *s)
{
	size_t n = 0;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

/* Value of n digits; *over if it does not fit 64 bits. */
static uint64_t ref_value(const char *s, size_t n, bool *over)
{
	unsigned __int128 v = 0;
	*over = false;
	for (size_t i = 0; i < n; i++) {
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > UINT64_MAX) {
			*over = true;
			return 0;
		}
	}
	return (uint64_t)v;
}

static int ref_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	size_t n = ref_digits(s);
	if (!n)
		return -EINVAL;
	bool over;
	uint64_t v = ref_value(s, n, &over);
	if (s[n])
		return -EINVAL;
	if (over || v < min || v > max)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}

static int ref_size(const char *s, uint64_t *out)
{
	size_t n = ref_digits(s);
	if (!n)
		return -EINVAL;
	bool over;
	uint64_t v = ref_value(s, n, &over);
	const char *t = s + n;
	unsigned shift = 0;
	const char *units = "kKmMgGtT";
	if (*t && strchr(units, *t)) {
		shift = 10u * (unsigned)((strchr(units, *t) - units) / 2 + 1);
		t++;
		if (!strcmp(t, "B") || !strcmp(t, "iB"))
			t += strlen(t);
	}
	if (*t)
		return -EINVAL;
	unsigned __int128 r = (unsigned __int128)v << shift;
	if (over || r > UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)r;
	return 0;
}

static int ref_duration(const char *s, uint64_t *out)
{
	size_t n = ref_digits(s);
	if (!n)
		return -EINVAL;
	bool over;
	uint64_t v = ref_value(s, n, &over);
	const char *t = s + n;
	uint64_t mul;
	if (!*t || !strcmp(t, "s"))
		mul = 1000;
	else if (!strcmp(t, "ms"))
		mul = 1;
	else if (!strcmp(t, "m"))
		mul = 60000;
	else if (!strcmp(t, "h"))
		mul = 3600000;
	else if (!strcmp(t, "d"))
		mul = 86400000;
	else
		return -EINVAL;
	unsigned __int128 r = (unsigned __int128)v * mul;
	if (over || r > UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)r;
	return 0;
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
	bool over;
	ref_value(s, ref_digits(s), &over);
	return rc == -ERANGE && rrc == -EINVAL && over;
}

static void check_uint(const char *s, unsigned min, unsigned max)
{
	unsigned got = 12345, want = 12345;
	int rc = parse_uint(s, min, max, &got);
	int rrc = ref_uint(s, min, max, &want);
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_uint(\"%s\", %u, %u) = %d, the grammar says %d", s, min, max, rc, rrc);
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
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_size(\"%s\") = %d, the grammar says %d", s, rc, rrc);
	if (rc == 0) {
		FUZZ_CHECK(got == want, "parse_size(\"%s\") = %" PRIu64 ", the grammar says %" PRIu64, s, got,
			   want);
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
	FUZZ_CHECK(codes_agree(rc, rrc, s), "parse_duration_ms(\"%s\") = %d, the grammar says %d", s, rc, rrc);
	if (rc == 0) {
		FUZZ_CHECK(got == want, "parse_duration_ms(\"%s\") = %" PRIu64 ", the grammar says %" PRIu64, s,
			   got, want);
		char back[40];
		uint64_t again = 0;
		snprintf(back, sizeof(back), "%" PRIu64 "ms", got);
		FUZZ_CHECK(parse_duration_ms(back, &again) == 0 && again == got,
			   "parse_duration_ms(\"%s\") does not read back %" PRIu64, back, got);
	} else {
		FUZZ_CHECK(got == 12345, "parse_duration_ms(\"%s\") failed (%d) but wrote a value", s, rc);
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
