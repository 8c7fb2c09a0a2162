/*
 * fsx — durable file operations on the backing store.
 *
 * Every function returns 0 on success or a negative errno. The durable
 * ones follow the order that survives a crash at any point:
 * write, fsync(file), rename, fsync(directory).
 */
#ifndef SNAPFS_FSX_H
#define SNAPFS_FSX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FSX_SHA256_LEN 32
#define FSX_SHA256_HEX 65 /* 64 hex digits and a NUL */

int fsx_fsync_dir(const char *dir);
/* fsync()s the directory that holds path. */
int fsx_fsync_parent(const char *path);
/* Writes buf to path.tmp, fsyncs it, renames it over path, fsyncs the directory. */
int fsx_write_atomic(const char *path, const void *buf, size_t len);
/* pwrite of all len bytes at off (short writes and EINTR continued). */
int fsx_pwrite_full(int fd, const void *buf, size_t len, off_t off);
/* Reads a whole (small) file into a NUL-terminated malloc'd buffer. */
int fsx_read_all(const char *path, char **out, size_t *len);
int fsx_mkdir_p(const char *path, mode_t mode);
/* Removes path and everything below it; a missing path is success. */
int fsx_rm_rf(const char *path);
/* Renames, then fsyncs the directories of both names (once if they are the same). */
int fsx_rename_durable(const char *from, const char *to);

/* SHA-256 of a file's whole content. */
int fsx_sha256_file(const char *path, unsigned char out[FSX_SHA256_LEN], uint64_t *size);

#endif
