/*
 * sdnotify — tells systemd that the daemon is ready or stopping, as
 * sd_notify(3) does, without libsystemd.
 *
 * A unit of Type=notify starts snapfs with NOTIFY_SOCKET naming an
 * AF_UNIX datagram socket: a path ("/run/systemd/notify") or, with a
 * leading '@', an abstract name. sdnotify_send() sends one datagram of
 * newline-separated assignments ("READY=1", "STOPPING=1", "STATUS=...")
 * there. Without NOTIFY_SOCKET it sends nothing and returns 0, so the
 * daemon calls it unconditionally; it never blocks (MSG_DONTWAIT) and
 * never raises SIGPIPE.
 */
#ifndef SNAPFS_SDNOTIFY_H
#define SNAPFS_SDNOTIFY_H

#include <stddef.h>

/*
 * Sends state to $NOTIFY_SOCKET. 1 when sent, 0 when NOTIFY_SOCKET is
 * unset or empty, -errno when it is unusable or the send failed, with
 * what and why in err ("NOTIFY_SOCKET=@x: sendto: Connection refused").
 */
int sdnotify_send(const char *state, char *err, size_t errlen);

#endif
