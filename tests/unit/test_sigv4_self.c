/*
 * test_sigv4_self — the signer's checks that need no test vectors: URI
 * encoding, the requests it must refuse (and that its refusals never
 * quote a secret), path normalization outside S3. The published vectors
 * are test_sigv4.c.
 */
#include "sigv4.h"
#include "tap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "Top/Secret+Key0123456789abcdefXYZ"
#define TOKEN "SessionTokenValue//+=="

static int sign_simple(const char *service, const char *token, struct sigv4_request *r,
		       sigv4_signed **out, char *err, size_t errlen)
{
	struct sigv4_credentials cred = {"AKIDTEST", SECRET, token};
	sigv4_signer *s = NULL;
	int rc = sigv4_signer_new(&cred, "eu-west-3", service, &s, err, errlen);
	if (rc == 0)
		rc = sigv4_sign(s, r, out, err, errlen);
	sigv4_signer_free(s);
	return rc;
}

/* Signing r must fail with -EINVAL, the message must contain want and no secret. */
static void expect_refusal(const char *service, const char *token, struct sigv4_request *r,
			   const char *want)
{
	char err[512] = "";
	sigv4_signed *sig = NULL;
	int rc = sign_simple(service, token, r, &sig, err, sizeof(err));
	CHECK(rc == -EINVAL);
	CHECK(sig == NULL);
	if (!strstr(err, want))
		tap_note("FAIL refusal: want a message with \"%s\", got \"%s\"\n", want, err);
	CHECK(strstr(err, want) != NULL);
	CHECK(strstr(err, SECRET) == NULL);
	CHECK(strstr(err, TOKEN) == NULL);
	sigv4_signed_free(sig);
}

/* As expect_refusal, for base with one more header besides Host. */
static void expect_header_refusal(const struct sigv4_request *base, const char *token,
				  const char *name, const char *value, const char *want)
{
	struct sigv4_header h[] = {{"Host", "h"}, {name, value}};
	struct sigv4_request r = *base;
	r.headers = h;
	r.n_headers = 2;
	expect_refusal("s3", token, &r, want);
}

static void self_checks(void)
{
	char *e = sigv4_uri_encode("a b/c~$%\xe1\x88\xb4+", false);
	CHECK(strcmp(e, "a%20b%2Fc~%24%25%E1%88%B4%2B") == 0);
	free(e);
	e = sigv4_uri_encode("dir/my key.txt", true);
	CHECK(strcmp(e, "dir/my%20key.txt") == 0);
	free(e);

	char h[SIGV4_SHA256_HEX_LEN + 1];
	CHECK(sigv4_sha256_hex("abc", 3, h) == 0);
	CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
	CHECK(sigv4_sha256_hex("", 0, h) == 0 && strcmp(h, SIGV4_EMPTY_SHA256) == 0);

	/* S3: raw key encoded once, x-amz-date and x-amz-content-sha256 added, query sorted. */
	struct sigv4_header host[] = {{"Host", "bucket.example.net"}};
	struct sigv4_request r = {
		.method = "GET",
		.path = "/snap/a%b c$.db",
		.query = "prefix=a%2Fb&list-type=2&continuation-token=x+y&acl",
		.headers = host,
		.n_headers = 1,
		.payload_sha256 = SIGV4_EMPTY_SHA256,
		.when = 1369353600, /* 2013-05-24T00:00:00Z */
	};
	char err[512] = "";
	sigv4_signed *sig = NULL;
	CHECK(sign_simple("s3", NULL, &r, &sig, err, sizeof(err)) == 0);
	if (sig) {
		CHECK(strcmp(sigv4_signed_canonical_path(sig), "/snap/a%25b%20c%24.db") == 0);
		CHECK(strcmp(sigv4_signed_canonical_query(sig),
			     "acl=&continuation-token=x%2By&list-type=2&prefix=a%2Fb") == 0);
		CHECK(strcmp(sigv4_signed_signed_headers(sig),
			     "host;x-amz-content-sha256;x-amz-date") == 0);
		CHECK(strcmp(sigv4_signed_amz_date(sig), "20130524T000000Z") == 0);
		size_t n;
		const struct sigv4_header *a = sigv4_signed_added_headers(sig, &n);
		CHECK(n == 2 && strcmp(a[0].name, "x-amz-date") == 0 &&
		      strcmp(a[0].value, "20130524T000000Z") == 0 &&
		      strcmp(a[1].name, "x-amz-content-sha256") == 0 &&
		      strcmp(a[1].value, SIGV4_EMPTY_SHA256) == 0);
		const char *prefix =
			"AWS4-HMAC-SHA256 Credential=AKIDTEST/20130524/eu-west-3/s3/aws4_request, "
			"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=";
		CHECK(strncmp(sigv4_signed_authorization(sig), prefix, strlen(prefix)) == 0);
		CHECK(strcmp(sigv4_signed_authorization(sig) + strlen(prefix),
			     sigv4_signed_signature(sig)) == 0);
		CHECK(strstr(sigv4_signed_canonical_request(sig), SECRET) == NULL);
		CHECK(strstr(sigv4_signed_authorization(sig), SECRET) == NULL);
	}
	sigv4_signed_free(sig);
	sig = NULL;

	/* A session token is added and signed, and never shows in an error. */
	CHECK(sign_simple("s3", TOKEN, &r, &sig, err, sizeof(err)) == 0);
	if (sig) {
		CHECK(strcmp(sigv4_signed_signed_headers(sig),
			     "host;x-amz-content-sha256;x-amz-date;x-amz-security-token") == 0);
		size_t n;
		const struct sigv4_header *a = sigv4_signed_added_headers(sig, &n);
		CHECK(n == 3 && strcmp(a[2].name, "x-amz-security-token") == 0 &&
		      strcmp(a[2].value, TOKEN) == 0);
	}
	sigv4_signed_free(sig);
	sig = NULL;

	/* Refusals, each with a message saying why and no secret in it. */
	struct sigv4_request bad = r;
	bad.n_headers = 0;
	expect_refusal("s3", NULL, &bad, "no Host header");
	expect_header_refusal(&r, NULL, "authorization", "x", "Authorization");
	expect_header_refusal(&r, NULL, "X-Amz-Date", "20200101T000000Z",
			      "differs from the signing time 20130524T000000Z");
	expect_header_refusal(&r, NULL, "x-amz-content-sha256", "UNSIGNED-PAYLOAD",
			      "differs from the payload hash");
	expect_header_refusal(&r, TOKEN, "X-Amz-Security-Token", "other",
			      "differs from the session token");
	expect_header_refusal(&r, NULL, "Bad Name", "v", "not an HTTP token");
	bad = r;
	bad.payload_sha256 = "ABC";
	expect_refusal("s3", NULL, &bad, "payload hash");
	bad = r;
	bad.query = "a=%G1";
	expect_refusal("s3", NULL, &bad, "not followed by two hex digits");
	bad = r;
	bad.flags = SIGV4_NORMALIZE_PATH;
	expect_refusal("s3", NULL, &bad, "normalization");
	bad = r;
	bad.path = "snap/x";
	expect_refusal("s3", NULL, &bad, "does not start with '/'");

	/* Bad credentials are refused without echoing them. */
	struct sigv4_credentials cred = {"AKID", SECRET, "XYZZY\nPLUGH"};
	sigv4_signer *s = NULL;
	CHECK(sigv4_signer_new(&cred, "us-east-1", "s3", &s, err, sizeof(err)) == -EINVAL);
	CHECK(s == NULL && strstr(err, "session token") && !strstr(err, "XYZZY") &&
	      !strstr(err, "PLUGH"));
	cred = (struct sigv4_credentials){"AKID", "", NULL};
	CHECK(sigv4_signer_new(&cred, "us-east-1", "s3", &s, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "secret access key is missing") != NULL);
	cred = (struct sigv4_credentials){"AKID", SECRET, NULL};
	CHECK(sigv4_signer_new(&cred, "", "s3", &s, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "region") != NULL && strstr(err, SECRET) == NULL);

	/* Normalisation for other services. */
	struct sigv4_request g = r;
	g.query = NULL;
	g.flags = SIGV4_NORMALIZE_PATH;
	const char *paths[][2] = {
		{"/a/b/../c/./d", "/a/c/d"},  {"/a/b/..", "/a/"}, {"/..", "/"},
		{"//a//b//", "/a/b/"},        {"/a/.", "/a/"},    {"/.../x", "/.../x"},
		{"/a b/%41", "/a%20b/%2541"},
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		g.path = paths[i][0];
		sig = NULL;
		CHECK(sign_simple("service", NULL, &g, &sig, err, sizeof(err)) == 0);
		if (sig && strcmp(sigv4_signed_canonical_path(sig), paths[i][1]) != 0)
			tap_note("FAIL normalize %s: want %s got %s\n", paths[i][0], paths[i][1],
				 sigv4_signed_canonical_path(sig));
		CHECK(sig && strcmp(sigv4_signed_canonical_path(sig), paths[i][1]) == 0);
		/* Not S3: no x-amz-content-sha256 unless asked. */
		CHECK(sig && strcmp(sigv4_signed_signed_headers(sig), "host;x-amz-date") == 0);
		sigv4_signed_free(sig);
	}
}

int main(void)
{
	self_checks();
	return tap_done();
}
