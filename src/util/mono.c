/*
 * mono — the monotonic clock and timed waits on it (mono.h).
 */
#include "mono.h"

#include <time.h>

double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void mono_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

void mono_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, double wait_s)
{
	if (wait_s < 0) {
		pthread_cond_wait(cv, mu);
		return;
	}
	double t = mono_now() + wait_s;
	struct timespec ts;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	pthread_cond_timedwait(cv, mu, &ts);
}
