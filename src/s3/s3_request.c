/*
 * s3_request — the request engine: s3i_request() turns a struct req into
 * signed HTTP attempts on a curl handle borrowed from the client's pool
 * and retries what s3_error_retryable() says may succeed, with full
 * jitter backoff, within one deadline for the whole call (by its kind:
 * see s3.h). Each attempt is signed afresh and reads its body again
 * from the start (s3_transfer.c).
 *
 * Cancel: the request's own flags and s3_client_cancel are looked at
 * at least every 100 ms, in the transfer and in the backoff pause; a
 * request started after the client's cancel (clean-up while stopping)
 * is not cancelled but gets what is left of the linger.
 *
 * Ownership: the request, its answer and the borrowed handle belong to
 * the calling thread until s3i_request returns.
 */
#include "s3.h"

#include "diag.h"
#include "mono.h"
#include "s3_i.h"
#include "sbuf.h"
#include "sigv4.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define IO_BUF (512 * 1024)

/* A body streams through this request: the low-speed limit applies and the deadline grows. */
static bool streams_body(const struct req *rq)
{
	return rq->body.kind == BODY_FD || rq->sink.kind == SINK_FD;
}

/*
 * Runs the transfer on k's multi handle, waking at least every 100 ms to
 * look at the cancel flags and the deadline (curl_easy_perform would
 * only look at them through the progress callback, about once a second
 * on an idle connection). *stop says why it was left unfinished: 0 done,
 * 'c' cancelled, 'd' deadline.
 */
static CURLcode perform(s3_client *c, struct s3i_conn k, const struct req *rq, int *stop)
{
	CURLcode cc = CURLE_OK;
	int running = 1;
	*stop = 0;
	if (curl_multi_add_handle(k.m, k.h) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		if (curl_multi_perform(k.m, &running) != CURLM_OK) {
			cc = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (!running) {
			int q;
			CURLMsg *msg;
			while ((msg = curl_multi_info_read(k.m, &q)))
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == k.h)
					cc = msg->data.result;
			break;
		}
		if (s3i_cancelled(c, rq)) {
			*stop = 'c';
			break;
		}
		double left = rq->deadline - mono_now();
		if (left <= 0) {
			*stop = 'd';
			break;
		}
		int wait = left < 0.1 ? (int)(left * 1000) + 1 : 100;
		curl_multi_poll(k.m, NULL, 0, wait, NULL);
	}
	/* Removing an unfinished transfer closes its connection: nothing half-sent is reused. */
	curl_multi_remove_handle(k.m, k.h);
	return cc;
}

/*
 * The signed form of one attempt: its URL and the header list curl
 * sends (Host, the caller's headers, what the signer added,
 * Authorization). Signed afresh for every attempt: a retry may come
 * minutes later.
 */
struct signed_req {
	sbuf url;
	struct curl_slist *list;
};

static int sign_attempt(s3_client *c, const struct req *rq, struct signed_req *out,
			struct s3_error *e)
{
	sbuf host = SBUF_INIT, raw = SBUF_INIT, line = SBUF_INIT;
	sigv4_signed *sig = NULL;
	char serr[256];

	s3i_host_of(c, &host);
	s3i_raw_path_of(c, rq->key, &raw);
	struct sigv4_header hdrs[S3I_MAX_HEADERS + 1];
	hdrs[0].name = "host";
	hdrs[0].value = sbuf_str(&host);
	memcpy(hdrs + 1, rq->hdrs, rq->n_hdrs * sizeof(hdrs[0]));
	struct sigv4_request sr = {
		.method = rq->method,
		.path = sbuf_str(&raw),
		.query = rq->query,
		.headers = hdrs,
		.n_headers = rq->n_hdrs + 1,
		.payload_sha256 = rq->body.kind == BODY_NONE ? SIGV4_EMPTY_SHA256 : rq->body.sha256,
		.when = time(NULL),
		.flags = SIGV4_CONTENT_SHA256,
	};
	int rc = sigv4_sign(c->signer, &sr, &sig, serr, sizeof(serr));
	if (rc) {
		s3i_copy(e->transport, sizeof(e->transport), serr);
		goto out;
	}
	sbuf_addf(&out->url, "%s://%s%s", c->scheme, sbuf_str(&host),
		  sigv4_signed_canonical_path(sig));
	if (*sigv4_signed_canonical_query(sig))
		sbuf_addf(&out->url, "?%s", sigv4_signed_canonical_query(sig));

	for (size_t i = 0; i < rq->n_hdrs + 1; i++) {
		sbuf_reset(&line);
		sbuf_addf(&line, "%s: %s", i == 0 ? "Host" : hdrs[i].name, hdrs[i].value);
		out->list = curl_slist_append(out->list, sbuf_str(&line));
	}
	size_t n_added;
	const struct sigv4_header *added = sigv4_signed_added_headers(sig, &n_added);
	for (size_t i = 0; i < n_added; i++) {
		sbuf_reset(&line);
		sbuf_addf(&line, "%s: %s", added[i].name, added[i].value);
		out->list = curl_slist_append(out->list, sbuf_str(&line));
	}
	sbuf_reset(&line);
	sbuf_addf(&line, "Authorization: %s", sigv4_signed_authorization(sig));
	out->list = curl_slist_append(out->list, sbuf_str(&line));
	/* curl would add "Accept: * / *"; S3 ignores it, and fewer unsigned headers is better. */
	out->list = curl_slist_append(out->list, "Accept:");
	if (!out->list)
		xalloc_die("in the S3 client");
out:
	sigv4_signed_free(sig);
	sbuf_free(&host);
	sbuf_free(&raw);
	sbuf_free(&line);
	return rc;
}

/* Sets the handle up for one attempt of rq; errbuf receives curl's own message. */
static void setup_handle(s3_client *c, CURL *h, struct req *rq, const struct signed_req *sr,
			 struct s3i_xfer *x, char *errbuf)
{
	curl_easy_setopt(h, CURLOPT_URL, sbuf_str(&sr->url));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, sr->list);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* S3 keys are not paths: no dot-segment removal */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	if (streams_body(rq)) {
		/* A body that stops moving mid-transfer is a stall; an answer being thought about is not. */
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	}
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)IO_BUF);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)IO_BUF);
	s3i_xfer_bind(h, x);
	if (c->ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle);
	if (strcmp(rq->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body.len);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
				 strcmp(rq->method, "POST") == 0 ? "POST" : NULL);
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
				 strcmp(rq->method, "GET") == 0 ? NULL : rq->method);
	}
}

/* What one finished (or stopped) transfer means: 0 for a 2xx answer, else e says why. */
static int outcome(s3_client *c, const struct req *rq, struct resp *rs, CURLcode cc, int stop,
		   const char *errbuf, struct s3_error *e)
{
	if (stop == 'c') {
		s3i_copy(e->transport, sizeof(e->transport), "cancelled");
		return -ECANCELED;
	}
	if (stop == 'd')
		return -ETIMEDOUT;
	if (cc == CURLE_READ_ERROR && rq->body.read_errno) {
		e->sys_errno = rq->body.read_errno;
		s3i_copy(e->transport, sizeof(e->transport),
			 e->sys_errno == ENODATA ? "the file became shorter while being sent"
						 : "reading the file to send");
		return -EIO;
	}
	if (cc == CURLE_WRITE_ERROR && rq->sink.write_errno) {
		e->sys_errno = rq->sink.write_errno;
		s3i_copy(e->transport, sizeof(e->transport), "writing what was received");
		return -EIO;
	}
	if (cc == CURLE_WRITE_ERROR && rq->sink.too_big) {
		e->sys_errno = EFBIG;
		s3i_copy(e->transport, sizeof(e->transport),
			 "the answer is larger than the buffer allowed");
		return -EFBIG;
	}
	if (cc != CURLE_OK) {
		e->curl_code = (int)cc;
		s3i_copy(e->transport, sizeof(e->transport),
			 errbuf[0] ? errbuf : curl_easy_strerror(cc));
		return -EIO;
	}
	if (rs->status == 304 && rq->not_modified_ok)
		return 0; /* the caller looks at the status */
	if (rs->status < 200 || rs->status >= 300) {
		s3i_error_from_answer((struct req *)rq, rs, e);
		return -EIO;
	}
	if (rq->body.kind != BODY_NONE)
		atomic_fetch_add(&c->bytes_sent, rq->body.len);
	return 0;
}

/* One attempt. 0 on a 2xx answer; else e says why and the result is negative. */
static int attempt(s3_client *c, struct s3i_conn k, struct req *rq, struct resp *rs,
		   struct s3_error *e)
{
	struct signed_req sr = {SBUF_INIT, NULL};
	char errbuf[CURL_ERROR_SIZE] = "";
	int rc = sign_attempt(c, rq, &sr, e);
	if (rc)
		goto out;
	struct s3i_xfer x = {rq, rs};
	setup_handle(c, k.h, rq, &sr, &x, errbuf);

	atomic_fetch_add(&c->requests, 1);
	int stop;
	CURLcode cc = perform(c, k, rq, &stop);
	curl_off_t dl = 0;
	curl_easy_getinfo(k.h, CURLINFO_SIZE_DOWNLOAD_T, &dl);
	atomic_fetch_add(&c->bytes_received, (uint64_t)(dl > 0 ? dl : 0));
	long status = 0;
	curl_easy_getinfo(k.h, CURLINFO_RESPONSE_CODE, &status);
	rs->status = status;
	rc = outcome(c, rq, rs, cc, stop, errbuf, e);
	diag_say(&c->diag, LOG_DEBUG, "s3: %s %s%s%s -> %ld%s%s%s", rq->method, c->bucket,
		 rq->key ? "/" : "", rq->key ? rq->key : "", status, cc ? " " : "",
		 cc ? curl_easy_strerror(cc) : "",
		 stop == 'c'   ? " cancelled"
		 : stop == 'd' ? " deadline"
			       : "");
out:
	curl_easy_setopt(k.h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(k.h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(sr.list);
	sbuf_free(&sr.url);
	return rc;
}

static uint32_t random_u32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = (uint32_t)rand();
	return v;
}

/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
static unsigned backoff_ms(const struct s3_retry *r, unsigned attempt)
{
	uint64_t ceil_ms = r->base_ms;
	for (unsigned i = 1; i < attempt && ceil_ms < r->cap_ms; i++)
		ceil_ms *= 2;
	if (ceil_ms > r->cap_ms)
		ceil_ms = r->cap_ms;
	return (unsigned)(random_u32() % (ceil_ms + 1));
}

/* Sleeps ms, waking early (false) if the request is cancelled. */
static bool pause_ms(s3_client *c, const struct req *rq, unsigned ms)
{
	while (ms) {
		if (s3i_cancelled(c, rq))
			return false;
		unsigned step = ms < 50 ? ms : 50;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !s3i_cancelled(c, rq);
}

/* The call's total deadline, in ms, when the caller did not give one. */
static unsigned timeout_of(const s3_client *c, const struct req *rq)
{
	if (rq->timeout_ms)
		return rq->timeout_ms;
	if (rq->slow)
		return c->slow_timeout_ms;
	if (!streams_body(rq))
		return c->timeout_ms;
	uint64_t bytes = rq->body.kind == BODY_FD ? rq->body.len : 0;
	if (rq->sink.kind == SINK_FD)
		bytes += 1ull << 30; /* the size of a download is not known before: allow 1 GiB */
	uint64_t ms = c->timeout_ms + bytes * 1000 / S3_MIN_RATE;
	return ms > UINT32_MAX ? UINT32_MAX : (unsigned)ms;
}

/* Which of the deadlines above, for the message that says it expired. */
static const char *timeout_kind(const struct req *rq)
{
	if (rq->after_cancel)
		return "stopping";
	if (rq->slow)
		return "slow-call";
	return streams_body(rq) ? "transfer" : "call";
}

void s3i_error_init(s3_client *c, const struct req *rq, struct s3_error *e)
{
	memset(e, 0, sizeof(*e));
	s3i_copy(e->method, sizeof(e->method), rq->method);
	s3i_copy(e->detail, sizeof(e->detail), rq->detail);
	s3i_copy(e->bucket, sizeof(e->bucket), c->bucket);
	s3i_copy(e->key, sizeof(e->key), rq->key);
}

/*
 * Runs rq with retries. On return rs holds the last answer (the caller
 * clears it) and, on failure, *err the last error.
 */
int s3i_request(s3_client *c, struct req *rq, struct resp *rs, struct s3_error *err)
{
	struct s3_error e;
	unsigned timeout = timeout_of(c, rq);
	double t0 = mono_now();
	rq->deadline = t0 + (double)timeout / 1000.0;
	rq->after_cancel = atomic_load(&c->cancelled);
	if (rq->after_cancel && c->cancel_end < rq->deadline) {
		/* Clean-up while stopping: it gets what is left of the linger, no more. */
		rq->deadline = c->cancel_end;
		timeout = c->cancel_end > t0 ? (unsigned)((c->cancel_end - t0) * 1000) : 0;
	}
	struct s3i_conn k = s3i_conn_get(c);
	int rc;
	for (unsigned n = 1;; n++) {
		s3i_error_init(c, rq, &e);
		s3i_resp_clear(rs);
		rq->body.pos = 0;
		rq->body.read_errno = 0;
		s3i_sink_reset(&rq->sink);
		rc = s3i_cancelled(c, rq) ? -ECANCELED : attempt(c, k, rq, rs, &e);
		if (rc == 0 && rq->check)
			rc = rq->check(rs, rq->check_arg, &e);
		e.attempts = n;
		if (rc == -ECANCELED && !e.transport[0])
			s3i_copy(e.transport, sizeof(e.transport), "cancelled");
		if (rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT || !s3_error_retryable(&e) ||
		    n >= c->retry.max_attempts)
			break;
		unsigned ms = backoff_ms(&c->retry, n);
		if (mono_now() + (double)ms / 1000.0 >= rq->deadline)
			break; /* no time left for another attempt: this error is the answer */
		char msg[1024];
		s3_error_format(&e, msg, sizeof(msg));
		diag_say(&c->diag, LOG_WARNING, "%s; retrying in %u ms (attempt %u of %u)", msg, ms,
			 n + 1, c->retry.max_attempts);
		rq->retries++;
		atomic_fetch_add(&c->retries, 1);
		if (!pause_ms(c, rq, ms)) {
			rc = -ECANCELED;
			s3i_copy(e.transport, sizeof(e.transport), "cancelled");
			break;
		}
	}
	s3i_conn_put(c, k);
	if (rc == -ETIMEDOUT) {
		e.deadline_ms = timeout;
		snprintf(e.transport, sizeof(e.transport),
			 "the %s deadline of %.1f s for this call passed without an answer",
			 timeout_kind(rq), (double)timeout / 1000.0);
	}
	if (rc == -EIO)
		rc = s3i_error_rc(&e);
	if (rc && rc != -ECANCELED)
		atomic_fetch_add(&c->failures, 1);
	if (err)
		*err = e;
	return rc;
}

int s3i_request_xml(s3_client *c, struct req *rq, const sbuf *xml, struct resp *rs,
		    struct s3_error *err)
{
	rq->body.kind = BODY_MEM;
	rq->body.mem = (const unsigned char *)sbuf_str(xml);
	rq->body.len = xml->len;
	s3i_add_header(rq, "content-type", "application/xml");
	struct s3_error e;
	s3i_error_init(c, rq, &e);
	int rc = s3i_body_digest(&rq->body, NULL, &e);
	if (rc) {
		if (err)
			*err = e;
		return rc;
	}
	s3i_add_header(rq, "content-md5", rq->body.md5_b64);
	return s3i_request(c, rq, rs, err);
}

/* Sets up rq for method on key, and fails early on a key S3 cannot take. */
int s3i_req_init(s3_client *c, struct req *rq, const char *method, const char *key,
		 struct s3_error *err)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->key = key;
	rq->sink.kind = SINK_MEM;
	rq->sink.max = S3I_XMLBODY_MAX;
	if (key && (!*key || strlen(key) > S3_KEY_MAX)) {
		if (err) {
			s3i_error_init(c, rq, err);
			s3i_copy(err->transport, sizeof(err->transport),
				 *key ? "key longer than 1024 bytes" : "empty key");
		}
		return -EINVAL;
	}
	return 0;
}

void s3i_req_free(struct req *rq)
{
	sbuf_free(&rq->sink.mem);
}

/* An invalid-argument failure found before any request was sent. */
int s3i_bad_arg(s3_client *c, const struct req *rq, struct s3_error *err, const char *why)
{
	if (err) {
		s3i_error_init(c, rq, err);
		s3i_copy(err->transport, sizeof(err->transport), why);
	}
	return -EINVAL;
}

/* Appends "name=value" (value encoded) to a wire-form query. */
void s3i_query_add(sbuf *q, const char *name, const char *value)
{
	if (q->len)
		sbuf_adds(q, "&");
	sbuf_adds(q, name);
	if (value) {
		char *enc = sigv4_uri_encode(value, false);
		sbuf_addf(q, "=%s", enc);
		free(enc);
	}
}
