/*
 * snapfs-ctl — verify a snapshot, restore one from S3, show a pointer;
 * list, sweep and repair a collection's part of the bucket (ctl_bucket.c).
 *
 *   snapfs-ctl verify DIR
 *       checks a snapshot directory (a STORE's or the mount's
 *       snapshots/ID, or any copy of one): the database's size and
 *       SHA-256 against MANIFEST.json, and PRAGMA integrity_check.
 *   snapfs-ctl restore [S3 OPTIONS] COLLECTION [SNAPSHOT] DEST
 *       downloads the snapshot the collection's pointer names (or
 *       SNAPSHOT: any kept snapshot, by its id, ID-HOST, or its directory
 *       ID-HOST-INST in the bucket), checks its
 *       size and SHA-256 against its manifest (and the pointer), runs
 *       PRAGMA integrity_check, and only then renames it to DEST: DEST is
 *       either the whole verified database or untouched.
 *   snapfs-ctl pointer [S3 OPTIONS] COLLECTION
 *       prints the pointer object and its ETag.
 *   snapfs-ctl ls [S3 OPTIONS] [RULES] [COLLECTION...]
 *   snapfs-ctl sweep [S3 OPTIONS] [RULES] [--dry-run] [COLLECTION...]
 *   snapfs-ctl repair [S3 OPTIONS] COLLECTION [SNAPSHOT]
 *       see ctl_bucket.c. RULES: --keep N|all, --grace DURATION,
 *       --upload-age DURATION (as the daemon's s3_keep and s3_grace).
 *
 * S3 OPTIONS: --bucket NAME (required), --prefix PREFIX (default
 * snapfs/), --endpoint URL, --region REGION, --profile NAME. Credentials
 * come only from the environment and the AWS files (s3_cred.h).
 *
 * Each command prints one JSON line on success. Exit status: 0 done,
 * 1 failed (the reason on stderr), 2 usage, 3 verification failed (the
 * snapshot is not what its manifest says: nothing was written).
 *
 * Built without S3 (meson -Ds3=disabled) it is verify alone; the other
 * commands fail (1) saying so.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsx.h"
#include "ctl.h"
#include "hex.h"
#include "jsonx.h"
#include "log.h"
#include "manifest.h"
#include "sqlh.h"
#include "parse.h"
#include "sbuf.h"
#if SNAPFS_WITH_S3 /* meson -Ds3=disabled builds verify alone (the #else at the end) */
#include "layout.h"
#include "lease.h"
#include "s3.h"
#include "s3_cred.h"
#include "uploader.h"
#endif

#define CTL_MANIFEST_MAX (16u << 20)

void ctl_print(json_t *doc)
{
	sbuf out = SBUF_INIT;
	jsonx_dump(doc, 0, &out);
	sbuf_adds(&out, "\n");
	fputs(sbuf_str(&out), stdout);
	sbuf_free(&out);
	json_decref(doc);
}

static void ctl_usage(FILE *f)
{
	fprintf(f, "usage: snapfs-ctl verify DIR\n"
		   "       snapfs-ctl restore [S3 OPTIONS] COLLECTION [SNAPSHOT] DEST\n"
		   "       snapfs-ctl pointer [S3 OPTIONS] COLLECTION\n"
		   "       snapfs-ctl ls [S3 OPTIONS] [RULES] [COLLECTION...]\n"
		   "       snapfs-ctl sweep [S3 OPTIONS] [RULES] [--dry-run] [COLLECTION...]\n"
		   "       snapfs-ctl repair [S3 OPTIONS] COLLECTION [SNAPSHOT]\n"
		   "       snapfs-ctl cluster [S3 OPTIONS] [COLLECTION...]\n"
		   "\n"
		   "verify   check a snapshot directory: size and SHA-256 against MANIFEST.json,\n"
		   "         PRAGMA integrity_check\n"
		   "restore  download the snapshot the collection's pointer names (or SNAPSHOT:\n"
		   "         its id, ID-HOST or ID-HOST-INST as ls shows it), verify it the same\n"
		   "         way, write it to DEST atomically\n"
		   "pointer  print the collection's pointer object\n"
		   "ls       what is in the bucket per collection: the pointer, each snapshot\n"
		   "         (pointer, kept, newer, expired, orphan) and what the sweep does\n"
		   "         with it, multipart uploads, keys that are not snapfs's\n"
		   "sweep    delete what the rules no longer keep, as the daemon does, under the\n"
		   "         collection's lease; --dry-run: only show it (as ls)\n"
		   "repair   replace a lease.json or pointer.json that is not a document of its\n"
		   "         kind (compare-and-swap, holding the lease); the new pointer names\n"
		   "         SNAPSHOT or the newest whole snapshot in the bucket\n"
		   "cluster  the hosts sharing the bucket and prefix (their claims), and per\n"
		   "         collection its lease, pointer and the deltas each host shipped\n"
		   "         that no snapshot the pointer names holds yet\n"
		   "\n"
		   "S3 OPTIONS: --bucket NAME (required), --prefix PREFIX (default snapfs/),\n"
		   "            --endpoint URL, --region REGION, --profile NAME\n"
		   "RULES:      --keep N|all (default 4), --grace DURATION (default 10m),\n"
		   "            --upload-age DURATION (default 24h): give the daemons' values\n"
		   "Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile of\n"
		   "~/.aws/credentials and ~/.aws/config; never an option.\n"
		   "Exit status: 0 done, 1 failed, 2 usage, 3 verification failed.\n");
}

/* PRAGMA integrity_check of path, opened read-only and immutable: "ok" or what it said. */
static int ctl_integrity(const char *path, char *out, size_t len)
{
	sqlite3 *db = NULL;
	char oerr[512];
	int rc = sqlh_open_ro(path, &db, oerr, sizeof(oerr)) == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
	sqlite3_stmt *st = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
	sbuf res = SBUF_INIT;
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			if (res.len)
				sbuf_adds(&res, "; ");
			sbuf_adds(&res, (const char *)sqlite3_column_text(st, 0));
		}
	}
	if (rc != SQLITE_DONE)
		snprintf(out, len, "%s", db ? sqlite3_errmsg(db) : oerr);
	else
		snprintf(out, len, "%s", sbuf_str(&res));
	sbuf_free(&res);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc == SQLITE_DONE && strcmp(out, "ok") == 0 ? 0 : -1;
}

/* ---- verify DIR ---- */

static int ctl_verify(const char *dir)
{
	char mpath[PATH_MAX], dbpath[PATH_MAX], file[256] = "", sha[FSX_SHA256_HEX], msha[65];
	char ic[512];
	char *doc = NULL;
	size_t len;
	uint64_t msize, mid, size;
	unsigned char raw[FSX_SHA256_LEN];
	if (snprintf(mpath, sizeof(mpath), "%s/MANIFEST.json", dir) >= (int)sizeof(mpath)) {
		fprintf(stderr, "snapfs-ctl: verify %s: path too long\n", dir);
		return CTL_FAIL;
	}
	int rc = fsx_read_all(mpath, &doc, &len);
	if (rc < 0) {
		fprintf(stderr, "snapfs-ctl: verify %s: cannot read %s: %s\n", dir, mpath,
			strerror(-rc));
		return CTL_FAIL;
	}
	if (manifest_read_basic(doc, &msize, msha, &mid) < 0 ||
	    manifest_read_file(doc, file, sizeof(file)) < 0 || !file[0] || strchr(file, '/') ||
	    strcmp(file, "..") == 0 || strcmp(file, ".") == 0) {
		free(doc);
		fprintf(stderr,
			"snapfs-ctl: verify %s: %s is not a snapfs manifest (file, size, sha256, id)\n",
			dir, mpath);
		return CTL_BAD;
	}
	free(doc);
	snprintf(dbpath, sizeof(dbpath), "%s/%s", dir, file);
	if ((rc = fsx_sha256_file(dbpath, raw, &size)) < 0) {
		fprintf(stderr, "snapfs-ctl: verify %s: cannot read %s: %s\n", dir, dbpath,
			strerror(-rc));
		return CTL_FAIL;
	}
	hex_encode(raw, sizeof(raw), sha);
	if (size != msize) {
		fprintf(stderr,
			"snapfs-ctl: verify %s: %s is %" PRIu64 " bytes, the manifest says %" PRIu64
			"\n",
			dir, dbpath, size, msize);
		return CTL_BAD;
	}
	if (strcmp(sha, msha) != 0) {
		fprintf(stderr, "snapfs-ctl: verify %s: SHA-256 of %s is %s, the manifest says %s\n",
			dir, dbpath, sha, msha);
		return CTL_BAD;
	}
	if (ctl_integrity(dbpath, ic, sizeof(ic)) < 0) {
		fprintf(stderr, "snapfs-ctl: verify %s: PRAGMA integrity_check of %s: %s\n", dir,
			dbpath, ic);
		return CTL_BAD;
	}
	json_t *out = json_object();
	jsonx_set(out, "verified", jsonx_str(dir));
	jsonx_set(out, "file", jsonx_str(file));
	jsonx_set(out, "id", jsonx_u64(mid));
	jsonx_set(out, "size", jsonx_u64(size));
	jsonx_set(out, "sha256", jsonx_str(sha));
	jsonx_set(out, "integrity_check", jsonx_str("ok"));
	ctl_print(out);
	return CTL_OK;
}

#if SNAPFS_WITH_S3
/* ---- S3 ---- */

static int ctl_client(const struct ctl_opts *o, s3_client **c)
{
	struct s3cred cred;
	char err[512];
	if (!o->bucket) {
		fprintf(stderr, "snapfs-ctl: --bucket is required\n");
		return CTL_USAGE;
	}
	if (s3cred_load(o->profile, &cred, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapfs-ctl: S3 credentials: %s\n", err);
		return CTL_FAIL;
	}
	struct s3_config cfg = {
		.endpoint = o->endpoint ? o->endpoint : cred.endpoint,
		.region = o->region ? o->region : cred.region,
		.diag = log_sink,
		.bucket = o->bucket,
		.addressing = cred.addressing == S3CRED_ADDRESSING_PATH      ? S3_ADDRESSING_PATH
			      : cred.addressing == S3CRED_ADDRESSING_VIRTUAL ? S3_ADDRESSING_VIRTUAL
									     : S3_ADDRESSING_AUTO,
		.access_key_id = cred.access_key_id,
		.secret_access_key = cred.secret_access_key,
		.session_token = cred.session_token,
		.ca_bundle = cred.ca_bundle,
	};
	int rc = s3_client_new(&cfg, c, err, sizeof(err));
	s3cred_clear(&cred);
	if (rc < 0) {
		fprintf(stderr, "snapfs-ctl: S3: %s\n", err);
		return CTL_FAIL;
	}
	return CTL_OK;
}

static int ctl_pointer(s3_client *c, const char *prefix, const char *coll)
{
	char key[S3_KEY_MAX + 1], etag[S3_ETAG_MAX];
	struct lease_pointer p;
	struct s3_error e;
	bool present;
	if (layout_pointer_key(prefix, coll, key, sizeof(key)) < 0) {
		fprintf(stderr, "snapfs-ctl: collection name too long\n");
		return CTL_USAGE;
	}
	struct lease_history h;
	if (lease_pointer_get(c, key, &p, &h, etag, &present, &e) < 0) {
		ctl_s3_error("reading the pointer", &e);
		return CTL_FAIL;
	}
	if (!present) {
		fprintf(stderr, "snapfs-ctl: no pointer at s3://%s/%s\n", s3_client_bucket(c), key);
		return CTL_FAIL;
	}
	json_t *out = json_object();
	jsonx_set(out, "key", jsonx_str(key));
	jsonx_set(out, "etag", jsonx_str(etag));
	jsonx_set(out, "pointer", lease_pointer_to_json(&p, &h));
	lease_history_free(&h);
	ctl_print(out);
	return CTL_OK;
}

/* What restore fetches: the keys, and what the manifest says they must be. */
struct ctl_restore_src {
	char db_key[S3_KEY_MAX + 1], man_key[S3_KEY_MAX + 1];
	struct lease_pointer p; /* when restoring what the pointer names */
	bool from_pointer;
	uint64_t size, id; /* the manifest's */
	char sha256[65];
};

/* The keys of what the pointer names (snap NULL) or of snapshot snap. A CTL_ code. */
static int ctl_restore_keys(s3_client *c, const struct ctl_opts *o, const char *coll,
			    const char *snap, struct ctl_restore_src *r)
{
	char ptr_key[S3_KEY_MAX + 1];
	struct s3_error e;
	bool present;
	r->from_pointer = snap == NULL;
	if (snap) {
		char leaf[STORE_NAME_MAX + 16], dir[LAYOUT_DIR_MAX];
		snprintf(leaf, sizeof(leaf), "%s.sqlite3", coll);
		int ret = ctl_find_snapshot(c, o, coll, snap, dir);
		if (ret != CTL_OK)
			return ret;
		if (layout_snapshot_key(o->nprefix, coll, dir, leaf, r->db_key, sizeof(r->db_key)) <
			    0 ||
		    layout_snapshot_key(o->nprefix, coll, dir, "MANIFEST.json", r->man_key,
					sizeof(r->man_key)) < 0)
			return CTL_USAGE;
		return CTL_OK;
	}
	if (layout_pointer_key(o->nprefix, coll, ptr_key, sizeof(ptr_key)) < 0)
		return CTL_USAGE;
	if (lease_pointer_get(c, ptr_key, &r->p, NULL, NULL, &present, &e) < 0) {
		ctl_s3_error("reading the pointer", &e);
		return CTL_FAIL;
	}
	if (!present) {
		fprintf(stderr, "snapfs-ctl: no pointer at s3://%s/%s: nothing uploaded yet?\n",
			s3_client_bucket(c), ptr_key);
		return CTL_FAIL;
	}
	snprintf(r->db_key, sizeof(r->db_key), "%s", r->p.db_key);
	snprintf(r->man_key, sizeof(r->man_key), "%s", r->p.manifest_key);
	return CTL_OK;
}

/* Reads the manifest: what the database must be; it must agree with the pointer. A CTL_ code. */
static int ctl_restore_manifest(s3_client *c, struct ctl_restore_src *r, const char *dest)
{
	const char *bucket = s3_client_bucket(c);
	void *mdoc = NULL;
	size_t mlen;
	struct s3_object_info info;
	struct s3_error e;
	if (s3_get_buf(c, r->man_key, NULL, CTL_MANIFEST_MAX, &mdoc, &mlen, &info, &e) < 0) {
		ctl_s3_error("reading the manifest", &e);
		return CTL_FAIL;
	}
	s3_object_info_free(&info);
	int mrc = manifest_read_basic(mdoc, &r->size, r->sha256, &r->id);
	free(mdoc);
	if (mrc < 0) {
		fprintf(stderr,
			"snapfs-ctl: refusing s3://%s/%s: not a snapfs manifest; %s not written\n",
			bucket, r->man_key, dest);
		return CTL_BAD;
	}
	if (r->from_pointer && (strcmp(r->p.sha256, r->sha256) != 0 || r->p.size != r->size)) {
		fprintf(stderr,
			"snapfs-ctl: refusing: the pointer says SHA-256 %s, %" PRIu64
			" bytes, but the manifest s3://%s/%s says %s, %" PRIu64
			" bytes; %s not written\n",
			r->p.sha256, r->p.size, bucket, r->man_key, r->sha256, r->size, dest);
		return CTL_BAD;
	}
	return CTL_OK;
}

/* Checks the downloaded file (fd, at tmp) against the manifest. A CTL_ code. */
static int ctl_restore_verify(s3_client *c, const struct ctl_restore_src *r, int fd,
			      const char *tmp, const char *sha, const char *dest)
{
	const char *bucket = s3_client_bucket(c);
	struct stat st;
	char ic[512];
	if (fstat(fd, &st) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "snapfs-ctl: writing %s: %s\n", tmp, strerror(errno));
		return CTL_FAIL;
	}
	if ((uint64_t)st.st_size != r->size) {
		fprintf(stderr,
			"snapfs-ctl: refusing s3://%s/%s: %" PRIu64
			" bytes, its manifest says %" PRIu64 "; %s not written\n",
			bucket, r->db_key, (uint64_t)st.st_size, r->size, dest);
		return CTL_BAD;
	}
	if (strcmp(sha, r->sha256) != 0) {
		fprintf(stderr,
			"snapfs-ctl: refusing s3://%s/%s: its SHA-256 is %s but its manifest says %s "
			"(damaged or replaced); %s not written\n",
			bucket, r->db_key, sha, r->sha256, dest);
		return CTL_BAD;
	}
	if (ctl_integrity(tmp, ic, sizeof(ic)) < 0) {
		fprintf(stderr,
			"snapfs-ctl: refusing s3://%s/%s: PRAGMA integrity_check: %s; %s not "
			"written\n",
			bucket, r->db_key, ic, dest);
		return CTL_BAD;
	}
	return CTL_OK;
}

static void ctl_restore_print(const struct ctl_restore_src *r, const char *dest)
{
	json_t *out = json_object();
	jsonx_set(out, "restored", jsonx_str(dest));
	jsonx_set(out, "key", jsonx_str(r->db_key));
	jsonx_set(out, "id", jsonx_u64(r->id));
	jsonx_set(out, "size", jsonx_u64(r->size));
	jsonx_set(out, "sha256", jsonx_str(r->sha256));
	jsonx_set(out, "integrity_check", jsonx_str("ok"));
	if (r->from_pointer) {
		jsonx_set(out, "generation", jsonx_u64(r->p.generation));
		jsonx_set(out, "host", jsonx_str(r->p.host));
	}
	ctl_print(out);
}

/*
 * Restores what the pointer names (snap NULL) or snapshot snap to dest:
 * downloaded beside dest, checked against its manifest (size, SHA-256,
 * integrity_check), synced, made read-only and renamed over dest.
 */
static int ctl_restore(s3_client *c, const struct ctl_opts *o, const char *coll, const char *snap,
		       const char *dest)
{
	struct ctl_restore_src r = {0};
	if (!store_name_valid(coll)) {
		fprintf(stderr, "snapfs-ctl: \"%s\" is not a collection name\n", coll);
		return CTL_USAGE;
	}
	int ret = ctl_restore_keys(c, o, coll, snap, &r);
	if (ret == CTL_OK)
		ret = ctl_restore_manifest(c, &r, dest);
	if (ret != CTL_OK)
		return ret;

	char tmp[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	int dlen = slash ? (int)(slash - dest) + 1 : 0;
	if (snprintf(tmp, sizeof(tmp), "%.*s.%s.snapfs-restore.XXXXXX", dlen, dest,
		     slash ? slash + 1 : dest) >= (int)sizeof(tmp)) {
		fprintf(stderr, "snapfs-ctl: %s: path too long\n", dest);
		return CTL_USAGE;
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "snapfs-ctl: cannot create a temporary file beside %s: %s\n", dest,
			strerror(errno));
		return CTL_FAIL;
	}
	char sha[FSX_SHA256_HEX];
	struct s3_object_info info;
	struct s3_error e;
	ret = CTL_FAIL;
	if (s3_get_fd(c, r.db_key, NULL, fd, sha, &info, &e) < 0) {
		ctl_s3_error("downloading the snapshot", &e);
		goto out;
	}
	s3_object_info_free(&info);
	if ((ret = ctl_restore_verify(c, &r, fd, tmp, sha, dest)) != CTL_OK)
		goto out;
	ret = CTL_FAIL;
	if (fchmod(fd, 0444) < 0 || close(fd) < 0) {
		fd = -1;
		fprintf(stderr, "snapfs-ctl: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, dest) < 0) {
		fprintf(stderr, "snapfs-ctl: cannot rename %s to %s: %s\n", tmp, dest,
			strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	int rc = fsx_fsync_parent(dest);
	if (rc < 0)
		fprintf(stderr, "snapfs-ctl: warning: fsync of the directory of %s: %s\n", dest,
			strerror(-rc));
	ctl_restore_print(&r, dest);
	ret = CTL_OK;
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	return ret;
}

enum { OPT_KEEP = 256, OPT_GRACE, OPT_UPLOAD_AGE, OPT_DRY_RUN };

/* One option into o; CTL_OK, or CTL_USAGE with the reason on stderr. */
static int ctl_option(struct ctl_opts *o, int ch, const char *arg)
{
	uint64_t ms;
	switch (ch) {
	case 'b': o->bucket = arg; break;
	case 'p': o->prefix = arg; break;
	case 'e': o->endpoint = arg; break;
	case 'r': o->region = arg; break;
	case 'P': o->profile = arg; break;
	case OPT_DRY_RUN: o->dry_run = true; break;
	case OPT_KEEP:
		if (strcmp(arg, "all") == 0) {
			o->keep = 0;
		} else if (parse_uint(arg, 1, UPL_KEEP_MAX, &o->keep) < 0) {
			fprintf(stderr,
				"snapfs-ctl: --keep %s: a whole number from 1 to %d, or all\n", arg,
				UPL_KEEP_MAX);
			return CTL_USAGE;
		}
		break;
	case OPT_GRACE:
	case OPT_UPLOAD_AGE:
		if (parse_duration_ms(arg, &ms) < 0 || ms / 1000 > 365u * 86400u) {
			fprintf(stderr,
				"snapfs-ctl: --%s %s: a duration (a number with ms, s, m, h or d)\n",
				ch == OPT_GRACE ? "grace" : "upload-age", arg);
			return CTL_USAGE;
		}
		if (ch == OPT_GRACE)
			o->grace_s = (unsigned)(ms / 1000);
		else
			o->upload_age_s = (unsigned)(ms / 1000);
		break;
	case 'h': ctl_usage(stdout); return -1;
	default: ctl_usage(stderr); return CTL_USAGE;
	}
	return CTL_OK;
}

int main(int argc, char **argv)
{
	struct ctl_opts o = {.keep = UPL_DEFAULT_KEEP,
			     .grace_s = UPL_DEFAULT_GRACE_S,
			     .upload_age_s = SWEEP_DEFAULT_UPLOAD_AGE_S};
	static const struct option lo[] = {
		{"bucket", required_argument, NULL, 'b'},
		{"prefix", required_argument, NULL, 'p'},
		{"endpoint", required_argument, NULL, 'e'},
		{"region", required_argument, NULL, 'r'},
		{"profile", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{"keep", required_argument, NULL, OPT_KEEP},
		{"grace", required_argument, NULL, OPT_GRACE},
		{"upload-age", required_argument, NULL, OPT_UPLOAD_AGE},
		{"dry-run", no_argument, NULL, OPT_DRY_RUN},
		{NULL, 0, NULL, 0},
	};
	int ch, rc;
	log_init(false, LOG_WARNING);
	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1)
		if ((rc = ctl_option(&o, ch, optarg)) != CTL_OK)
			return rc < 0 ? CTL_OK : rc;
	if (optind >= argc) {
		ctl_usage(stderr);
		return CTL_USAGE;
	}
	const char *cmd = argv[optind];
	/* Options may also follow the command, anywhere: a second scan from it. */
	argv += optind;
	argc -= optind;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1)
		if ((rc = ctl_option(&o, ch, optarg)) != CTL_OK)
			return rc < 0 ? CTL_OK : rc;
	char **pos = argv + optind;
	int npos = argc - optind;
	if (strcmp(cmd, "verify") == 0) {
		if (npos != 1) {
			ctl_usage(stderr);
			return CTL_USAGE;
		}
		return ctl_verify(pos[0]);
	}
	bool restore = strcmp(cmd, "restore") == 0, pointer = strcmp(cmd, "pointer") == 0,
	     ls = strcmp(cmd, "ls") == 0, sweep = strcmp(cmd, "sweep") == 0,
	     repair = strcmp(cmd, "repair") == 0, cluster = strcmp(cmd, "cluster") == 0;
	if ((!restore && !pointer && !ls && !sweep && !repair && !cluster) ||
	    (restore && (npos < 2 || npos > 3)) || (pointer && npos != 1) ||
	    (repair && (npos < 1 || npos > 2))) {
		ctl_usage(stderr);
		return CTL_USAGE;
	}
	if (layout_prefix_normalize(o.prefix, o.nprefix, sizeof(o.nprefix)) < 0) {
		fprintf(stderr, "snapfs-ctl: --prefix %s: not usable\n", o.prefix);
		return CTL_USAGE;
	}
	s3_client *c = NULL;
	rc = ctl_client(&o, &c);
	if (rc != CTL_OK)
		return rc;
	if (pointer)
		rc = ctl_pointer(c, o.nprefix, pos[0]);
	else if (restore)
		rc = ctl_restore(c, &o, pos[0], npos == 3 ? pos[1] : NULL, pos[npos - 1]);
	else if (ls)
		rc = ctl_ls(c, &o, pos, npos);
	else if (sweep)
		rc = ctl_sweep(c, &o, pos, npos);
	else if (cluster)
		rc = ctl_cluster(c, &o, pos, npos);
	else
		rc = ctl_repair(c, &o, pos[0], npos == 2 ? pos[1] : NULL);
	s3_client_free(c);
	return rc;
}

#else /* SNAPFS_WITH_S3: built with -Ds3=disabled, verify alone */

int main(int argc, char **argv)
{
	static const char *const s3_commands[] = {"restore", "pointer", "ls",
						  "sweep",   "repair",  "cluster"};
	log_init(false, LOG_WARNING);
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		ctl_usage(stdout);
		printf("This snapfs-ctl was built without S3 (meson -Ds3=disabled): only verify works.\n");
		return CTL_OK;
	}
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return ctl_verify(argv[2]);
	for (size_t i = 0; argc > 1 && i < sizeof(s3_commands) / sizeof(s3_commands[0]); i++)
		if (strcmp(argv[1], s3_commands[i]) == 0) {
			fprintf(stderr,
				"snapfs-ctl: %s: this snapfs-ctl was built without S3 (meson "
				"-Ds3=disabled); only verify works\n",
				argv[1]);
			return CTL_FAIL;
		}
	ctl_usage(stderr);
	return CTL_USAGE;
}
#endif
