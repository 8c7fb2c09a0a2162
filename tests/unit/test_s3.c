/*
 * Unit tests for s3 (no network): the retry rule, the error message
 * format, configuration checks and addressing, and the URL a key goes
 * to (spaces, unicode, '+', '/', '~', '%', dot segments), which must be
 * the one the signer signs: s3_client_url and sigv4_uri_encode agree.
 */
#include "s3.h"
#include "sigv4.h"
#include "tap.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct s3_error http_err(int status, const char *code)
{
	struct s3_error e;
	memset(&e, 0, sizeof(e));
	e.http_status = status;
	snprintf(e.code, sizeof(e.code), "%s", code);
	return e;
}

static bool retryable_http(int status, const char *code)
{
	struct s3_error e = http_err(status, code);
	return s3_error_retryable(&e);
}

static bool retryable_curl(int cc)
{
	struct s3_error e;
	memset(&e, 0, sizeof(e));
	e.curl_code = cc;
	return s3_error_retryable(&e);
}

static void test_retry_rule(void)
{
	/* Transient: retried. */
	CHECK(retryable_http(500, "InternalError"));
	CHECK(retryable_http(502, ""));
	CHECK(retryable_http(503, "SlowDown"));
	CHECK(retryable_http(503, "ServiceUnavailable"));
	CHECK(retryable_http(504, "GatewayTimeout"));
	CHECK(retryable_http(429, "TooManyRequests"));
	CHECK(retryable_http(400, "RequestTimeout"));
	CHECK(retryable_http(400, "BadDigest"));
	CHECK(retryable_http(400, "XAmzContentSHA256Mismatch"));
	CHECK(retryable_http(409, "OperationAborted"));
	CHECK(retryable_http(200, "InternalError")); /* CompleteMultipartUpload's 200 + <Error> */
	CHECK(retryable_curl(CURLE_OPERATION_TIMEDOUT)); /* includes the low-speed limit */
	CHECK(retryable_curl(CURLE_COULDNT_CONNECT));
	CHECK(retryable_curl(CURLE_SEND_ERROR)); /* connection reset while sending */
	CHECK(retryable_curl(CURLE_RECV_ERROR));
	CHECK(retryable_curl(CURLE_GOT_NOTHING));
	CHECK(retryable_curl(CURLE_PARTIAL_FILE));
	CHECK(retryable_curl(CURLE_SSL_CONNECT_ERROR));

	/* Cannot succeed: fail fast. */
	CHECK(!retryable_http(403, "AccessDenied"));
	CHECK(!retryable_http(403, "SignatureDoesNotMatch"));
	CHECK(!retryable_http(403, "InvalidAccessKeyId"));
	CHECK(!retryable_http(404, "NoSuchBucket"));
	CHECK(!retryable_http(404, "NoSuchKey"));
	CHECK(!retryable_http(404, "NotFound"));
	CHECK(!retryable_http(412, "PreconditionFailed"));
	CHECK(!retryable_http(400, "EntityTooSmall"));
	CHECK(!retryable_http(400, "InvalidPart"));
	CHECK(!retryable_http(400, "InvalidArgument"));
	CHECK(!retryable_http(501, "NotImplemented"));
	CHECK(!retryable_http(500, "AccessDenied")); /* the code decides over the status */
	/* A full or over-quota server: asking again at once cannot help. */
	CHECK(!retryable_http(403, "QuotaExceeded"));
	CHECK(!retryable_http(507, "InsufficientStorage"));
	CHECK(!retryable_http(507, ""));
	CHECK(!retryable_curl(CURLE_URL_MALFORMAT));
	CHECK(!retryable_curl(CURLE_PEER_FAILED_VERIFICATION));
	CHECK(!retryable_curl(CURLE_UNSUPPORTED_PROTOCOL));

	struct s3_error e = http_err(403, "QuotaExceeded");
	CHECK(s3_error_no_space(&e));
	e = http_err(507, "");
	CHECK(s3_error_no_space(&e));
	e = http_err(503, "SlowDown");
	CHECK(!s3_error_no_space(&e));
	e = http_err(403, "AccessDenied");
	CHECK(!s3_error_no_space(&e));

	e = http_err(412, "");
	e.precondition_failed = true;
	CHECK(!s3_error_retryable(&e));
	/* A local failure (reading the file) is never retried. */
	e = http_err(0, "");
	e.sys_errno = EIO;
	CHECK(!s3_error_retryable(&e));
	e.curl_code = CURLE_READ_ERROR;
	CHECK(!s3_error_retryable(&e));
}

static void test_error_format(void)
{
	struct s3_error e = http_err(403, "SignatureDoesNotMatch");
	char buf[1024];
	snprintf(e.method, sizeof(e.method), "PUT");
	snprintf(e.bucket, sizeof(e.bucket), "bucket");
	snprintf(e.key, sizeof(e.key), "dir/key");
	snprintf(e.message, sizeof(e.message), "The request signature we calculated does not match");
	snprintf(e.request_id, sizeof(e.request_id), "4442587FB7D0A2F9");
	e.attempts = 1;
	s3_error_format(&e, buf, sizeof(buf));
	CHECK(strcmp(buf, "PUT s3://bucket/dir/key: 403 SignatureDoesNotMatch: The request signature we "
			  "calculated does not match (request id 4442587FB7D0A2F9)") == 0);

	struct s3_error t;
	memset(&t, 0, sizeof(t));
	snprintf(t.method, sizeof(t.method), "PUT");
	snprintf(t.detail, sizeof(t.detail), "part 3");
	snprintf(t.bucket, sizeof(t.bucket), "b");
	snprintf(t.key, sizeof(t.key), "k");
	t.curl_code = CURLE_SEND_ERROR;
	snprintf(t.transport, sizeof(t.transport), "Connection reset by peer");
	t.attempts = 8;
	s3_error_format(&t, buf, sizeof(buf));
	CHECK(strcmp(buf,
		     "PUT s3://b/k (part 3): transport error: Connection reset by peer (8 attempts)") ==
	      0);

	/* A short buffer is cut, still NUL-terminated. */
	char small[16];
	s3_error_format(&e, small, sizeof(small));
	CHECK(strlen(small) == sizeof(small) - 1);
}

static s3_client *client(const char *endpoint, const char *bucket, enum s3_addressing a,
			 int *rc_out, char *err, size_t errlen)
{
	struct s3_config cfg = {
		.endpoint = endpoint,
		.bucket = bucket,
		.addressing = a,
		.access_key_id = "AKIDEXAMPLE",
		.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	};
	s3_client *c = NULL;
	*rc_out = s3_client_new(&cfg, &c, err, errlen);
	return c;
}

static bool url_is(s3_client *c, const char *key, const char *want)
{
	char *u = s3_client_url(c, key);
	bool ok = strcmp(u, want) == 0;
	if (!ok)
		fprintf(stderr, "  url for \"%s\": got %s, want %s\n", key ? key : "(bucket)", u,
			want);
	free(u);
	return ok;
}

static void test_urls(void)
{
	int rc;
	char err[512];
	s3_client *c =
		client("http://127.0.0.1:7480", "snap", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0 && c);
	CHECK(url_is(c, "plain", "http://127.0.0.1:7480/snap/plain"));
	CHECK(url_is(c, "a b/c+d/\xc3\xbc.txt", "http://127.0.0.1:7480/snap/a%20b/c%2Bd/%C3%BC.txt"));
	CHECK(url_is(c, "x~y_z-1.2", "http://127.0.0.1:7480/snap/x~y_z-1.2"));
	CHECK(url_is(c, "100%/a?b=c#d&e", "http://127.0.0.1:7480/snap/100%25/a%3Fb%3Dc%23d%26e"));
	/* No normalisation: dot segments and empty segments are part of the key. */
	CHECK(url_is(c, "../a//./b", "http://127.0.0.1:7480/snap/../a//./b"));
	CHECK(url_is(c, NULL, "http://127.0.0.1:7480/snap"));
	CHECK(strcmp(s3_client_bucket(c), "snap") == 0);

	/* The path is exactly sigv4_uri_encode of the raw path, as the signer encodes it. */
	const char *keys[] = {"a b", "+", "snap shots/2024-01-01T00:00:00Z/db",
			      "\xe2\x82\xac/\xf0\x9f\x98\x80"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char raw[256], want[1024];
		snprintf(raw, sizeof(raw), "/snap/%s", keys[i]);
		char *enc = sigv4_uri_encode(raw, true);
		snprintf(want, sizeof(want), "http://127.0.0.1:7480%s", enc);
		CHECK(url_is(c, keys[i], want));
		free(enc);
	}
	s3_client_free(c);

	/* Default port left out of the host; host lower-cased. */
	c = client("HTTP://LocalHost:80/", "snap", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(url_is(c, "k", "http://localhost/snap/k"));
	s3_client_free(c);

	/* AWS: virtual-host by default where the bucket allows it. */
	c = client(NULL, "my-bucket", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(url_is(c, "a b", "https://my-bucket.s3.us-east-1.amazonaws.com/a%20b"));
	CHECK(url_is(c, NULL, "https://my-bucket.s3.us-east-1.amazonaws.com/"));
	s3_client_free(c);
	c = client(NULL, "my.dotted.bucket", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(url_is(c, "k", "https://s3.us-east-1.amazonaws.com/my.dotted.bucket/k"));
	s3_client_free(c);
	c = client("https://minio.example.net:9000", "bkt", S3_ADDRESSING_VIRTUAL, &rc, err,
		   sizeof(err));
	CHECK(rc == 0);
	CHECK(url_is(c, "k", "https://bkt.minio.example.net:9000/k"));
	s3_client_free(c);
	c = client("http://[::1]:7480", "bkt", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0);
	CHECK(url_is(c, "k", "http://[::1]:7480/bkt/k"));
	s3_client_free(c);
}

static void test_config_refusals(void)
{
	int rc;
	char err[512];
	const char *bad_endpoints[] = {
		"ftp://host",       "127.0.0.1:7480" /* no scheme */, "http://host/base/path",
		"http://host/?q=1", "http://user:pass@host",          "not a url at all",
	};
	for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]); i++) {
		err[0] = '\0';
		s3_client *c =
			client(bad_endpoints[i], "b", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
		CHECK(rc == -EINVAL && c == NULL);
		CHECK(err[0] != '\0');
		CHECK(strstr(err, "wJalr") == NULL);
	}
	s3_client *c = client("http://127.0.0.1:1", "", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == -EINVAL && !c);
	c = client("http://127.0.0.1:1", "bad/bucket", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == -EINVAL && !c);
	/* Virtual-host needs a host name and a DNS-compatible bucket. */
	c = client("http://127.0.0.1:1", "bkt", S3_ADDRESSING_VIRTUAL, &rc, err, sizeof(err));
	CHECK(rc == -EINVAL && !c);
	c = client("https://s3.example.net", "Bad_Bucket", S3_ADDRESSING_VIRTUAL, &rc, err,
		   sizeof(err));
	CHECK(rc == -EINVAL && !c);

	struct s3_config cfg = {.endpoint = "http://127.0.0.1:1", .bucket = "b", .access_key_id = "A"};
	CHECK(s3_client_new(&cfg, &c, err, sizeof(err)) == -EINVAL);
	cfg.secret_access_key = "S";
	cfg.region = "us east";
	CHECK(s3_client_new(&cfg, &c, err, sizeof(err)) == -EINVAL);
}

static void test_arguments(void)
{
	/* Refused before any request is sent (the endpoint does not exist). */
	int rc;
	char err[512];
	s3_client *c = client("http://127.0.0.1:9", "b", S3_ADDRESSING_AUTO, &rc, err, sizeof(err));
	CHECK(rc == 0);
	struct s3_error e;
	char longkey[S3_KEY_MAX + 2];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	CHECK(s3_put_buf(c, longkey, "x", 1, NULL, NULL, &e) == -EINVAL);
	CHECK(s3_put_buf(c, "", "x", 1, NULL, NULL, &e) == -EINVAL);
	struct s3_put_opts both = {.if_none_match = true, .if_match = "abc"};
	CHECK(s3_put_buf(c, "k", "x", 1, &both, NULL, &e) == -EINVAL);
	struct s3_put_opts inject = {.if_match = "abc\r\nx-amz-acl: public-read"};
	CHECK(s3_put_buf(c, "k", "x", 1, &inject, NULL, &e) == -EINVAL);
	struct s3_meta meta = {"bad name", "v"};
	struct s3_put_opts m = {.meta = &meta, .n_meta = 1};
	CHECK(s3_put_buf(c, "k", "x", 1, &m, NULL, &e) == -EINVAL);
	struct s3_upload_opts small = {.part_size = 1 << 20};
	CHECK(s3_upload_file(c, "k", "/dev/null", &small, NULL, &e) == -EINVAL);
	struct s3_upload_opts ok = {0};
	CHECK(s3_upload_file(c, "k", "/nonexistent/file", &ok, NULL, &e) == -ENOENT);
	CHECK(e.sys_errno == ENOENT);
	CHECK(s3_upload_file(c, "k", "/", &ok, NULL, &e) == -EINVAL);
	struct s3_part parts[2] = {{2, "a", 5}, {1, "b", 5}};
	char etag[S3_ETAG_MAX];
	CHECK(s3_multipart_complete(c, "k", "id", parts, 2, etag, &e) == -EINVAL);
	CHECK(s3_multipart_complete(c, "k", "id", parts, 0, etag, &e) == -EINVAL);
	CHECK(s3_multipart_abort(c, "k", "", &e) == -EINVAL);
	struct s3_stats st;
	s3_client_stats(c, &st);
	CHECK(st.requests == 0);
	s3_client_free(c);
}

static void test_transport_failure(void)
{
	/* Nothing listens on port 9 of the loopback: connection refused, retried, then reported. */
	struct s3_config cfg = {
		.endpoint = "http://127.0.0.1:9",
		.bucket = "b",
		.access_key_id = "AKIDEXAMPLE",
		.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		.retry = {.max_attempts = 3, .base_ms = 1, .cap_ms = 5},
	};
	s3_client *c;
	char err[256];
	CHECK(s3_client_new(&cfg, &c, err, sizeof(err)) == 0);
	struct s3_error e;
	struct s3_put_result res;
	CHECK(s3_put_buf(c, "k", "data", 4, NULL, &res, &e) == -EIO);
	CHECK(e.curl_code == CURLE_COULDNT_CONNECT);
	CHECK(e.attempts == 3);
	CHECK(res.retries == 2);
	struct s3_stats st;
	s3_client_stats(c, &st);
	CHECK(st.requests == 3 && st.retries == 2 && st.failures == 1);
	char msg[1024];
	s3_error_format(&e, msg, sizeof(msg));
	CHECK(strncmp(msg, "PUT s3://b/k: transport error: ", 31) == 0);
	CHECK(strstr(msg, "3 attempts") != NULL);
	CHECK(strstr(msg, "wJalr") == NULL);

	/* Cancelled before it starts. */
	atomic_bool stop = true;
	struct s3_put_opts o = {.cancel = &stop};
	CHECK(s3_put_buf(c, "k", "data", 4, &o, NULL, &e) == -ECANCELED);
	s3_client_free(c);
}

int main(void)
{
	test_retry_rule();
	test_error_format();
	test_urls();
	test_config_refusals();
	test_arguments();
	test_transport_failure();
	return tap_done();
}
