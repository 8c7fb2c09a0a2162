/* tap — TAP output for the unit tests (see tap.h). */
#include "tap.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int tap_passed;
int tap_failed;

/* Prints text as comment lines. */
static void comment(const char *text)
{
	const char *p = text;
	do {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		printf("# %.*s\n", n, p);
		p = nl ? nl + 1 : NULL;
	} while (p && *p);
}

void tap_result(bool ok, const char *file, int line, const char *what, const char *detail)
{
	int n = tap_passed + tap_failed + 1;
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (ok) {
		tap_passed++;
		printf("ok %d - %s:%d %s\n", n, base, line, what);
		return;
	}
	tap_failed++;
	printf("not ok %d - %s:%d %s\n", n, base, line, what);
	if (detail)
		comment(detail);
	fflush(stdout);
	/* Also on stderr, where a reader of a failed run looks first. */
	fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, what, detail ? ": " : "",
		detail ? detail : "");
}

void tap_case(bool ok, const char *name)
{
	if (ok)
		tap_passed++;
	else
		tap_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", tap_passed + tap_failed, name);
}

void tap_note(const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	comment(buf);
}

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
	printf("1..%d\n# %d passed, %d failed\n", tap_passed + tap_failed, tap_passed, tap_failed);
	return tap_failed || !tap_passed ? 1 : 0;
}

int tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	return 77;
}
