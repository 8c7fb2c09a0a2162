/*
 * seal_bench — times one seal_make of a database file, for bench/bench.sh.
 *
 *   seal_bench LIVE.sqlite3 STAGING_DIR [COLLECTION]
 *
 * STAGING_DIR must not exist; it is created, and left with the sealed
 * copy and MANIFEST.json in it for the caller to inspect and remove.
 * Prints one line: seal_ms=... copy_ms=... check_ms=... size=... sha256=...
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "seal.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s LIVE.sqlite3 STAGING_DIR [COLLECTION]\n", argv[0]);
		return 2;
	}
	if (mkdir(argv[2], 0755) < 0) {
		fprintf(stderr, "seal_bench: mkdir %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	struct seal_request req = {
		.collection = argc == 4 ? argv[3] : "bench",
		.id = 1,
		.live_path = argv[1],
		.staging_dir = argv[2],
		.created = time(NULL),
	};
	struct seal_result res;
	char err[1024];
	double t0 = now_ms();
	int rc = seal_make(&req, &res, err, sizeof(err));
	double t1 = now_ms();
	if (rc < 0) {
		fprintf(stderr, "seal_bench: %s (%s)\n", err, strerror(-rc));
		return 1;
	}
	printf("seal_ms=%.1f copy_ms=%.1f check_ms=%.1f size=%llu sha256=%s\n", t1 - t0,
	       res.copy_ms, res.check_ms, (unsigned long long)res.size, res.sha256);
	return 0;
}
