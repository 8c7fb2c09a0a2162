/*
 * Unit tests for trailhash: the hash taken behind a writer equals the
 * file's SHA-256 and names the file (device, inode, size, mtime); any
 * write that does not follow on, a break, or a write after the end gives
 * it up; it refuses a file that is not empty or not readable; and an
 * owner that lets go early leaves nothing behind (ASan checks the last).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "tap.h"
#include "trailhash.h"

static const char *tmp;

static int fresh(const char *name, int flags)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	return open(path, flags | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

static bool write_at(int fd, trailhash *t, const void *buf, size_t len, off_t off)
{
	bool ok = pwrite(fd, buf, len, off) == (ssize_t)len;
	trailhash_wrote(t, (uint64_t)off, len);
	return ok;
}

/* 24 MiB in uneven pieces while the thread trails: the whole file's hash, and the file's identity. */
static void test_follows_the_writer(void)
{
	int fd = fresh("big", O_RDWR);
	trailhash *t = trailhash_start(fd);
	CHECK(t != NULL);
	if (!t)
		return;
	size_t cap = 1 << 20;
	unsigned char *buf = malloc(cap);
	uint64_t off = 0;
	for (unsigned i = 0; off < (24u << 20); i++) {
		size_t n = 4096 + (i * 7919u) % (cap - 4096);
		memset(buf, (int)i, n);
		CHECK(write_at(fd, t, buf, n, (off_t)off));
		off += n;
	}
	free(buf);
	trailhash_end(t);
	struct trailhash_result r;
	CHECK_EQ(trailhash_result(t, &r), 0);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/big", tmp);
	unsigned char want[FSX_SHA256_LEN];
	uint64_t size = 0;
	CHECK(fsx_sha256_file(path, want, &size) == 0 && memcmp(want, r.sha256, sizeof(want)) == 0);
	CHECK_EQ(r.size, off);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && trailhash_same_file(&r, &st));
	/* A different size or mtime is another file as far as the hash goes. */
	st.st_size++;
	CHECK(!trailhash_same_file(&r, &st));
	st.st_size--;
	st.st_mtim.tv_nsec ^= 1;
	CHECK(!trailhash_same_file(&r, &st));
	trailhash_put(t);
	close(fd);
}

/* Each way of giving the hash up. */
static void test_given_up(void)
{
	struct trailhash_result r;
	const char *what[] = {"gap", "overwrite", "break", "after end"};
	for (int k = 0; k < 4; k++) {
		int fd = fresh(what[k], O_RDWR);
		trailhash *t = trailhash_start(fd);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK(write_at(fd, t, "abcdef", 6, 0));
		if (k == 0)
			CHECK(write_at(fd, t, "ghi", 3, 7));
		else if (k == 1)
			CHECK(write_at(fd, t, "X", 1, 2));
		else if (k == 2)
			trailhash_break(t);
		else {
			trailhash_end(t);
			CHECK(write_at(fd, t, "ghi", 3, 6));
		}
		int rc = trailhash_result(t, &r);
		tap_note("%s: %d", what[k], rc);
		CHECK_EQ(rc, -1);
		trailhash_put(t);
		close(fd);
	}
}

static void test_refused(void)
{
	int fd = fresh("wronly", O_WRONLY);
	CHECK(fd >= 0 && trailhash_start(fd) == NULL); /* the thread could not read it */
	close(fd);
	fd = fresh("full", O_RDWR);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	CHECK(trailhash_start(fd) == NULL); /* not empty: bytes it never saw */
	close(fd);
	/* An empty file written nothing: the hash of no bytes. */
	fd = fresh("empty", O_RDWR);
	trailhash *t = trailhash_start(fd);
	struct trailhash_result r;
	CHECK(t && trailhash_result(t, &r) == 0 && r.size == 0);
	static const unsigned char empty[4] = {0xe3, 0xb0, 0xc4, 0x42};
	CHECK(t && memcmp(r.sha256, empty, sizeof(empty)) == 0);
	trailhash_put(t);
	close(fd);
}

/* Owners that let go before the end, with the thread busy or idle: it stops, and frees. */
static void test_let_go(void)
{
	for (int k = 0; k < 20; k++) {
		int fd = fresh("letgo", O_RDWR);
		trailhash *t = trailhash_start(fd);
		CHECK(t != NULL);
		if (!t)
			continue;
		static char buf[1 << 16];
		for (int i = 0; i < k; i++)
			write_at(fd, t, buf, sizeof(buf), (off_t)i * (off_t)sizeof(buf));
		trailhash *u = trailhash_ref(t);
		trailhash_put(t);
		trailhash_put(u);
		close(fd);
	}
}

int main(void)
{
	tmp = tap_tmpdir();
	test_follows_the_writer();
	test_given_up();
	test_refused();
	test_let_go();
	/* Every reference is gone: the threads stop, and none is left when OpenSSL is torn down. */
	CHECK(trailhash_drain(10000));
	int rc = tap_done();
	if (rc == 0)
		fsx_rm_rf(tmp);
	return rc;
}
