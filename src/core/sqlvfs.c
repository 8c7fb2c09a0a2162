/*
 * sqlvfs — snapfs's SQLite VFS shim (see sqlvfs.h).
 *
 * Shape: each file we open wraps the default VFS's own file object,
 * allocated right behind ours, and forwards every method to it but
 * xFetch/xUnfetch and the MMAP_SIZE file control (answered here, so that
 * the default VFS never maps anything) and xWrite (forwarded, then
 * counted for the writeback hint).
 */
#include "sqlvfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQLVFS_CHUNK_SHIFT 20 /* 1 MiB: the unit of residency */
#define SQLVFS_CHUNK ((size_t)1 << SQLVFS_CHUNK_SHIFT)

enum { CHUNK_OUT = 0, CHUNK_IN = 1, CHUNK_RECENT = 2 };

struct sqlvfs_file {
	sqlite3_file base;  /* pMethods: ours */
	sqlite3_file *real; /* the default VFS's file, right behind this struct */
	unsigned char *map; /* PROT_READ MAP_SHARED of [0, len), or NULL: reads only */
	size_t len;
	size_t nchunks;
	uint32_t *refs;       /* pages fetched and not yet unfetched, per chunk */
	unsigned char *state; /* CHUNK_*, per chunk */
	size_t resident;      /* chunks not CHUNK_OUT */
	size_t hand;          /* clock hand of the sweep */
	int wb_fd;         /* a main database written: our descriptor of it for the hint, or -1 */
	uint64_t unsynced; /* bytes written since the last writeback start */
};

static sqlite3_vfs sqlvfs;

static sqlite3_vfs *real_vfs(void)
{
	return sqlvfs.pAppData;
}

static sqlite3_file *real_file(sqlite3_file *f)
{
	return ((struct sqlvfs_file *)f)->real;
}

/* ---- residency ---- */

static void sqlvfs_drop(struct sqlvfs_file *f, size_t c)
{
	size_t off = c << SQLVFS_CHUNK_SHIFT;
	size_t n = f->len - off < SQLVFS_CHUNK ? f->len - off : SQLVFS_CHUNK;
	/* Drops our page-table entries only; the page cache keeps the data. */
	madvise(f->map + off, n, MADV_DONTNEED);
	f->state[c] = CHUNK_OUT;
	f->resident--;
}

/*
 * Clock sweep: a chunk fetched since the hand last passed gets a second
 * chance; held chunks are skipped. Two turns at most: if every resident
 * chunk is held, residency grows past the bound rather than fail a read.
 */
static void sqlvfs_evict(struct sqlvfs_file *f)
{
	size_t budget = SQLVFS_RESIDENT >> SQLVFS_CHUNK_SHIFT;
	for (size_t steps = 0; f->resident >= budget && steps < 2 * f->nchunks; steps++) {
		size_t c = f->hand;
		f->hand = (f->hand + 1) % f->nchunks;
		if (f->state[c] == CHUNK_OUT || f->refs[c] > 0)
			continue;
		if (f->state[c] == CHUNK_RECENT)
			f->state[c] = CHUNK_IN;
		else
			sqlvfs_drop(f, c);
	}
}

static void sqlvfs_unmap(struct sqlvfs_file *f)
{
	if (f->map)
		munmap(f->map, f->len);
	free(f->refs);
	free(f->state);
	f->map = NULL;
	f->refs = NULL;
	f->state = NULL;
	f->len = f->nchunks = f->resident = f->hand = 0;
}

/*
 * Maps path if it is the file SQLite opened (same size) and not empty.
 * Any failure leaves the file unmapped: reads then go by xRead.
 */
static void sqlvfs_map(struct sqlvfs_file *f, const char *path)
{
	sqlite3_int64 size = 0;
	if (!path || f->real->pMethods->xFileSize(f->real, &size) != SQLITE_OK || size <= 0 ||
	    (uint64_t)size > SIZE_MAX)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	struct stat st;
	void *map = MAP_FAILED;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size)
		map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd); /* the mapping keeps the file */
	if (map == MAP_FAILED)
		return;
	f->len = (size_t)size;
	f->nchunks = (f->len + SQLVFS_CHUNK - 1) >> SQLVFS_CHUNK_SHIFT;
	f->refs = calloc(f->nchunks, sizeof(*f->refs));
	f->state = calloc(f->nchunks, sizeof(*f->state));
	f->map = map;
	if (!f->refs || !f->state)
		sqlvfs_unmap(f);
}

/* ---- io methods ---- */

static int sqlvfs_close(sqlite3_file *file)
{
	struct sqlvfs_file *f = (struct sqlvfs_file *)file;
	sqlvfs_unmap(f);
	if (f->wb_fd >= 0)
		close(f->wb_fd);
	return f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
}

static int sqlvfs_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp)
{
	struct sqlvfs_file *f = (struct sqlvfs_file *)file;
	*pp = NULL;
	if (!f->map || off < 0 || amt <= 0 || (uint64_t)off + (uint64_t)amt > f->len)
		return SQLITE_OK;
	size_t c = (size_t)off >> SQLVFS_CHUNK_SHIFT;
	if (((size_t)off + (size_t)amt - 1) >> SQLVFS_CHUNK_SHIFT != c)
		return SQLITE_OK; /* spans two chunks: let xRead copy it */
	if (f->state[c] == CHUNK_OUT) {
		sqlvfs_evict(f);
		f->resident++;
	}
	f->state[c] = CHUNK_RECENT;
	f->refs[c]++;
	*pp = f->map + off;
	return SQLITE_OK;
}

static int sqlvfs_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct sqlvfs_file *f = (struct sqlvfs_file *)file;
	if (!f->map)
		return SQLITE_OK;
	if (p) {
		size_t c = (size_t)off >> SQLVFS_CHUNK_SHIFT;
		if (c < f->nchunks && f->refs[c] > 0)
			f->refs[c]--;
		return SQLITE_OK;
	}
	/* p == NULL: SQLite lets go of the whole mapping; keep it, drop what is resident. */
	for (size_t c = 0; c < f->nchunks; c++)
		if (f->state[c] != CHUNK_OUT && f->refs[c] == 0)
			sqlvfs_drop(f, c);
	return SQLITE_OK;
}

static int sqlvfs_file_control(sqlite3_file *file, int op, void *arg)
{
	/* Ours alone: passed on, it would make the default VFS map the file too. */
	if (op == SQLITE_FCNTL_MMAP_SIZE)
		return SQLITE_OK;
	return real_file(file)->pMethods->xFileControl(real_file(file), op, arg);
}

static int sqlvfs_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	return real_file(file)->pMethods->xRead(real_file(file), buf, amt, off);
}

static int sqlvfs_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct sqlvfs_file *f = (struct sqlvfs_file *)file;
	int rc = f->real->pMethods->xWrite(f->real, buf, amt, off);
	if (rc == SQLITE_OK && f->wb_fd >= 0 && amt > 0 &&
	    (f->unsynced += (uint64_t)amt) >= SQLVFS_WRITEBACK) {
		f->unsynced = 0;
		/* Only a start: a failure here changes nothing, SQLite's fsync decides. */
		sync_file_range(f->wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	return rc;
}

static int sqlvfs_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	return real_file(file)->pMethods->xTruncate(real_file(file), size);
}

static int sqlvfs_sync(sqlite3_file *file, int flags)
{
	return real_file(file)->pMethods->xSync(real_file(file), flags);
}

static int sqlvfs_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	return real_file(file)->pMethods->xFileSize(real_file(file), size);
}

static int sqlvfs_lock(sqlite3_file *file, int lock)
{
	return real_file(file)->pMethods->xLock(real_file(file), lock);
}

static int sqlvfs_unlock(sqlite3_file *file, int lock)
{
	return real_file(file)->pMethods->xUnlock(real_file(file), lock);
}

static int sqlvfs_check_reserved(sqlite3_file *file, int *out)
{
	return real_file(file)->pMethods->xCheckReservedLock(real_file(file), out);
}

static int sqlvfs_sector_size(sqlite3_file *file)
{
	return real_file(file)->pMethods->xSectorSize(real_file(file));
}

static int sqlvfs_device(sqlite3_file *file)
{
	return real_file(file)->pMethods->xDeviceCharacteristics(real_file(file));
}

/*
 * Shared memory (the live database's WAL index): the default VFS's own,
 * if its file has it (methods of version 2 or later).
 */
static bool has_shm(sqlite3_file *file)
{
	return real_file(file)->pMethods->iVersion >= 2;
}

static int sqlvfs_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	if (!has_shm(file)) {
		*pp = NULL;
		return SQLITE_IOERR_SHMMAP;
	}
	return real_file(file)->pMethods->xShmMap(real_file(file), pg, pgsz, extend, pp);
}

static int sqlvfs_shm_lock(sqlite3_file *file, int off, int n, int flags)
{
	if (!has_shm(file))
		return SQLITE_IOERR_SHMLOCK;
	return real_file(file)->pMethods->xShmLock(real_file(file), off, n, flags);
}

static void sqlvfs_shm_barrier(sqlite3_file *file)
{
	if (has_shm(file))
		real_file(file)->pMethods->xShmBarrier(real_file(file));
}

static int sqlvfs_shm_unmap(sqlite3_file *file, int del)
{
	return has_shm(file) ? real_file(file)->pMethods->xShmUnmap(real_file(file), del) : SQLITE_OK;
}

static const sqlite3_io_methods sqlvfs_io = {
	.iVersion = 3,
	.xClose = sqlvfs_close,
	.xRead = sqlvfs_read,
	.xWrite = sqlvfs_write,
	.xTruncate = sqlvfs_truncate,
	.xSync = sqlvfs_sync,
	.xFileSize = sqlvfs_file_size,
	.xLock = sqlvfs_lock,
	.xUnlock = sqlvfs_unlock,
	.xCheckReservedLock = sqlvfs_check_reserved,
	.xFileControl = sqlvfs_file_control,
	.xSectorSize = sqlvfs_sector_size,
	.xDeviceCharacteristics = sqlvfs_device,
	.xShmMap = sqlvfs_shm_map,
	.xShmLock = sqlvfs_shm_lock,
	.xShmBarrier = sqlvfs_shm_barrier,
	.xShmUnmap = sqlvfs_shm_unmap,
	.xFetch = sqlvfs_fetch,
	.xUnfetch = sqlvfs_unfetch,
};

/* ---- vfs methods ---- */

static int sqlvfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		       int *out_flags)
{
	(void)vfs;
	struct sqlvfs_file *f = (struct sqlvfs_file *)file;
	memset(f, 0, sizeof(*f));
	f->wb_fd = -1;
	f->real = (sqlite3_file *)(f + 1);
	int rc = real_vfs()->xOpen(real_vfs(), name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite calls xClose only if pMethods is set; close what the default VFS left open. */
		if (f->real->pMethods)
			f->real->pMethods->xClose(f->real);
		return rc;
	}
	if ((flags & SQLITE_OPEN_MAIN_DB) && (flags & SQLITE_OPEN_READONLY))
		sqlvfs_map(f, name);
	else if ((flags & SQLITE_OPEN_MAIN_DB) && (flags & SQLITE_OPEN_READWRITE) && name)
		f->wb_fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW); /* -1: no hint, no harm */
	f->base.pMethods = &sqlvfs_io;
	return SQLITE_OK;
}

static int sqlvfs_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
	(void)vfs;
	return real_vfs()->xDelete(real_vfs(), name, sync);
}

static int sqlvfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int sqlvfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *sqlvfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs()->xDlOpen(real_vfs(), name);
}

static void sqlvfs_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*sqlvfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return real_vfs()->xDlSym(real_vfs(), h, sym);
}

static void sqlvfs_dl_close(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	real_vfs()->xDlClose(real_vfs(), h);
}

static int sqlvfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int sqlvfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs()->xSleep(real_vfs(), us);
}

static int sqlvfs_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int sqlvfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xGetLastError ? real_vfs()->xGetLastError(real_vfs(), n, out) : 0;
}

static int sqlvfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static const char *sqlvfs_registered;

static void sqlvfs_register(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	/* xCurrentTimeInt64 (version 2) is forwarded; the default unix VFS is version 3. */
	if (!real || real->iVersion < 2)
		return;
	sqlvfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct sqlvfs_file) + real->szOsFile,
		.mxPathname = real->mxPathname,
		.zName = "snapfs",
		.pAppData = real,
		.xOpen = sqlvfs_open,
		.xDelete = sqlvfs_delete,
		.xAccess = sqlvfs_access,
		.xFullPathname = sqlvfs_full_pathname,
		.xDlOpen = sqlvfs_dl_open,
		.xDlError = sqlvfs_dl_error,
		.xDlSym = sqlvfs_dl_sym,
		.xDlClose = sqlvfs_dl_close,
		.xRandomness = sqlvfs_randomness,
		.xSleep = sqlvfs_sleep,
		.xCurrentTime = sqlvfs_current_time,
		.xGetLastError = sqlvfs_last_error,
		.xCurrentTimeInt64 = sqlvfs_current_time64,
	};
	if (sqlite3_vfs_register(&sqlvfs, 0) == SQLITE_OK)
		sqlvfs_registered = sqlvfs.zName;
}

const char *sqlvfs_name(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sqlvfs_register);
	return sqlvfs_registered;
}
