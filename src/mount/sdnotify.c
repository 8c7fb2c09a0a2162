/*
 * sdnotify — see include/mount/sdnotify.h. The protocol is systemd's
 * (sd_notify(3), "NOTIFY_SOCKET"): one SOCK_DGRAM message to an AF_UNIX
 * address, abstract when the variable starts with '@'. Credentials are
 * passed by the kernel (SO_PASSCRED on systemd's side), so the message
 * is only the text.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify_send(const char *state, char *err, size_t errlen)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	if (!name || !name[0])
		return 0;
	len = strlen(name);
	if ((name[0] != '/' && name[0] != '@') || len < 2 || len > sizeof(sa.sun_path)) {
		snprintf(err, errlen,
			 "NOTIFY_SOCKET=%s: not an AF_UNIX socket path or abstract @name (at most %zu "
			 "bytes)",
			 name, sizeof(sa.sun_path));
		return -EAFNOSUPPORT;
	}
	if (name[0] == '/' && len == sizeof(sa.sun_path)) {
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: path too long for a socket address", name);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] =
			'\0'; /* abstract: the name is the bytes after the NUL, no terminator */
	socklen_t salen =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/'));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: socket: %s", name, strerror(e));
		return -e;
	}
	size_t n = strlen(state);
	ssize_t sent =
		sendto(fd, state, n, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
	int e = errno;
	close(fd);
	if (sent < 0) {
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: sendto: %s", name, strerror(e));
		return -e;
	}
	if ((size_t)sent != n) {
		snprintf(err, errlen, "NOTIFY_SOCKET=%s: sendto: sent %zd of %zu bytes", name, sent,
			 n);
		return -EMSGSIZE;
	}
	return 1;
}
