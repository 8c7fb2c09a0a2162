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
#include "s3tool.h"

#include "log.h"
#include "parse.h"
#include "s3_cred.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int s3tool_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "snapfs-s3: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(snapfs-s3 --help for usage)\n");
	va_end(ap);
	return S3TOOL_USAGE;
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

/* ---- main --------------------------------------------------------------- */

enum {
	OPT_ENDPOINT = 256,
	OPT_REGION,
	OPT_BUCKET,
	OPT_PROFILE,
	OPT_PATH_STYLE,
	OPT_VHOST,
	OPT_MAX_ATTEMPTS,
	OPT_RETRY_BASE,
	OPT_RETRY_CAP,
	OPT_CONNECT_TIMEOUT,
	OPT_LOW_SPEED_TIME,
	OPT_IF_NONE_MATCH,
	OPT_IF_MATCH,
	OPT_CONTENT_TYPE,
	OPT_RANGE,
	OPT_PART_SIZE,
	OPT_PARALLEL,
	OPT_THRESHOLD,
	OPT_PROGRESS,
	OPT_META,
	OPT_TIMEOUT,
	OPT_SLOW_TIMEOUT,
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
	{"put", 2, 2},       {"get", 2, 2},      {"head", 1, 1},    {"rm", 1, 1},
	{"ls", 0, 1},        {"upload", 2, 2},   {"uploads", 0, 1}, {"abort", 2, 2},
	{"rm-prefix", 1, 1}, {"download", 2, 2},
};

/* A client option (endpoint, retries, timeouts) into cfg: 0, S3TOOL_USAGE, or -1 if ch is not one. */
static int client_option(int ch, const char *a, struct s3_config *cfg)
{
	switch (ch) {
	case OPT_PATH_STYLE: cfg->addressing = S3_ADDRESSING_PATH; return 0;
	case OPT_VHOST: cfg->addressing = S3_ADDRESSING_VIRTUAL; return 0;
	case OPT_MAX_ATTEMPTS:
		if (parse_count(a, &cfg->retry.max_attempts) || !cfg->retry.max_attempts)
			return s3tool_usage_error("--max-attempts wants a positive number, not \"%s\"",
						  a);
		return 0;
	case OPT_RETRY_BASE:
		if (parse_count(a, &cfg->retry.base_ms) || !cfg->retry.base_ms)
			return s3tool_usage_error("--retry-base-ms wants a positive number, not \"%s\"",
						  a);
		return 0;
	case OPT_RETRY_CAP:
		if (parse_count(a, &cfg->retry.cap_ms) || !cfg->retry.cap_ms)
			return s3tool_usage_error("--retry-cap-ms wants a positive number, not \"%s\"",
						  a);
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (parse_count(a, &cfg->connect_timeout_s) || !cfg->connect_timeout_s)
			return s3tool_usage_error("--connect-timeout wants seconds, not \"%s\"", a);
		return 0;
	case OPT_LOW_SPEED_TIME:
		if (parse_count(a, &cfg->low_speed_time_s) || !cfg->low_speed_time_s)
			return s3tool_usage_error("--low-speed-time wants seconds, not \"%s\"", a);
		return 0;
	case OPT_TIMEOUT:
		if (parse_count(a, &cfg->timeout_s) || !cfg->timeout_s)
			return s3tool_usage_error("--timeout wants seconds, not \"%s\"", a);
		return 0;
	case OPT_SLOW_TIMEOUT:
		if (parse_count(a, &cfg->slow_timeout_s) || !cfg->slow_timeout_s)
			return s3tool_usage_error("--slow-timeout wants seconds, not \"%s\"", a);
		return 0;
	default: return -1;
	}
}

/* A command option into co: 0, S3TOOL_USAGE, or -1 if ch is not one. a may be cut at '=' (--meta). */
static int command_option(int ch, char *a, struct s3tool_opts *co)
{
	switch (ch) {
	case OPT_IF_NONE_MATCH: co->if_none_match = true; return 0;
	case OPT_IF_MATCH: co->if_match = a; return 0;
	case OPT_CONTENT_TYPE: co->content_type = a; return 0;
	case OPT_RANGE: co->range = a; return 0;
	case OPT_PART_SIZE:
		if (parse_size(a, &co->part_size) || co->part_size < S3_MIN_PART_SIZE ||
		    co->part_size > S3_MAX_PART_SIZE)
			return s3tool_usage_error("--part-size wants a size from 5M to 5G, not \"%s\"",
						  a);
		return 0;
	case OPT_PARALLEL:
		if (parse_count(a, &co->parallel) || !co->parallel || co->parallel > 64)
			return s3tool_usage_error("--parallel wants 1 to 64, not \"%s\"", a);
		return 0;
	case OPT_THRESHOLD:
		if (parse_size(a, &co->threshold) || !co->threshold)
			return s3tool_usage_error("--threshold wants a size, not \"%s\"", a);
		return 0;
	case OPT_PROGRESS: co->progress = true; return 0;
	case OPT_META: {
		char *eq = strchr(a, '=');
		if (!eq || eq == a || co->n_meta == 32)
			return s3tool_usage_error("--meta wants NAME=VALUE (at most 32), not \"%s\"",
						  a);
		*eq = '\0';
		co->meta[co->n_meta].name = a;
		co->meta[co->n_meta].value = eq + 1;
		co->n_meta++;
		return 0;
	}
	default: return -1;
	}
}

int main(int argc, char **argv)
{
	struct s3_config cfg = {0};
	struct s3tool_opts co = {.cancel = &cancel_flag};
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
				return s3tool_usage_error("too many arguments (\"%s\")",
							  argv[optind]);
			pos[npos++] = argv[optind++];
			continue;
		}
		const char *a = optarg;
		switch (ch) {
		case OPT_ENDPOINT: endpoint = a; break;
		case OPT_REGION: region = a; break;
		case OPT_BUCKET: bucket = a; break;
		case OPT_PROFILE: profile = a; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("snapfs-s3 %s\n", SNAPFS_VERSION); return 0;
		default: {
			int r = client_option(ch, a, &cfg);
			if (r < 0)
				r = command_option(ch, optarg, &co);
			if (r < 0)
				return s3tool_usage_error("unknown option or missing value: %s",
							  argv[optind - 1]);
			if (r > 0)
				return r;
			break;
		}
		}
	}
	if (npos == 0) {
		usage(stderr);
		return S3TOOL_USAGE;
	}
	const struct cmd_spec *spec = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(pos[0], commands[i].name) == 0)
			spec = &commands[i];
	if (!spec)
		return s3tool_usage_error("unknown command \"%s\"", pos[0]);
	if (npos - 1 < spec->min_args || npos - 1 > spec->max_args)
		return s3tool_usage_error("wrong number of arguments for %s", spec->name);
	if (co.if_none_match && co.if_match)
		return s3tool_usage_error("%s", "--if-none-match and --if-match exclude each other");
	if (!bucket || !*bucket)
		return s3tool_usage_error("%s", "no bucket: give --bucket or set SNAPFS_S3_BUCKET");

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
		return S3TOOL_FAIL;
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
		return S3TOOL_FAIL;
	}
	s3cred_clear(&cred); /* the signer has its own copy */

	const char *a1 = npos > 1 ? pos[1] : NULL, *a2 = npos > 2 ? pos[2] : NULL;
	int status = s3tool_run(c, spec->name, a1, a2, &co);
	s3_client_free(c);
	return status;
}
