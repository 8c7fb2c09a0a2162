/*
 * floorfs — the smallest FUSE filesystem that serves a directory tree
 * read-only the way snapfs serves a sealed snapshot, for bench/bench.sh.
 *
 *   floorfs SRCDIR MOUNTPOINT [-f] [-s] [-o FUSE options]
 *
 * It is the floor of the FUSE page-cache path on the running kernel: a
 * read of the mount costs at least what it costs here, whatever snapfs
 * does. So it does only what snapfs does for sealed files and nothing
 * else: one O_PATH descriptor per inode, entries, attributes and misses
 * cached for a day (sealed files never change), keep_cache on open,
 * OPENDIR answered with ENOSYS where the kernel supports it (it then
 * opens directories itself and keeps each listing cached: no round trip
 * per directory walked), else cache_readdir and keep_cache on opendir,
 * READDIRPLUS and SPLICE_WRITE when the kernel offers them, no
 * AUTO_INVAL_DATA, reads answered from the backing descriptor with
 * fuse_reply_data (spliced). No writes: open
 * for writing fails with EROFS and the mount is read-only. Not a test
 * and not part of snapfs; built only with -Dbench=true.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define T_LONG 86400.0 /* as snapfs's T_LONG: for what never changes */
#define NBUCKETS 4096

/* One inode the kernel knows; its FUSE id is its address (the root's is 1). */
struct fnode {
	struct fnode *next; /* in its bucket; protected by mu */
	int fd;             /* O_PATH */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup; /* protected by mu */
};

/*
 * One open directory: its names, read at the first readdir (not at
 * opendir: once the kernel has the listing cached, an opendir costs the
 * daemon nothing but the reply).
 */
struct fdir {
	int fd; /* the directory's O_PATH descriptor (its node's) */
	bool read;
	size_t n;
	char **name;
	unsigned char *type;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fnode *buckets[NBUCKETS]; /* protected by mu */
static struct fnode root = {.fd = -1};
static bool no_opendir; /* set by init, before any other request */

static struct fnode *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct fnode *)(uintptr_t)ino;
}

static size_t bucket_of(dev_t dev, ino_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) ^ dev) % NBUCKETS;
}

/* Looks name up in parent: *e filled (ino 0 for a miss the kernel may cache); 0 or an errno. */
static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = T_LONG;
	e->entry_timeout = T_LONG;
	int fd = openat(node_of(parent)->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	size_t b = bucket_of(e->attr.st_dev, e->attr.st_ino);
	pthread_mutex_lock(&mu);
	struct fnode *n;
	for (n = buckets[b]; n; n = n->next)
		if (n->dev == e->attr.st_dev && n->ino == e->attr.st_ino)
			break;
	if (n) {
		n->nlookup++;
		close(fd);
	} else {
		n = malloc(sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&mu);
			close(fd);
			return ENOMEM;
		}
		*n = (struct fnode){buckets[b], fd, e->attr.st_dev, e->attr.st_ino, 1};
		buckets[b] = n;
	}
	pthread_mutex_unlock(&mu);
	e->ino = (fuse_ino_t)(uintptr_t)n;
	return 0;
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	struct fnode *n = node_of(ino);
	if (n == &root)
		return;
	pthread_mutex_lock(&mu);
	n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
	if (n->nlookup == 0) {
		for (struct fnode **p = &buckets[bucket_of(n->dev, n->ino)]; *p; p = &(*p)->next)
			if (*p == n) {
				*p = n->next;
				break;
			}
		close(n->fd);
		free(n);
	}
	pthread_mutex_unlock(&mu);
}

static void ff_init(void *userdata, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
}

static void ff_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void ff_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void ff_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void ff_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	if (fstatat(node_of(ino)->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, T_LONG);
}

static void ff_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX];
	ssize_t n = readlinkat(node_of(ino)->fd, "", buf, sizeof(buf) - 1);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void ff_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", node_of(ino)->fd);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		close(fd); /* the caller was interrupted */
}

static void ff_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = (int)fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void ff_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	close((int)fi->fh);
	fuse_reply_err(req, 0);
}

/* Frees the names of d, not d. */
static void fdir_clear(struct fdir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->name[i]);
	free(d->name);
	free(d->type);
	*d = (struct fdir){.fd = d->fd};
}

static void fdir_free(struct fdir *d)
{
	fdir_clear(d);
	free(d);
}

/* Every name of the directory but . and .., in the order readdir gives them. */
static int fdir_read(int fd, struct fdir *d)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = dfd < 0 ? NULL : fdopendir(dfd);
	if (!dp) {
		int err = errno;
		if (dfd >= 0)
			close(dfd);
		return err;
	}
	size_t cap = 0;
	struct dirent *de;
	int err = 0;
	while ((de = readdir(dp))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (d->n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nn = realloc(d->name, cap * sizeof(*nn));
			if (nn)
				d->name = nn;
			unsigned char *nt = nn ? realloc(d->type, cap) : NULL;
			if (nt)
				d->type = nt;
			if (!nn || !nt) {
				err = ENOMEM;
				break;
			}
		}
		if (!(d->name[d->n] = strdup(de->d_name))) {
			err = ENOMEM;
			break;
		}
		d->type[d->n++] = de->d_type;
	}
	closedir(dp);
	if (err)
		fdir_clear(d); /* nothing half read: the next readdir starts over */
	return err;
}

static void ff_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (no_opendir) {
		fuse_reply_err(req, ENOSYS); /* from now on the kernel opens and caches by itself */
		return;
	}
	struct fdir *d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	d->fd = node_of(ino)->fd;
	fi->fh = (uint64_t)(uintptr_t)d;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fdir_free(d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fdir *d = (struct fdir *)(uintptr_t)fi->fh;
	struct fdir now = {.fd = node_of(ino)->fd};
	if (!d) /* no OPENDIR: list it now */
		d = &now;
	if (!d->read) {
		int err = fdir_read(d->fd, d);
		if (err) {
			fuse_reply_err(req, err);
			return;
		}
		d->read = true;
	}
	char *buf = malloc(size);
	if (!buf) {
		fdir_clear(&now);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t i = (size_t)off; i < d->n; i++) {
		size_t need;
		struct fuse_entry_param e;
		if (plus) {
			int err = do_lookup(ino, d->name[i], &e);
			if (err || !e.ino)
				continue; /* gone since opendir */
			need = fuse_add_direntry_plus(req, buf + used, size - used, d->name[i], &e,
						      (off_t)(i + 1));
		} else {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = 1; /* any non-zero: the kernel looks the name up itself */
			e.attr.st_mode = (mode_t)d->type[i] << 12;
			need = fuse_add_direntry(req, buf + used, size - used, d->name[i], &e.attr,
						 (off_t)(i + 1));
		}
		if (need > size - used) {
			if (plus)
				forget_one(e.ino, 1); /* not sent: undo its lookup */
			break;
		}
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	fdir_clear(&now);
}

static void ff_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void ff_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void ff_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fdir_free((struct fdir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void ff_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	if (fstatvfs(root.fd, &st) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops ops = {
	.init = ff_init,
	.lookup = ff_lookup,
	.forget = ff_forget,
	.forget_multi = ff_forget_multi,
	.getattr = ff_getattr,
	.readlink = ff_readlink,
	.open = ff_open,
	.read = ff_read,
	.release = ff_release,
	.opendir = ff_opendir,
	.readdir = ff_readdir,
	.readdirplus = ff_readdirplus,
	.releasedir = ff_releasedir,
	.statfs = ff_statfs,
};

/* The first argument that is not an option is SRCDIR; the rest go to libfuse. */
static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	char **src = data;
	if (key == FUSE_OPT_KEY_NONOPT && !*src) {
		*src = strdup(arg);
		return *src ? 0 : -1;
	}
	return 1;
}

static int serve(struct fuse_session *se, const struct fuse_cmdline_opts *cmd)
{
	if (cmd->singlethread)
		return fuse_session_loop(se);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, cmd->clone_fd);
	if (cmd->max_idle_threads <= 100000)
		fuse_loop_cfg_set_idle_threads(lc, cmd->max_idle_threads);
	int rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	return rc;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd = {0};
	char *src = NULL;
	int ret = 1;
	if (fuse_opt_parse(&args, &src, NULL, opt_proc) < 0 || fuse_opt_add_arg(&args, "-oro") < 0 ||
	    fuse_parse_cmdline(&args, &cmd) != 0 || !src || !cmd.mountpoint) {
		fprintf(stderr, "usage: %s SRCDIR MOUNTPOINT [-f] [-s] [-o FUSE options]\n", argv[0]);
		goto out;
	}
	root.fd = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root.fd < 0) {
		fprintf(stderr, "floorfs: %s: %s\n", src, strerror(errno));
		goto out;
	}
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, cmd.mountpoint) == 0) {
			if (fuse_daemonize(cmd.foreground) == 0)
				ret = serve(se, &cmd) == 0 ? 0 : 1;
			fuse_session_unmount(se);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
out:
	free(cmd.mountpoint);
	free(src);
	fuse_opt_free_args(&args);
	if (root.fd >= 0)
		close(root.fd);
	return ret;
}
