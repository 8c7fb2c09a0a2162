/*
 * test_sigv4 — the signer against published vectors, read in place:
 *  - $SNAPFS_TESTDATA/aws-sigv4/v4/ (tests/data): the aws-c-auth SigV4 suite;
 *    every directory holding files is a case (sub-folders included) and
 *    its canonical request, string to sign, signature, Authorization
 *    header and added headers are compared (header signing; the query-*
 *    files are for presigned URLs, which the signer does not make);
 *  - $SNAPFS_TESTDATA/s3-sigv4-examples.txt (tests/data): the four worked S3
 *    examples from the S3 API reference.
 * One line per failing comparison, with the first differing line; then
 * the number of cases found and passed. The vectors travel with the repo:
 * without them the test fails. The checks that need no data (encoding,
 * refusals, normalization) are test_sigv4_self.c.
 */
#include "sigv4.h"
#include "sigv4test.h"
#include "tap.h"

#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- context.json (jansson) ------------------------------------------ */

static const char *const context_keys[] = {
	"credentials", "expiration_in_seconds", /* presigned URLs only */
	"normalize",   "region",
	"service",     "sign_body",
	"timestamp",   "omit_session_token",
};
static const char *const credential_keys[] = {"access_key_id", "secret_access_key", "token"};

static bool key_known(const char *key, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/*
 * The first key of the context that the runner does not know, into buf
 * ("credentials.x" for one in credentials), or NULL: a flag we do not
 * know could change the expected result.
 */
static const char *context_unknown_key(json_t *ctx, char *buf, size_t len)
{
	const char *key, *ck;
	json_t *v, *cv;
	json_object_foreach(ctx, key, v)
	{
		if (!key_known(key, context_keys, sizeof(context_keys) / sizeof(context_keys[0])) ||
		    (strcmp(key, "credentials") != 0 && (json_is_object(v) || json_is_array(v)))) {
			snprintf(buf, len, "%s", key);
			return buf;
		}
		if (strcmp(key, "credentials") != 0)
			continue;
		json_object_foreach(v, ck, cv)
		{
			if (!key_known(ck, credential_keys,
				       sizeof(credential_keys) / sizeof(credential_keys[0]))) {
				snprintf(buf, len, "credentials.%s", ck);
				return buf;
			}
		}
	}
	return NULL;
}

/* The string at key of o (NULL if o or it is missing or not a string). */
static const char *ctx_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---- the aws-sigv4 suite ---------------------------------------------- */

struct tally {
	int cases, passed;
};

/* Counts one case and reports it as one TAP result. */
static void tally(struct tally *t, bool ok, const char *name)
{
	t->cases++;
	t->passed += ok;
	tap_case(ok, name);
}

/* Expected file of a case, trailing newlines dropped; NULL and a FAIL line if missing. */
static char *expected(const char *cas, const char *dir, const char *file)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *s = sigt_read_file(path, NULL);
	if (!s) {
		tap_note("FAIL %s: cannot read %s: %s\n", cas, file, strerror(errno));
		return NULL;
	}
	sigt_rstrip(s);
	return s;
}

/* The context.json of a case: its own, or the nearest one above it within root. */
static char *find_context(const char *root, const char *dir)
{
	char d[4096];
	snprintf(d, sizeof(d), "%s", dir);
	for (;;) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/context.json", d);
		char *s = sigt_read_file(path, NULL);
		if (s || strcmp(d, root) == 0)
			return s;
		char *slash = strrchr(d, '/');
		if (!slash || (size_t)(slash - d) < strlen(root))
			return NULL;
		*slash = '\0';
	}
}

/* Runs one case; true if everything matched. */
static bool suite_case(const char *root, const char *dir, const char *cas)
{
	bool ok = false;
	json_t *ctx = NULL;
	json_error_t jerr;
	struct sigt_req req, sreq;
	memset(&req, 0, sizeof(req));
	memset(&sreq, 0, sizeof(sreq));
	sigv4_signer *signer = NULL;
	sigv4_signed *sig = NULL;
	char *want_creq = NULL, *want_sts = NULL, *want_sig = NULL, *ctx_text = NULL, *raw = NULL,
	     *sraw = NULL;
	char why[512] = "", err[512] = "";

	ctx_text = find_context(root, dir);
	if (!ctx_text) {
		tap_note("FAIL %s: no context.json in the case or above it\n", cas);
		goto out;
	}
	/* Strict, as snapfs reads its own documents: a key given twice is refused. */
	ctx = json_loads(ctx_text, JSON_REJECT_DUPLICATES, &jerr);
	if (!ctx || !json_is_object(ctx)) {
		tap_note("FAIL %s: context.json: %s (line %d)\n", cas,
			 ctx ? "not an object" : jerr.text, jerr.line);
		goto out;
	}
	char unknown[256];
	if (context_unknown_key(ctx, unknown, sizeof(unknown))) {
		tap_note("FAIL %s: context.json: unknown key \"%s\"\n", cas, unknown);
		goto out;
	}
	json_t *creds = json_object_get(ctx, "credentials");
	const char *ak = ctx_str(creds, "access_key_id"), *sk = ctx_str(creds, "secret_access_key"),
		   *tok = ctx_str(creds, "token"), *region = ctx_str(ctx, "region"),
		   *service = ctx_str(ctx, "service"), *ts = ctx_str(ctx, "timestamp");
	if (!ak || !sk || !region || !service || !ts) {
		tap_note("FAIL %s: context.json lacks a credential, region, service or timestamp "
			 "string\n",
			 cas);
		goto out;
	}
	time_t when;
	if (!sigt_parse_time(ts, "%Y-%m-%dT%H:%M:%SZ", &when)) {
		tap_note("FAIL %s: context.json: timestamp \"%s\" is not YYYY-MM-DDTHH:MM:SSZ\n",
			 cas, ts);
		goto out;
	}

	char path[4096];
	size_t raw_len, sraw_len;
	snprintf(path, sizeof(path), "%s/request.txt", dir);
	raw = sigt_read_file(path, &raw_len);
	if (!raw) {
		tap_note("FAIL %s: cannot read request.txt: %s\n", cas, strerror(errno));
		goto out;
	}
	if (sigt_req_parse(raw, raw_len, &req, why, sizeof(why))) {
		tap_note("FAIL %s: request.txt: %s\n", cas, why);
		goto out;
	}
	want_creq = expected(cas, dir, "header-canonical-request.txt");
	want_sts = expected(cas, dir, "header-string-to-sign.txt");
	want_sig = expected(cas, dir, "header-signature.txt");
	snprintf(path, sizeof(path), "%s/header-signed-request.txt", dir);
	sraw = sigt_read_file(path, &sraw_len);
	if (!sraw)
		tap_note("FAIL %s: cannot read header-signed-request.txt: %s\n", cas,
			 strerror(errno));
	if (!want_creq || !want_sts || !want_sig || !sraw)
		goto out;
	if (sigt_req_parse(sraw, sraw_len, &sreq, why, sizeof(why))) {
		tap_note("FAIL %s: header-signed-request.txt: %s\n", cas, why);
		goto out;
	}

	struct sigv4_credentials cred = {ak, sk, tok};
	if (sigv4_signer_new(&cred, region, service, &signer, err, sizeof(err))) {
		tap_note("FAIL %s: %s\n", cas, err);
		goto out;
	}
	char payload[SIGV4_SHA256_HEX_LEN + 1];
	if (sigv4_sha256_hex(req.body, req.body_len, payload)) {
		tap_note("FAIL %s: SHA-256 of the body failed\n", cas);
		goto out;
	}
	struct sigv4_request sr = {
		.method = req.method,
		.path = req.path,
		.query = req.query,
		.headers = req.h,
		.n_headers = req.nh,
		.payload_sha256 = payload,
		.when = when,
		.flags = (json_is_true(json_object_get(ctx, "normalize")) ? SIGV4_NORMALIZE_PATH : 0) |
			 (json_is_true(json_object_get(ctx, "sign_body")) ? SIGV4_CONTENT_SHA256 : 0) |
			 (json_is_true(json_object_get(ctx, "omit_session_token")) ? SIGV4_UNSIGNED_TOKEN
										   : 0),
	};
	if (sigv4_sign(signer, &sr, &sig, err, sizeof(err))) {
		tap_note("FAIL %s: %s\n", cas, err);
		goto out;
	}
	ok = sigt_same(cas, "canonical request", want_creq, sigv4_signed_canonical_request(sig));
	ok &= sigt_same(cas, "string to sign", want_sts, sigv4_signed_string_to_sign(sig));
	ok &= sigt_same(cas, "signature", want_sig, sigv4_signed_signature(sig));

	/* The signed request: Authorization, and exactly the headers we said to add. */
	const char *want_auth = sigt_req_header(&sreq, "Authorization");
	ok &= sigt_same(cas, "Authorization", want_auth, sigv4_signed_authorization(sig));
	size_t n_added;
	const struct sigv4_header *added = sigv4_signed_added_headers(sig, &n_added);
	size_t n_new = 0;
	for (size_t i = 0; i < sreq.nh; i++) {
		const char *name = sreq.h[i].name;
		if (strcasecmp(name, "Authorization") == 0 || sigt_req_header(&req, name))
			continue;
		n_new++;
		const char *mine = NULL;
		for (size_t k = 0; k < n_added; k++)
			if (strcasecmp(added[k].name, name) == 0)
				mine = added[k].value;
		if (!mine) {
			tap_note("FAIL %s: the signed request has %s, which the signer did not add\n",
				 cas, name);
			ok = false;
		} else {
			char what[128];
			snprintf(what, sizeof(what), "added header %s", name);
			ok &= sigt_same(cas, what, sreq.h[i].value, mine);
		}
	}
	if (n_new != n_added) {
		tap_note("FAIL %s: the signer added %zu headers, the signed request has %zu new "
			 "ones\n",
			 cas, n_added, n_new);
		ok = false;
	}
out:
	sigv4_signed_free(sig);
	sigv4_signer_free(signer);
	sigt_req_free(&req);
	sigt_req_free(&sreq);
	json_decref(ctx);
	free(ctx_text);
	free(raw);
	free(sraw);
	free(want_creq);
	free(want_sts);
	free(want_sig);
	return ok;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Walks dir: a directory holding any regular file is a case (it must
 * then hold request.txt); sub-directories are walked too, so grouped or
 * nested variants count. Nothing found is skipped silently.
 */
static void suite_walk(const char *root, const char *dir, struct tally *t)
{
	DIR *d = opendir(dir);
	if (!d) {
		tap_note("FAIL %s: cannot open: %s\n", dir, strerror(errno));
		tally(t, false, dir);
		return;
	}
	char **subs = NULL;
	size_t nsub = 0, cap = 0;
	bool has_files = false;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (sigt_is_dir(path)) {
			if (nsub == cap) {
				cap = cap ? 2 * cap : 64;
				subs = realloc(subs, cap * sizeof(*subs));
				if (!subs) {
					perror("realloc");
					exit(2);
				}
			}
			subs[nsub++] = sigt_strndup(path, strlen(path));
		} else if (strcmp(e->d_name, "context.json") != 0 || strcmp(dir, root) != 0) {
			has_files = true;
		}
	}
	closedir(d);
	if (has_files) {
		const char *cas = dir + strlen(root) + (strlen(dir) > strlen(root));
		char label[4200];
		snprintf(label, sizeof(label), "aws-sigv4/%s", cas);
		char req[4200];
		snprintf(req, sizeof(req), "%s/request.txt", dir);
		bool ok = false;
		if (access(req, R_OK) != 0)
			tap_note("FAIL %s: holds files but no readable request.txt: %s\n", label,
				 strerror(errno));
		else
			ok = suite_case(root, dir, label);
		tally(t, ok, label);
	}
	if (nsub)
		qsort(subs, nsub, sizeof(*subs), name_cmp);
	for (size_t i = 0; i < nsub; i++) {
		suite_walk(root, subs[i], t);
		free(subs[i]);
	}
	free(subs);
}

/* ---- the S3 examples ------------------------------------------------- */

struct s3_example {
	char name[128];
	int line;
	char *method, *path, *query, *body, *canonical_path, *canonical_query, *signed_headers,
		*signature;
	struct sigv4_header h[32];
	size_t nh;
	char bad[256]; /* why this block cannot be run, if it cannot */
};

static void s3_example_free(struct s3_example *x)
{
	free(x->method);
	free(x->path);
	free(x->query);
	free(x->body);
	free(x->canonical_path);
	free(x->canonical_query);
	free(x->signed_headers);
	free(x->signature);
	for (size_t i = 0; i < x->nh; i++) {
		free((char *)x->h[i].name);
		free((char *)x->h[i].value);
	}
	memset(x, 0, sizeof(*x));
}

struct s3_common {
	char *access_key, *secret_key, *region, *service, *amz_date;
};

/* Picks "key: value" (value up to white space) out of a preamble comment line. */
static void preamble_pick(const char *line, const char *key, char **out)
{
	const char *k = strstr(line, key);
	if (!k || (k > line && k[-1] != ' ' && k[-1] != '#'))
		return;
	k += strlen(key);
	while (*k == ' ')
		k++;
	size_t n = strcspn(k, " \t");
	if (n) {
		free(*out);
		*out = sigt_strndup(k, n);
	}
}

static bool s3_run(const struct s3_common *c, struct s3_example *x)
{
	char cas[200], err[512];
	snprintf(cas, sizeof(cas), "s3/%s", x->name);
	if (x->bad[0]) {
		tap_note("FAIL %s (line %d): %s\n", cas, x->line, x->bad);
		return false;
	}
	if (!x->method || !x->path || !x->body || !x->signed_headers || !x->signature) {
		tap_note("FAIL %s (line %d): lacks method, path, body, signed_headers or signature\n",
			 cas, x->line);
		return false;
	}
	time_t when;
	if (!sigt_parse_time(c->amz_date, "%Y%m%dT%H%M%SZ", &when)) {
		tap_note("FAIL %s: x-amz-date \"%s\" is not YYYYMMDDTHHMMSSZ\n", cas, c->amz_date);
		return false;
	}
	struct sigv4_credentials cred = {c->access_key, c->secret_key, NULL};
	sigv4_signer *signer = NULL;
	sigv4_signed *sig = NULL;
	bool ok = false;
	char payload[SIGV4_SHA256_HEX_LEN + 1];
	if (sigv4_sha256_hex(x->body, strlen(x->body), payload)) {
		tap_note("FAIL %s: SHA-256 of the body failed\n", cas);
		return false;
	}
	if (sigv4_signer_new(&cred, c->region, c->service, &signer, err, sizeof(err))) {
		tap_note("FAIL %s: %s\n", cas, err);
		return false;
	}
	/* A body that does not match its x-amz-content-sha256 makes sigv4_sign refuse. */
	struct sigv4_request r = {
		.method = x->method,
		.path = x->path,
		.query = x->query,
		.headers = x->h,
		.n_headers = x->nh,
		.payload_sha256 = payload,
		.when = when,
	};
	if (sigv4_sign(signer, &r, &sig, err, sizeof(err))) {
		tap_note("FAIL %s: %s\n", cas, err);
		goto out;
	}
	ok = sigt_same(cas, "signed headers", x->signed_headers, sigv4_signed_signed_headers(sig));
	if (x->canonical_path)
		ok &= sigt_same(cas, "canonical path", x->canonical_path,
				sigv4_signed_canonical_path(sig));
	if (x->canonical_query)
		ok &= sigt_same(cas, "canonical query", x->canonical_query,
				sigv4_signed_canonical_query(sig));
	ok &= sigt_same(cas, "signature", x->signature, sigv4_signed_signature(sig));
	/* S3 rules: x-amz-content-sha256 always signed. */
	if (!strstr(sigv4_signed_signed_headers(sig), "x-amz-content-sha256")) {
		tap_note("FAIL %s: x-amz-content-sha256 is not signed\n", cas);
		ok = false;
	}
out:
	sigv4_signed_free(sig);
	sigv4_signer_free(signer);
	return ok;
}

static void s3_examples(const char *file, struct tally *t)
{
	size_t len;
	char *text = sigt_read_file(file, &len);
	if (!text) {
		tap_note("FAIL s3: cannot read %s: %s\n", file, strerror(errno));
		tally(t, false, "s3 examples file");
		return;
	}
	struct s3_common c = {0};
	struct s3_example x;
	memset(&x, 0, sizeof(x));
	bool in_block = false;
	const char *p = text, *end = text + len;
	char *line;
	int lineno = 0;
	while ((line = sigt_next_line(&p, end))) {
		lineno++;
		if (!in_block && line[0] == '#') {
			preamble_pick(line, "access_key:", &c.access_key);
			preamble_pick(line, "secret_key:", &c.secret_key);
			preamble_pick(line, "region:", &c.region);
			preamble_pick(line, "service:", &c.service);
			preamble_pick(line, "x-amz-date:", &c.amz_date);
		} else if (line[0] == '[') {
			if (!c.access_key || !c.secret_key || !c.region || !c.service || !c.amz_date) {
				tap_note("FAIL s3: the preamble of %s lacks access_key, secret_key, "
					 "region, "
					 "service or x-amz-date\n",
					 file);
				tally(t, false, "s3 examples preamble");
				free(line);
				break;
			}
			if (in_block) {
				tally(t, s3_run(&c, &x), x.name);
				s3_example_free(&x);
			}
			in_block = true;
			char *close = strchr(line, ']');
			snprintf(x.name, sizeof(x.name), "%.*s",
				 (int)(close ? close - line - 1 : (long)strlen(line) - 1), line + 1);
			x.line = lineno;
		} else if (in_block && line[0] && line[0] != '#') {
			char *colon = strchr(line, ':');
			if (!colon) {
				snprintf(x.bad, sizeof(x.bad), "line %d has no ':'", lineno);
				free(line);
				continue;
			}
			*colon = '\0';
			const char *v = colon[1] == ' ' ? colon + 2 : colon + 1;
			char *val = sigt_strndup(v, strlen(v));
			char **slot = NULL;
			if (strcmp(line, "method") == 0)
				slot = &x.method;
			else if (strcmp(line, "path") == 0)
				slot = &x.path;
			else if (strcmp(line, "query") == 0)
				slot = &x.query;
			else if (strcmp(line, "body") == 0)
				slot = &x.body;
			else if (strcmp(line, "canonical_path") == 0)
				slot = &x.canonical_path;
			else if (strcmp(line, "canonical_query") == 0)
				slot = &x.canonical_query;
			else if (strcmp(line, "signed_headers") == 0)
				slot = &x.signed_headers;
			else if (strcmp(line, "signature") == 0)
				slot = &x.signature;
			if (slot) {
				if (*slot)
					snprintf(x.bad, sizeof(x.bad), "line %d repeats \"%s\"",
						 lineno, line);
				free(*slot);
				*slot = val;
			} else if (strcmp(line, "header") == 0) {
				char *hc = strchr(val, ':');
				if (!hc || x.nh == sizeof(x.h) / sizeof(x.h[0])) {
					snprintf(x.bad, sizeof(x.bad),
						 "line %d: header without ':' or too many", lineno);
					free(val);
				} else {
					x.h[x.nh].name = sigt_strndup(val, (size_t)(hc - val));
					x.h[x.nh].value = sigt_strndup(hc + 1, strlen(hc + 1));
					x.nh++;
					free(val);
				}
			} else {
				snprintf(x.bad, sizeof(x.bad), "line %d: unknown key \"%.40s\"",
					 lineno, line);
				free(val);
			}
		}
		free(line);
	}
	if (in_block) {
		tally(t, s3_run(&c, &x), x.name);
		s3_example_free(&x);
	}
	free(c.access_key);
	free(c.secret_key);
	free(c.region);
	free(c.service);
	free(c.amz_date);
	free(text);
}

int main(void)
{
	/* The vectors travel with the repo (tests/data): missing ones are a failure, never a skip. */
	const char *data = getenv("SNAPFS_TESTDATA");
	char dir[4096], v4[4200], s3[4200];
	snprintf(dir, sizeof(dir), "%s", data ? data : "");
	if (!data || !*data || !sigt_is_dir(dir)) {
		tap_note("FAIL: signer test vectors not found: %s\n",
			 !data || !*data ? "SNAPFS_TESTDATA is not set"
					 : "SNAPFS_TESTDATA is not a directory");
		tap_case(false, "signer test vectors present");
		return tap_done();
	}

	struct tally suite = {0, 0}, ex = {0, 0};
	snprintf(v4, sizeof(v4), "%s/aws-sigv4/v4", dir);
	if (sigt_is_dir(v4)) {
		suite_walk(v4, v4, &suite);
	} else {
		tap_note("FAIL aws-sigv4: %s is missing\n", v4);
		tally(&suite, false, "aws-sigv4 suite present");
	}
	snprintf(s3, sizeof(s3), "%s/s3-sigv4-examples.txt", dir);
	s3_examples(s3, &ex);

	tap_note("aws-sigv4 v4 suite: %d cases, %d passed\n", suite.cases, suite.passed);
	tap_note("s3 examples: %d cases, %d passed\n", ex.cases, ex.passed);
	CHECK(suite.cases > 0);
	CHECK(ex.cases > 0);
	return tap_done();
}
