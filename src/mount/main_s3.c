/*
 * main_s3 — see main_s3.h. Built with S3 (meson -Ds3=enabled).
 *
 * S3 credentials come only from the environment and the AWS files
 * (s3_cred.h), never from options, and are read before mounting so that
 * a missing or malformed one is reported at once; a client made from
 * them then checks the endpoint URL and bucket name, still before
 * anything is mounted. The uploader's clients keep their own copies of
 * the keys: ours are wiped as soon as it has started.
 */
#include "main_s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "log.h"
#include "parse.h"
#include "s3.h"
#include "s3_cred.h"
#include "cluster.h"
#include "uploader.h"

/* What the uploader is started with; owns the credentials until then. */
struct main_s3 {
	struct s3cred cred;
	struct s3_config cfg;
	struct upl_config ucfg;
	char host[LAYOUT_HOST_ID_MAX + 1];
	char prefix[LAYOUT_PREFIX_MAX];  /* normalized */
	const struct main_s3_opts *opts; /* main's, which outlive this */
	upl *up;                         /* once started */
	/* A cluster member (s3_cluster=on, the default). */
	bool cluster;
	struct cluster_config ccfg;
	cluster *cl; /* made in main_s3_start, running after main_s3_run */
	vfs *v;
	compactor *comp; /* once main_s3_run */
};

const char *main_s3_help(void)
{
	return "\nS3 upload (credentials only from AWS_* variables or the AWS files):\n"
	       "    -o s3_bucket=NAME      upload sealed snapshots to this bucket\n"
	       "    -o s3_prefix=PREFIX    key prefix in the bucket (default snapfs/)\n"
	       "    -o s3_endpoint=URL     S3 endpoint (default: AWS_ENDPOINT_URL_S3,\n"
	       "                           AWS_ENDPOINT_URL, the profile, then AWS)\n"
	       "    -o s3_region=REGION    region (default: AWS_REGION, the profile, us-east-1)\n"
	       "    -o s3_profile=NAME     profile in ~/.aws/credentials and ~/.aws/config\n"
	       "    -o s3_part_size=SIZE   multipart part size, at least 5M (default 16M)\n"
	       "    -o s3_parallel=N       parts in flight (default 4)\n"
	       "    -o s3_upload=on|off    off: configured but nothing is sent (default on)\n"
	       "    -o s3_lease_ttl=S      lease lifetime in seconds (default 60)\n"
	       "    -o s3_host_id=ID       this host in keys and the lease (default hostname)\n"
	       "    -o s3_keep=N|all       snapshots kept in S3 per collection: the pointer's and\n"
	       "                           N-1 before it, 1..100; all: no retention (default 4)\n"
	       "    -o s3_grace=DURATION   how long an object stays after it is no longer needed,\n"
	       "                           e.g. 90s, 10m, 2h (default 10m)\n"
	       "    -o s3_cluster=on|off   on: one of the hosts sharing the bucket and prefix (deltas\n"
	       "                           shipped, one compactor per collection, followers);\n"
	       "                           off: this host only uploads its snapshots (default on)\n"
	       "    -o s3_role=ROLE        auto, compactor (prefers to compact) or follower (never\n"
	       "                           compacts) (default auto)\n"
	       "    -o s3_poll=DURATION    how often the pointer and the bucket are looked at\n"
	       "                           (default 1s)\n";
}

static bool main_s3_option_given(const struct main_s3_opts *o)
{
	return o->prefix || o->endpoint || o->region || o->profile || o->part_size || o->parallel ||
	       o->upload || o->lease_ttl || o->host_id || o->keep || o->grace || o->cluster ||
	       o->role || o->poll;
}

static void main_s3_clear(main_s3 *s)
{
	s3cred_clear(&s->cred);
	memset(&s->cfg, 0, sizeof(s->cfg));
}

/* A decimal number in [min, max] into *out; the default stays if s is NULL. */
static int main_s3_uint(const char *opt, const char *s, unsigned min, unsigned max, unsigned *out,
			char *err, size_t errlen)
{
	if (!s || parse_uint(s, min, max, out) == 0)
		return 0;
	snprintf(err, errlen, "%s=%s: expected a whole number from %u to %u", opt, s, min, max);
	return -1;
}

/* s3_cluster, s3_role and s3_poll into s. */
static int main_s3_cluster_values(const struct main_s3_opts *o, main_s3 *s, char *err, size_t errlen)
{
	uint64_t poll_ms = CLUSTER_DEFAULT_POLL_MS;
	s->cluster = !o->cluster || strcmp(o->cluster, "on") == 0;
	if (o->cluster && strcmp(o->cluster, "on") != 0 && strcmp(o->cluster, "off") != 0) {
		snprintf(err, errlen, "s3_cluster=%s: use on or off", o->cluster);
		return -1;
	}
	s->ccfg.role = CLUSTER_ROLE_AUTO;
	if (o->role && !strcmp(o->role, "compactor"))
		s->ccfg.role = CLUSTER_ROLE_COMPACTOR;
	else if (o->role && !strcmp(o->role, "follower"))
		s->ccfg.role = CLUSTER_ROLE_FOLLOWER;
	else if (o->role && strcmp(o->role, "auto") != 0) {
		snprintf(err, errlen, "s3_role=%s: use auto, compactor or follower", o->role);
		return -1;
	}
	if (o->poll &&
	    (parse_duration_ms(o->poll, &poll_ms) < 0 || poll_ms < 100 || poll_ms > 60000)) {
		snprintf(err, errlen, "s3_poll=%s: expected a duration from 100ms to 60s", o->poll);
		return -1;
	}
	if (!s->cluster && (o->role || o->poll)) {
		snprintf(err, errlen,
			 "s3_role= and s3_poll= are for a cluster member: not with s3_cluster=off");
		return -1;
	}
	s->ccfg.poll_ms = (unsigned)poll_ms;
	return 0;
}

/* Everything but the credentials: the options' values into s. */
static int main_s3_values(const struct main_s3_opts *o, main_s3 *s, char *err, size_t errlen)
{
	unsigned parallel = 4, ttl = 60, keep = UPL_DEFAULT_KEEP;
	uint64_t part = 16ull << 20, grace_ms = (uint64_t)UPL_DEFAULT_GRACE_S * 1000;
	char pfx[LAYOUT_PREFIX_MAX];
	s->ucfg.enabled = true;
	if (!o->bucket[0]) {
		snprintf(err, errlen, "s3_bucket= is empty");
		return -1;
	}
	if (main_s3_uint("s3_parallel", o->parallel, 1, 64, &parallel, err, errlen) < 0 ||
	    main_s3_uint("s3_lease_ttl", o->lease_ttl, 15, 86400, &ttl, err, errlen) < 0)
		return -1;
	if (o->keep && strcmp(o->keep, "all") != 0 &&
	    parse_uint(o->keep, 1, UPL_KEEP_MAX, &keep) < 0) {
		snprintf(err, errlen, "s3_keep=%s: expected a whole number from 1 to %d, or all",
			 o->keep, UPL_KEEP_MAX);
		return -1;
	}
	if (o->keep && strcmp(o->keep, "all") == 0)
		keep = 0;
	if (o->grace &&
	    (parse_duration_ms(o->grace, &grace_ms) < 0 || grace_ms / 1000 > 30u * 86400u)) {
		snprintf(err, errlen,
			 "s3_grace=%s: expected a duration up to 30d (a number with ms, s, m, h or d)",
			 o->grace);
		return -1;
	}
	if (o->part_size && (parse_size(o->part_size, &part) < 0 || part < S3_MIN_PART_SIZE ||
			     part > S3_MAX_PART_SIZE)) {
		snprintf(err, errlen, "s3_part_size=%s: expected a size from 5M to 5G", o->part_size);
		return -1;
	}
	if (o->upload) {
		if (strcmp(o->upload, "on") == 0) {
			s->ucfg.enabled = true;
		} else if (strcmp(o->upload, "off") == 0) {
			s->ucfg.enabled = false;
		} else {
			snprintf(err, errlen, "s3_upload=%s: use on or off", o->upload);
			return -1;
		}
	}
	if (layout_prefix_normalize(o->prefix, pfx, sizeof(pfx)) < 0) {
		snprintf(err, errlen,
			 "s3_prefix=%s: not usable (no leading '/', no \"//\", no control characters)",
			 o->prefix);
		return -1;
	}
	if (o->host_id) {
		snprintf(s->host, sizeof(s->host), "%s", o->host_id);
	} else if (gethostname(s->host, sizeof(s->host)) < 0) {
		snprintf(err, errlen,
			 "cannot find the hostname (%s): give s3_host_id=", strerror(errno));
		return -1;
	}
	s->host[sizeof(s->host) - 1] = '\0';
	if (!layout_host_id_valid(s->host) || (o->host_id && strlen(o->host_id) >= sizeof(s->host))) {
		snprintf(err, errlen,
			 "%s%s: not a valid host id (1-64 characters of A-Z a-z 0-9 . _ -, first one "
			 "alphanumeric)%s",
			 o->host_id ? "s3_host_id=" : "hostname ", s->host,
			 o->host_id ? "" : ": give s3_host_id=");
		return -1;
	}
	if (main_s3_cluster_values(o, s, err, errlen) < 0)
		return -1;
	snprintf(s->prefix, sizeof(s->prefix), "%s", pfx);
	s->ucfg.part_size = part;
	s->ucfg.parallel = parallel;
	s->ucfg.lease_ttl_s = ttl;
	s->ucfg.keep = keep;
	/* Whole seconds: S3 times are; a grace under 1 s is 0 (delete as soon as unneeded). */
	s->ucfg.grace_s = (unsigned)(grace_ms / 1000);
	return 0;
}

int main_s3_prepare(const struct main_s3_opts *o, main_s3 **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!o->bucket) {
		if (!main_s3_option_given(o))
			return 0;
		snprintf(err, errlen, "S3 options given without s3_bucket=");
		return -1;
	}
	main_s3 *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (main_s3_values(o, s, err, errlen) < 0) {
		free(s);
		return -1;
	}
	s->opts = o;
	char cerr[512];
	if (s3cred_load(o->profile, &s->cred, cerr, sizeof(cerr)) < 0) {
		snprintf(err, errlen, "S3 credentials: %.400s", cerr);
		free(s);
		return -1;
	}
	s->cfg.diag = log_sink; /* the S3 client reports retries and failed clean-ups to the log */
	s->cfg.bucket = o->bucket;
	s->cfg.endpoint = o->endpoint ? o->endpoint : s->cred.endpoint;
	s->cfg.region = o->region ? o->region : s->cred.region;
	s->cfg.addressing = s->cred.addressing == S3CRED_ADDRESSING_PATH      ? S3_ADDRESSING_PATH
			    : s->cred.addressing == S3CRED_ADDRESSING_VIRTUAL ? S3_ADDRESSING_VIRTUAL
									      : S3_ADDRESSING_AUTO;
	s->cfg.access_key_id = s->cred.access_key_id;
	s->cfg.secret_access_key = s->cred.secret_access_key;
	s->cfg.session_token = s->cred.session_token;
	s->cfg.ca_bundle = s->cred.ca_bundle;
	s->ucfg.s3 = &s->cfg;
	s->ucfg.prefix = o->prefix;
	s->ucfg.host_id = s->host;
	/* A client made now checks the rest (endpoint URL, bucket name) before mounting. */
	s3_client *probe;
	if (s3_client_new(&s->cfg, &probe, cerr, sizeof(cerr)) < 0) {
		snprintf(err, errlen, "S3: %.400s", cerr);
		main_s3_clear(s);
		free(s);
		return -1;
	}
	s3_client_free(probe);
	*out = s;
	return 0;
}

int main_s3_claim(main_s3 *s, store *st, char *err, size_t errlen)
{
	if (!s || !s->cluster)
		return 0;
	return cluster_claim(&s->cfg, s->prefix, s->host, store_instance(st), err, errlen) < 0 ? -1
											       : 0;
}

/* The cluster's hooks: collections other hosts made, snapshots followed. */
static int main_s3_appeared(void *ctx, const char *coll)
{
	main_s3 *s = ctx;
	return vfs_collection_appeared(s->v, coll);
}

static void main_s3_followed(void *ctx, const char *coll, uint64_t id)
{
	main_s3 *s = ctx;
	vfs_published(s->v, coll, id); /* not the uploader's: the snapshot is the pointer's already */
	compactor_adopted(s->comp, coll);
}

/* The vfs's cluster hooks (called with the vfs's lock held: cluster_* take a leaf lock only). */
static void main_s3_queued(void *ctx, const char *coll)
{
	cluster_kick_ship(ctx, coll);
}

static void main_s3_made(void *ctx, const char *coll)
{
	cluster_collection_made(ctx, coll);
}

/* The vfs status hook: the uploader's members, then the cluster's. */
static void main_s3_status(void *ctx, const char *coll, json_t *status, sbuf *metrics)
{
	main_s3 *s = ctx;
	if (coll || metrics)
		upl_status(s->up, coll, status, metrics);
	if (s->cl)
		cluster_status(s->cl, coll, status, metrics);
}

int main_s3_start(main_s3 *s, store *st, vfs *v, char *err, size_t errlen)
{
	const struct main_s3_opts *o = s->opts;
	int rc = 0;
	s->v = v;
	if (s->cluster) {
		s->ccfg.s3 = &s->cfg;
		s->ccfg.prefix = s->prefix;
		s->ccfg.host_id = s->host;
		s->ccfg.lease_ttl_s = s->ucfg.lease_ttl_s;
		s->ccfg.part_size = s->ucfg.part_size;
		s->ccfg.parallel = s->ucfg.parallel;
		s->ccfg.hooks = (struct cluster_hooks){.ctx = s,
						       .appeared = main_s3_appeared,
						       .published = main_s3_followed};
		if ((rc = cluster_prepare(st, err, errlen)) == 0)
			rc = cluster_new(st, &s->ccfg, &s->cl, err, errlen);
		s->ucfg.cluster = true;
		s->ucfg.swapped = cluster_swapped;
		s->ucfg.swapped_ctx = s->cl;
	}
	if (rc == 0)
		rc = upl_start(st, &s->ucfg, &s->up, err, errlen);
	main_s3_clear(s); /* the clients have their own copies of the keys */
	if (rc < 0)
		return -1;
	vfs_set_status_hook(v, main_s3_status, s);
	if (s->cluster) {
		struct vfs_cluster h = {.ctx = s->cl, .queued = main_s3_queued, .made = main_s3_made};
		vfs_set_cluster(v, &h);
	}
	char keeps[16];
	snprintf(keeps, sizeof(keeps), "%u", s->ucfg.keep);
	log_info("uploading snapshots to s3://%s/%s as host %s (%s; s3_keep=%s, s3_grace=%us%s)",
		 o->bucket, o->prefix ? o->prefix : "snapfs/", s->ucfg.host_id,
		 s->ucfg.enabled ? "on" : "off: s3_upload=off", s->ucfg.keep ? keeps : "all",
		 s->ucfg.grace_s, s->cluster ? "; a cluster member" : "");
	return 0;
}

int main_s3_run(main_s3 *s, store *st, compactor *comp, vfs *v, char *err, size_t errlen)
{
	if (!s || !s->cl)
		return 0;
	s->comp = comp;
	return cluster_run(s->cl, comp, s->up, err, errlen) < 0 ? -1 : 0;
}

void main_s3_published(main_s3 *s, const char *coll, uint64_t id)
{
	if (s && s->up)
		upl_published(s->up, coll, id);
}

void main_s3_halt(main_s3 *s)
{
	if (s)
		cluster_stop(s->cl);
}

void main_s3_stop(main_s3 *s)
{
	if (!s)
		return;
	cluster_stop(s->cl);
	upl_stop(s->up); /* may still report a swap to the (stopped) cluster */
	cluster_free(s->cl);
	main_s3_clear(s);
	free(s);
}
