/*
 * s3tool_cmd — the commands of snapfs-s3, one function each: they run one
 * S3 operation with the client they are given and print its result as
 * one JSON line (with the client's request and retry counts). The
 * command line is s3tool.c.
 */
#include "s3tool.h"

#include "jsonx.h"
#include "mono.h"
#include "rfc3339.h"
#include "sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fail(const struct s3_error *e, int rc)
{
	char msg[2048];
	if (rc == -ECANCELED && !e->http_status && !e->curl_code) {
		fprintf(stderr, "snapfs-s3: %s s3://%s/%s: cancelled\n", e->method, e->bucket,
			e->key);
		return S3TOOL_FAIL;
	}
	s3_error_format(e, msg, sizeof(msg));
	fprintf(stderr, "snapfs-s3: %s\n", msg);
	return e->precondition_failed ? S3TOOL_PRECONDITION : S3TOOL_FAIL;
}

static json_t *iso_json(time_t t)
{
	char when[RFC3339_LEN];
	rfc3339_format(t, when);
	return jsonx_str(when);
}

/* A command's result: {"op": op, key_name: key, ...}; emit() adds the request counts. */
static json_t *result(const char *op, const char *key_name, const char *key)
{
	json_t *j = json_object();
	jsonx_set(j, "op", jsonx_str(op));
	jsonx_set(j, key_name, jsonx_str(key));
	return j;
}

/* Prints j as one compact JSON line, with the client's request and retry counts, and frees it. */
static void emit(json_t *j, s3_client *c)
{
	struct s3_stats st;
	s3_client_stats(c, &st);
	jsonx_set(j, "requests", jsonx_u64(st.requests));
	jsonx_set(j, "retries", jsonx_u64(st.retries));
	sbuf out = SBUF_INIT;
	jsonx_dump(j, JSON_COMPACT, &out);
	sbuf_adds(&out, "\n");
	fputs(sbuf_str(&out), stdout);
	fflush(stdout);
	sbuf_free(&out);
	json_decref(j);
}

/* ---- commands ----------------------------------------------------------- */
static int cmd_put(s3_client *c, const char *key, const char *path, const struct s3tool_opts *co)
{
	struct s3_error e;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "snapfs-s3: cannot open %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return S3TOOL_FAIL;
	}
	struct s3_put_opts po = {.if_none_match = co->if_none_match,
				 .if_match = co->if_match,
				 .content_type = co->content_type,
				 .meta = co->meta,
				 .n_meta = co->n_meta,
				 .cancel = co->cancel};
	struct s3_put_result res;
	int rc = s3_put_file(c, key, fd, 0, (uint64_t)st.st_size, &po, &res, &e);
	close(fd);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("put", "key", key);
	jsonx_set(j, "size", jsonx_u64((uint64_t)st.st_size));
	jsonx_set(j, "etag", jsonx_str(res.etag));
	emit(j, c);
	return 0;
}

/* Makes a temporary file beside path (its name in *tmp); -1 and a message if it cannot. */
static int temp_beside(const char *path, sbuf *tmp)
{
	sbuf_addf(tmp, "%s.snapfs-s3-XXXXXX", path);
	int fd = mkstemp(tmp->buf);
	if (fd < 0)
		fprintf(stderr, "snapfs-s3: cannot create %s: %s\n", tmp->buf, strerror(errno));
	return fd;
}

/* Makes the complete temporary file path itself: fsync, mode, rename. */
static int temp_commit(int fd, const char *tmp, const char *path)
{
	if (fsync(fd) != 0 || fchmod(fd, 0644) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "snapfs-s3: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int cmd_get(s3_client *c, const char *key, const char *path, const struct s3tool_opts *co)
{
	struct s3_range range, *rp = NULL;
	if (co->range) {
		char *end;
		errno = 0;
		range.first = strtoull(co->range, &end, 10);
		if (errno || end == co->range || *end != '-' || co->range[0] == '-')
			return s3tool_usage_error("--range wants FIRST-LAST, not \"%s\"", co->range);
		const char *l = end + 1;
		range.last = strtoull(l, &end, 10);
		if (errno || end == l || *end || *l == '-' || range.last < range.first)
			return s3tool_usage_error("--range wants FIRST-LAST, not \"%s\"", co->range);
		rp = &range;
	}
	/* Into a temporary file next to path, renamed over it once complete. */
	sbuf tmp = SBUF_INIT;
	int fd = temp_beside(path, &tmp);
	if (fd < 0) {
		sbuf_free(&tmp);
		return S3TOOL_FAIL;
	}
	struct s3_error e;
	struct s3_object_info info;
	char sha[65];
	int rc = s3_get_fd(c, key, rp, fd, sha, &info, &e);
	if (!rc && temp_commit(fd, tmp.buf, path)) {
		rc = -EIO;
		e.method[0] = '\0';
	}
	close(fd);
	if (rc) {
		unlink(tmp.buf);
		sbuf_free(&tmp);
		return e.method[0] ? fail(&e, rc) : S3TOOL_FAIL;
	}
	sbuf_free(&tmp);
	json_t *j = result("get", "key", key);
	jsonx_set(j, "size", jsonx_u64(info.size));
	jsonx_set(j, "length", jsonx_u64(info.length));
	jsonx_set(j, "etag", jsonx_str(info.etag));
	jsonx_set(j, "sha256", jsonx_str(sha));
	emit(j, c);
	s3_object_info_free(&info);
	return 0;
}

static int cmd_head(s3_client *c, const char *key)
{
	struct s3_error e;
	struct s3_object_info info;
	int rc = s3_head(c, key, &info, &e);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("head", "key", key), *meta = json_object();
	jsonx_set(j, "size", jsonx_u64(info.size));
	jsonx_set(j, "etag", jsonx_str(info.etag));
	jsonx_set(j, "last_modified", iso_json(info.last_modified));
	jsonx_set(j, "content_type", jsonx_str(info.content_type));
	for (size_t i = 0; i < info.n_meta; i++)
		jsonx_set(meta, info.meta[i].name, jsonx_str(info.meta[i].value));
	jsonx_set(j, "metadata", meta);
	emit(j, c);
	s3_object_info_free(&info);
	return 0;
}

static int cmd_rm(s3_client *c, const char *key)
{
	struct s3_error e;
	int rc = s3_delete(c, key, &e);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("rm", "key", key);
	jsonx_set(j, "deleted", json_true());
	emit(j, c);
	return 0;
}

/* Deletes every key under prefix, S3_DELETE_MAX per DeleteObjects. */
static int cmd_rm_prefix(s3_client *c, const char *prefix)
{
	struct s3_error e;
	struct s3_object *objs = NULL;
	size_t n = 0, done = 0, calls = 0;
	int rc = s3_list_all(c, prefix, &objs, &n, &e);
	if (rc)
		return fail(&e, rc);
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	if (!keys) {
		s3_objects_free(objs, n);
		fprintf(stderr, "snapfs-s3: out of memory\n");
		return S3TOOL_FAIL;
	}
	for (size_t i = 0; i < n; i++)
		keys[i] = objs[i].key;
	while (!rc && done < n) {
		size_t batch = n - done < S3_DELETE_MAX ? n - done : S3_DELETE_MAX;
		rc = s3_delete_objects(c, keys + done, batch, NULL, &e);
		calls++;
		if (!rc)
			done += batch;
	}
	free(keys);
	s3_objects_free(objs, n);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("rm-prefix", "prefix", prefix);
	jsonx_set(j, "deleted", jsonx_u64(done));
	jsonx_set(j, "delete_calls", jsonx_u64(calls));
	emit(j, c);
	return 0;
}

static int ls_one(void *arg, const struct s3_object *o)
{
	json_t *e = json_object();
	jsonx_set(e, "key", jsonx_str(o->key));
	jsonx_set(e, "size", jsonx_u64(o->size));
	jsonx_set(e, "etag", jsonx_str(o->etag));
	jsonx_set(e, "last_modified", iso_json(o->last_modified));
	jsonx_push(arg, e);
	return 0;
}

static int cmd_ls(s3_client *c, const char *prefix)
{
	struct s3_error e;
	json_t *objs = json_array();
	int rc = s3_list(c, prefix, NULL, ls_one, objs, &e);
	if (rc) {
		json_decref(objs);
		return fail(&e, rc);
	}
	json_t *j = result("ls", "prefix", prefix ? prefix : "");
	jsonx_set(j, "count", jsonx_u64(json_array_size(objs)));
	jsonx_set(j, "objects", objs);
	emit(j, c);
	return 0;
}

static void show_progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	fprintf(stderr, "snapfs-s3: %" PRIu64 " of %" PRIu64 " bytes (%.0f%%)\n", done, total,
		total ? 100.0 * (double)done / (double)total : 100.0);
}

/* This process's peak resident set (VmHWM), in KiB; 0 if unknown. Reset by exec, unlike ru_maxrss. */
static unsigned long peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long kib = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %lu kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static int cmd_upload(s3_client *c, const char *key, const char *path, const struct s3tool_opts *co)
{
	struct s3_upload_opts uo = {.part_size = co->part_size,
				    .parallel = co->parallel,
				    .multipart_threshold = co->threshold,
				    .content_type = co->content_type,
				    .meta = co->meta,
				    .n_meta = co->n_meta,
				    .progress = co->progress ? show_progress : NULL,
				    .cancel = co->cancel};
	struct s3_upload_result res;
	struct s3_error e;
	double t0 = mono_now();
	int rc = s3_upload_file(c, key, path, &uo, &res, &e);
	double dt = mono_now() - t0;
	if (rc)
		return fail(&e, rc);
	json_t *j = result("upload", "key", key);
	jsonx_set(j, "size", jsonx_u64(res.size));
	jsonx_set(j, "etag", jsonx_str(res.etag));
	jsonx_set(j, "parts", jsonx_u64(res.parts));
	jsonx_set(j, "etag_is_md5", json_boolean(res.etag_is_md5));
	jsonx_set(j, "upload_retries", jsonx_u64(res.retries));
	jsonx_set(j, "seconds", jsonx_real(dt, 3));
	/* A whole number, as "%.0f" wrote it. */
	jsonx_set(j, "bytes_per_second",
		  jsonx_u64(dt > 0 ? (uint64_t)((double)res.size / dt + 0.5) : 0));
	jsonx_set(j, "peak_rss_kib", jsonx_u64(peak_rss_kib()));
	emit(j, c);
	return 0;
}

static int cmd_download(s3_client *c, const char *key, const char *path, const struct s3tool_opts *co)
{
	sbuf tmp = SBUF_INIT;
	int fd = temp_beside(path, &tmp);
	if (fd < 0) {
		sbuf_free(&tmp);
		return S3TOOL_FAIL;
	}
	struct s3_download_opts o = {.part_size = co->part_size,
				     .parallel = co->parallel,
				     .if_match = co->if_match,
				     .progress = co->progress ? show_progress : NULL,
				     .cancel = co->cancel};
	struct s3_download_result res;
	struct s3_error e;
	double t0 = mono_now();
	int rc = s3_download_file(c, key, fd, &o, &res, &e);
	double dt = mono_now() - t0;
	int status = rc ? fail(&e, rc) : temp_commit(fd, tmp.buf, path) ? S3TOOL_FAIL : 0;
	close(fd);
	if (status)
		unlink(tmp.buf);
	sbuf_free(&tmp);
	if (status)
		return status;
	json_t *j = result("download", "key", key);
	jsonx_set(j, "size", jsonx_u64(res.size));
	jsonx_set(j, "etag", jsonx_str(res.etag));
	jsonx_set(j, "sha256", jsonx_str(res.sha256));
	jsonx_set(j, "parts", jsonx_u64(res.parts));
	jsonx_set(j, "download_retries", jsonx_u64(res.retries));
	jsonx_set(j, "seconds", jsonx_real(dt, 3));
	jsonx_set(j, "bytes_per_second",
		  jsonx_u64(dt > 0 ? (uint64_t)((double)res.size / dt + 0.5) : 0));
	emit(j, c);
	return 0;
}

static int cmd_uploads(s3_client *c, const char *prefix)
{
	struct s3_error e;
	struct s3_multipart *u;
	size_t n;
	int rc = s3_multipart_list(c, prefix, &u, &n, &e);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("uploads", "prefix", prefix ? prefix : ""), *list = json_array();
	jsonx_set(j, "count", jsonx_u64(n));
	for (size_t i = 0; i < n; i++) {
		json_t *up = json_object();
		jsonx_set(up, "key", jsonx_str(u[i].key));
		jsonx_set(up, "upload_id", jsonx_str(u[i].upload_id));
		jsonx_set(up, "initiated", iso_json(u[i].initiated));
		jsonx_push(list, up);
	}
	jsonx_set(j, "uploads", list);
	s3_multipart_list_free(u, n);
	emit(j, c);
	return 0;
}

static int cmd_abort(s3_client *c, const char *key, const char *upload_id)
{
	struct s3_error e;
	int rc = s3_multipart_abort(c, key, upload_id, &e);
	if (rc)
		return fail(&e, rc);
	json_t *j = result("abort", "key", key);
	jsonx_set(j, "upload_id", jsonx_str(upload_id));
	jsonx_set(j, "aborted", json_true());
	emit(j, c);
	return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

int s3tool_run(s3_client *c, const char *name, const char *a1, const char *a2,
	       const struct s3tool_opts *co)
{
	if (strcmp(name, "put") == 0)
		return cmd_put(c, a1, a2, co);
	if (strcmp(name, "get") == 0)
		return cmd_get(c, a1, a2, co);
	if (strcmp(name, "head") == 0)
		return cmd_head(c, a1);
	if (strcmp(name, "rm") == 0)
		return cmd_rm(c, a1);
	if (strcmp(name, "rm-prefix") == 0)
		return cmd_rm_prefix(c, a1);
	if (strcmp(name, "ls") == 0)
		return cmd_ls(c, a1);
	if (strcmp(name, "upload") == 0)
		return cmd_upload(c, a1, a2, co);
	if (strcmp(name, "download") == 0)
		return cmd_download(c, a1, a2, co);
	if (strcmp(name, "uploads") == 0)
		return cmd_uploads(c, a1);
	if (strcmp(name, "abort") == 0)
		return cmd_abort(c, a1, a2);
	return s3tool_usage_error("unknown command %s", name);
}
