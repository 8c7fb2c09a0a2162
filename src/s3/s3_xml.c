/*
 * s3_xml — S3 response documents through expat.
 *
 * One small walker drives every document: it keeps the path of local
 * element names from the root ("Contents/Key"), collects the text of the
 * element being read, and hands (path, text) to the document's handler
 * when the element ends. The handlers only copy fields; they never look
 * at raw bytes. Untrusted-input limits (no DTD, depth, text size, strict
 * numbers) are enforced here, once, for every document.
 */
#include "s3_xml.h"
#include "errbuf.h"
#include "hex.h"
#include "xalloc.h"

#include "sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#define MAX_DEPTH 8
#define NAME_MAX_LEN 64
#define MAX_TEXT (64 * 1024)
#define NS_SEP '\x01'

struct walker;
typedef void end_fn(struct walker *w, const char *path, const char *text, size_t len);
typedef void start_fn(struct walker *w, const char *path);

struct walker {
	XML_Parser p;
	const char *root; /* expected root element (local name) */
	char path[MAX_DEPTH * NAME_MAX_LEN];
	size_t path_len[MAX_DEPTH + 1]; /* path length at each depth */
	unsigned depth;                 /* 0 outside the root, 1 in the root */
	unsigned untracked;             /* elements opened after a failure or too deep */
	char root_seen[NAME_MAX_LEN];
	sbuf text;
	int rc; /* 0, or the first failure; the parser is stopped when set */
	char why[200];
	start_fn *start;
	end_fn *end;
	void *arg;
};

static void fail(struct walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct walker *w, const char *fmt, ...)
{
	if (w->rc)
		return;
	w->rc = -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	XML_StopParser(w->p, XML_FALSE);
}

/* The local part of an expat name ("uri\x01Local" or "Local"). */
static const char *local_name(const char *name)
{
	const char *sep = strrchr(name, NS_SEP);
	return sep ? sep + 1 : name;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	(void)attrs;
	struct walker *w = ud;
	const char *local = local_name(name);
	size_t nlen = strlen(local);
	/* expat may still call back after a stop: count such elements, track nothing. */
	if (w->rc || w->depth >= MAX_DEPTH) {
		if (!w->rc)
			fail(w, "elements nested deeper than %d", MAX_DEPTH);
		w->untracked++;
		return;
	}
	if (w->depth == 0) {
		snprintf(w->root_seen, sizeof(w->root_seen), "%s", local);
		if (w->root && strcmp(local, w->root) != 0) {
			fail(w, "root element <%.*s>, expected <%s>", NAME_MAX_LEN, local, w->root);
			w->untracked++;
			return;
		}
		w->path_len[1] = 0;
		w->path[0] = '\0';
	} else {
		size_t at = w->path_len[w->depth];
		if (nlen >= NAME_MAX_LEN) {
			/* No S3 field is this long: keep it out of every match. */
			local = "#long";
			nlen = 5;
		}
		if (at)
			w->path[at++] = '/';
		memcpy(w->path + at, local, nlen + 1);
		w->path_len[w->depth + 1] = at + nlen;
	}
	w->depth++;
	sbuf_reset(&w->text);
	if (w->start && w->depth > 1)
		w->start(w, w->path);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	(void)name;
	struct walker *w = ud;
	if (w->untracked) {
		w->untracked--;
		return;
	}
	if (w->depth == 0)
		return;
	if (w->depth > 1 && w->end && !w->rc)
		w->end(w, w->path, sbuf_str(&w->text), w->text.len);
	sbuf_reset(&w->text);
	w->depth--;
	if (w->depth >= 1)
		w->path[w->path_len[w->depth]] = '\0';
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct walker *w = ud;
	if (len <= 0)
		return;
	if (w->text.len + (size_t)len > MAX_TEXT) {
		fail(w, "element text longer than %d bytes", MAX_TEXT);
		return;
	}
	sbuf_add(&w->text, s, (size_t)len);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal_subset)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
	fail(ud, "document has a DTD, which S3 never sends");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
			      int value_len, const XML_Char *base, const XML_Char *sysid,
			      const XML_Char *pubid, const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
	(void)pubid, (void)notation;
	fail(ud, "document declares an entity");
}

/* Parses body with w's handlers. 0, or -EINVAL with the reason in err. */
static int walk(struct walker *w, const char *body, size_t len, const char *what, char *err,
		size_t errlen)
{
	if (!body || len == 0) {
		errbuf_line(err, errlen, "%s: empty response body", what);
		return -EINVAL;
	}
	if (len > (size_t)INT32_MAX) {
		errbuf_line(err, errlen, "%s: response body too large", what);
		return -EINVAL;
	}
	w->p = XML_ParserCreateNS(NULL, NS_SEP);
	if (!w->p)
		xalloc_die("creating an XML parser");
	XML_SetUserData(w->p, w);
	XML_SetElementHandler(w->p, on_start, on_end);
	XML_SetCharacterDataHandler(w->p, on_text);
	XML_SetStartDoctypeDeclHandler(w->p, on_doctype);
	XML_SetEntityDeclHandler(w->p, on_entity);
	XML_SetParamEntityParsing(w->p, XML_PARAM_ENTITY_PARSING_NEVER);

	enum XML_Status st = XML_Parse(w->p, body, (int)len, XML_TRUE);
	if (st != XML_STATUS_OK && !w->rc) {
		w->rc = -EINVAL;
		snprintf(w->why, sizeof(w->why), "not well-formed XML at line %lu: %s",
			 (unsigned long)XML_GetCurrentLineNumber(w->p),
			 XML_ErrorString(XML_GetErrorCode(w->p)));
	}
	XML_ParserFree(w->p);
	w->p = NULL;
	sbuf_free(&w->text);
	if (w->rc)
		errbuf_line(err, errlen, "%s: %s", what, w->why);
	return w->rc;
}

/* Copies text into a fixed field, truncating (S3 values fit; a hostile one is cut). */
static void copy_field(char *dst, size_t dstlen, const char *text, size_t len)
{
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, text, len);
	dst[len] = '\0';
}

/* An ETag without its surrounding quotes. */
static char *etag_dup(const char *text, size_t len)
{
	if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
		text++;
		len -= 2;
	}
	return xstrndup(text, len);
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int s3xml_parse_time(const char *s, time_t *out)
{
	/* YYYY-MM-DDTHH:MM:SS[.fff]Z */
	int y, mo, d, h, mi, sec;
	if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -EINVAL;
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0)
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	struct tm tm = {0};
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = timegm(&tm);
	return 0;
}

/*
 * Percent-decodes s in place (encoding-type=url: '+' is a space, as in
 * a form). -EINVAL on a malformed escape or a decoded NUL.
 */
static int url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			*o++ = (char)(hi << 4 | lo);
			p += 2;
		} else if (*p == '+') {
			*o++ = ' ';
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

/* ---- <Error> ------------------------------------------------------------ */

static void error_end(struct walker *w, const char *path, const char *text, size_t len)
{
	struct s3xml_error *e = w->arg;
	if (strcmp(path, "Code") == 0)
		copy_field(e->code, sizeof(e->code), text, len);
	else if (strcmp(path, "Message") == 0)
		copy_field(e->message, sizeof(e->message), text, len);
	else if (strcmp(path, "Key") == 0)
		copy_field(e->key, sizeof(e->key), text, len);
	else if (strcmp(path, "RequestId") == 0)
		copy_field(e->request_id, sizeof(e->request_id), text, len);
	else if (strcmp(path, "Resource") == 0)
		copy_field(e->resource, sizeof(e->resource), text, len);
}

int s3xml_parse_error(const char *body, size_t len, struct s3xml_error *out)
{
	memset(out, 0, sizeof(*out));
	struct walker w = {.root = "Error", .end = error_end, .arg = out};
	int rc = walk(&w, body, len, "error document", NULL, 0);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- ListObjectsV2 -------------------------------------------------------- */

struct list_state {
	struct s3xml_list *l;
	size_t cap;
	bool url_encoded;
};

static struct s3xml_object *list_push(struct list_state *st, bool is_prefix)
{
	struct s3xml_list *l = st->l;
	if (l->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 64;
		struct s3xml_object *n = xreallocarray(l->items, st->cap, sizeof(*n));
		l->items = n;
	}
	struct s3xml_object *o = &l->items[l->n++];
	memset(o, 0, sizeof(*o));
	o->is_prefix = is_prefix;
	return o;
}

static void list_start(struct walker *w, const char *path)
{
	struct list_state *st = w->arg;
	if (strcmp(path, "Contents") == 0)
		list_push(st, false);
	else if (strcmp(path, "CommonPrefixes") == 0)
		list_push(st, true);
}

static void list_end(struct walker *w, const char *path, const char *text, size_t len)
{
	struct list_state *st = w->arg;
	struct s3xml_list *l = st->l;
	struct s3xml_object *o = l->n ? &l->items[l->n - 1] : NULL;

	if (strcmp(path, "IsTruncated") == 0) {
		if (parse_bool(text, &l->truncated))
			fail(w, "IsTruncated is \"%.40s\", not true or false", text);
	} else if (strcmp(path, "NextContinuationToken") == 0) {
		free(l->next_token);
		l->next_token = xstrndup(text, len);
	} else if (strcmp(path, "EncodingType") == 0) {
		st->url_encoded = strcmp(text, "url") == 0;
	} else if (strcmp(path, "Contents/Key") == 0 || strcmp(path, "CommonPrefixes/Prefix") == 0) {
		free(o->key);
		o->key = xstrndup(text, len);
	} else if (strcmp(path, "Contents/ETag") == 0) {
		free(o->etag);
		o->etag = etag_dup(text, len);
	} else if (strcmp(path, "Contents/Size") == 0) {
		if (parse_u64(text, &o->size))
			fail(w, "object size \"%.40s\" is not a number", text);
	} else if (strcmp(path, "Contents/LastModified") == 0) {
		if (s3xml_parse_time(text, &o->last_modified))
			fail(w, "LastModified \"%.40s\" is not an ISO 8601 time", text);
	} else if (strcmp(path, "Contents") == 0 || strcmp(path, "CommonPrefixes") == 0) {
		if (!o->key)
			fail(w, "a <%s> entry has no key", path);
		else if (!o->etag)
			o->etag = xstrndup("", 0);
	}
}

void s3xml_list_free(struct s3xml_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].key);
		free(l->items[i].etag);
	}
	free(l->items);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

int s3xml_parse_list(const char *body, size_t len, struct s3xml_list *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct list_state st = {.l = out};
	struct walker w = {.root = "ListBucketResult", .start = list_start, .end = list_end, .arg = &st};
	int rc = walk(&w, body, len, "ListObjectsV2 response", err, errlen);
	/* EncodingType may come after the entries: decode once the whole page is read. */
	for (size_t i = 0; !rc && st.url_encoded && i < out->n; i++) {
		if (url_decode(out->items[i].key)) {
			errbuf_line(err, errlen,
				    "ListObjectsV2 response: key \"%.100s\" is not url-encoded",
				    out->items[i].key);
			rc = -EINVAL;
		}
	}
	if (!rc && out->truncated && (!out->next_token || !*out->next_token)) {
		errbuf_line(err, errlen,
			    "ListObjectsV2 response: truncated but no NextContinuationToken");
		rc = -EINVAL;
	}
	if (rc)
		s3xml_list_free(out);
	return rc;
}

/* ---- InitiateMultipartUpload, CompleteMultipartUpload ----------------------- */

static void initiate_end(struct walker *w, const char *path, const char *text, size_t len)
{
	char **id = w->arg;
	if (strcmp(path, "UploadId") == 0) {
		free(*id);
		*id = xstrndup(text, len);
	}
}

int s3xml_parse_initiate(const char *body, size_t len, char **upload_id, char *err, size_t errlen)
{
	*upload_id = NULL;
	struct walker w = {.root = "InitiateMultipartUploadResult",
			   .end = initiate_end,
			   .arg = upload_id};
	int rc = walk(&w, body, len, "InitiateMultipartUpload response", err, errlen);
	if (!rc && (!*upload_id || !**upload_id)) {
		errbuf_line(err, errlen, "InitiateMultipartUpload response: no UploadId");
		rc = -EINVAL;
	}
	if (rc) {
		free(*upload_id);
		*upload_id = NULL;
	}
	return rc;
}

struct complete_state {
	char *etag;
	size_t etag_len;
	bool seen;
};

static void complete_end(struct walker *w, const char *path, const char *text, size_t len)
{
	struct complete_state *st = w->arg;
	if (strcmp(path, "ETag") == 0) {
		if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
			text++;
			len -= 2;
		}
		copy_field(st->etag, st->etag_len, text, len);
		st->seen = true;
	}
}

int s3xml_parse_complete(const char *body, size_t len, char *etag, size_t etag_len,
			 struct s3xml_error *e, char *err, size_t errlen)
{
	etag[0] = '\0';
	struct s3xml_error tmp;
	if (s3xml_parse_error(body, len, e ? e : &tmp) == 0) {
		errbuf_line(err, errlen, "CompleteMultipartUpload answered with an error document");
		return -EAGAIN;
	}
	struct complete_state st = {.etag = etag, .etag_len = etag_len};
	struct walker w = {.root = "CompleteMultipartUploadResult", .end = complete_end, .arg = &st};
	return walk(&w, body, len, "CompleteMultipartUpload response", err, errlen);
}

/* ---- ListMultipartUploads ------------------------------------------------ */

struct uploads_state {
	struct s3xml_uploads *u;
	size_t cap;
	bool url_encoded;
};

static void uploads_start(struct walker *w, const char *path)
{
	struct uploads_state *st = w->arg;
	struct s3xml_uploads *u = st->u;
	if (strcmp(path, "Upload") != 0)
		return;
	if (u->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 16;
		struct s3xml_upload *n = xreallocarray(u->items, st->cap, sizeof(*n));
		u->items = n;
	}
	memset(&u->items[u->n++], 0, sizeof(u->items[0]));
}

static void uploads_end(struct walker *w, const char *path, const char *text, size_t len)
{
	struct uploads_state *st = w->arg;
	struct s3xml_uploads *u = st->u;
	struct s3xml_upload *up = u->n ? &u->items[u->n - 1] : NULL;
	if (strcmp(path, "IsTruncated") == 0) {
		if (parse_bool(text, &u->truncated))
			fail(w, "IsTruncated is \"%.40s\", not true or false", text);
	} else if (strcmp(path, "NextKeyMarker") == 0) {
		free(u->next_key_marker);
		u->next_key_marker = xstrndup(text, len);
	} else if (strcmp(path, "NextUploadIdMarker") == 0) {
		free(u->next_upload_id_marker);
		u->next_upload_id_marker = xstrndup(text, len);
	} else if (strcmp(path, "EncodingType") == 0) {
		st->url_encoded = strcmp(text, "url") == 0;
	} else if (strcmp(path, "Upload/Key") == 0) {
		free(up->key);
		up->key = xstrndup(text, len);
	} else if (strcmp(path, "Upload/UploadId") == 0) {
		free(up->upload_id);
		up->upload_id = xstrndup(text, len);
	} else if (strcmp(path, "Upload/Initiated") == 0) {
		if (s3xml_parse_time(text, &up->initiated))
			fail(w, "Initiated \"%.40s\" is not an ISO 8601 time", text);
	} else if (strcmp(path, "Upload") == 0) {
		if (!up->key || !up->upload_id)
			fail(w, "an <Upload> entry lacks Key or UploadId");
	}
}

void s3xml_uploads_free(struct s3xml_uploads *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->items[i].key);
		free(u->items[i].upload_id);
	}
	free(u->items);
	free(u->next_key_marker);
	free(u->next_upload_id_marker);
	memset(u, 0, sizeof(*u));
}

int s3xml_parse_uploads(const char *body, size_t len, struct s3xml_uploads *out, char *err,
			size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct uploads_state st = {.u = out};
	struct walker w = {.root = "ListMultipartUploadsResult",
			   .start = uploads_start,
			   .end = uploads_end,
			   .arg = &st};
	int rc = walk(&w, body, len, "ListMultipartUploads response", err, errlen);
	for (size_t i = 0; !rc && st.url_encoded && i < out->n; i++) {
		if (url_decode(out->items[i].key)) {
			errbuf_line(err, errlen,
				    "ListMultipartUploads response: key is not url-encoded");
			rc = -EINVAL;
		}
	}
	if (!rc && st.url_encoded && out->next_key_marker && url_decode(out->next_key_marker)) {
		errbuf_line(err, errlen,
			    "ListMultipartUploads response: NextKeyMarker is not url-encoded");
		rc = -EINVAL;
	}
	if (!rc && out->truncated && !out->next_key_marker) {
		errbuf_line(err, errlen,
			    "ListMultipartUploads response: truncated but no NextKeyMarker");
		rc = -EINVAL;
	}
	if (rc)
		s3xml_uploads_free(out);
	return rc;
}

/* ---- DeleteResult ---- */

struct delete_state {
	struct s3xml_delete *d;
	size_t cap;
};

static void delete_start(struct walker *w, const char *path)
{
	struct delete_state *st = w->arg;
	struct s3xml_delete *d = st->d;
	if (strcmp(path, "Error") != 0)
		return;
	if (d->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 16;
		struct s3xml_delete_error *n = xreallocarray(d->errors, st->cap, sizeof(*n));
		d->errors = n;
	}
	memset(&d->errors[d->n++], 0, sizeof(d->errors[0]));
}

static void delete_end(struct walker *w, const char *path, const char *text, size_t len)
{
	struct delete_state *st = w->arg;
	struct s3xml_delete *d = st->d;
	struct s3xml_delete_error *e = d->n ? &d->errors[d->n - 1] : NULL;
	if (strcmp(path, "Deleted") == 0) {
		d->deleted++;
	} else if (strcmp(path, "Error/Key") == 0) {
		free(e->key);
		e->key = xstrndup(text, len);
	} else if (strcmp(path, "Error/Code") == 0) {
		copy_field(e->code, sizeof(e->code), text, len);
	} else if (strcmp(path, "Error/Message") == 0) {
		copy_field(e->message, sizeof(e->message), text, len);
	} else if (strcmp(path, "Error") == 0) {
		if (!e->key || !e->code[0])
			fail(w, "an <Error> entry lacks Key or Code");
	}
}

void s3xml_delete_free(struct s3xml_delete *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->errors[i].key);
	free(d->errors);
	memset(d, 0, sizeof(*d));
}

int s3xml_parse_delete(const char *body, size_t len, struct s3xml_delete *out, char *err,
		       size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct delete_state st = {.d = out};
	struct walker w = {.root = "DeleteResult", .start = delete_start, .end = delete_end, .arg = &st};
	int rc = walk(&w, body, len, "DeleteObjects response", err, errlen);
	if (rc)
		s3xml_delete_free(out);
	return rc;
}
