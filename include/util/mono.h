/*
 * mono — the monotonic clock, for deadlines and timed waits that must not
 * jump when the wall clock is set.
 */
#ifndef SNAPFS_MONO_H
#define SNAPFS_MONO_H

#include <pthread.h>

/* Seconds on CLOCK_MONOTONIC. */
double mono_now(void);
/* A condition variable whose timed waits run on CLOCK_MONOTONIC. */
void mono_cond_init(pthread_cond_t *cv);
/* Waits on cv (mu held) for at most wait_s seconds; wait_s < 0: until signalled. */
void mono_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, double wait_s);

#endif
