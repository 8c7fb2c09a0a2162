/* storetest — what the store unit tests share (see storetest.h). */
#include "storetest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "tap.h"

/* The store's reports, on stderr beside the test's own output. */
static void to_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "store [%d]: %s\n", level, msg);
}

const struct diag test_sink = {to_stderr, NULL};

char *fresh_dir(void)
{
	char *d = strdup(tap_tmpdir()); /* tap_tmpdir reuses one buffer */
	if (!d)
		abort();
	return d;
}

void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		abort();
	}
	fputs(text, f);
	fclose(f);
}

void putf(const store *s, const char *coll, enum store_area area, const char *leaf, const char *text)
{
	char p[PATH_MAX];
	if (store_path(s, coll, area, leaf, p, sizeof(p)) != 0)
		abort();
	put(p, text);
}

bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

bool exists_in(const store *s, const char *coll, enum store_area area, const char *leaf)
{
	char p[PATH_MAX];
	return store_path(s, coll, area, leaf, p, sizeof(p)) == 0 && exists(p);
}

bool file_is(const char *path, const char *want)
{
	char *text = NULL;
	size_t len;
	bool ok = fsx_read_all(path, &text, &len) == 0 && strcmp(text, want) == 0;
	free(text);
	return ok;
}

store *open_ok(const char *root)
{
	store *s = NULL;
	char err[512];
	int rc = store_open(root, 0, &test_sink, &s, err, sizeof(err));
	CHECK(rc == 0 && s != NULL);
	if (rc != 0) {
		fprintf(stderr, "store_open(%s): %s\n", root, err);
		exit(1);
	}
	return s;
}

size_t entries(const char *dir)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	FILE *p = popen(cmd, "r");
	unsigned long n = 0;
	if (!p || fscanf(p, "%lu", &n) != 1)
		abort();
	pclose(p);
	return n;
}

mode_t mode_of(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* The STORE is its owner's (or, with STORE_OPEN_GROUP, its group's too): nobody else reads the data. */
bool latest_is(const store *s, const char *coll, const char *target)
{
	char p[PATH_MAX], t[64];
	if (store_path(s, coll, STORE_AREA_COLLECTION, "latest", p, sizeof(p)) != 0)
		return false;
	ssize_t r = readlink(p, t, sizeof(t) - 1);
	if (r < 0)
		return false;
	t[r] = '\0';
	return !strcmp(t, target);
}

void make_snapshot(store *s, const char *coll, uint64_t *id)
{
	char dir[PATH_MAX], f[PATH_MAX + 32];
	CHECK(store_id_alloc(s, coll, id) == 0);
	CHECK(store_staging_create(s, coll, *id, dir, sizeof(dir)) == 0);
	snprintf(f, sizeof(f), "%s/%s.sqlite3", dir, coll);
	put(f, "db");
	snprintf(f, sizeof(f), "%s/MANIFEST.json", dir);
	put(f, "{}");
	CHECK(store_publish(s, coll, *id) == 0);
}
