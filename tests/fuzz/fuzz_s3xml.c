/*
 * fuzz_s3xml — the S3 response documents the client parses (s3_xml.h):
 * <Error>, ListObjectsV2, InitiateMultipartUpload,
 * CompleteMultipartUpload (which may be an <Error> under 200 OK) and
 * ListMultipartUploads, plus the ISO 8601 times inside them. They come
 * off the network: untrusted.
 *
 * Every input goes through every parser, as an exact-size buffer with no
 * NUL after it, so ASan catches any read past len. Checked besides
 * crashes and leaks:
 *  - the answer is 0 or -EINVAL (complete: or -EAGAIN, and then the body
 *    is an <Error> that s3xml_parse_error reads too); a failure leaves
 *    the result zeroed and a reason in err;
 *  - what a parser returns is consistent (every listed object has a key
 *    and an ETag, a truncated page has a continuation token, common
 *    prefixes have no size) and complete: written back as a document of
 *    the same kind (keys with EncodingType url, times in ISO 8601) it
 *    parses to the same result. Fields cut to their fixed size may end
 *    in a broken UTF-8 sequence; only those are exempt.
 */
#include "fuzz.h"
#include "s3_xml.h"
#include "sbuf.h"

#include <errno.h>
#include <inttypes.h>

/* The ETag buffer s3.c hands to s3xml_parse_complete (S3_ETAG_MAX). */
#define S3_XML_FUZZ_ETAG 128

/* Text expat could have handed us: UTF-8, and no control character but tab and line breaks. */
static bool xml_text_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
			return false;
	return fuzz_utf8_valid(s, strlen(s));
}

/* Appends s as XML character data; line breaks and tabs as references, so they come back as they were. */
static void xml_text(sbuf *b, const char *s)
{
	for (const char *p = s; *p; p++) {
		switch (*p) {
		case '&': sbuf_adds(b, "&amp;"); break;
		case '<': sbuf_adds(b, "&lt;"); break;
		case '>': sbuf_adds(b, "&gt;"); break;
		case '\t': sbuf_adds(b, "&#9;"); break;
		case '\n': sbuf_adds(b, "&#10;"); break;
		case '\r': sbuf_adds(b, "&#13;"); break;
		default: sbuf_add(b, p, 1);
		}
	}
}

static void xml_elem(sbuf *b, const char *name, const char *text)
{
	sbuf_addf(b, "<%s>", name);
	xml_text(b, text);
	sbuf_addf(b, "</%s>", name);
}

/* A key as EncodingType url sends it: every byte but the unreserved ones as %XX. */
static void xml_url_elem(sbuf *b, const char *name, const char *key)
{
	sbuf_addf(b, "<%s>", name);
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			sbuf_add(b, p, 1);
		else
			sbuf_addf(b, "%%%02X", *p);
	}
	sbuf_addf(b, "</%s>", name);
}

/* t as S3 writes it; false if its year does not have four digits (then it cannot be written back). */
static bool xml_time(sbuf *b, const char *name, time_t t)
{
	struct tm tm;
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return false;
	sbuf_addf(b, "<%s>%04d-%02d-%02dT%02d:%02d:%02d.000Z</%s>", name, tm.tm_year + 1900,
		  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, name);
	return true;
}

static bool zeroed(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

static void check_failure(const char *what, int rc, const char *err)
{
	FUZZ_CHECK(rc == -EINVAL, "%s returned %d", what, rc);
	FUZZ_CHECK(err[0], "%s failed without a reason", what);
}

/* A field cut to size may end in a broken sequence; anything else must be text expat gave us. */
static bool field_ok(const char *s, size_t cap)
{
	return xml_text_ok(s) || strlen(s) == cap - 1;
}

static bool same_error(const struct s3xml_error *a, const struct s3xml_error *b)
{
	return !strcmp(a->code, b->code) && !strcmp(a->message, b->message) &&
	       !strcmp(a->key, b->key) && !strcmp(a->request_id, b->request_id) &&
	       !strcmp(a->resource, b->resource);
}

static void check_error(const char *body, size_t len)
{
	struct s3xml_error e;
	memset(&e, 0x5a, sizeof(e));
	int rc = s3xml_parse_error(body, len, &e);
	if (rc) {
		FUZZ_CHECK(rc == -EINVAL, "s3xml_parse_error returned %d", rc);
		FUZZ_CHECK(zeroed(&e, sizeof(e)),
			   "s3xml_parse_error failed but left data in the result");
		return;
	}
	const struct {
		const char *name, *v;
		size_t cap;
	} f[] = {
		{"Code", e.code, sizeof(e.code)},
		{"Message", e.message, sizeof(e.message)},
		{"Key", e.key, sizeof(e.key)},
		{"RequestId", e.request_id, sizeof(e.request_id)},
		{"Resource", e.resource, sizeof(e.resource)},
	};
	bool writable = true;
	for (size_t i = 0; i < 5; i++) {
		FUZZ_CHECK(strnlen(f[i].v, f[i].cap) < f[i].cap,
			   "<Error> field %s is not terminated", f[i].name);
		FUZZ_CHECK(field_ok(f[i].v, f[i].cap),
			   "<Error> field %s holds bytes expat cannot have sent", f[i].name);
		writable = writable && xml_text_ok(f[i].v);
	}
	if (!writable)
		return;
	sbuf b = SBUF_INIT;
	sbuf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
	for (size_t i = 0; i < 5; i++)
		xml_elem(&b, f[i].name, f[i].v);
	sbuf_adds(&b, "</Error>");
	struct s3xml_error again;
	rc = s3xml_parse_error(b.buf, b.len, &again);
	FUZZ_CHECK(rc == 0 && same_error(&e, &again),
		   "an <Error> written back reads differently (%d):\n%s", rc, b.buf);
	sbuf_free(&b);
}

static void list_write(const struct s3xml_list *l, sbuf *b, bool *times_ok)
{
	*times_ok = true;
	sbuf_adds(b, "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	sbuf_addf(b, "<IsTruncated>%s</IsTruncated>", l->truncated ? "true" : "false");
	if (l->next_token)
		xml_elem(b, "NextContinuationToken", l->next_token);
	for (size_t i = 0; i < l->n; i++) {
		const struct s3xml_object *o = &l->items[i];
		if (o->is_prefix) {
			sbuf_adds(b, "<CommonPrefixes>");
			xml_url_elem(b, "Prefix", o->key);
			sbuf_adds(b, "</CommonPrefixes>");
			continue;
		}
		sbuf_adds(b, "<Contents>");
		xml_url_elem(b, "Key", o->key);
		if (o->last_modified && !xml_time(b, "LastModified", o->last_modified))
			*times_ok = false;
		sbuf_adds(b, "<ETag>\"");
		xml_text(b, o->etag);
		sbuf_addf(b,
			  "\"</ETag><Size>%" PRIu64
			  "</Size><StorageClass>STANDARD</StorageClass></Contents>",
			  o->size);
	}
	/* After the entries, as the parser allows: keys are decoded once the page is read. */
	sbuf_adds(b, "<EncodingType>url</EncodingType></ListBucketResult>");
}

static void check_list(const char *body, size_t len)
{
	struct s3xml_list l;
	char err[256] = "";
	memset(&l, 0x5a, sizeof(l));
	int rc = s3xml_parse_list(body, len, &l, err, sizeof(err));
	if (rc) {
		check_failure("s3xml_parse_list", rc, err);
		FUZZ_CHECK(zeroed(&l, sizeof(l)),
			   "s3xml_parse_list failed but left data in the result");
		return;
	}
	FUZZ_CHECK(!l.truncated || (l.next_token && l.next_token[0]),
		   "a truncated page without a token");
	FUZZ_CHECK(!l.next_token || xml_text_ok(l.next_token),
		   "NextContinuationToken holds bytes expat cannot send");
	for (size_t i = 0; i < l.n; i++) {
		const struct s3xml_object *o = &l.items[i];
		FUZZ_CHECK(o->key && o->etag, "entry %zu has no key or no ETag", i);
		FUZZ_CHECK(xml_text_ok(o->etag), "entry %zu: ETag holds bytes expat cannot send", i);
		FUZZ_CHECK(!o->is_prefix || (!o->etag[0] && !o->size && !o->last_modified),
			   "common prefix %zu has an ETag, a size or a time", i);
	}
	sbuf b = SBUF_INIT;
	bool times_ok;
	list_write(&l, &b, &times_ok);
	struct s3xml_list again;
	rc = s3xml_parse_list(b.buf, b.len, &again, err, sizeof(err));
	FUZZ_CHECK(rc == 0, "a ListObjectsV2 page written back is refused (%s):\n%s", err, b.buf);
	bool same = again.n == l.n && again.truncated == l.truncated &&
		    !again.next_token == !l.next_token &&
		    (!l.next_token || !strcmp(again.next_token, l.next_token));
	for (size_t i = 0; same && i < l.n; i++) {
		const struct s3xml_object *x = &l.items[i], *y = &again.items[i];
		same = !strcmp(x->key, y->key) && !strcmp(x->etag, y->etag) && x->size == y->size &&
		       x->is_prefix == y->is_prefix &&
		       (!times_ok || x->last_modified == y->last_modified);
	}
	FUZZ_CHECK(same, "a ListObjectsV2 page written back reads differently:\n%s", b.buf);
	s3xml_list_free(&again);
	s3xml_list_free(&l);
	FUZZ_CHECK(zeroed(&l, sizeof(l)), "s3xml_list_free left data in the list");
	sbuf_free(&b);
}

static void check_initiate(const char *body, size_t len)
{
	char sentinel[] = "untouched";
	char *id = sentinel;
	char err[256] = "";
	int rc = s3xml_parse_initiate(body, len, &id, err, sizeof(err));
	if (rc) {
		check_failure("s3xml_parse_initiate", rc, err);
		FUZZ_CHECK(!id, "s3xml_parse_initiate failed but returned an upload id");
		return;
	}
	FUZZ_CHECK(id && id[0] && xml_text_ok(id),
		   "s3xml_parse_initiate returned an empty or impossible upload id");
	sbuf b = SBUF_INIT;
	sbuf_adds(&b, "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>");
	xml_elem(&b, "UploadId", id);
	sbuf_adds(&b, "</InitiateMultipartUploadResult>");
	char *again = NULL;
	rc = s3xml_parse_initiate(b.buf, b.len, &again, err, sizeof(err));
	FUZZ_CHECK(rc == 0 && !strcmp(again, id),
		   "an upload id written back reads differently:\n%s", b.buf);
	free(again);
	free(id);
	sbuf_free(&b);
}

static void check_complete(const char *body, size_t len)
{
	char etag[S3_XML_FUZZ_ETAG];
	struct s3xml_error e;
	char err[256] = "";
	memset(etag, 0x5a, sizeof(etag));
	int rc = s3xml_parse_complete(body, len, etag, sizeof(etag), &e, err, sizeof(err));
	if (rc == -EAGAIN) {
		struct s3xml_error e2;
		FUZZ_CHECK(s3xml_parse_error(body, len, &e2) == 0 && same_error(&e, &e2),
			   "s3xml_parse_complete saw an <Error> that s3xml_parse_error does not");
		FUZZ_CHECK(err[0], "s3xml_parse_complete: -EAGAIN without a reason");
		return;
	}
	/* Without e, the same answer. */
	char etag2[S3_XML_FUZZ_ETAG];
	char err2[256] = "";
	int rc2 = s3xml_parse_complete(body, len, etag2, sizeof(etag2), NULL, err2, sizeof(err2));
	FUZZ_CHECK(rc2 == rc && (rc || !strcmp(etag, etag2)),
		   "s3xml_parse_complete answers differently without e");
	if (rc) {
		check_failure("s3xml_parse_complete", rc, err);
		return;
	}
	FUZZ_CHECK(strnlen(etag, sizeof(etag)) < sizeof(etag), "the ETag is not terminated");
	FUZZ_CHECK(field_ok(etag, sizeof(etag)), "the ETag holds bytes expat cannot have sent");
	if (!xml_text_ok(etag))
		return;
	sbuf b = SBUF_INIT;
	sbuf_adds(&b, "<CompleteMultipartUploadResult><Location>l</Location><ETag>\"");
	xml_text(&b, etag);
	sbuf_adds(&b, "\"</ETag></CompleteMultipartUploadResult>");
	rc = s3xml_parse_complete(b.buf, b.len, etag2, sizeof(etag2), NULL, err2, sizeof(err2));
	/* The parser takes off one pair of quotes, the ones written here. */
	FUZZ_CHECK(rc == 0 && !strcmp(etag, etag2), "an ETag written back reads differently:\n%s",
		   b.buf);
	sbuf_free(&b);
}

static void uploads_write(const struct s3xml_uploads *u, sbuf *b, bool *times_ok)
{
	*times_ok = true;
	sbuf_adds(b, "<ListMultipartUploadsResult><Bucket>b</Bucket>");
	sbuf_addf(b, "<IsTruncated>%s</IsTruncated>", u->truncated ? "true" : "false");
	if (u->next_key_marker)
		xml_url_elem(b, "NextKeyMarker", u->next_key_marker);
	if (u->next_upload_id_marker)
		xml_elem(b, "NextUploadIdMarker", u->next_upload_id_marker);
	sbuf_adds(b, "<EncodingType>url</EncodingType>");
	for (size_t i = 0; i < u->n; i++) {
		sbuf_adds(b, "<Upload>");
		xml_url_elem(b, "Key", u->items[i].key);
		xml_elem(b, "UploadId", u->items[i].upload_id);
		if (u->items[i].initiated && !xml_time(b, "Initiated", u->items[i].initiated))
			*times_ok = false;
		sbuf_adds(b, "</Upload>");
	}
	sbuf_adds(b, "</ListMultipartUploadsResult>");
}

static void check_uploads(const char *body, size_t len)
{
	struct s3xml_uploads u;
	char err[256] = "";
	memset(&u, 0x5a, sizeof(u));
	int rc = s3xml_parse_uploads(body, len, &u, err, sizeof(err));
	if (rc) {
		check_failure("s3xml_parse_uploads", rc, err);
		FUZZ_CHECK(zeroed(&u, sizeof(u)),
			   "s3xml_parse_uploads failed but left data in the result");
		return;
	}
	FUZZ_CHECK(!u.truncated || u.next_key_marker,
		   "a truncated upload list without NextKeyMarker");
	FUZZ_CHECK(!u.next_upload_id_marker || xml_text_ok(u.next_upload_id_marker),
		   "NextUploadIdMarker holds bytes expat cannot send");
	for (size_t i = 0; i < u.n; i++) {
		FUZZ_CHECK(u.items[i].key && u.items[i].upload_id, "upload %zu lacks its key or id",
			   i);
		FUZZ_CHECK(xml_text_ok(u.items[i].upload_id),
			   "upload %zu: id holds bytes expat cannot send", i);
	}
	sbuf b = SBUF_INIT;
	bool times_ok;
	uploads_write(&u, &b, &times_ok);
	struct s3xml_uploads again;
	rc = s3xml_parse_uploads(b.buf, b.len, &again, err, sizeof(err));
	FUZZ_CHECK(rc == 0, "an upload list written back is refused (%s):\n%s", err, b.buf);
	bool same = again.n == u.n && again.truncated == u.truncated &&
		    !again.next_key_marker == !u.next_key_marker &&
		    (!u.next_key_marker || !strcmp(again.next_key_marker, u.next_key_marker)) &&
		    !again.next_upload_id_marker == !u.next_upload_id_marker &&
		    (!u.next_upload_id_marker ||
		     !strcmp(again.next_upload_id_marker, u.next_upload_id_marker));
	for (size_t i = 0; same && i < u.n; i++)
		same = !strcmp(u.items[i].key, again.items[i].key) &&
		       !strcmp(u.items[i].upload_id, again.items[i].upload_id) &&
		       (!times_ok || u.items[i].initiated == again.items[i].initiated);
	FUZZ_CHECK(same, "an upload list written back reads differently:\n%s", b.buf);
	s3xml_uploads_free(&again);
	s3xml_uploads_free(&u);
	sbuf_free(&b);
}

static void check_time(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	time_t t = 12345;
	int rc = s3xml_parse_time(s, &t);
	if (rc) {
		FUZZ_CHECK(rc == -EINVAL && t == 12345,
			   "s3xml_parse_time(\"%s\") failed (%d) but wrote a time", s, rc);
	} else {
		sbuf b = SBUF_INIT;
		if (xml_time(&b, "T", t)) {
			/* "<T>...</T>": the time alone is between the tags. */
			char *iso = strndup(b.buf + 3, b.len - 7);
			FUZZ_SETUP(iso, "out of memory");
			time_t again = 0;
			FUZZ_CHECK(s3xml_parse_time(iso, &again) == 0 && again == t,
				   "s3xml_parse_time(\"%s\") = %lld, which reads back from \"%s\" as %lld",
				   s, (long long)t, iso, (long long)again);
			free(iso);
		}
		sbuf_free(&b);
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	check_error(body, size);
	check_list(body, size);
	check_initiate(body, size);
	check_complete(body, size);
	check_uploads(body, size);
	check_time(data, size);
	return 0;
}
