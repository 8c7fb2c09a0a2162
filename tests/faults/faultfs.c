/*
 * faultfs — an LD_PRELOAD library that makes chosen file-system calls of
 * the process fail or stall, for tests of snapfs's failure paths (EIO on
 * one queued file, an fsync that fails once, a slow fsync).
 *
 * Configured by the environment, read once:
 *   SNAPFS_FAULTS        rules separated by ';', each
 *                        OP:PATTERN:ERRNO[:COUNT[:DELAY_MS]]
 *                        OP       open, fsync, rename, mkdir or opendir (open
 *                                 covers open/openat and their 64 forms;
 *                                 fsync also fdatasync; rename also
 *                                 renameat/renameat2, matched on the source
 *                                 and the target; opendir: glibc opens the
 *                                 directory internally, past open)
 *                        PATTERN  fnmatch(3) pattern on the path ('*' also
 *                                 matches '/'); an fd's path comes from
 *                                 /proc/self/fd
 *                        ERRNO    EIO, ENOSPC, EACCES, EPERM, EROFS, or 0
 *                                 (only the delay)
 *                        COUNT    how many matching calls fail; -1 (the
 *                                 default) every one
 *                        DELAY_MS sleep this long before answering
 *   SNAPFS_FAULTS_GATE   a path: rules apply only while it exists, so a
 *                        test lifts the fault by removing it
 *   SNAPFS_FAULTS_TRACE  a path: every call of these kinds is appended
 *                        to it as "OP PATH" (one write per line)
 *   SNAPFS_FAULTS_MARK   a path prefix: a delayed call creates PREFIX.start
 *                        before its sleep and PREFIX.end after it
 * Not part of snapfs: built only for the tests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 16

enum op { OP_OPEN, OP_FSYNC, OP_RENAME, OP_MKDIR, OP_OPENDIR };
static const char *const op_names[] = {"open", "fsync", "rename", "mkdir", "opendir"};

struct rule {
	enum op op;
	char pattern[PATH_MAX];
	int err;
	atomic_int count; /* < 0: unlimited */
	unsigned delay_ms;
};

static struct rule rules[MAX_RULES];
static int nrules;
static const char *gate, *trace, *mark;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_mkdir)(const char *, mode_t);
static DIR *(*real_opendir)(const char *);

static int errno_of(const char *s)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {{"0", 0},           {"EIO", EIO},     {"ENOSPC", ENOSPC},
		     {"EACCES", EACCES}, {"EPERM", EPERM}, {"EROFS", EROFS}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return names[i].value;
	return EIO;
}

static void setup(void)
{
	real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	real_renameat = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
	real_renameat2 = (int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT,
											"renameat2");
	real_mkdir = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
	real_opendir = (DIR * (*)(const char *)) dlsym(RTLD_NEXT, "opendir");
	gate = getenv("SNAPFS_FAULTS_GATE");
	trace = getenv("SNAPFS_FAULTS_TRACE");
	mark = getenv("SNAPFS_FAULTS_MARK");
	const char *spec = getenv("SNAPFS_FAULTS");
	if (!spec)
		return;
	char *copy = strdup(spec), *save = NULL;
	for (char *r = strtok_r(copy, ";", &save); r && nrules < MAX_RULES;
	     r = strtok_r(NULL, ";", &save)) {
		char *f[5] = {0};
		int n = 0;
		for (char *p = r; p && n < 5; n++) {
			f[n] = p;
			p = strchr(p, ':');
			if (p)
				*p++ = '\0';
		}
		if (n < 3)
			continue;
		struct rule *ru = &rules[nrules];
		ru->op = OP_OPEN;
		for (int i = 0; i < 5; i++)
			if (!strcmp(f[0], op_names[i]))
				ru->op = (enum op)i;
		snprintf(ru->pattern, sizeof(ru->pattern), "%s", f[1]);
		ru->err = errno_of(f[2]);
		atomic_init(&ru->count, f[3] ? atoi(f[3]) : -1);
		ru->delay_ms = f[4] ? (unsigned)atoi(f[4]) : 0;
		nrules++;
	}
	free(copy);
}

static void touch(const char *prefix, const char *suffix)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s%s", prefix, suffix);
	int fd = real_open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

/* The errno a call of op on path must fail with, or 0; sleeps a rule's delay. */
static int fault(enum op op, const char *path)
{
	pthread_once(&once, setup);
	if (!path)
		return 0;
	if (trace) {
		char line[PATH_MAX + 16];
		int n = snprintf(line, sizeof(line), "%s %s\n", op_names[op], path);
		int fd = real_open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (write(fd, line, (size_t)n) < 0) {
				/* nothing to do: the trace is best effort */
			}
			close(fd);
		}
	}
	struct stat st;
	if (!nrules || (gate && stat(gate, &st) < 0))
		return 0;
	for (int i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];
		if (r->op != op || fnmatch(r->pattern, path, 0) != 0)
			continue;
		int c = atomic_load(&r->count);
		while (c > 0 && !atomic_compare_exchange_weak(&r->count, &c, c - 1))
			;
		if (c == 0)
			continue;
		if (r->delay_ms) {
			if (mark)
				touch(mark, ".start");
			struct timespec ts = {r->delay_ms / 1000,
					      (long)(r->delay_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
			if (mark)
				touch(mark, ".end");
		}
		return r->err;
	}
	return 0;
}

static const char *fd_path(int fd, char *buf, size_t len)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, len - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static int fail(int e)
{
	errno = e;
	return -1;
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int e = fault(OP_OPEN, path);
	return e ? fail(e) : real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int e = fault(OP_OPEN, path);
	return e ? fail(e) : real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int fsync(int fd)
{
	char p[PATH_MAX];
	pthread_once(&once, setup);
	int e = fault(OP_FSYNC, fd_path(fd, p, sizeof(p)));
	return e ? fail(e) : real_fsync(fd);
}

int fdatasync(int fd)
{
	char p[PATH_MAX];
	pthread_once(&once, setup);
	int e = fault(OP_FSYNC, fd_path(fd, p, sizeof(p)));
	return e ? fail(e) : real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
	int e = fault(OP_RENAME, from);
	if (!e)
		e = fault(OP_RENAME, to);
	return e ? fail(e) : real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	int e = fault(OP_RENAME, from);
	if (!e)
		e = fault(OP_RENAME, to);
	return e ? fail(e) : real_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
	int e = fault(OP_RENAME, from);
	if (!e)
		e = fault(OP_RENAME, to);
	return e ? fail(e) : real_renameat2(fd1, from, fd2, to, flags);
}

int mkdir(const char *path, mode_t mode)
{
	int e = fault(OP_MKDIR, path);
	return e ? fail(e) : real_mkdir(path, mode);
}

DIR *opendir(const char *path)
{
	int e = fault(OP_OPENDIR, path);
	if (e) {
		errno = e;
		return NULL;
	}
	return real_opendir(path);
}
