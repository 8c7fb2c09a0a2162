/*
 * mapvfs — bounded-residency mapped reads for SQLite (see mapvfs.h).
 *
 * Shape: a shim over the default VFS. Each file we open wraps the default
 * VFS's own file object, allocated right behind ours, and forwards every
 * method to it but xFetch/xUnfetch and the MMAP_SIZE file control, which
 * it answers itself so that the default VFS never maps anything.
 */
#include "mapvfs.h"

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

#define MAPVFS_CHUNK_SHIFT 20 /* 1 MiB: the unit of residency */
#define MAPVFS_CHUNK ((size_t)1 << MAPVFS_CHUNK_SHIFT)

enum { CHUNK_OUT = 0, CHUNK_IN = 1, CHUNK_RECENT = 2 };

struct mapvfs_file {
	sqlite3_file base;  /* pMethods: ours */
	sqlite3_file *real; /* the default VFS's file, right behind this struct */
	unsigned char *map; /* PROT_READ MAP_SHARED of [0, len), or NULL: reads only */
	size_t len;
	size_t nchunks;
	uint32_t *refs;       /* pages fetched and not yet unfetched, per chunk */
	unsigned char *state; /* CHUNK_*, per chunk */
	size_t resident;      /* chunks not CHUNK_OUT */
	size_t hand;          /* clock hand of the sweep */
};

static sqlite3_vfs mapvfs;

static sqlite3_vfs *real_vfs(void)
{
	return mapvfs.pAppData;
}

static sqlite3_file *real_file(sqlite3_file *f)
{
	return ((struct mapvfs_file *)f)->real;
}

/* ---- residency ---- */

static void mapvfs_drop(struct mapvfs_file *f, size_t c)
{
	size_t off = c << MAPVFS_CHUNK_SHIFT;
	size_t n = f->len - off < MAPVFS_CHUNK ? f->len - off : MAPVFS_CHUNK;
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
static void mapvfs_evict(struct mapvfs_file *f)
{
	size_t budget = MAPVFS_RESIDENT >> MAPVFS_CHUNK_SHIFT;
	for (size_t steps = 0; f->resident >= budget && steps < 2 * f->nchunks; steps++) {
		size_t c = f->hand;
		f->hand = (f->hand + 1) % f->nchunks;
		if (f->state[c] == CHUNK_OUT || f->refs[c] > 0)
			continue;
		if (f->state[c] == CHUNK_RECENT)
			f->state[c] = CHUNK_IN;
		else
			mapvfs_drop(f, c);
	}
}

static void mapvfs_unmap(struct mapvfs_file *f)
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
static void mapvfs_map(struct mapvfs_file *f, const char *path)
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
	f->nchunks = (f->len + MAPVFS_CHUNK - 1) >> MAPVFS_CHUNK_SHIFT;
	f->refs = calloc(f->nchunks, sizeof(*f->refs));
	f->state = calloc(f->nchunks, sizeof(*f->state));
	f->map = map;
	if (!f->refs || !f->state)
		mapvfs_unmap(f);
}

/* ---- io methods ---- */

static int mapvfs_close(sqlite3_file *file)
{
	struct mapvfs_file *f = (struct mapvfs_file *)file;
	mapvfs_unmap(f);
	return f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
}

static int mapvfs_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp)
{
	struct mapvfs_file *f = (struct mapvfs_file *)file;
	*pp = NULL;
	if (!f->map || off < 0 || amt <= 0 || (uint64_t)off + (uint64_t)amt > f->len)
		return SQLITE_OK;
	size_t c = (size_t)off >> MAPVFS_CHUNK_SHIFT;
	if (((size_t)off + (size_t)amt - 1) >> MAPVFS_CHUNK_SHIFT != c)
		return SQLITE_OK; /* spans two chunks: let xRead copy it */
	if (f->state[c] == CHUNK_OUT) {
		mapvfs_evict(f);
		f->resident++;
	}
	f->state[c] = CHUNK_RECENT;
	f->refs[c]++;
	*pp = f->map + off;
	return SQLITE_OK;
}

static int mapvfs_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct mapvfs_file *f = (struct mapvfs_file *)file;
	if (!f->map)
		return SQLITE_OK;
	if (p) {
		size_t c = (size_t)off >> MAPVFS_CHUNK_SHIFT;
		if (c < f->nchunks && f->refs[c] > 0)
			f->refs[c]--;
		return SQLITE_OK;
	}
	/* p == NULL: SQLite lets go of the whole mapping; keep it, drop what is resident. */
	for (size_t c = 0; c < f->nchunks; c++)
		if (f->state[c] != CHUNK_OUT && f->refs[c] == 0)
			mapvfs_drop(f, c);
	return SQLITE_OK;
}

static int mapvfs_file_control(sqlite3_file *file, int op, void *arg)
{
	/* Ours alone: passed on, it would make the default VFS map the file too. */
	if (op == SQLITE_FCNTL_MMAP_SIZE)
		return SQLITE_OK;
	return real_file(file)->pMethods->xFileControl(real_file(file), op, arg);
}

static int mapvfs_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	return real_file(file)->pMethods->xRead(real_file(file), buf, amt, off);
}

static int mapvfs_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	return real_file(file)->pMethods->xWrite(real_file(file), buf, amt, off);
}

static int mapvfs_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	return real_file(file)->pMethods->xTruncate(real_file(file), size);
}

static int mapvfs_sync(sqlite3_file *file, int flags)
{
	return real_file(file)->pMethods->xSync(real_file(file), flags);
}

static int mapvfs_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	return real_file(file)->pMethods->xFileSize(real_file(file), size);
}

static int mapvfs_lock(sqlite3_file *file, int lock)
{
	return real_file(file)->pMethods->xLock(real_file(file), lock);
}

static int mapvfs_unlock(sqlite3_file *file, int lock)
{
	return real_file(file)->pMethods->xUnlock(real_file(file), lock);
}

static int mapvfs_check_reserved(sqlite3_file *file, int *out)
{
	return real_file(file)->pMethods->xCheckReservedLock(real_file(file), out);
}

static int mapvfs_sector_size(sqlite3_file *file)
{
	return real_file(file)->pMethods->xSectorSize(real_file(file));
}

static int mapvfs_device(sqlite3_file *file)
{
	return real_file(file)->pMethods->xDeviceCharacteristics(real_file(file));
}

/*
 * No shared memory: this VFS only serves files opened read-only and
 * immutable, which SQLite never opens in WAL mode with a -shm.
 */
static int mapvfs_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	(void)file, (void)pg, (void)pgsz, (void)extend;
	*pp = NULL;
	return SQLITE_IOERR_SHMMAP;
}

static int mapvfs_shm_lock(sqlite3_file *file, int off, int n, int flags)
{
	(void)file, (void)off, (void)n, (void)flags;
	return SQLITE_IOERR_SHMLOCK;
}

static void mapvfs_shm_barrier(sqlite3_file *file)
{
	(void)file;
}

static int mapvfs_shm_unmap(sqlite3_file *file, int del)
{
	(void)file, (void)del;
	return SQLITE_OK;
}

static const sqlite3_io_methods mapvfs_io = {
	.iVersion = 3,
	.xClose = mapvfs_close,
	.xRead = mapvfs_read,
	.xWrite = mapvfs_write,
	.xTruncate = mapvfs_truncate,
	.xSync = mapvfs_sync,
	.xFileSize = mapvfs_file_size,
	.xLock = mapvfs_lock,
	.xUnlock = mapvfs_unlock,
	.xCheckReservedLock = mapvfs_check_reserved,
	.xFileControl = mapvfs_file_control,
	.xSectorSize = mapvfs_sector_size,
	.xDeviceCharacteristics = mapvfs_device,
	.xShmMap = mapvfs_shm_map,
	.xShmLock = mapvfs_shm_lock,
	.xShmBarrier = mapvfs_shm_barrier,
	.xShmUnmap = mapvfs_shm_unmap,
	.xFetch = mapvfs_fetch,
	.xUnfetch = mapvfs_unfetch,
};

/* ---- vfs methods ---- */

static int mapvfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		       int *out_flags)
{
	(void)vfs;
	struct mapvfs_file *f = (struct mapvfs_file *)file;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	int rc = real_vfs()->xOpen(real_vfs(), name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite calls xClose only if pMethods is set; close what the default VFS left open. */
		if (f->real->pMethods)
			f->real->pMethods->xClose(f->real);
		return rc;
	}
	if ((flags & SQLITE_OPEN_MAIN_DB) && (flags & SQLITE_OPEN_READONLY) &&
	    f->real->pMethods->iVersion >= 1)
		mapvfs_map(f, name);
	f->base.pMethods = &mapvfs_io;
	return SQLITE_OK;
}

static int mapvfs_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
	(void)vfs;
	return real_vfs()->xDelete(real_vfs(), name, sync);
}

static int mapvfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int mapvfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *mapvfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs()->xDlOpen(real_vfs(), name);
}

static void mapvfs_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*mapvfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return real_vfs()->xDlSym(real_vfs(), h, sym);
}

static void mapvfs_dl_close(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	real_vfs()->xDlClose(real_vfs(), h);
}

static int mapvfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int mapvfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs()->xSleep(real_vfs(), us);
}

static int mapvfs_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int mapvfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xGetLastError ? real_vfs()->xGetLastError(real_vfs(), n, out) : 0;
}

static int mapvfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static const char *mapvfs_registered;

static void mapvfs_register(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	/* xCurrentTimeInt64 (version 2) is forwarded; the default unix VFS is version 3. */
	if (!real || real->iVersion < 2)
		return;
	mapvfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct mapvfs_file) + real->szOsFile,
		.mxPathname = real->mxPathname,
		.zName = "snapfs-mapped",
		.pAppData = real,
		.xOpen = mapvfs_open,
		.xDelete = mapvfs_delete,
		.xAccess = mapvfs_access,
		.xFullPathname = mapvfs_full_pathname,
		.xDlOpen = mapvfs_dl_open,
		.xDlError = mapvfs_dl_error,
		.xDlSym = mapvfs_dl_sym,
		.xDlClose = mapvfs_dl_close,
		.xRandomness = mapvfs_randomness,
		.xSleep = mapvfs_sleep,
		.xCurrentTime = mapvfs_current_time,
		.xGetLastError = mapvfs_last_error,
		.xCurrentTimeInt64 = mapvfs_current_time64,
	};
	if (sqlite3_vfs_register(&mapvfs, 0) == SQLITE_OK)
		mapvfs_registered = mapvfs.zName;
}

const char *mapvfs_name(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, mapvfs_register);
	return mapvfs_registered;
}
