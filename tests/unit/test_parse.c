/* Unit tests for parse: sizes, durations and bounded whole numbers. */
#include <errno.h>
#include <stdint.h>

#include "parse.h"
#include "tap.h"

int main(void)
{
	uint64_t v = 0;
	unsigned u = 0;

	CHECK(parse_size("0", &v) == 0 && v == 0);
	CHECK(parse_size("123", &v) == 0 && v == 123);
	CHECK(parse_size("64K", &v) == 0 && v == 65536);
	CHECK(parse_size("16m", &v) == 0 && v == 16ull << 20);
	CHECK(parse_size("5MiB", &v) == 0 && v == 5ull << 20);
	CHECK(parse_size("1GB", &v) == 0 && v == 1ull << 30);
	CHECK(parse_size("2T", &v) == 0 && v == 2ull << 40);
	CHECK(parse_size("18446744073709551615", &v) == 0 && v == UINT64_MAX);
	CHECK(parse_size("18446744073709551616", &v) == -ERANGE);
	CHECK(parse_size("17179869184G", &v) == -ERANGE);
	const char *bad_sizes[] = {"",    "-1", "+1",  " 1",  "1 ",  "1X",
				   "1KK", "K",  "1iB", "1Kb", "0x10"};
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
		CHECK(parse_size(bad_sizes[i], &v) == -EINVAL);
	CHECK(parse_size(NULL, &v) == -EINVAL);

	CHECK(parse_uint("0", 0, 10, &u) == 0 && u == 0);
	CHECK(parse_uint("10", 0, 10, &u) == 0 && u == 10);
	CHECK(parse_uint("11", 0, 10, &u) == -ERANGE);
	CHECK(parse_uint("0", 1, 10, &u) == -ERANGE);
	CHECK(parse_uint("4294967296", 0, 4294967295u, &u) == -ERANGE);
	CHECK(parse_uint("-3", 0, 10, &u) == -EINVAL);
	CHECK(parse_uint("1K", 0, 10000, &u) == -EINVAL);
	CHECK(parse_uint("", 0, 10, &u) == -EINVAL);

	CHECK(parse_duration_ms("30", &v) == 0 && v == 30000);
	CHECK(parse_duration_ms("500ms", &v) == 0 && v == 500);
	CHECK(parse_duration_ms("30s", &v) == 0 && v == 30000);
	CHECK(parse_duration_ms("10m", &v) == 0 && v == 600000);
	CHECK(parse_duration_ms("2h", &v) == 0 && v == 7200000);
	CHECK(parse_duration_ms("7d", &v) == 0 && v == 7ull * 86400000);
	CHECK(parse_duration_ms("0", &v) == 0 && v == 0);
	CHECK(parse_duration_ms("18446744073709551615d", &v) == -ERANGE);
	const char *bad_durations[] = {"", "s", "1x", "1 s", "-1s", "1.5s", "1S", "1sec", "1hh"};
	for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++)
		CHECK(parse_duration_ms(bad_durations[i], &v) == -EINVAL);
	return tap_done();
}
