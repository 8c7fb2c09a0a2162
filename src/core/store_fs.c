/*
 * store_fs — the store's file-system helpers: bounded path formatting,
 * fsync of files and directories, rename that never replaces, directory
 * listings, and the parsing of the names the store makes.
 */
#include "store.h"
#include "store_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "sbuf.h"

/* ---- small helpers ------------------------------------------------------- */

int store_fmt_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

bool store_has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

bool store_all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Parses n decimal digits; false on overflow. */
bool store_parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* A relative path without empty, "." or ".." components. */
bool store_leaf_valid(const char *leaf)
{
	const char *p = leaf;
	if (!*p || *p == '/')
		return false;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p = *e ? e + 1 : e;
		if (*e && !*p)
			return false; /* trailing slash */
	}
	return true;
}

/* A delta's name as it was in incoming/: one non-dot path component. */
bool store_delta_name_valid(const char *name)
{
	return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

int store_fsync_file(const store *s, const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		store_say(s, LOG_ERR, "store: cannot open %s to fsync it: %s", path, strerror(-rc));
		return rc;
	}
	int rc = 0;
	if (fsync(fd) < 0) {
		rc = -errno;
		store_say(s, LOG_ERR, "store: fsync %s: %s", path, strerror(-rc));
	}
	close(fd);
	return rc;
}

int store_sync_dir(const store *s, const char *dir)
{
	int rc = fsx_fsync_dir(dir);
	if (rc < 0)
		store_say(s, LOG_ERR, "store: fsync directory %s: %s", dir, strerror(-rc));
	return rc;
}

/*
 * rename() that fails with -EEXIST instead of replacing `to` (plain
 * rename() silently replaces an empty directory). Falls back to a check
 * on filesystems without RENAME_NOREPLACE; the store lock means no other
 * process races us there.
 */
int store_rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	struct stat st;
	if (lstat(to, &st) == 0)
		return -EEXIST;
	if (errno != ENOENT)
		return -errno;
	return rename(from, to) < 0 ? -errno : 0;
}

/* All names in dir except "." and "..", unsorted. */
int store_list_dir(const char *dir, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			rc = -errno;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
		}
		if (!(v[cnt] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		cnt++;
	}
	closedir(d);
	if (rc < 0) {
		store_names_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int store_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

bool store_is_dir_at(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	return store_fmt_path(p, sizeof(p), "%s/%s", dir, name) == 0 && lstat(p, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

bool store_is_reg_at(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;
	return store_fmt_path(p, sizeof(p), "%s/%s", dir, name) == 0 && lstat(p, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

int store_list(const store *s, const char *dir, char ***out, size_t *n)
{
	int rc = store_list_dir(dir, out, n);
	if (rc < 0)
		store_say(s, LOG_ERR, "store: cannot list %s: %s", dir, strerror(-rc));
	return rc;
}

/* Largest snapshot id among the entries of dir; *found false if none. */
int store_max_id_in(const store *s, const char *dir, uint64_t *max, bool *found)
{
	char **names;
	size_t n;
	*found = false;
	*max = 0;
	int rc = store_list(s, dir, &names, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		uint64_t id;
		if (store_id_parse(names[i], &id) && (!*found || id > *max)) {
			*max = id;
			*found = true;
		}
	}
	store_names_free(names, n);
	return 0;
}

/* Parses "SEQ-NAME" (SEQ: at least 16 digits) as made by store_queue_add. */
bool store_queue_name_parse(const char *fname, uint64_t *seq, const char **name)
{
	const char *dash = strchr(fname, '-');
	if (!dash)
		return false;
	size_t nd = (size_t)(dash - fname);
	if (nd < SEQ_DIGITS || !store_all_digits(fname, nd) || !store_parse_u64(fname, nd, seq))
		return false;
	if (!store_delta_name_valid(dash + 1))
		return false;
	*name = dash + 1;
	return true;
}
