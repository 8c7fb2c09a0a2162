/*
 * snapfs-s3 — the S3 client on the command line, for tests and operators.
 *
 * Each command prints its result as one JSON line on stdout. Exit codes:
 * 0 done, 1 failed (the reason on stderr), 2 usage, 3 a condition
 * (--if-none-match, --if-match) did not hold.
 *
 * Credentials come only from the environment and the AWS files (see
 * s3_cred.h): no option takes a secret, so none shows in argv or the
 * process title. SIGINT/SIGTERM cancel the running request; an upload
 * cut short that way is aborted on the server before exiting.
 */
#include "jsonx.h"
#include "log.h"
#include "mono.h"
#include "parse.h"
#include "rfc3339.h"
#include "s3.h"
#include "s3_cred.h"
#include "sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_PRECONDITION 3

static atomic_bool cancel_flag;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&cancel_flag, true);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: snapfs-s3 [OPTIONS] COMMAND ARGS\n"
		"\n"
		"commands:\n"
		"  put KEY FILE [--if-none-match | --if-match ETAG] [--content-type TYPE]\n"
		"               [--meta NAME=VALUE]...\n"
		"  get KEY FILE [--range FIRST-LAST]\n"
		"  download KEY FILE [--part-size N] [--parallel N] [--if-match ETAG] [--progress]\n"
		"                              parallel ranged GETs of one version, hashed\n"
		"  head KEY\n"
		"  rm KEY\n"
		"  rm-prefix PREFIX            delete every key under PREFIX (DeleteObjects)\n"
		"  ls [PREFIX]\n"
		"  upload KEY FILE [--part-size N] [--parallel N] [--threshold N] [--progress]\n"
		"               [--content-type TYPE] [--meta NAME=VALUE]...\n"
		"  uploads [PREFIX]            multipart uploads in progress\n"
		"  abort KEY UPLOADID          abort a multipart upload\n"
		"\n"
		"options:\n"
		"  --endpoint URL       S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,\n"
		"                       the profile's endpoint_url, else AWS)\n"
		"  --region R           (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1)\n"
		"  --bucket B           (default: SNAPFS_S3_BUCKET)\n"
		"  --profile P          AWS profile (default: the environment's keys, else AWS_PROFILE)\n"
		"  --path-style         http://host/bucket/key (default for non-AWS endpoints)\n"
		"  --virtual-host       http://bucket.host/key\n"
		"  --max-attempts N     tries per request (default 8)\n"
		"  --retry-base-ms N    backoff base (default 200)\n"
		"  --retry-cap-ms N     backoff cap (default 20000)\n"
		"  --connect-timeout S  (default 10)\n"
		"  --low-speed-time S   give up (and retry) a transfer stalled this long (default 30)\n"
		"  --timeout S          deadline of a call that moves little data, retries\n"
		"                       included (default 60)\n"
		"  --slow-timeout S     ... of Complete/AbortMultipartUpload, DeleteObjects (default 600)\n"
		"  -v, --verbose        log every request (never a secret)\n"
		"  -h, --help, -V, --version\n"
		"Sizes take K, M, G suffixes (powers of 1024). Credentials: AWS_ACCESS_KEY_ID and\n"
		"AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), or a profile in ~/.aws/credentials.\n"
		"Exit: 0 ok, 1 error, 2 usage, 3 precondition failed.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "snapfs-s3: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(snapfs-s3 --help for usage)\n");
	va_end(ap);
	return EXIT_USAGE;
}

/* A whole number or size ("16M") that fits in unsigned. */
static int parse_count(const char *s, unsigned *out)
{
	uint64_t v;
	if (parse_size(s, &v) || v > UINT_MAX)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int fail(const struct s3_error *e, int rc)
{
	char msg[2048];
	if (rc == -ECANCELED && !e->http_status && !e->curl_code) {
		fprintf(stderr, "snapfs-s3: %s s3://%s/%s: cancelled\n", e->method, e->bucket, e->key);
		return EXIT_FAIL;
	}
	s3_error_format(e, msg, sizeof(msg));
	fprintf(stderr, "snapfs-s3: %s\n", msg);
	return e->precondition_failed ? EXIT_PRECONDITION : EXIT_FAIL;
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

struct cmd_opts {
	bool if_none_match;
	const char *if_match;
	const char *content_type;
	const char *range;
	uint64_t part_size, threshold;
	unsigned parallel;
	bool progress;
	struct s3_meta meta[32]; /* --meta NAME=VALUE; values point into argv */
	size_t n_meta;
};

static int cmd_put(s3_client *c, const char *key, const char *path, const struct cmd_opts *co)
{
	struct s3_error e;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "snapfs-s3: cannot open %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_FAIL;
	}
	struct s3_put_opts po = {.if_none_match = co->if_none_match,
				 .if_match = co->if_match,
				 .content_type = co->content_type,
				 .meta = co->meta,
				 .n_meta = co->n_meta,
				 .cancel = &cancel_flag};
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

static int cmd_get(s3_client *c, const char *key, const char *path, const struct cmd_opts *co)
{
	struct s3_range range, *rp = NULL;
	if (co->range) {
		char *end;
		errno = 0;
		range.first = strtoull(co->range, &end, 10);
		if (errno || end == co->range || *end != '-' || co->range[0] == '-')
			return usage_error("--range wants FIRST-LAST, not \"%s\"", co->range);
		const char *l = end + 1;
		range.last = strtoull(l, &end, 10);
		if (errno || end == l || *end || *l == '-' || range.last < range.first)
			return usage_error("--range wants FIRST-LAST, not \"%s\"", co->range);
		rp = &range;
	}
	/* Into a temporary file next to path, renamed over it once complete. */
	sbuf tmp = SBUF_INIT;
	int fd = temp_beside(path, &tmp);
	if (fd < 0) {
		sbuf_free(&tmp);
		return EXIT_FAIL;
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
		return e.method[0] ? fail(&e, rc) : EXIT_FAIL;
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
		return EXIT_FAIL;
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

static int cmd_upload(s3_client *c, const char *key, const char *path, const struct cmd_opts *co)
{
	struct s3_upload_opts uo = {.part_size = co->part_size,
				    .parallel = co->parallel,
				    .multipart_threshold = co->threshold,
				    .content_type = co->content_type,
				    .meta = co->meta,
				    .n_meta = co->n_meta,
				    .progress = co->progress ? show_progress : NULL,
				    .cancel = &cancel_flag};
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
	jsonx_set(j, "bytes_per_second", jsonx_u64(dt > 0 ? (uint64_t)((double)res.size / dt + 0.5) : 0));
	jsonx_set(j, "peak_rss_kib", jsonx_u64(peak_rss_kib()));
	emit(j, c);
	return 0;
}

static int cmd_download(s3_client *c, const char *key, const char *path, const struct cmd_opts *co)
{
	sbuf tmp = SBUF_INIT;
	int fd = temp_beside(path, &tmp);
	if (fd < 0) {
		sbuf_free(&tmp);
		return EXIT_FAIL;
	}
	struct s3_download_opts o = {.part_size = co->part_size,
				     .parallel = co->parallel,
				     .if_match = co->if_match,
				     .progress = co->progress ? show_progress : NULL,
				     .cancel = &cancel_flag};
	struct s3_download_result res;
	struct s3_error e;
	double t0 = mono_now();
	int rc = s3_download_file(c, key, fd, &o, &res, &e);
	double dt = mono_now() - t0;
	int status = rc ? fail(&e, rc) : temp_commit(fd, tmp.buf, path) ? EXIT_FAIL : 0;
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
	jsonx_set(j, "bytes_per_second", jsonx_u64(dt > 0 ? (uint64_t)((double)res.size / dt + 0.5) : 0));
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

/* ---- main --------------------------------------------------------------- */

enum {
	OPT_ENDPOINT = 256, OPT_REGION, OPT_BUCKET, OPT_PROFILE, OPT_PATH_STYLE, OPT_VHOST,
	OPT_MAX_ATTEMPTS, OPT_RETRY_BASE, OPT_RETRY_CAP, OPT_CONNECT_TIMEOUT, OPT_LOW_SPEED_TIME,
	OPT_IF_NONE_MATCH, OPT_IF_MATCH, OPT_CONTENT_TYPE, OPT_RANGE, OPT_PART_SIZE, OPT_PARALLEL,
	OPT_THRESHOLD, OPT_PROGRESS, OPT_META, OPT_TIMEOUT, OPT_SLOW_TIMEOUT,
};

static const struct option long_opts[] = {
	{"endpoint", required_argument, NULL, OPT_ENDPOINT},
	{"region", required_argument, NULL, OPT_REGION},
	{"bucket", required_argument, NULL, OPT_BUCKET},
	{"profile", required_argument, NULL, OPT_PROFILE},
	{"path-style", no_argument, NULL, OPT_PATH_STYLE},
	{"virtual-host", no_argument, NULL, OPT_VHOST},
	{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
	{"retry-base-ms", required_argument, NULL, OPT_RETRY_BASE},
	{"retry-cap-ms", required_argument, NULL, OPT_RETRY_CAP},
	{"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
	{"low-speed-time", required_argument, NULL, OPT_LOW_SPEED_TIME},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"slow-timeout", required_argument, NULL, OPT_SLOW_TIMEOUT},
	{"if-none-match", no_argument, NULL, OPT_IF_NONE_MATCH},
	{"if-match", required_argument, NULL, OPT_IF_MATCH},
	{"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
	{"range", required_argument, NULL, OPT_RANGE},
	{"part-size", required_argument, NULL, OPT_PART_SIZE},
	{"parallel", required_argument, NULL, OPT_PARALLEL},
	{"threshold", required_argument, NULL, OPT_THRESHOLD},
	{"progress", no_argument, NULL, OPT_PROGRESS},
	{"meta", required_argument, NULL, OPT_META},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct cmd_spec {
	const char *name;
	int min_args, max_args;
};

static const struct cmd_spec commands[] = {
	{"put", 2, 2}, {"get", 2, 2}, {"head", 1, 1},     {"rm", 1, 1},
	{"ls", 0, 1},  {"upload", 2, 2}, {"uploads", 0, 1}, {"abort", 2, 2},
	{"rm-prefix", 1, 1}, {"download", 2, 2},
};

int main(int argc, char **argv)
{
	struct s3_config cfg = {0};
	struct cmd_opts co = {0};
	const char *endpoint = NULL, *region = NULL, *bucket = getenv("SNAPFS_S3_BUCKET"),
		   *profile = NULL;
	bool verbose = false;
	const char *pos[4];
	int npos = 0;

	/* Options may come before or after the command and its arguments. */
	opterr = 0;
	int ch;
	while (optind < argc) {
		ch = getopt_long(argc, argv, "+vhV", long_opts, NULL);
		if (ch == -1) {
			if (npos == 4)
				return usage_error("too many arguments (\"%s\")", argv[optind]);
			pos[npos++] = argv[optind++];
			continue;
		}
		const char *a = optarg;
		switch (ch) {
		case OPT_ENDPOINT: endpoint = a; break;
		case OPT_REGION: region = a; break;
		case OPT_BUCKET: bucket = a; break;
		case OPT_PROFILE: profile = a; break;
		case OPT_PATH_STYLE: cfg.addressing = S3_ADDRESSING_PATH; break;
		case OPT_VHOST: cfg.addressing = S3_ADDRESSING_VIRTUAL; break;
		case OPT_MAX_ATTEMPTS:
			if (parse_count(a, &cfg.retry.max_attempts) || !cfg.retry.max_attempts)
				return usage_error("--max-attempts wants a positive number, not \"%s\"", a);
			break;
		case OPT_RETRY_BASE:
			if (parse_count(a, &cfg.retry.base_ms) || !cfg.retry.base_ms)
				return usage_error("--retry-base-ms wants a positive number, not \"%s\"", a);
			break;
		case OPT_RETRY_CAP:
			if (parse_count(a, &cfg.retry.cap_ms) || !cfg.retry.cap_ms)
				return usage_error("--retry-cap-ms wants a positive number, not \"%s\"", a);
			break;
		case OPT_CONNECT_TIMEOUT:
			if (parse_count(a, &cfg.connect_timeout_s) || !cfg.connect_timeout_s)
				return usage_error("--connect-timeout wants seconds, not \"%s\"", a);
			break;
		case OPT_LOW_SPEED_TIME:
			if (parse_count(a, &cfg.low_speed_time_s) || !cfg.low_speed_time_s)
				return usage_error("--low-speed-time wants seconds, not \"%s\"", a);
			break;
		case OPT_TIMEOUT:
			if (parse_count(a, &cfg.timeout_s) || !cfg.timeout_s)
				return usage_error("--timeout wants seconds, not \"%s\"", a);
			break;
		case OPT_SLOW_TIMEOUT:
			if (parse_count(a, &cfg.slow_timeout_s) || !cfg.slow_timeout_s)
				return usage_error("--slow-timeout wants seconds, not \"%s\"", a);
			break;
		case OPT_IF_NONE_MATCH: co.if_none_match = true; break;
		case OPT_IF_MATCH: co.if_match = a; break;
		case OPT_CONTENT_TYPE: co.content_type = a; break;
		case OPT_RANGE: co.range = a; break;
		case OPT_PART_SIZE:
			if (parse_size(a, &co.part_size) || co.part_size < S3_MIN_PART_SIZE ||
			    co.part_size > S3_MAX_PART_SIZE)
				return usage_error("--part-size wants a size from 5M to 5G, not \"%s\"", a);
			break;
		case OPT_PARALLEL:
			if (parse_count(a, &co.parallel) || !co.parallel || co.parallel > 64)
				return usage_error("--parallel wants 1 to 64, not \"%s\"", a);
			break;
		case OPT_THRESHOLD:
			if (parse_size(a, &co.threshold) || !co.threshold)
				return usage_error("--threshold wants a size, not \"%s\"", a);
			break;
		case OPT_PROGRESS: co.progress = true; break;
		case OPT_META: {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || co.n_meta == 32)
				return usage_error("--meta wants NAME=VALUE (at most 32), not \"%s\"", a);
			*eq = '\0';
			co.meta[co.n_meta].name = optarg;
			co.meta[co.n_meta].value = eq + 1;
			co.n_meta++;
			break;
		}
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("snapfs-s3 %s\n", SNAPFS_VERSION); return 0;
		default:
			return usage_error("unknown option or missing value: %s", argv[optind - 1]);
		}
	}
	if (npos == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const struct cmd_spec *spec = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(pos[0], commands[i].name) == 0)
			spec = &commands[i];
	if (!spec)
		return usage_error("unknown command \"%s\"", pos[0]);
	if (npos - 1 < spec->min_args || npos - 1 > spec->max_args)
		return usage_error("wrong number of arguments for %s", spec->name);
	if (co.if_none_match && co.if_match)
		return usage_error("%s", "--if-none-match and --if-match exclude each other");
	if (!bucket || !*bucket)
		return usage_error("%s", "no bucket: give --bucket or set SNAPFS_S3_BUCKET");

	log_init(false, verbose ? LOG_DEBUG : LOG_WARNING);
	struct sigaction sa = {0};
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct s3cred cred;
	char err[512];
	int rc = s3cred_load(profile, &cred, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "snapfs-s3: %s\n", err);
		return EXIT_FAIL;
	}
	cfg.endpoint = endpoint ? endpoint : cred.endpoint;
	cfg.region = region ? region : cred.region;
	cfg.diag = log_sink;
	cfg.bucket = bucket;
	if (cfg.addressing == S3_ADDRESSING_AUTO) {
		if (cred.addressing == S3CRED_ADDRESSING_PATH)
			cfg.addressing = S3_ADDRESSING_PATH;
		else if (cred.addressing == S3CRED_ADDRESSING_VIRTUAL)
			cfg.addressing = S3_ADDRESSING_VIRTUAL;
	}
	cfg.access_key_id = cred.access_key_id;
	cfg.secret_access_key = cred.secret_access_key;
	cfg.session_token = cred.session_token;
	cfg.ca_bundle = cred.ca_bundle;
	s3_client *c;
	rc = s3_client_new(&cfg, &c, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "snapfs-s3: %s\n", err);
		s3cred_clear(&cred);
		return EXIT_FAIL;
	}
	s3cred_clear(&cred); /* the signer has its own copy */

	const char *a1 = npos > 1 ? pos[1] : NULL, *a2 = npos > 2 ? pos[2] : NULL;
	int status;
	if (strcmp(spec->name, "put") == 0)
		status = cmd_put(c, a1, a2, &co);
	else if (strcmp(spec->name, "get") == 0)
		status = cmd_get(c, a1, a2, &co);
	else if (strcmp(spec->name, "head") == 0)
		status = cmd_head(c, a1);
	else if (strcmp(spec->name, "rm") == 0)
		status = cmd_rm(c, a1);
	else if (strcmp(spec->name, "rm-prefix") == 0)
		status = cmd_rm_prefix(c, a1);
	else if (strcmp(spec->name, "ls") == 0)
		status = cmd_ls(c, a1);
	else if (strcmp(spec->name, "upload") == 0)
		status = cmd_upload(c, a1, a2, &co);
	else if (strcmp(spec->name, "download") == 0)
		status = cmd_download(c, a1, a2, &co);
	else if (strcmp(spec->name, "uploads") == 0)
		status = cmd_uploads(c, a1);
	else
		status = cmd_abort(c, a1, a2);
	s3_client_free(c);
	return status;
}
