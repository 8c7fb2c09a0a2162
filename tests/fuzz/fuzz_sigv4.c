/*
 * fuzz_sigv4 — SigV4 canonicalisation and signing (sigv4.h): method,
 * path, query and headers of every S3 request, some of which (keys,
 * continuation tokens, markers) come from S3 answers or from users.
 *
 * Input: one byte of options, then a request in the aws-sigv4 suite's
 * request.txt form ("METHOD TARGET HTTP/1.1", "Name:value" lines, a
 * line starting with blanks continuing the previous value, an empty
 * line, the body). Options, bit by bit: 0 SIGV4_NORMALIZE_PATH,
 * 1 SIGV4_CONTENT_SHA256, 2 SIGV4_UNSIGNED_TOKEN, 3 service "s3" (else
 * "service"), 4 a session token, 5 payload UNSIGNED-PAYLOAD, 6 the
 * signing time is the next 8 bytes (big-endian seconds; else the
 * suite's 2015-08-30T12:36:00Z), 7 the body itself is the payload hash
 * (else its SHA-256). The credentials are the suite's, so its cases
 * (corpus/sigv4/aws-*) sign as the suite says.
 *
 * Checked against a reference written here from sigv4.h alone: whether
 * the request may be signed at all (token names, Host, contradicting
 * x-amz-* headers, malformed escapes, ...), the canonical query,
 * headers, signed header list, path (without normalisation; with it,
 * that no empty, "." or ".." segment is left), the whole canonical
 * request and the headers to add. The string to sign and the signature
 * are recomputed with OpenSSL. Signing is deterministic, and signing the
 * canonical form again (its headers and query as given) changes nothing.
 * Signed again with another secret, everything but the signature stays
 * the same, error messages included (and with another session token the
 * messages do): no credential can show in an output or a message.
 */
#include "fuzz.h"
#include "sbuf.h"
#include "sigv4.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>
#include <time.h>

#define SIGV4_FUZZ_MAX_HEADERS 64
#define SUITE_TIME 1440938160 /* 2015-08-30T12:36:00Z */

static const char akid[] = "AKIDEXAMPLE";
static const char secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static const char token[] = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
static const char region[] = "us-east-1";

struct req {
	unsigned opts;
	time_t when;
	char *method, *path, *query;
	struct sigv4_header h[SIGV4_FUZZ_MAX_HEADERS];
	size_t nh;
	char payload[80];
};

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	FUZZ_SETUP(d, "out of memory");
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static void req_free(struct req *r)
{
	free(r->method);
	free(r->path);
	free(r->query);
	for (size_t i = 0; i < r->nh; i++) {
		free((char *)r->h[i].name);
		free((char *)r->h[i].value);
	}
}

/* The input as a request; never fails (a malformed request line just makes odd fields). */
static void req_parse(const uint8_t *data, size_t size, struct req *r)
{
	memset(r, 0, sizeof(*r));
	r->when = SUITE_TIME;
	if (size) {
		r->opts = data[0];
		data++, size--;
	}
	if ((r->opts & 64) && size >= 8) {
		uint64_t t = 0;
		for (int i = 0; i < 8; i++)
			t = t << 8 | data[i];
		r->when = (time_t)(int64_t)t;
		data += 8, size -= 8;
	}
	char *text = fuzz_strndup(data, size);
	const char *p = text, *end = text + strlen(text);
	/* "METHOD TARGET HTTP/1.1": the target runs from the first space to the last " HTTP/". */
	const char *nl = strchr(p, '\n'), *le = nl ? nl : end;
	if (le > p && le[-1] == '\r')
		le--;
	const char *sp = memchr(p, ' ', (size_t)(le - p));
	r->method = dup_n(p, (size_t)((sp ? sp : le) - p));
	const char *ts = sp ? sp + 1 : le, *te = le;
	for (const char *q = te; q > ts; q--)
		if (!strncmp(q - 1, " HTTP/", 6) && q - 1 + 6 <= le) {
			te = q - 1;
			break;
		}
	const char *qm = memchr(ts, '?', (size_t)(te - ts));
	r->path = dup_n(ts, (size_t)((qm ? qm : te) - ts));
	r->query = qm ? dup_n(qm + 1, (size_t)(te - qm - 1)) : NULL;
	p = nl ? nl + 1 : end;
	while (p < end) {
		nl = strchr(p, '\n');
		le = nl ? nl : end;
		const char *next = nl ? nl + 1 : end;
		if (le > p && le[-1] == '\r')
			le--;
		if (le == p) {
			p = next;
			break;
		}
		if ((*p == ' ' || *p == '\t') && r->nh) {
			/* A continuation: kept with its line break, which the signer must fold. */
			char *old = (char *)r->h[r->nh - 1].value;
			size_t ol = strlen(old), ll = (size_t)(le - p);
			char *v = malloc(ol + ll + 2);
			FUZZ_SETUP(v, "out of memory");
			memcpy(v, old, ol);
			v[ol] = '\n';
			memcpy(v + ol + 1, p, ll);
			v[ol + 1 + ll] = '\0';
			free(old);
			r->h[r->nh - 1].value = v;
		} else if (r->nh < SIGV4_FUZZ_MAX_HEADERS) {
			const char *colon = memchr(p, ':', (size_t)(le - p));
			r->h[r->nh].name = dup_n(p, (size_t)((colon ? colon : le) - p));
			r->h[r->nh].value =
				colon ? dup_n(colon + 1, (size_t)(le - colon - 1)) : dup_n("", 0);
			r->nh++;
		}
		p = next;
	}
	if (r->opts & 128)
		snprintf(r->payload, sizeof(r->payload), "%.79s", p);
	else if (r->opts & 32)
		snprintf(r->payload, sizeof(r->payload), "%s", SIGV4_UNSIGNED_PAYLOAD);
	else
		FUZZ_SETUP(sigv4_sha256_hex(p, (size_t)(end - p), r->payload) == 0, "SHA-256 failed");
	free(text);
}

/* ---- the reference ---- */

static bool ref_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static bool ref_token(const char *s)
{
	if (!*s)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (!(*p >= 'A' && *p <= 'Z') && !(*p >= 'a' && *p <= 'z') &&
		    !(*p >= '0' && *p <= '9') && !strchr("!#$%&'*+-.^_`|~", *p))
			return false;
	return true;
}

static void ref_encode(sbuf *b, const char *s, size_t n, bool keep_slash)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (ref_unreserved(c) || (keep_slash && c == '/'))
			sbuf_add(b, &s[i], 1);
		else
			sbuf_addf(b, "%%%02X", c);
	}
}

static int ref_hex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* Decodes then encodes s[0..n); false on a '%' without two hex digits. */
static bool ref_requery(sbuf *out, const char *s, size_t n)
{
	sbuf raw = SBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			sbuf_add(&raw, &s[i], 1);
			continue;
		}
		if (i + 2 >= n) {
			sbuf_free(&raw);
			return false;
		}
		int hi = ref_hex(s[i + 1]), lo = ref_hex(s[i + 2]);
		if (hi < 0 || lo < 0) {
			sbuf_free(&raw);
			return false;
		}
		char c = (char)(hi << 4 | lo);
		sbuf_add(&raw, &c, 1);
		i += 2;
	}
	ref_encode(out, raw.buf ? raw.buf : "", raw.len, false);
	sbuf_free(&raw);
	return true;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The canonical query of q (NULL or "" for none); false if it cannot be
 * signed. Each pair is kept as "key\x01value": \x01 sorts below every
 * character an encoded key holds, so sorting these strings sorts by key,
 * then value; it becomes '=' once sorted.
 */
static bool ref_query(const char *q, sbuf *out)
{
	if (!q || !*q)
		return true;
	if (q[0] == '?')
		return false;
	char **pairs = calloc(strlen(q) + 1, sizeof(*pairs));
	FUZZ_SETUP(pairs, "out of memory");
	size_t n = 0;
	bool ok = true;
	for (const char *p = q; ok && *p; p += *p == '&') {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		if (len) {
			sbuf kv = SBUF_INIT;
			ok = ref_requery(&kv, p, eq ? (size_t)(eq - p) : len);
			sbuf_add(&kv, "\x01", 1);
			ok = ok && (!eq || ref_requery(&kv, eq + 1, len - (size_t)(eq - p) - 1));
			pairs[n++] = sbuf_detach(&kv);
		}
		p += len;
	}
	if (ok) {
		qsort(pairs, n, sizeof(*pairs), str_cmp);
		for (size_t i = 0; i < n; i++) {
			if (i)
				sbuf_adds(out, "&");
			*strchr(pairs[i], '\x01') = '=';
			sbuf_adds(out, pairs[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(pairs[i]);
	free(pairs);
	return ok;
}

/* The words of v (runs of anything but blanks and line breaks), joined by one space. */
static char *ref_fold(const char *v)
{
	static const char blank[] = " \t\r\n";
	sbuf b = SBUF_INIT;
	for (const char *p = v + strspn(v, blank); *p; p += strspn(p, blank)) {
		size_t n = strcspn(p, blank);
		if (b.len)
			sbuf_adds(&b, " ");
		sbuf_add(&b, p, n);
		p += n;
	}
	return sbuf_detach(&b);
}

struct rhdr {
	char *name, *value;
	size_t order;
};

static int rhdr_cmp(const void *a, const void *b)
{
	const struct rhdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->order > y->order) - (x->order < y->order);
}

struct expect {
	bool ok;
	char amz_date[32];
	sbuf query, headers, signed_headers, path;
	const char *added[3]; /* names, in order */
	size_t nadded;
};

static struct rhdr *rfind(struct rhdr *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(h[i].name, name))
			return &h[i];
	return NULL;
}

static void expect_free(struct expect *x)
{
	sbuf_free(&x->query);
	sbuf_free(&x->headers);
	sbuf_free(&x->signed_headers);
	sbuf_free(&x->path);
}

/* What sigv4.h says signing r must give. */
static void expect_for(const struct req *r, struct expect *x)
{
	memset(x, 0, sizeof(*x));
	bool s3 = r->opts & 8, has_token = r->opts & 16;
	unsigned flags = r->opts & 7;
	struct tm tm;
	x->ok = ref_token(r->method) && r->path[0] == '/' &&
		(!strcmp(r->payload, SIGV4_UNSIGNED_PAYLOAD) || fuzz_is_lower_hex(r->payload, 64)) &&
		!(s3 && (flags & SIGV4_NORMALIZE_PATH)) && gmtime_r(&r->when, &tm) &&
		tm.tm_year + 1900 >= 1000 && tm.tm_year + 1900 <= 9999;
	if (!x->ok)
		return;
	strftime(x->amz_date, sizeof(x->amz_date), "%Y%m%dT%H%M%SZ", &tm);
	if (!(flags & SIGV4_NORMALIZE_PATH))
		ref_encode(&x->path, r->path, strlen(r->path), true);
	x->ok = ref_query(r->query, &x->query);
	for (size_t i = 0; x->ok && i < r->nh; i++)
		x->ok = ref_token(r->h[i].name) && strcasecmp(r->h[i].name, "authorization");
	if (!x->ok)
		return;
	struct rhdr *h = calloc(r->nh + 3, sizeof(*h));
	FUZZ_SETUP(h, "out of memory");
	size_t n = 0;
	for (size_t i = 0; i < r->nh; i++) {
		char *name = dup_n(r->h[i].name, strlen(r->h[i].name));
		for (char *c = name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		char *v = ref_fold(r->h[i].value);
		struct rhdr *same = rfind(h, n, name);
		if (same) { /* joined in the order given */
			sbuf j = SBUF_INIT;
			sbuf_addf(&j, "%s,%s", same->value, v);
			free(same->value);
			same->value = sbuf_detach(&j);
			free(name);
			free(v);
		} else {
			h[n++] = (struct rhdr){name, v, i};
		}
	}
	struct rhdr *d = rfind(h, n, "x-amz-date"), *c = rfind(h, n, "x-amz-content-sha256"),
		    *t = rfind(h, n, "x-amz-security-token");
	x->ok = rfind(h, n, "host") && (!d || !strcmp(d->value, x->amz_date)) &&
		(!c || !strcmp(c->value, r->payload)) &&
		(!has_token || !t || (!(flags & SIGV4_UNSIGNED_TOKEN) && !strcmp(t->value, token)));
	if (x->ok) {
		size_t own = n;
		if (!d) {
			h[own++] = (struct rhdr){dup_n("x-amz-date", 10),
						 dup_n(x->amz_date, strlen(x->amz_date)), 1000};
			x->added[x->nadded++] = "x-amz-date";
		}
		if (!c && (s3 || (flags & SIGV4_CONTENT_SHA256))) {
			h[own++] = (struct rhdr){dup_n("x-amz-content-sha256", 20),
						 dup_n(r->payload, strlen(r->payload)), 1001};
			x->added[x->nadded++] = "x-amz-content-sha256";
		}
		if (has_token && !t) {
			x->added[x->nadded++] = "x-amz-security-token";
			if (!(flags & SIGV4_UNSIGNED_TOKEN))
				h[own++] = (struct rhdr){dup_n("x-amz-security-token", 20),
							 dup_n(token, strlen(token)), 1002};
		}
		n = own;
		qsort(h, n, sizeof(*h), rhdr_cmp);
		for (size_t i = 0; i < n; i++) {
			sbuf_addf(&x->headers, "%s:%s\n", h[i].name, h[i].value);
			sbuf_addf(&x->signed_headers, "%s%s", i ? ";" : "", h[i].name);
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

/* ---- checks ---- */

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned len = 0;
	FUZZ_SETUP(HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out,
			&len) &&
			   len == 32,
		   "HMAC failed");
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* Whether path (decoded canonical path) has no empty, "." or ".." segment but a trailing slash. */
static bool normalized(const char *path)
{
	if (path[0] != '/')
		return false;
	for (const char *p = path + 1; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if ((n == 0 && e) || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n + (e ? 1 : 0);
	}
	return true;
}

static char *percent_decode(const char *s)
{
	sbuf b = SBUF_INIT;
	for (const char *p = s; *p; p++) {
		if (*p == '%' && ref_hex(p[1]) >= 0 && ref_hex(p[2]) >= 0) {
			char c = (char)(ref_hex(p[1]) << 4 | ref_hex(p[2]));
			sbuf_add(&b, &c, 1);
			p += 2;
		} else {
			sbuf_add(&b, p, 1);
		}
	}
	return sbuf_detach(&b);
}

static void check_signed(const sigv4_signer *s, const struct req *r, const struct sigv4_request *q,
			 const sigv4_signed *sg, const struct expect *x)
{
	bool s3 = r->opts & 8;
	const char *service = s3 ? "s3" : "service";
	const char *creq = sigv4_signed_canonical_request(sg), *sts = sigv4_signed_string_to_sign(sg);
	const char *sig = sigv4_signed_signature(sg), *auth = sigv4_signed_authorization(sg);
	const char *sh = sigv4_signed_signed_headers(sg), *cpath = sigv4_signed_canonical_path(sg);
	const char *cquery = sigv4_signed_canonical_query(sg), *date = sigv4_signed_amz_date(sg);

	FUZZ_CHECK(!strcmp(date, x->amz_date), "x-amz-date %s, want %s", date, x->amz_date);
	FUZZ_CHECK(!strcmp(cquery, sbuf_str(&x->query)), "canonical query \"%s\", want \"%s\"",
		   cquery, sbuf_str(&x->query));
	FUZZ_CHECK(!strcmp(sh, sbuf_str(&x->signed_headers)), "signed headers \"%s\", want \"%s\"",
		   sh, sbuf_str(&x->signed_headers));
	if (r->opts & SIGV4_NORMALIZE_PATH) {
		for (const char *p = cpath; *p; p++)
			FUZZ_CHECK(ref_unreserved((unsigned char)*p) || *p == '/' ||
					   (*p == '%' && ref_hex(p[1]) >= 0 && ref_hex(p[2]) >= 0),
				   "canonical path \"%s\" is not encoded", cpath);
		char *dec = percent_decode(cpath);
		FUZZ_CHECK(normalized(dec), "canonical path \"%s\" of \"%s\" is not normalized",
			   cpath, r->path);
		free(dec);
	} else {
		FUZZ_CHECK(!strcmp(cpath, sbuf_str(&x->path)), "canonical path \"%s\", want \"%s\"",
			   cpath, sbuf_str(&x->path));
	}
	sbuf want = SBUF_INIT;
	sbuf_addf(&want, "%s\n%s\n%s\n%s\n%s\n%s", r->method, cpath, sbuf_str(&x->query),
		  sbuf_str(&x->headers), sbuf_str(&x->signed_headers), r->payload);
	FUZZ_CHECK(!strcmp(creq, want.buf), "canonical request\n%s\nwant\n%s", creq, want.buf);
	sbuf_free(&want);

	size_t n_added;
	const struct sigv4_header *added = sigv4_signed_added_headers(sg, &n_added);
	FUZZ_CHECK(n_added == x->nadded, "%zu headers to add, want %zu", n_added, x->nadded);
	for (size_t i = 0; i < n_added; i++) {
		FUZZ_CHECK(!strcmp(added[i].name, x->added[i]), "header to add #%zu is %s, want %s",
			   i, added[i].name, x->added[i]);
		const char *v = !strcmp(added[i].name, "x-amz-date")             ? x->amz_date
				: !strcmp(added[i].name, "x-amz-content-sha256") ? r->payload
										 : token;
		FUZZ_CHECK(!strcmp(added[i].value, v), "header to add %s is \"%s\", want \"%s\"",
			   added[i].name, added[i].value, v);
	}

	/* The string to sign and the signature, recomputed. */
	char scope[128], hash[65], dstr[9];
	memcpy(dstr, date, 8);
	dstr[8] = '\0';
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", dstr, region, service);
	FUZZ_SETUP(sigv4_sha256_hex(creq, strlen(creq), hash) == 0, "SHA-256 failed");
	sbuf w = SBUF_INIT;
	sbuf_addf(&w, "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, scope, hash);
	FUZZ_CHECK(!strcmp(sts, w.buf), "string to sign\n%s\nwant\n%s", sts, w.buf);
	sbuf_free(&w);
	unsigned char k[32];
	char key0[64];
	snprintf(key0, sizeof(key0), "AWS4%s", secret);
	hmac(key0, strlen(key0), dstr, k);
	hmac(k, 32, region, k);
	hmac(k, 32, service, k);
	hmac(k, 32, "aws4_request", k);
	hmac(k, 32, sts, k);
	char sighex[65];
	hex(k, 32, sighex);
	FUZZ_CHECK(!strcmp(sig, sighex), "signature %s, want %s", sig, sighex);
	sbuf wauth = SBUF_INIT;
	sbuf_addf(&wauth, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", akid,
		  scope, sh, sighex);
	FUZZ_CHECK(!strcmp(auth, wauth.buf), "Authorization \"%s\", want \"%s\"", auth, wauth.buf);
	sbuf_free(&wauth);

	/* Deterministic, and the canonical form signs the same. */
	sigv4_signed *again = NULL;
	char err[512] = "";
	FUZZ_CHECK(sigv4_sign(s, q, &again, err, sizeof(err)) == 0 &&
			   !strcmp(sigv4_signed_authorization(again), auth) &&
			   !strcmp(sigv4_signed_canonical_request(again), creq),
		   "signing the same request twice gives another result");
	sigv4_signed_free(again);

	struct sigv4_header canon[SIGV4_FUZZ_MAX_HEADERS + 3];
	size_t nc = 0;
	char *hcopy = dup_n(sbuf_str(&x->headers), x->headers.len);
	for (char *line = hcopy, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = '\0';
		char *colon = strchr(line, ':');
		*colon = '\0';
		canon[nc++] = (struct sigv4_header){line, colon + 1};
	}
	struct sigv4_request q2 = *q;
	q2.headers = canon;
	q2.n_headers = nc;
	q2.query = cquery;
	FUZZ_CHECK(sigv4_sign(s, &q2, &again, err, sizeof(err)) == 0,
		   "the canonical form cannot be signed: %s", err);
	FUZZ_CHECK(!strcmp(sigv4_signed_canonical_request(again), creq) &&
			   !strcmp(sigv4_signed_authorization(again), auth),
		   "the canonical form signs differently:\n%s\nwas\n%s",
		   sigv4_signed_canonical_request(again), creq);
	sigv4_signed_free(again);
	free(hcopy);

	if (r->opts & SIGV4_NORMALIZE_PATH) {
		/* Normalising a normalised path changes nothing. */
		char *dec = percent_decode(cpath);
		q2 = *q;
		q2.path = dec;
		FUZZ_CHECK(sigv4_sign(s, &q2, &again, err, sizeof(err)) == 0 &&
				   !strcmp(sigv4_signed_canonical_path(again), cpath),
			   "normalising \"%s\" again gives another path", dec);
		sigv4_signed_free(again);
		free(dec);
	}
}

/*
 * The credentials reach nothing but what they must: signed again with
 * another secret of the same length, everything but the signature is
 * the same, error messages included; with another session token, the
 * same error messages. So no secret can show in an output or a message.
 */
static void check_credentials(const struct req *r, const struct sigv4_request *q, int rc,
			      const sigv4_signed *sg, const char *err)
{
	static const char other_secret[] = "Zq9mW2xR7tLpK4vB8nC1yH6dF3gJ5sA0eUiOoTrE";
	static const char other_token[] =
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	_Static_assert(sizeof(other_secret) == sizeof(secret), "same length as the suite's secret");
	for (int which = 0; which < 2; which++) {
		if (which == 1 && !(r->opts & 16))
			break;
		struct sigv4_credentials c = {akid, which ? secret : other_secret, NULL};
		if (r->opts & 16)
			c.session_token = which ? other_token : token;
		sigv4_signer *s2 = NULL;
		char e2[512] = "";
		FUZZ_SETUP(sigv4_signer_new(&c, region, (r->opts & 8) ? "s3" : "service", &s2, e2,
					    sizeof(e2)) == 0,
			   "signer: %s", e2);
		sigv4_signed *g2 = NULL;
		int rc2 = sigv4_sign(s2, q, &g2, e2, sizeof(e2));
		if (which == 0) {
			FUZZ_CHECK(rc2 == rc && !strcmp(e2, rc ? err : ""),
				   "another secret changes the answer: %d \"%s\", then %d \"%s\"",
				   rc, rc ? err : "", rc2, e2);
			if (!rc) {
				FUZZ_CHECK(!strcmp(sigv4_signed_canonical_request(g2),
						   sigv4_signed_canonical_request(sg)) &&
						   !strcmp(sigv4_signed_string_to_sign(g2),
							   sigv4_signed_string_to_sign(sg)) &&
						   !strcmp(sigv4_signed_signed_headers(g2),
							   sigv4_signed_signed_headers(sg)),
					   "another secret changes what is signed");
				FUZZ_CHECK(strcmp(sigv4_signed_signature(g2),
						  sigv4_signed_signature(sg)),
					   "another secret gives the same signature");
			}
		} else if (rc && rc2) {
			FUZZ_CHECK(!strcmp(e2, err),
				   "the error message depends on the session token: \"%s\", then \"%s\"",
				   err, e2);
		}
		sigv4_signed_free(g2);
		sigv4_signer_free(s2);
	}
}

static void check_uri_encode(const char *s)
{
	for (int keep = 0; keep < 2; keep++) {
		char *e = sigv4_uri_encode(s, keep);
		sbuf want = SBUF_INIT;
		ref_encode(&want, s, strlen(s), keep);
		FUZZ_CHECK(!strcmp(e, sbuf_str(&want)),
			   "sigv4_uri_encode(keep_slash %d) = \"%s\", want \"%s\"", keep, e,
			   sbuf_str(&want));
		char *d = percent_decode(e);
		FUZZ_CHECK(!strcmp(d, s), "sigv4_uri_encode does not decode back");
		free(d);
		free(e);
		sbuf_free(&want);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct req r;
	req_parse(data, size, &r);

	struct sigv4_credentials cred = {akid, secret, (r.opts & 16) ? token : NULL};
	sigv4_signer *s = NULL;
	char err[512] = "";
	FUZZ_SETUP(sigv4_signer_new(&cred, region, (r.opts & 8) ? "s3" : "service", &s, err,
				    sizeof(err)) == 0,
		   "signer: %s", err);
	struct sigv4_request q = {
		.method = r.method,
		.path = r.path,
		.query = r.query,
		.headers = r.h,
		.n_headers = r.nh,
		.payload_sha256 = r.payload,
		.when = r.when,
		.flags = r.opts & 7,
	};
	struct expect x;
	expect_for(&r, &x);
	sigv4_signed *sg = NULL;
	int rc = sigv4_sign(s, &q, &sg, err, sizeof(err));
	if (fuzz_verbose())
		fprintf(stderr, "sigv4_sign: %d %s\n%s\n", rc, err,
			sg ? sigv4_signed_authorization(sg) : "");
	if (rc) {
		FUZZ_CHECK(rc == -EINVAL, "sigv4_sign returned %d: %s", rc, err);
		FUZZ_CHECK(!sg, "sigv4_sign failed but returned a result");
		FUZZ_CHECK(err[0], "sigv4_sign failed without a reason");
		FUZZ_CHECK(!x.ok, "sigv4_sign refused a request sigv4.h allows: %s", err);
	} else {
		FUZZ_CHECK(x.ok, "sigv4_sign signed a request sigv4.h refuses:\n%s",
			   sigv4_signed_canonical_request(sg));
		check_signed(s, &r, &q, sg, &x);
	}
	check_credentials(&r, &q, rc, sg, err);
	sigv4_signed_free(sg);
	check_uri_encode(r.path);
	expect_free(&x);
	sigv4_signer_free(s);
	req_free(&r);
	return 0;
}
