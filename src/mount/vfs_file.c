/*
 * vfs_file — file handles: generated status files, sealed snapshot files
 * (read-only, cacheable) and delta files being written into incoming/.
 */
#include "vfs.h"
#include "vfs_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fsx.h"
#include "log.h"
#include "sbuf.h"

/* With v->mu held. */
static int file_new(vfs *v, struct node *n, int fd, bool writable, vfs_file **out)
{
	vfs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->node = n;
	f->fd = fd;
	f->writable = writable;
	n->opens++;
	if (writable)
		n->writers++;
	if (writable && n->hash)
		f->hash = trailhash_ref(n->hash); /* this handle's writes are reported to it */
	LIST_PUSH(v->files, f);
	*out = f;
	return 0;
}

/*
 * Whether an open of sealed node n with these flags goes by passthrough
 * (see enum vfs_read_path); with v->mu held.
 */
static bool read_via_passthrough(const vfs *v, const struct node *n, int flags)
{
	if (!v->passthrough || v->cfg.read_path == VFS_READ_CACHE)
		return false;
	if (n->pt_opens || n->cache_opens) /* the kernel wants one way per inode while open */
		return n->pt_opens > 0;
	if (v->cfg.read_path == VFS_READ_PASSTHROUGH)
		return true;
	return !(flags & O_NOFOLLOW);
}

static const char *const read_path_names[] = {"auto", "cache", "passthrough"};

const char *vfs_read_path_name(enum vfs_read_path p)
{
	return read_path_names[p];
}

int vfs_read_path_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(read_path_names) / sizeof(read_path_names[0]); i++)
		if (!strcmp(s, read_path_names[i]))
			return (int)i;
	return -1;
}

static void count_via(struct node *n, bool passthrough, int delta)
{
	if (passthrough)
		n->pt_opens += (unsigned)delta;
	else
		n->cache_opens += (unsigned)delta;
}

int vfs_open(vfs *v, uint64_t ino, int flags, vfs_file **out, struct vfs_open_info *info)
{
	char path[PATH_MAX];
	memset(info, 0, sizeof(*info));
	info->sealed_fd = -1;
	bool wr = (flags & O_ACCMODE) != O_RDONLY;
	vfs_lock(v);
	struct node *n = vfs_node_by_ino(v, ino);
	int rc = n ? 0 : -ENOENT, fd = -1;
	if (rc == 0) {
		switch (n->kind) {
		case N_META_STATUS:
		case N_META_METRICS:
		case N_COLL_STATUS:
			if (wr || (flags & O_TRUNC)) {
				rc = -EROFS;
				break;
			}
			info->direct_io = true;
			sbuf b = SBUF_INIT;
			vfs_gen_status(v, n, &b);
			rc = file_new(v, n, -1, false, out);
			if (rc == 0) {
				(*out)->memlen = b.len;
				(*out)->mem = sbuf_detach(&b);
			} else {
				sbuf_free(&b);
			}
			break;
		case N_SNAPDB:
		case N_MANIFEST:
		case N_REJFILE:
			if (wr || (flags & O_TRUNC)) {
				rc = -EROFS;
				break;
			}
			rc = vfs_node_path(v, n, path, sizeof(path));
			if (rc == 0 && (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
				rc = -errno;
			if (rc == 0 && (rc = file_new(v, n, fd, false, out)) < 0)
				close(fd);
			info->keep_cache = n->kind != N_REJFILE;
			if (rc == 0 && n->kind != N_REJFILE) {
				info->sealed_fd = fd;
				info->passthrough = read_via_passthrough(v, n, flags);
				(*out)->passthrough = info->passthrough;
				count_via(n, info->passthrough, 1);
			}
			break;
		case N_INFILE: {
			struct vcoll *c = vfs_coll_find(v, n->coll);
			if (!n->key || !c || (wr && c->removing)) {
				rc = -ENOENT; /* queued, unlinked or its collection going */
				break;
			}
			rc = vfs_node_path(v, n, path, sizeof(path));
			if (rc == 0 && (fd = open(path, (flags & (O_ACCMODE | O_TRUNC)) |
								O_NOFOLLOW | O_CLOEXEC)) < 0)
				rc = -errno;
			if (rc == 0 && (rc = file_new(v, n, fd, wr, out)) < 0)
				close(fd);
			if (rc == 0 && (flags & O_TRUNC)) {
				n->write_error = 0; /* a fresh start: what failed before is gone */
				if (n->hash)
					trailhash_break(n->hash);
			}
			info->direct_io = true;
			break;
		}
		default: rc = -EISDIR;
		}
	}
	vfs_unlock(v);
	return rc;
}

/*
 * Starts hashing a file just created while it is written (trailhash.h),
 * outside v->mu (it starts a thread). It stays only if f is still the
 * file's one writer, which keeps every write to it reported: a handle
 * opened for writing before the hash was there would write unseen.
 */
static void hash_while_written(vfs *v, struct node *n, vfs_file *f)
{
	trailhash *t = trailhash_start(f->fd);
	if (!t)
		return; /* not empty any more, or no thread: hashed when merged */
	vfs_lock(v);
	if (n->writers == 1 && !n->hash && n->key) {
		n->hash = t;
		f->hash = trailhash_ref(t);
		t = NULL;
	}
	vfs_unlock(v);
	trailhash_put(t);
}

int vfs_create_file(vfs *v, uint64_t parent, const char *name, mode_t mode, int flags,
		    struct vfs_entry *e, vfs_file **out, struct vfs_open_info *info)
{
	char path[PATH_MAX];
	memset(e, 0, sizeof(*e));
	/* A delta being written, as vfs_open serves one (see vfs_open_info). */
	*info = (struct vfs_open_info){.direct_io = true, .sealed_fd = -1};
	vfs_lock(v);
	struct node *p = vfs_node_by_ino(v, parent), *n = NULL;
	int rc = !p ? -ENOENT : p->kind != N_INCOMING ? -EROFS : 0, fd = -1;
	if (rc == 0)
		rc = vfs_incoming_name_check(name);
	struct vcoll *c = rc == 0 ? vfs_coll_find(v, p->coll) : NULL;
	if (rc == 0 && (!c || c->removing))
		rc = -ENOENT;
	if (rc == 0)
		rc = store_path(v->st, p->coll, STORE_AREA_INCOMING, name, path, sizeof(path));
	if (rc == 0 && (fd = open(path,
				  O_RDWR | O_CREAT | (flags & O_EXCL) | (flags & O_TRUNC) |
					  O_NOFOLLOW | O_CLOEXEC,
				  (mode & 0777) | 0600)) < 0)
		rc = -errno;
	if (rc == 0 && !(n = vfs_node_get(v, N_INFILE, p->coll, 0, name)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = vfs_fill_entry(v, n, e);
	/*
	 * Made again (O_TRUNC) or opened as it is: a hash of what it held so
	 * far describes nothing now. With no writer left, a new one may start.
	 */
	if (rc == 0 && n->hash && (flags & O_TRUNC))
		trailhash_break(n->hash);
	if (rc == 0 && n->hash && n->writers == 0) {
		trailhash_put(n->hash);
		n->hash = NULL;
	}
	if (rc == 0)
		rc = file_new(v, n, fd, true, out);
	bool hash = false;
	if (rc == 0) {
		n->nlookup++;
		if (flags & O_TRUNC)
			n->write_error = 0;
		hash = n->writers == 1;
	} else if (fd >= 0)
		close(fd);
	if (rc < 0 && n)
		vfs_node_maybe_free(v, n);
	vfs_unlock(v);
	if (hash)
		hash_while_written(v, n, *out);
	return rc;
}

int vfs_read(vfs *v, vfs_file *f, size_t size, off_t off, const char **mem, size_t *len, int *fd)
{
	*mem = NULL;
	*len = 0;
	*fd = -1;
	if (f->fd >= 0) {
		*fd = f->fd;
		return 0;
	}
	if ((size_t)off < f->memlen) {
		*mem = f->mem + off;
		*len = f->memlen - (size_t)off < size ? f->memlen - (size_t)off : size;
	}
	return 0;
}

/*
 * Remembers that writing n's file failed: the file is incomplete and must
 * never be queued (vfs_queue_delta), until it is truncated and written
 * again. Called without v->mu.
 */
static void write_failed(vfs *v, struct node *n, int err)
{
	vfs_lock(v);
	if (!n->write_error)
		n->write_error = err;
	vfs_unlock(v);
}

ssize_t vfs_write(vfs *v, vfs_file *f, const char *buf, size_t size, off_t off)
{
	if (!f->writable)
		return -EBADF;
	if (off < 0 || (uint64_t)off + size > v->cfg.max_delta_size) {
		log_warn("collection %s: delta %s exceeds max_delta_size=%llu bytes; write refused",
			 f->node->coll, f->node->name ? f->node->name : "?",
			 (unsigned long long)v->cfg.max_delta_size);
		if (f->hash)
			trailhash_break(f->hash);
		write_failed(v, f->node, EFBIG);
		return -EFBIG;
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(f->fd, buf + done, size - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			if (f->hash)
				trailhash_break(f->hash);
			write_failed(v, f->node, e);
			return done ? (ssize_t)done : -e;
		}
		done += (size_t)n;
	}
	if (f->hash)
		trailhash_wrote(f->hash, (uint64_t)off, done); /* the bytes are in the file */
	/*
	 * close(2) must find the delta durable (vfs_flush fsyncs it). Start the
	 * disk writing what came so far every VFS_WRITEBACK_BYTES, so that the
	 * disk works while the writer still copies and the fsync at close only
	 * waits for the tail. Only a hint: a failure here changes nothing, the
	 * fsync still decides.
	 */
	f->unsynced += done;
	if (f->unsynced >= VFS_WRITEBACK_BYTES) {
		f->unsynced = 0;
		sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	return (ssize_t)done;
}

int vfs_flush(vfs *v, vfs_file *f)
{
	/*
	 * close(2) waits for FLUSH, not RELEASE: make the data durable here
	 * so that a close that returned 0 means the delta survives a crash
	 * (it is queued at release, or by store_recover after a restart).
	 * A failed fsync means the data may not be on disk: the file is then
	 * never queued (write_failed), and close(2) reports the error.
	 */
	if (!f->writable)
		return 0;
	int rc = fsync(f->fd) < 0 ? -errno : 0;
	char dir[PATH_MAX];
	if (rc == 0 &&
	    store_path(v->st, f->node->coll, STORE_AREA_INCOMING, NULL, dir, sizeof(dir)) == 0)
		rc = fsx_fsync_dir(dir);
	if (rc < 0)
		write_failed(v, f->node, -rc);
	return rc;
}

int vfs_fsync(vfs *v, vfs_file *f, bool datasync)
{
	if (f->fd < 0 || !f->writable)
		return 0;
	return (datasync ? fdatasync(f->fd) : fsync(f->fd)) < 0 ? -errno : 0;
}

void vfs_set_passthrough(vfs *v, bool available)
{
	vfs_lock(v);
	v->passthrough = available && v->cfg.read_path != VFS_READ_CACHE;
	vfs_unlock(v);
}

void vfs_passthrough_failed(vfs *v, vfs_file *f)
{
	vfs_lock(v);
	if (f->passthrough) {
		count_via(f->node, true, -1);
		count_via(f->node, false, 1);
		f->passthrough = false;
	}
	v->passthrough = false;
	vfs_unlock(v);
}

void vfs_release(vfs *v, vfs_file *f)
{
	struct inval iv[3];
	size_t niv;
	vfs_lock(v);
	LIST_UNLINK(v->files, f);
	struct node *n = f->node;
	if (f->writable)
		n->writers--;
	if (f->fd >= 0 && (n->kind == N_SNAPDB || n->kind == N_MANIFEST))
		count_via(n, f->passthrough, -1);
	/* The last writer is done with a file under a final name: queue it. */
	if (f->writable && n->kind == N_INFILE && n->writers == 0 && n->key && n->name[0] != '.')
		vfs_queue_delta(v, n);
	if (f->fd >= 0)
		close(f->fd);
	vfs_node_close(v, n, iv, 3, &niv);
	vfs_unlock(v);
	vfs_send_invals(v, iv, niv);
	trailhash_put(f->hash);
	free(f->mem);
	free(f);
}
