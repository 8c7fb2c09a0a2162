/* Unit tests for fsx: durable writes, recursive removal, hashing. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "hex.h"
#include "tap.h"

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	fputs(s, f);
	fclose(f);
}

int main(void)
{
	const char *tmp = tap_tmpdir();
	char p[PATH_MAX], q[PATH_MAX + 16];

	/* write_atomic leaves the content and no .tmp behind */
	snprintf(p, sizeof(p), "%s/a", tmp);
	CHECK(fsx_write_atomic(p, "hello", 5) == 0);
	char *s = NULL;
	size_t n = 0;
	CHECK(fsx_read_all(p, &s, &n) == 0 && n == 5 && strcmp(s, "hello") == 0);
	free(s);
	snprintf(q, sizeof(q), "%s/a.tmp", tmp);
	CHECK(access(q, F_OK) != 0);
	CHECK(fsx_read_all("/nonexistent/x", &s, &n) == -ENOENT);

	/* mkdir_p, rm_rf */
	snprintf(p, sizeof(p), "%s/d1/d2/d3", tmp);
	CHECK(fsx_mkdir_p(p, 0755) == 0);
	CHECK(fsx_mkdir_p(p, 0755) == 0);
	snprintf(q, sizeof(q), "%s/f", p);
	write_file(q, "x");
	snprintf(p, sizeof(p), "%s/d1", tmp);
	CHECK(fsx_rm_rf(p) == 0);
	CHECK(access(p, F_OK) != 0);
	CHECK(fsx_rm_rf(p) == 0);

	/* sha256 of "abc" (FIPS 180-2 test vector) */
	snprintf(p, sizeof(p), "%s/abc", tmp);
	write_file(p, "abc");
	unsigned char d[FSX_SHA256_LEN];
	char hex[FSX_SHA256_HEX];
	uint64_t size = 0;
	CHECK(fsx_sha256_file(p, d, &size) == 0 && size == 3);
	hex_encode(d, sizeof(d), hex);
	CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);

	/* rename_durable */
	snprintf(q, sizeof(q), "%s/moved", tmp);
	CHECK(fsx_rename_durable(p, q) == 0 && access(q, F_OK) == 0 && access(p, F_OK) != 0);

	fsx_rm_rf(tmp);
	return tap_done();
}
