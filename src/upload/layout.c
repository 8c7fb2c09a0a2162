/*
 * layout — building and reading the keys of layout.h.
 *
 * What must stay true: every key built here is read back by
 * layout_parse_snapshot_key to the same id, host and instance, and a key
 * that parses is one snapfs wrote (or could have written): the sweep
 * deletes nothing else.
 */
#include "layout.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "store.h"

#define LAYOUT_DEFAULT_PREFIX "snapfs/"
#define LAYOUT_DB_SUFFIX ".sqlite3"
#define LAYOUT_MANIFEST "MANIFEST.json"

bool layout_host_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n < 1 || n > LAYOUT_HOST_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		bool alnum =
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

int layout_prefix_normalize(const char *prefix, char *buf, size_t len)
{
	if (!prefix)
		prefix = LAYOUT_DEFAULT_PREFIX;
	size_t n = strlen(prefix);
	if (prefix[0] == '/' || strstr(prefix, "//"))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f)
			return -EINVAL;
	bool slash = n == 0 || prefix[n - 1] == '/';
	if (n + 2 > len || n + 2 > LAYOUT_PREFIX_MAX)
		return -ENAMETOOLONG;
	snprintf(buf, len, "%s%s", prefix, slash ? "" : "/");
	return 0;
}

static int layout_fmt(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int layout_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= len || (size_t)n > S3_KEY_MAX ? -ENAMETOOLONG : 0;
}

int layout_snapshot_dir(uint64_t id, const char *host, const char *inst, char *buf, size_t len)
{
	char ids[24];
	store_id_format(id, ids, sizeof(ids));
	if (inst)
		return layout_fmt(buf, len, "%s-%s-%s", ids, host, inst);
	return layout_fmt(buf, len, "%s-%s", ids, host);
}

int layout_snapshot_key(const char *prefix, const char *coll, const char *dir, const char *leaf,
			char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s%s/snapshots/%s/%s", prefix, coll, dir, leaf ? leaf : "");
}

int layout_snapshots_prefix(const char *prefix, const char *coll, char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s%s/snapshots/", prefix, coll);
}

int layout_pointer_key(const char *prefix, const char *coll, char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s%s/pointer.json", prefix, coll);
}

int layout_lease_key(const char *prefix, const char *coll, char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s%s/lease.json", prefix, coll);
}

int layout_marker_key(const char *prefix, const char *coll, char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s%s/collection.json", prefix, coll);
}

int layout_host_key(const char *prefix, const char *host, char *buf, size_t len)
{
	return layout_fmt(buf, len, "%s.cluster/hosts/%s.json", prefix, host);
}

int layout_deltas_prefix(const char *prefix, const char *coll, const char *area, const char *host,
			 char *buf, size_t len)
{
	return host ? layout_fmt(buf, len, "%s%s/%s/%s/", prefix, coll, area, host)
		    : layout_fmt(buf, len, "%s%s/%s/", prefix, coll, area);
}

void layout_delta_leaf(const struct layout_delta *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%016llu-%s", d->inst, (unsigned long long)d->seq, d->sha256);
}

int layout_delta_key(const char *prefix, const char *coll, const char *area,
		     const struct layout_delta *d, char *buf, size_t len)
{
	char leaf[LAYOUT_DELTA_LEAF_MAX];
	layout_delta_leaf(d, leaf, sizeof(leaf));
	return layout_fmt(buf, len, "%s%s/%s/%s/%s", prefix, coll, area, d->host, leaf);
}

static bool layout_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool layout_parse_delta_key(const char *prefix, const char *coll, const char *area, const char *key,
			    struct layout_delta *out)
{
	char pfx[LAYOUT_PREFIX_MAX + 200];
	if (layout_deltas_prefix(prefix, coll, area, NULL, pfx, sizeof(pfx)) < 0 ||
	    strncmp(key, pfx, strlen(pfx)) != 0)
		return false;
	const char *h = key + strlen(pfx), *slash = strchr(h, '/');
	if (!slash || (size_t)(slash - h) > LAYOUT_HOST_ID_MAX)
		return false;
	memset(out, 0, sizeof(*out));
	memcpy(out->host, h, (size_t)(slash - h));
	const char *l = slash + 1;
	if (!layout_host_id_valid(out->host) || strlen(l) != LAYOUT_DELTA_LEAF_MAX - 1 ||
	    !layout_hex_lower(l, LAYOUT_INST_LEN) || l[16] != '-' ||
	    strspn(l + 17, "0123456789") != 16 || l[33] != '-' || !layout_hex_lower(l + 34, 64))
		return false;
	memcpy(out->inst, l, LAYOUT_INST_LEN);
	out->seq = strtoull(l + 17, NULL, 10);
	memcpy(out->sha256, l + 34, 64);
	return true;
}

static bool layout_is_inst(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == LAYOUT_INST_LEN;
}

bool layout_parse_dir(const char *dir, struct layout_snap *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = strlen(dir);
	const char *dash = strchr(dir, '-');
	if (!dash || n >= LAYOUT_DIR_MAX || (size_t)(dash - dir) > 20)
		return false;
	char ids[24];
	memcpy(ids, dir, (size_t)(dash - dir));
	ids[dash - dir] = '\0';
	if (!store_id_parse(ids, &out->id))
		return false;
	const char *rest = dash + 1;
	size_t rlen = strlen(rest);
	/* HOST-INST when it ends in "-" and 16 hex digits and what is before is a host id. */
	if (rlen > LAYOUT_INST_LEN + 1 && rest[rlen - LAYOUT_INST_LEN - 1] == '-' &&
	    layout_is_inst(rest + rlen - LAYOUT_INST_LEN)) {
		size_t hlen = rlen - LAYOUT_INST_LEN - 1;
		if (hlen <= LAYOUT_HOST_ID_MAX) {
			memcpy(out->host, rest, hlen);
			out->host[hlen] = '\0';
			if (layout_host_id_valid(out->host)) {
				memcpy(out->inst, rest + hlen + 1, LAYOUT_INST_LEN + 1);
				memcpy(out->dir, dir, n + 1);
				return true;
			}
		}
	}
	if (!layout_host_id_valid(rest))
		return false;
	memcpy(out->host, rest, rlen + 1);
	out->inst[0] = '\0';
	memcpy(out->dir, dir, n + 1);
	return true;
}

bool layout_parse_snapshot_key(const char *prefix, const char *coll, const char *key,
			       struct layout_snap *out)
{
	char pfx[S3_KEY_MAX + 1];
	if (layout_snapshots_prefix(prefix, coll, pfx, sizeof(pfx)) < 0)
		return false;
	size_t plen = strlen(pfx);
	if (strncmp(key, pfx, plen) != 0)
		return false;
	const char *rest = key + plen, *slash = strchr(rest, '/');
	if (!slash || (size_t)(slash - rest) >= LAYOUT_DIR_MAX)
		return false;
	char dir[LAYOUT_DIR_MAX];
	memcpy(dir, rest, (size_t)(slash - rest));
	dir[slash - rest] = '\0';
	if (!layout_parse_dir(dir, out))
		return false;
	const char *leaf = slash + 1;
	size_t clen = strlen(coll);
	if (strcmp(leaf, LAYOUT_MANIFEST) == 0)
		out->leaf = LAYOUT_LEAF_MANIFEST;
	else if (strncmp(leaf, coll, clen) == 0 && strcmp(leaf + clen, LAYOUT_DB_SUFFIX) == 0)
		out->leaf = LAYOUT_LEAF_DB;
	else
		return false;
	return true;
}
