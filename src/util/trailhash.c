/*
 * trailhash — SHA-256 of a file behind its writer (see trailhash.h).
 *
 * One detached thread per file. It holds a reference of its own, so the
 * state outlives whichever of thread and owners lets go last. Everything
 * shared is under mu; the thread reads and hashes without it, so a
 * writer reporting a write never waits for the hash. The hash state
 * (EVP context, `hashed`) and fd belong to the thread alone.
 */
#include "trailhash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRAILHASH_BUF (256u << 10) /* read and hashed while it is in L2 */

/*
 * Threads still running, for trailhash_drain: a thread counts itself out
 * only after its last OpenSSL call, so that exit(3), which tears OpenSSL
 * down (OPENSSL_cleanup), never runs under one. Lock order: a trailhash's
 * mu is never held while live_mu is taken, nor the other way round.
 */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t live_cv = PTHREAD_COND_INITIALIZER;
static unsigned live_threads;

static void live_add(int n)
{
	pthread_mutex_lock(&live_mu);
	live_threads += (unsigned)n;
	if (live_threads == 0)
		pthread_cond_broadcast(&live_cv);
	pthread_mutex_unlock(&live_mu);
}

struct trailhash {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled on a write, break, end, stop, and when done */
	unsigned refs;     /* owners' and the running thread's; mu */
	uint64_t written;  /* the file's bytes [0, written) are there to hash; mu */
	bool broken;       /* given up for good; mu */
	bool ended;        /* no more writes; mu */
	bool stop;         /* only the thread still holds it: nobody wants the hash; mu */
	bool done;         /* the thread finished; res and rc are final; mu */
	int rc;
	struct trailhash_result res;
	int fd; /* the thread's */
};

static void trailhash_free(trailhash *t)
{
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Hashes [from, to) of the file; 0 or -1. */
static int hash_range(trailhash *t, EVP_MD_CTX *ctx, unsigned char *buf, uint64_t from, uint64_t to)
{
	while (from < to) {
		uint64_t want = to - from < TRAILHASH_BUF ? to - from : TRAILHASH_BUF;
		ssize_t n = pread(t->fd, buf, (size_t)want, (off_t)from);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			return -1;
		from += (uint64_t)n;
	}
	return 0;
}

static void *trailhash_run(void *arg)
{
	trailhash *t = arg;
	unsigned char *buf = malloc(TRAILHASH_BUF);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = buf && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
	uint64_t hashed = 0;
	while (rc == 0) {
		pthread_mutex_lock(&t->mu);
		while (!t->broken && !t->stop && !t->ended && t->written == hashed)
			pthread_cond_wait(&t->cv, &t->mu);
		uint64_t avail = t->written;
		bool give_up = t->broken || t->stop, last = t->ended && avail == hashed;
		pthread_mutex_unlock(&t->mu);
		if (give_up)
			rc = -1;
		else if (last)
			break;
		else if (hash_range(t, ctx, buf, hashed, avail) == 0)
			hashed = avail;
		else
			rc = -1;
	}
	struct trailhash_result res = {.size = hashed};
	struct stat st;
	if (rc == 0 && EVP_DigestFinal_ex(ctx, res.sha256, NULL) != 1)
		rc = -1;
	if (rc == 0 && fstat(t->fd, &st) < 0)
		rc = -1;
	if (rc == 0) {
		res.dev = st.st_dev;
		res.ino = st.st_ino;
		res.mtime = st.st_mtim;
	}
	close(t->fd);
	EVP_MD_CTX_free(ctx);
	free(buf);

	pthread_mutex_lock(&t->mu);
	/* A break that came while the last range was hashed still counts. */
	t->rc = rc == 0 && !t->broken ? 0 : -1;
	if (t->rc == 0)
		t->res = res;
	t->done = true;
	pthread_cond_broadcast(&t->cv);
	bool last_ref = --t->refs == 0;
	pthread_mutex_unlock(&t->mu);
	if (last_ref)
		trailhash_free(t);
	live_add(-1); /* t is not ours to touch any more, and OpenSSL is done with */
	return NULL;
}

trailhash *trailhash_start(int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size != 0)
		return NULL;
	trailhash *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (t->fd < 0) {
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->refs = 2; /* the caller's and the thread's */
	pthread_attr_t attr;
	pthread_t tid;
	live_add(1);
	int rc = pthread_attr_init(&attr);
	if (rc == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&tid, &attr, trailhash_run, t);
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		live_add(-1);
		close(t->fd);
		trailhash_free(t);
		return NULL;
	}
	return t;
}

bool trailhash_drain(unsigned timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(timeout_ms / 1000);
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&live_mu);
	int rc = 0;
	while (live_threads > 0 && rc == 0)
		rc = pthread_cond_timedwait(&live_cv, &live_mu, &until);
	bool drained = live_threads == 0;
	pthread_mutex_unlock(&live_mu);
	return drained;
}

void trailhash_wrote(trailhash *t, uint64_t off, size_t len)
{
	pthread_mutex_lock(&t->mu);
	if (t->ended || off != t->written)
		t->broken = true; /* a write after the end, a gap or an overwrite */
	else
		t->written += len;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

void trailhash_break(trailhash *t)
{
	pthread_mutex_lock(&t->mu);
	t->broken = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

void trailhash_end(trailhash *t)
{
	pthread_mutex_lock(&t->mu);
	t->ended = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

int trailhash_result(trailhash *t, struct trailhash_result *out)
{
	pthread_mutex_lock(&t->mu);
	t->ended = true;
	pthread_cond_broadcast(&t->cv);
	while (!t->done)
		pthread_cond_wait(&t->cv, &t->mu);
	int rc = t->rc;
	if (rc == 0)
		*out = t->res;
	pthread_mutex_unlock(&t->mu);
	return rc;
}

bool trailhash_same_file(const struct trailhash_result *r, const struct stat *st)
{
	return r->dev == st->st_dev && r->ino == st->st_ino && st->st_size >= 0 &&
	       r->size == (uint64_t)st->st_size && r->mtime.tv_sec == st->st_mtim.tv_sec &&
	       r->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

trailhash *trailhash_ref(trailhash *t)
{
	pthread_mutex_lock(&t->mu);
	t->refs++;
	pthread_mutex_unlock(&t->mu);
	return t;
}

void trailhash_put(trailhash *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	bool last_ref = --t->refs == 0;
	if (t->refs == 1 && !t->done) {
		t->stop = true; /* only the thread is left: it need not finish */
		pthread_cond_signal(&t->cv);
	}
	pthread_mutex_unlock(&t->mu);
	if (last_ref)
		trailhash_free(t);
}
