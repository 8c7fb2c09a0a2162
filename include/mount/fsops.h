/*
 * fsops — the FUSE low-level adapter: turns kernel requests into vfs
 * calls and vfs results into replies. It decides nothing itself.
 */
#ifndef SNAPFS_FSOPS_H
#define SNAPFS_FSOPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "vfs.h"

/* The operations table; the session's userdata must be the vfs. */
const struct fuse_lowlevel_ops *fsops_ops(void);
/* Lets the vfs ask the kernel to drop cached names of this session. */
void fsops_attach_notifier(vfs *v, struct fuse_session *se);

#endif
