/*
 * layout — where snapfs keeps things in a bucket, and how to read a key
 * back. Under PREFIX (default "snapfs/"):
 *
 *   PREFIX/COLL/snapshots/ID-HOST-INST/COLL.sqlite3   a sealed database
 *   PREFIX/COLL/snapshots/ID-HOST-INST/MANIFEST.json  its manifest
 *   PREFIX/COLL/pointer.json                          the newest snapshot (lease.h)
 *   PREFIX/COLL/lease.json                            the collection's lease
 *
 * and for a cluster (cluster.h):
 *
 *   PREFIX/COLL/collection.json                       the collection exists (create-only)
 *   PREFIX/COLL/deltas/HOST/INST-SEQ-SHA256           a delta HOST acknowledged, not yet in
 *                                                     a snapshot the pointer names
 *   PREFIX/COLL/rejected/HOST/INST-SEQ-SHA256         one the compactor refused, for HOST
 *   PREFIX/.cluster/hosts/HOST.json                   HOST's claim and heartbeat
 *
 * SEQ is the delta's arrival number in HOST's STORE (16 digits) and
 * SHA256 the hex digest of its bytes: a key names one delta of one STORE
 * for good, and the same bytes shipped twice land on the same key.
 * ".cluster" cannot be a collection (names start with a letter or digit).
 *
 * ID is the writer's local snapshot id (8 digits or more), HOST its host
 * id and INST the instance id of its STORE (16 hex digits, made when the
 * STORE was, see store_instance()). A key names one snapshot of one
 * STORE for good: a STORE made again on the same host gets another INST,
 * so its snapshot 1 never lands on the key of an older STORE's snapshot
 * 1 (an object the pointer may name). Multipart uploads cannot be made
 * create-only on every server (radosgw 16 ignores If-None-Match on
 * CompleteMultipartUpload), so the uniqueness must be in the key.
 *
 * Older snapfs wrote ID-HOST directories; they are still recognised, so
 * that listing, restore and the sweep handle a bucket written by both.
 * Everything else under snapshots/ is not ours to touch.
 *
 * Knows names, not S3 or collections' contents. Functions that build a
 * key return -ENAMETOOLONG when it does not fit buf or S3's 1024 bytes.
 */
#ifndef SNAPFS_LAYOUT_H
#define SNAPFS_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAYOUT_HOST_ID_MAX 64
#define LAYOUT_PREFIX_MAX 512
#define LAYOUT_INST_LEN 16
/* ID-HOST-INST with its NUL: 20 digits, 64 for the host, 16 hex, 2 dashes. */
#define LAYOUT_DIR_MAX 104

/* 1-64 characters of [A-Za-z0-9._-], first one alphanumeric. */
bool layout_host_id_valid(const char *id);
/* prefix as keys use it ("" or ending in '/'); -ENAMETOOLONG or -EINVAL if unusable. */
int layout_prefix_normalize(const char *prefix, char *buf, size_t len);

/* ID-HOST-INST (ID-HOST if inst is NULL: the old form, for reading only). */
int layout_snapshot_dir(uint64_t id, const char *host, const char *inst, char *buf, size_t len);
/* PREFIX/COLL/snapshots/DIR/LEAF, or PREFIX/COLL/snapshots/DIR/ if leaf is NULL. */
int layout_snapshot_key(const char *prefix, const char *coll, const char *dir, const char *leaf,
			char *buf, size_t len);
/* PREFIX/COLL/snapshots/ */
int layout_snapshots_prefix(const char *prefix, const char *coll, char *buf, size_t len);
int layout_pointer_key(const char *prefix, const char *coll, char *buf, size_t len);
int layout_lease_key(const char *prefix, const char *coll, char *buf, size_t len);
/* PREFIX/COLL/collection.json */
int layout_marker_key(const char *prefix, const char *coll, char *buf, size_t len);
/* PREFIX/.cluster/hosts/HOST.json */
int layout_host_key(const char *prefix, const char *host, char *buf, size_t len);
/* PREFIX/COLL/deltas/ (host NULL) or PREFIX/COLL/deltas/HOST/; the same with rejected for area "rejected". */
int layout_deltas_prefix(const char *prefix, const char *coll, const char *area, const char *host,
			 char *buf, size_t len);

/* A shipped delta, as its key names it. */
struct layout_delta {
	char host[LAYOUT_HOST_ID_MAX + 1];
	char inst[LAYOUT_INST_LEN + 1];
	uint64_t seq;
	char sha256[65];
};
/* INST-SEQ-SHA256, the last part of a delta's key (buf: at least LAYOUT_DELTA_LEAF_MAX). */
#define LAYOUT_DELTA_LEAF_MAX (LAYOUT_INST_LEN + 1 + 16 + 1 + 64 + 1)
void layout_delta_leaf(const struct layout_delta *d, char *buf, size_t len);
/* PREFIX/COLL/AREA/HOST/INST-SEQ-SHA256, AREA "deltas" or "rejected". */
int layout_delta_key(const char *prefix, const char *coll, const char *area,
		     const struct layout_delta *d, char *buf, size_t len);
/* Reads a key under layout_deltas_prefix(prefix, coll, area, NULL); false if it is not a delta's. */
bool layout_parse_delta_key(const char *prefix, const char *coll, const char *area, const char *key,
			    struct layout_delta *out);

enum layout_leaf {
	LAYOUT_LEAF_NONE,     /* a directory name only */
	LAYOUT_LEAF_DB,       /* COLL.sqlite3 */
	LAYOUT_LEAF_MANIFEST, /* MANIFEST.json */
};

/* A snapshot directory (and object) as read back from a key. */
struct layout_snap {
	uint64_t id;
	char host[LAYOUT_HOST_ID_MAX + 1];
	char inst[LAYOUT_INST_LEN + 1]; /* "" for the old ID-HOST form */
	char dir[LAYOUT_DIR_MAX];
	enum layout_leaf leaf;
};

/* Reads a directory name ID-HOST-INST or ID-HOST; false if it is neither. */
bool layout_parse_dir(const char *dir, struct layout_snap *out);
/*
 * Reads a key under layout_snapshots_prefix(prefix, coll): true only for
 * PREFIX/COLL/snapshots/DIR/COLL.sqlite3 or .../DIR/MANIFEST.json with
 * DIR as layout_parse_dir takes it. Anything else is not ours.
 */
bool layout_parse_snapshot_key(const char *prefix, const char *coll, const char *key,
			       struct layout_snap *out);

#endif
