/*
 * replay — runs a fuzz target over saved inputs, without libFuzzer.
 *
 *   replay_TARGET DIR|FILE... [--open DIR|FILE...]
 *
 * Feeds every regular file of each directory (not recursing, dot-files
 * skipped, in name order so that a failure is reproducible) and every
 * file named through LLVMFuzzerTestOneInput, one at a time. This is how
 * every build (gcc, and the ASan/UBSan one) replays the seed corpus and
 * the regression inputs: a crash or a broken invariant aborts, and the
 * meson test fails naming the input.
 *
 * Inputs after --open are known, still open findings (tests/fuzz/open/):
 * each runs in a child process with SNAPFS_FUZZ_STRICT=1 and must still
 * fail there, by a FUZZ_OPEN check (exit status FUZZ_OPEN_STATUS), not
 * by anything else. One that passes means its bug was fixed: the replay
 * fails and says to move the input to regressions/ (and to turn its
 * FUZZ_OPEN check into a FUZZ_CHECK).
 *
 * A missing directory is an error, so a typo cannot turn the test into
 * a silent pass; so is replaying no input at all.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads path whole into a malloc'd buffer. */
static int replay_read(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			uint8_t *b = realloc(buf, cap);
			FUZZ_SETUP(b, "out of memory reading %s", path);
			buf = b;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	int e = ferror(f) ? EIO : 0;
	fclose(f);
	if (e) {
		free(buf);
		return -e;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Runs the target on the file at path; aborts with the target if it fails. */
static int replay_run(const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = replay_read(path, &buf, &len);
	if (rc) {
		fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(-rc));
		return rc;
	}
	/* An exact-size copy, so that ASan sees any read past the end. */
	uint8_t *exact = malloc(len ? len : 1);
	FUZZ_SETUP(exact, "out of memory");
	if (len)
		memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

static int replay_file(const char *path)
{
	/* Named before it runs: if it aborts, the log says which input it was. */
	fprintf(stderr, "replay: %s\n", path);
	return replay_run(path);
}

/* A known open finding: must still fail, strictly, in a child. */
static int replay_open_file(const char *path)
{
	fflush(NULL);
	pid_t pid = fork();
	FUZZ_SETUP(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		setenv("SNAPFS_FUZZ_STRICT", "1", 1);
		setenv("SNAPFS_FUZZ_OPEN_EXIT", "1", 1);
		replay_run(path);
		fflush(NULL);
		_exit(0);
	}
	int st;
	FUZZ_SETUP(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		fprintf(stderr,
			"replay: %s no longer fails: its finding is fixed. Move it to regressions/ and make its "
			"FUZZ_OPEN check a FUZZ_CHECK.\n",
			path);
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != FUZZ_OPEN_STATUS) {
		fprintf(stderr,
			"replay: %s fails, but not by its open finding (status 0x%x): a new bug\n",
			path, st);
		return -1;
	}
	fprintf(stderr, "replay: %s still fails (open finding), as expected\n", path);
	return 0;
}

static int replay_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays the files of dir in name order; *count grows by how many. */
static int replay_dir(const char *dir, bool open, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*nn));
			FUZZ_SETUP(nn, "out of memory");
			names = nn;
		}
		names[n] = strdup(de->d_name);
		FUZZ_SETUP(names[n], "out of memory");
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), replay_name_cmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		size_t plen = strlen(dir) + strlen(names[i]) + 2;
		char *path = malloc(plen);
		FUZZ_SETUP(path, "out of memory");
		snprintf(path, plen, "%s/%s", dir, names[i]);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if ((open ? replay_open_file(path) : replay_file(path)) == 0)
				(*count)++;
			else
				rc = -1;
		}
		free(path);
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE... [--open DIR|FILE...]\n", argv[0]);
		return 2;
	}
	size_t count = 0, open_count = 0;
	int status = 0;
	bool open = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--open")) {
			open = true;
			continue;
		}
		size_t *c = open ? &open_count : &count;
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			status = 1;
		} else if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i], open, c) < 0)
				status = 1;
		} else if ((open ? replay_open_file(argv[i]) : replay_file(argv[i])) == 0) {
			(*c)++;
		} else {
			status = 1;
		}
	}
	if (!count) {
		fprintf(stderr, "replay: no input replayed\n");
		status = 1;
	}
	printf("%s: %zu inputs replayed, %zu open findings still failing%s\n", argv[0], count,
	       open_count, status ? "; FAILED" : "");
	return status;
}
