/*
 * fsops — FUSE low-level adapter.
 *
 * Each handler unpacks the request, calls exactly one vfs function and
 * replies; errors arrive as negative errno and are answered once here.
 * Caching policy (which the vfs states through timeouts and open info):
 * sealed snapshot files keep the page cache and long entry/attribute
 * timeouts, reads of backing files are answered with fd-backed buffers
 * so libfuse can splice them.
 *
 * Directories: OPENDIR is answered with ENOSYS where the kernel allows it
 * (FUSE_CAP_NO_OPENDIR_SUPPORT): it then opens directories without asking
 * and caches every listing until told otherwise, so `ls -lR` and `find`
 * over snapshots cost no round trip per directory. The vfs invalidates the
 * listings it changes (vfs_dir_changed); changes made through the kernel
 * (create, unlink, rename, mkdir) drop the kernel's listing by themselves;
 * rejected/ (filled by the compactor) reports its backing directory's
 * mtime, and FUSE_CAP_AUTO_INVAL_DATA makes the kernel compare it when a
 * listing starts once the attributes have expired. Sealed files never
 * change size or mtime, so AUTO_INVAL_DATA never drops their pages.
 */
#include "fsops.h"

#include "passthrough.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define V(req) ((vfs *)fuse_req_userdata(req))
#define FH(fi) ((vfs_file *)(uintptr_t)(fi)->fh)
#define DH(fi) ((vfs_dir *)(uintptr_t)(fi)->fh)

static void to_entry(const struct vfs_entry *ve, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ve->ino;
	e->attr = ve->st;
	e->attr_timeout = ve->attr_timeout;
	e->entry_timeout = ve->entry_timeout;
}

static void reply_entry(fuse_req_t req, int rc, const struct vfs_entry *ve)
{
	struct fuse_entry_param e;
	to_entry(ve, &e);
	if (rc == -ENOENT && ve->entry_timeout > 0) {
		/* A negative entry the kernel may cache (e.g. SQLite's -wal probes). */
		e.ino = 0;
		fuse_reply_entry(req, &e);
	} else if (rc < 0) {
		fuse_reply_err(req, -rc);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static bool no_opendir; /* set by init, before any other request */

static void fsops_init(void *userdata, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
	pt_init_reply_next(); /* libfuse writes the INIT reply next, on this thread */
	vfs_set_passthrough(userdata, pt_offered());
}

static void fsops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs_entry ve;
	int rc = vfs_lookup(V(req), parent, name, &ve);
	reply_entry(req, rc, &ve);
}

static void fsops_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (vfs_forget(V(req), ino, nlookup))
		pt_forget(ino);
	fuse_reply_none(req);
}

static void fsops_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		if (vfs_forget(V(req), forgets[i].ino, forgets[i].nlookup))
			pt_forget(forgets[i].ino);
	fuse_reply_none(req);
}

static void fsops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	double t;
	int rc = vfs_getattr(V(req), ino, &st, &t);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, t);
}

static void fsops_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	static const struct {
		int fuse, vfs;
	} map[] = {
		{FUSE_SET_ATTR_MODE, VFS_SET_MODE},
		{FUSE_SET_ATTR_UID, VFS_SET_UID},
		{FUSE_SET_ATTR_GID, VFS_SET_GID},
		{FUSE_SET_ATTR_SIZE, VFS_SET_SIZE},
		{FUSE_SET_ATTR_ATIME, VFS_SET_ATIME},
		{FUSE_SET_ATTR_MTIME, VFS_SET_MTIME},
		{FUSE_SET_ATTR_ATIME_NOW, VFS_SET_ATIME_NOW},
		{FUSE_SET_ATTR_MTIME_NOW, VFS_SET_MTIME_NOW},
	};
	int set = 0;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			set |= map[i].vfs;
	struct stat st;
	double t;
	int rc = vfs_setattr(V(req), ino, fi ? FH(fi) : NULL, set, attr, &st, &t);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, t);
}

static void fsops_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[64];
	int rc = vfs_readlink(V(req), ino, buf, sizeof(buf));
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

static void fsops_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct vfs_entry ve;
	int rc = vfs_mkdir(V(req), parent, name, &ve);
	reply_entry(req, rc, &ve);
}

static void fsops_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -vfs_rmdir(V(req), parent, name));
}

static void fsops_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -vfs_unlink(V(req), parent, name));
}

static void fsops_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			 const char *newname, unsigned int flags)
{
	fuse_reply_err(req, -vfs_rename(V(req), parent, name, newparent, newname, flags));
}

static void fsops_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, -vfs_refuse_create(V(req), parent));
}

static void fsops_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -vfs_refuse_create(V(req), parent));
}

static void fsops_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, -vfs_refuse_create(V(req), newparent));
}

static void fsops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vfs_file *f;
	struct vfs_open_info info;
	int rc = vfs_open(V(req), ino, fi->flags, &f, &info);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)f;
	fi->keep_cache = info.keep_cache;
	fi->direct_io = info.direct_io;
	/* Sealed content the vfs wants read by passthrough: the kernel reads the backing file. */
	int backing = info.passthrough ? pt_backing_id(ino, info.sealed_fd) : -1;
	if (info.passthrough && backing < 0)
		vfs_passthrough_failed(V(req), f);
	pt_open_reply_next(backing);
	int rc2 = fuse_reply_open(req, fi);
	pt_open_reply_next(-1);
	if (rc2 == -ENOENT)
		vfs_release(V(req), f); /* the caller was interrupted */
}

static void fsops_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	vfs_file *f;
	struct vfs_entry ve;
	struct vfs_open_info info;
	int rc = vfs_create_file(V(req), parent, name, mode, fi->flags, &ve, &f, &info);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct fuse_entry_param e;
	to_entry(&ve, &e);
	fi->fh = (uintptr_t)f;
	fi->direct_io = info.direct_io;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		vfs_release(V(req), f);
		vfs_forget(V(req), e.ino, 1);
	}
}

static void fsops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	const char *mem;
	size_t len;
	int fd;
	int rc = vfs_read(V(req), FH(fi), size, off, &mem, &len, &fd);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
	} else if (fd >= 0) {
		struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
		buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		buf.buf[0].fd = fd;
		buf.buf[0].pos = off;
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	} else {
		/*
		 * Reply from a copy: once the kernel has the reply, the reader may
		 * close and a RELEASE on another thread free the generated buffer
		 * while libfuse (and ASan's writev check) still looks at it.
		 */
		char *copy = len ? malloc(len) : NULL;
		if (len && !copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		if (len)
			memcpy(copy, mem, len);
		fuse_reply_buf(req, copy, len);
		free(copy);
	}
}

static void fsops_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	ssize_t n = vfs_write(V(req), FH(fi), buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void fsops_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -vfs_flush(V(req), FH(fi)));
}

static void fsops_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -vfs_fsync(V(req), FH(fi), datasync != 0));
}

static void fsops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vfs_release(V(req), FH(fi));
	fuse_reply_err(req, 0);
}

static void fsops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vfs_dir *d;
	bool cache = false;
	if (no_opendir) {
		fuse_reply_err(req, ENOSYS); /* from now on the kernel opens and caches by itself */
		return;
	}
	int rc = vfs_opendir(V(req), ino, &d, &cache);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = cache;
	fi->keep_cache = cache;
	if (fuse_reply_open(req, fi) == -ENOENT)
		vfs_releasedir(V(req), d);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	vfs *v = V(req);
	vfs_dir *d = DH(fi);
	bool cache;
	int rc = d ? 0 : vfs_opendir(v, ino, &d, &cache); /* no OPENDIR: list it now */
	char *buf = rc == 0 ? malloc(size) : NULL;
	if (!buf) {
		if (rc == 0 && !DH(fi))
			vfs_releasedir(v, d);
		fuse_reply_err(req, rc < 0 ? -rc : ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t i = (size_t)off;; i++) {
		const char *name;
		struct vfs_entry ve;
		if (vfs_readdir_entry(v, d, i, plus, &name, &ve) < 0)
			break;
		size_t need;
		if (plus) {
			struct fuse_entry_param e;
			to_entry(&ve, &e);
			need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						      (off_t)(i + 1));
		} else {
			need = fuse_add_direntry(req, buf + used, size - used, name, &ve.st,
						 (off_t)(i + 1));
		}
		if (need > size - used) {
			if (plus && ve.ino)
				vfs_forget(v, ve.ino, 1); /* not sent: undo its lookup */
			break;
		}
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	if (!DH(fi))
		vfs_releasedir(v, d);
}

static void fsops_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fsops_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fsops_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vfs_releasedir(V(req), DH(fi));
	fuse_reply_err(req, 0);
}

static void fsops_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = vfs_statfs(V(req), &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops ops = {
	.init = fsops_init,
	.lookup = fsops_lookup,
	.forget = fsops_forget,
	.forget_multi = fsops_forget_multi,
	.getattr = fsops_getattr,
	.setattr = fsops_setattr,
	.readlink = fsops_readlink,
	.mknod = fsops_mknod,
	.mkdir = fsops_mkdir,
	.unlink = fsops_unlink,
	.rmdir = fsops_rmdir,
	.symlink = fsops_symlink,
	.rename = fsops_rename,
	.link = fsops_link,
	.open = fsops_open,
	.read = fsops_read,
	.write = fsops_write,
	.flush = fsops_flush,
	.release = fsops_release,
	.fsync = fsops_fsync,
	.opendir = fsops_opendir,
	.readdir = fsops_readdir,
	.readdirplus = fsops_readdirplus,
	.releasedir = fsops_releasedir,
	.statfs = fsops_statfs,
	.create = fsops_create,
};

const struct fuse_lowlevel_ops *fsops_ops(void)
{
	return &ops;
}

static void fsops_inval(void *ctx, uint64_t parent, const char *name)
{
	/* Best effort: -ENOENT means the kernel had already dropped it. */
	if (name)
		fuse_lowlevel_notify_inval_entry(ctx, parent, name, strlen(name));
	else
		fuse_lowlevel_notify_inval_inode(ctx, parent, 0, 0); /* its listing and attributes */
}

void fsops_attach_notifier(vfs *v, struct fuse_session *se)
{
	vfs_set_notifier(v, fsops_inval, se);
}
