#include "tap.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int tap_passed;
int tap_failed;

const char *tap_tmpdir(void)
{
	static char path[PATH_MAX];
	const char *base = getenv("TMPDIR");
	snprintf(path, sizeof(path), "%s/snapfs-unit-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		exit(2);
	}
	return path;
}

int tap_done(void)
{
	printf("%d passed, %d failed\n", tap_passed, tap_failed);
	return tap_failed ? 1 : (tap_passed ? 0 : 77);
}
