/*
 * s3_error — what a failed request means: the retry rule, the errno a
 * call returns, and the one-line message (s3.h).
 */
#include "s3.h"

#include "s3_i.h"
#include "s3_xml.h"
#include "sbuf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

/* ---- errors ------------------------------------------------------------- */

static const char *status_code_name(int status)
{
	switch (status) {
	case 301: return "PermanentRedirect";
	case 304: return "NotModified";
	case 400: return "BadRequest";
	case 403: return "Forbidden";
	case 404: return "NotFound";
	case 405: return "MethodNotAllowed";
	case 409: return "Conflict";
	case 411: return "MissingContentLength";
	case 412: return "PreconditionFailed";
	case 416: return "InvalidRange";
	case 429: return "TooManyRequests";
	case 500: return "InternalError";
	case 501: return "NotImplemented";
	case 502: return "BadGateway";
	case 503: return "ServiceUnavailable";
	case 504: return "GatewayTimeout";
	case 507: return "InsufficientStorage";
	default: return "HTTPError";
	}
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/*
 * "The server is full, or this account or bucket is over its quota":
 * asking again at once cannot help, freeing space can.
 */
static const char *const no_space[] = {"QuotaExceeded",        "InsufficientStorage",
				       "InsufficientCapacity", "XMinioStorageFull",
				       "StorageFull",          NULL};

bool s3_error_no_space(const struct s3_error *e)
{
	return (e->code[0] && in_list(e->code, no_space)) || e->http_status == 507;
}

bool s3_error_retryable(const struct s3_error *e)
{
	static const char *const never[] = {"AccessDenied",
					    "NoSuchBucket",
					    "NoSuchKey",
					    "NoSuchUpload",
					    "SignatureDoesNotMatch",
					    "InvalidAccessKeyId",
					    "PreconditionFailed",
					    "InvalidArgument",
					    "InvalidRequest",
					    "EntityTooSmall",
					    "EntityTooLarge",
					    "InvalidPart",
					    "InvalidPartOrder",
					    "InvalidBucketName",
					    "AllAccessDisabled",
					    "AccountProblem",
					    "InvalidObjectState",
					    "NotImplemented",
					    "MethodNotAllowed",
					    "ExpiredToken",
					    "InvalidToken",
					    "MalformedXML",
					    NULL};
	static const char *const transient[] = {
		"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException",
		"RequestThrottled", "TooManyRequests", "TooManyRequestsException",
		"RequestLimitExceeded", "BandwidthLimitExceeded", "InternalError",
		"ServiceUnavailable", "OperationAborted", "ConditionalRequestConflict",
		/* The body was damaged on the way: sending it again is the cure. */
		"BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", NULL};

	if (e->sys_errno)
		return false;
	if (e->curl_code) {
		switch ((CURLcode)e->curl_code) {
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_WEIRD_SERVER_REPLY:
		case CURLE_PARTIAL_FILE:
		case CURLE_UPLOAD_FAILED:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_FAIL_REWIND:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
		case CURLE_AGAIN: return true;
		default: return false;
		}
	}
	if (e->precondition_failed || s3_error_no_space(e))
		return false;
	if (e->code[0] && in_list(e->code, never))
		return false;
	if (e->code[0] && in_list(e->code, transient))
		return true;
	return e->http_status == 429 || (e->http_status >= 500 && e->http_status != 501);
}

void s3_error_format(const struct s3_error *e, char *buf, size_t len)
{
	sbuf b = SBUF_INIT;
	sbuf_addf(&b, "%s s3://%s/%s", e->method[0] ? e->method : "?", e->bucket, e->key);
	if (e->detail[0])
		sbuf_addf(&b, " (%s)", e->detail);
	sbuf_adds(&b, ": ");
	if (e->sys_errno)
		sbuf_addf(&b, "%s%s%s", e->transport, e->transport[0] ? ": " : "",
			  strerror(e->sys_errno));
	else if (e->curl_code)
		sbuf_addf(&b, "transport error: %s",
			  e->transport[0] ? e->transport
					  : curl_easy_strerror((CURLcode)e->curl_code));
	else if (e->http_status || e->code[0]) {
		sbuf_addf(&b, "%d %s", e->http_status,
			  e->code[0] ? e->code : status_code_name(e->http_status));
		if (e->message[0])
			sbuf_addf(&b, ": %s", e->message);
		if (e->transport[0])
			sbuf_addf(&b, " [%s]", e->transport);
	} else
		sbuf_adds(&b, e->transport[0] ? e->transport : "failed");
	if (e->request_id[0] || e->attempts > 1) {
		sbuf_adds(&b, " (");
		if (e->request_id[0])
			sbuf_addf(&b, "request id %s%s", e->request_id, e->attempts > 1 ? ", " : "");
		if (e->attempts > 1)
			sbuf_addf(&b, "%u attempts", e->attempts);
		sbuf_adds(&b, ")");
	}
	s3i_copy(buf, len, sbuf_str(&b));
	sbuf_free(&b);
}

/* The errno a failed request returns. */
int s3i_error_rc(const struct s3_error *e)
{
	if (e->sys_errno)
		return -e->sys_errno;
	if (e->precondition_failed)
		return -ESTALE;
	if (e->curl_code)
		return -EIO;
	if (e->http_status == 404)
		return -ENOENT;
	if (e->http_status == 403)
		return -EACCES;
	return -EIO;
}

/*
 * What an error code means, for servers (radosgw) that send the code
 * without a <Message>. Ours, so marked by the caller as not the server's.
 */
static const char *code_hint(const char *code)
{
	static const char *const hints[][2] = {
		{"SignatureDoesNotMatch", "the server computed another signature for this request: "
					  "check the secret access key"},
		{"InvalidAccessKeyId", "the server does not know this access key id"},
		{"AccessDenied", "these credentials may not do this"},
		{"NoSuchBucket", "the bucket does not exist"},
		{"NoSuchKey", "the key does not exist"},
		{"NoSuchUpload", "the multipart upload does not exist (completed or aborted)"},
		{"PreconditionFailed",
		 "the object's current version does not satisfy If-Match / If-None-Match"},
		{"RequestTimeTooSkewed", "the local clock is too far from the server's"},
		{"EntityTooSmall", "a part other than the last is smaller than the server's minimum"},
		{"InvalidPart", "a part is missing or its ETag does not match"},
		{"BadDigest", "the body did not match its Content-MD5"},
		{"XAmzContentSHA256Mismatch", "the body did not match its x-amz-content-sha256"},
		{"SlowDown", "the server asks to slow down"},
		{"QuotaExceeded", "the bucket or the account is over its storage quota"},
		{"InsufficientStorage", "the server has no space left"},
	};
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strcmp(code, hints[i][0]) == 0)
			return hints[i][1];
	return NULL;
}

/* Fills e from an HTTP answer that is not a success. */
void s3i_error_from_answer(struct req *rq, struct resp *rs, struct s3_error *e)
{
	e->http_status = (int)rs->status;
	s3i_copy(e->request_id, sizeof(e->request_id), rs->request_id);
	struct s3xml_error x;
	if (rs->errbody.len && s3xml_parse_error(rs->errbody.buf, rs->errbody.len, &x) == 0) {
		s3i_copy(e->code, sizeof(e->code), x.code);
		s3i_copy(e->message, sizeof(e->message), x.message);
		if (x.request_id[0])
			s3i_copy(e->request_id, sizeof(e->request_id), x.request_id);
	}
	if (!e->code[0])
		s3i_copy(e->code, sizeof(e->code), status_code_name(e->http_status));
	if (!e->message[0]) {
		const char *hint = code_hint(e->code);
		if (hint)
			snprintf(e->message, sizeof(e->message), "(%s)", hint);
		else if (!rs->errbody.len && strcmp(rq->method, "HEAD") == 0 && rs->status == 404)
			s3i_copy(e->message, sizeof(e->message),
				 "(no such key or no such bucket: a HEAD answer has no error document)");
		else if (!rs->errbody.len)
			s3i_copy(e->message, sizeof(e->message), "(no error document in the answer)");
	}
	e->precondition_failed = rs->status == 412 || (rq->if_match && rs->status == 404);
}
