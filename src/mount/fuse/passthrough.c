/*
 * passthrough — see include/passthrough.h for what and why.
 *
 * Protocol definitions from Linux's uapi fuse.h 7.40 (Debian 12's kernel
 * headers predate them): FUSE_PASSTHROUGH is bit 37 of the INIT flags,
 * i.e. bit 5 of flags2; fuse_init_out gained max_stack_depth after
 * flags2; fuse_open_out's padding became backing_id.
 */
#define FUSE_USE_VERSION 312
#include "passthrough.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

#define PT_FLAGS2_PASSTHROUGH (1u << (37 - 32))
#define PT_FOPEN_PASSTHROUGH (1u << 7)

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* fuse_init_out as of 7.40. */
struct pt_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2;
	uint32_t max_stack_depth;
	uint32_t unused[6];
};

/* fuse_open_out as of 7.40. */
struct pt_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

_Static_assert(sizeof(struct pt_init_out) == 64, "fuse_init_out is 64 bytes");
_Static_assert(sizeof(struct pt_open_out) == 16, "fuse_open_out is 16 bytes");

struct pt_id {
	uint64_t ino;
	int id;
	struct pt_id *next;
};

static int dev_fd = -1;
static bool offered; /* written by the thread that reads INIT, before any other request */
static bool enabled; /* written while writing the INIT reply, before any OPEN */
static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pt_id *ids; /* protected by ids_mu */

static _Thread_local bool init_next;
static _Thread_local int open_next = -1;

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t r = read(fd, buf, len);
	const struct fuse_in_header *h = buf;
	/* fuse_init_in: major, minor, max_readahead, flags, flags2, ... */
	if (r >= (ssize_t)(sizeof(*h) + 5 * sizeof(uint32_t)) && h->opcode == FUSE_INIT) {
		uint32_t flags2;
		memcpy(&flags2, (const char *)buf + sizeof(*h) + 4 * sizeof(uint32_t),
		       sizeof(flags2));
		uint32_t flags;
		memcpy(&flags, (const char *)buf + sizeof(*h) + 3 * sizeof(uint32_t), sizeof(flags));
		offered = (flags & FUSE_INIT_EXT) && (flags2 & PT_FLAGS2_PASSTHROUGH);
	}
	return r;
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	if (init_next && count == 2 && iov[1].iov_len == sizeof(struct pt_init_out)) {
		init_next = false;
		struct pt_init_out *o = iov[1].iov_base;
		if (offered && (o->flags & FUSE_INIT_EXT)) {
			o->flags2 |= PT_FLAGS2_PASSTHROUGH;
			o->max_stack_depth = 1; /* our backing files are on a plain filesystem */
			enabled = true;
			log_info("FUSE passthrough on: the kernel reads sealed files directly");
		}
	} else if (open_next >= 0 && count == 2 && iov[1].iov_len == sizeof(struct pt_open_out)) {
		struct pt_open_out *o = iov[1].iov_base;
		/* The kernel refuses keep_cache with passthrough: the page cache is the backing file's. */
		o->open_flags = (o->open_flags & ~(uint32_t)FOPEN_KEEP_CACHE) | PT_FOPEN_PASSTHROUGH;
		o->backing_id = open_next;
		open_next = -1;
	}
	return writev(fd, iov, count);
}

int pt_attach(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {.read = pt_read, .writev = pt_writev};
	dev_fd = fuse_session_fd(se);
	if (fuse_session_custom_io(se, &io, dev_fd) != 0) {
		log_warn("FUSE passthrough unavailable: libfuse refused the I/O hook; sealed files are "
			 "read through the daemon");
		return -EIO;
	}
	return 0;
}

void pt_init_reply_next(void)
{
	init_next = true;
}

bool pt_enabled(void)
{
	return enabled;
}

bool pt_offered(void)
{
	return dev_fd >= 0 && offered;
}

int pt_backing_id(uint64_t ino, int fd)
{
	if (!enabled)
		return -1;
	int id = -1;
	pthread_mutex_lock(&ids_mu);
	for (struct pt_id *p = ids; p; p = p->next)
		if (p->ino == ino)
			id = p->id;
	if (id < 0) {
		struct pt_backing_map m = {.fd = fd};
		struct pt_id *p = malloc(sizeof(*p));
		id = p ? ioctl(dev_fd, PT_IOC_BACKING_OPEN, &m) : -1;
		if (id >= 0) {
			*p = (struct pt_id){ino, id, ids};
			ids = p;
		} else {
			static bool warned;
			if (!warned)
				log_warn("FUSE passthrough: registering a backing file failed (%s); sealed "
					 "files are read through the daemon",
					 p ? strerror(errno) : "out of memory");
			warned = true;
			free(p);
			id = -1;
		}
	}
	pthread_mutex_unlock(&ids_mu);
	return id;
}

void pt_open_reply_next(int backing_id)
{
	open_next = backing_id;
}

void pt_detach(void)
{
	pthread_mutex_lock(&ids_mu);
	while (ids) {
		struct pt_id *p = ids;
		ids = p->next;
		free(p); /* the ids died with the /dev/fuse descriptor */
	}
	pthread_mutex_unlock(&ids_mu);
	dev_fd = -1;
}

void pt_forget(uint64_t ino)
{
	pthread_mutex_lock(&ids_mu);
	for (struct pt_id **p = &ids; *p; p = &(*p)->next) {
		if ((*p)->ino != ino)
			continue;
		struct pt_id *dead = *p;
		*p = dead->next;
		uint32_t id = (uint32_t)dead->id;
		if (ioctl(dev_fd, PT_IOC_BACKING_CLOSE, &id) < 0)
			log_warn("FUSE passthrough: closing backing id %u: %s", id, strerror(errno));
		free(dead);
		break;
	}
	pthread_mutex_unlock(&ids_mu);
}
