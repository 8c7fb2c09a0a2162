/*
 * Unit tests for jsonx: strings valid whatever bytes they hold, escapes
 * spelled as snapfs always wrote them, and the strict loader (duplicate
 * keys, syntax, nesting, numbers), with fields taken the way the lease,
 * pointer and upload record readers take them (json_unpack + jsonx_copy).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "sbuf.h"
#include "tap.h"

/* v dumped (flags) into a fresh string; the caller frees it. */
static char *dump(json_t *v, size_t flags)
{
	sbuf b = SBUF_INIT;
	jsonx_dump(v, flags, &b);
	return sbuf_detach(&b);
}

/* Whether s is well-formed UTF-8 with no raw control byte or DEL. */
static bool clean_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	while (p < end) {
		size_t n = sbuf_utf8_len(p, end);
		if (n == 0 || *p < 0x20 || *p == 0x7f)
			return false;
		p += n;
	}
	return true;
}

static void test_strings_any_bytes(void)
{
	/* Malformed UTF-8 (stray, truncated, overlong, surrogate, past U+10FFFF) becomes U+FFFD. */
	json_t *o = json_object();
	jsonx_set(o, "name", jsonx_str("bad\xff\xc3(\xed\xa0\x80.db"));
	jsonx_set(o, "k\xfe", jsonx_str("\xc0\xaf\xf4\x90\x80\x80"));
	char *s = dump(o, 0);
	CHECK_STR(s,
		  "{\"name\": \"bad\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd.db\", "
		  "\"k\xef\xbf\xbd\": \"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
	json_t *back = NULL;
	CHECK(jsonx_load(s, 4, &back) == 0);
	json_decref(back);
	free(s);
	json_decref(o);

	/* Every byte value, each alone and all together: valid JSON that reads back as written. */
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	for (int i = 0; i <= 255; i++) {
		char one[2] = {(char)(i ? i : 1), '\0'};
		o = json_object();
		jsonx_set(o, "s", jsonx_str(i ? one : all));
		s = dump(o, 0);
		const char *got = NULL;
		bool ok = clean_text(s) && jsonx_load(s, 4, &back) == 0 &&
			  json_unpack(back, "{s:s}", "s", &got) == 0 &&
			  strcmp(got, json_string_value(json_object_get(o, "s"))) == 0;
		if (!ok)
			fprintf(stderr, "byte %d: %s\n", i, s);
		CHECK(ok);
		json_decref(back);
		free(s);
		json_decref(o);
	}

	/* NULL is null; "" is a string, or null where a message is unset. */
	s = dump(jsonx_str(NULL), JSON_ENCODE_ANY);
	CHECK_STR(s, "null");
	free(s);
	json_t *e = jsonx_str("");
	s = dump(e, JSON_ENCODE_ANY);
	CHECK_STR(s, "\"\"");
	free(s);
	json_decref(e);
	s = dump(jsonx_str_or_null(""), JSON_ENCODE_ANY);
	CHECK_STR(s, "null");
	free(s);
}

static void test_escapes_as_before(void)
{
	/* Quotes, backslash, \n \r \t by name; other control bytes and DEL as lowercase \u00xx. */
	json_t *o = json_object();
	jsonx_set(o, "s", jsonx_str("q\"b\\n\nr\rt\t\x01\x08\x0c\x1f\x7f/\xc3\xa9\xf0\x9f\x98\x80"));
	char *s = dump(o, 0);
	CHECK_STR(s,
		  "{\"s\": \"q\\\"b\\\\n\\nr\\rt\\t\\u0001\\u0008\\u000c\\u001f\\u007f/\xc3\xa9\xf0\x9f\x98\x80\"}");
	free(s);
	/* A backslash before a letter in the text stays a backslash. */
	json_t *t = jsonx_str("\\u001F\\b\\f");
	s = dump(t, JSON_ENCODE_ANY);
	CHECK_STR(s, "\"\\\\u001F\\\\b\\\\f\"");
	free(s);
	json_decref(t);
	json_decref(o);

	/* Layouts: ", " and ": " on one line, or compact; keys in insertion order. */
	o = json_object();
	jsonx_set(o, "z", jsonx_int(-1));
	jsonx_set(o, "a", jsonx_u64(UINT64_MAX));
	json_t *arr = json_array();
	jsonx_push(arr, json_true());
	jsonx_push(arr, json_null());
	jsonx_push(arr, jsonx_real(2.25, 1));
	jsonx_push(arr, jsonx_real(0.1 + 0.2, 1));
	jsonx_push(arr, jsonx_real(1.0 / 3, 3));
	jsonx_push(arr, jsonx_real(NAN, 1));
	jsonx_push(arr, jsonx_real(0, 1));
	jsonx_set(o, "m", arr);
	jsonx_set(o, "e", json_object());
	s = dump(o, 0);
	CHECK_STR(s, "{\"z\": -1, \"a\": 9223372036854775807, \"m\": [true, null, 2.3, 0.3, 0.333, null, 0.0], "
		     "\"e\": {}}");
	free(s);
	s = dump(o, JSON_COMPACT);
	CHECK_STR(s,
		  "{\"z\":-1,\"a\":9223372036854775807,\"m\":[true,null,2.3,0.3,0.333,null,0.0],\"e\":{}}");
	free(s);
	/* Setting a key again replaces its value in place. */
	jsonx_set(o, "z", jsonx_str("again"));
	s = dump(o, JSON_COMPACT);
	CHECK(strncmp(s, "{\"z\":\"again\",\"a\":", 17) == 0);
	free(s);
	json_decref(o);
}

/* jsonx_load(docs[i], 16) answers want for each: an object, or -EINVAL and nothing. */
static void load_all(const char *const *docs, size_t n, int want)
{
	for (size_t i = 0; i < n; i++) {
		json_t *v = NULL;
		int rc = jsonx_load(docs[i], 16, &v);
		if (rc != want)
			fprintf(stderr, "document #%zu: %d, not %d: %s\n", i, rc, want, docs[i]);
		CHECK(rc == want && (rc == 0 ? json_is_object(v) : v == NULL));
		json_decref(v);
	}
}

static void test_load_refuses(void)
{
	json_t *v = (json_t *)&v;
	CHECK(jsonx_load(NULL, 16, &v) == -EINVAL && v == NULL);
	static const char *bad[] = {
		"",
		"   ",
		"[]",
		"null",
		"1",
		"\"s\"",
		/* The same key twice, at the top or nested, however it is spelled. */
		"{\"a\": 1, \"a\": 1}",
		"{\"id\": 1, \"\\u0069d\": 2}",
		"{\"o\": {\"x\": 1, \"x\": 2}}",
		"{\"h\": [{\"g\": 1}, {\"g\": 2, \"g\": 3}]}",
		/* Syntax. */
		"{\"a\": 1,}",
		"{\"a\": 1 \"b\": 2}",
		"{\"a\" 1}",
		"{a: 1}",
		"{'a': 1}",
		"{\"a\": 1} x",
		"{\"a\": 1}{}",
		"{\"a\": [1,]}",
		"{\"a\": [1 2]}",
		"{\"a\": [1}",
		"{\"a\": tru}",
		"{\"a\": nul}",
		"{\"a\": -}",
		"{\"a\": 1.}",
		"{\"a\": .5}",
		"{\"a\": 1e}",
		"{\"a\": +1}",
		"{\"a\": 01}",
		"{\"a\": {1: 1}}",
		/* Numbers jansson cannot hold. */
		"{\"a\": 9223372036854775808}",
		"{\"a\": 18446744073709551616}",
		"{\"a\": 1e400}",
		/* Strings: raw control byte, bad escapes, NUL, lone surrogates, bad UTF-8. */
		"{\"a\": \"x\ty\"}",
		"{\"a\": \"\\x41\"}",
		"{\"a\": \"\\q\"}",
		"{\"a\": \"\\u12\"}",
		"{\"a\": \"x\\u0000\"}",
		"{\"a\\u0000b\": 1}",
		"{\"a\": \"\\ud800\"}",
		"{\"a\": \"\\udc00\"}",
		"{\"a\": \"\\ud800\\u0041\"}",
		"{\"a\": \"\xff\"}",
		"{\"a\": \"\xc3\"}",
		"{\"a\": \"\xc0\xaf\"}",
		"{\"a\": \"\xed\xa0\x80\"}",
		"{\"a\": \"\xf4\x90\x80\x80\"}",
		"{\"a\": \"abc}",
		/* Nesting past the bound (16 here, the top object included). */
		"{\"a\": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}",
	};
	load_all(bad, sizeof(bad) / sizeof(bad[0]), -EINVAL);
	/* The well-formed variants are fine. */
	static const char *good[] = {
		" \r\n\t{\"a\": [1, -2.5e+3, true, false, null, {\"a\": \"zz\"}, []], \"b\": {}}\n ",
		"{\"a\": [1, \"\\ud83d\\ude00\", -0.5E-2, \"\\/\"], \"x\": 9223372036854775807}",
		"{\"a\": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}",
		"{}",
	};
	load_all(good, sizeof(good) / sizeof(good[0]), 0);
	/* Hostile nesting (100000 deep) is test_manifest's test_deep_nesting. */
}

/*
 * A document read the way lease.c reads its own: "s" a string of at most
 * 15 bytes, "u" a non-negative integer, "i" an optional integer, "o" an
 * optional object with a string "x" of at most 7 bytes; other keys are
 * allowed. (These are the cases the hand-written reader was tested with.)
 */
static int read_fields(const char *doc, char s[16], uint64_t *u, int64_t *i, char inner[8])
{
	json_t *root;
	const char *sv, *xv = NULL;
	json_int_t uv, iv = *i;
	if (jsonx_load(doc, 16, &root) < 0)
		return -EINVAL;
	int rc = json_unpack(root, "{s:s, s:I, s?I, s?{s:s}}", "s", &sv, "u", &uv, "i", &iv, "o",
			     "x", &xv) < 0 ||
				 uv < 0 || jsonx_copy(s, 16, sv) < 0 ||
				 (xv && jsonx_copy(inner, 8, xv) < 0)
			 ? -EINVAL
			 : 0;
	if (rc == 0) {
		*u = (uint64_t)uv;
		*i = iv;
	}
	json_decref(root);
	return rc;
}

static void test_fields(void)
{
	char s[16] = "", inner[8] = "";
	uint64_t u = 0;
	int64_t i = 0;
	CHECK(read_fields("{\"s\": \"a\\\"b\\u00e9\", \"u\": 7, \"i\": -3, \"o\": {\"x\": \"y\"}, "
			  "\"other\": [1, {\"s\": 2}, null, true, 1.5e3]}",
			  s, &u, &i, inner) == 0);
	CHECK_STR(s, "a\"b\xc3\xa9");
	CHECK(u == 7 && i == -3);
	CHECK_STR(inner, "y");
	/* A nested "s" inside an unknown key is not the top-level one. */
	CHECK(read_fields("{\"z\": {\"s\": \"no\"}, \"s\": \"yes\", \"u\": 1}", s, &u, &i, inner) ==
	      0);
	CHECK_STR(s, "yes");
	/* Surrogate pair. */
	CHECK(read_fields("{\"s\": \"\\ud83d\\ude00\", \"u\": 0}", s, &u, &i, inner) == 0);
	CHECK_STR(s, "\xf0\x9f\x98\x80");
	/* The largest integer there is, and a string that just fits. */
	CHECK(read_fields("{\"s\": \"0123456789abcde\", \"u\": 9223372036854775807}", s, &u, &i,
			  inner) == 0);
	CHECK(u == INT64_MAX);
	CHECK_STR(s, "0123456789abcde");

	static const char *bad[] = {
		"",
		"[]",
		"{\"s\": \"a\"}",             /* u missing */
		"{\"s\": \"a\", \"u\": -1}",  /* negative u64 */
		"{\"s\": \"a\", \"u\": 1.5}", /* not an integer */
		"{\"s\": \"a\", \"u\": 1e2}",
		"{\"s\": \"a\", \"u\": 99999999999999999999}",
		"{\"s\": \"a\", \"u\": 01}",
		"{\"s\": 1, \"u\": 1}", /* wrong type */
		"{\"s\": \"a\", \"u\": null}",
		"{\"s\": \"a\", \"u\": 1, \"i\": null}", /* optional, but not of another type */
		"{\"s\": \"a\", \"u\": 1, \"i\": \"1\"}",
		"{\"s\": \"a\", \"u\": 1, \"o\": []}",
		"{\"s\": \"a\", \"u\": 1, \"u\": 2}",       /* repeated */
		"{\"s\": \"0123456789abcdefX\", \"u\": 1}", /* does not fit */
		"{\"s\": \"0123456789abcdef\", \"u\": 1}",
		"{\"s\": \"a\", \"u\": 1, \"o\": {\"x\": \"01234567\"}}",
		"{\"s\": \"a\", \"u\": 1,}",
		"{\"s\": \"a\" \"u\": 1}",
		"{\"s\": \"a\", \"u\": 1} x",
		"{\"s\": \"a\\u0000\", \"u\": 1}", /* NUL */
		"{\"s\": \"\\ud83d\", \"u\": 1}",  /* lone surrogate */
		"{\"s\": \"a\\q\", \"u\": 1}",
		"{\"s\": \"a\tb\", \"u\": 1}",                 /* raw control byte */
		"{\"s\": \"a\", \"u\": 1, \"o\": {\"y\": 1}}", /* nested field missing */
		"{\"s\": \"a\", \"u\": 1, \"z\": [1,]}",
		"{\"s\": \"a\", \"u\": 1, \"z\": tru}",
		"{\"s\": \"a\", \"u\": 1, \"z\": "
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = read_fields(bad[k], s, &u, &i, inner);
		if (rc != -EINVAL)
			fprintf(stderr, "accepted: %s\n", bad[k]);
		CHECK(rc == -EINVAL);
	}
}

static void test_copy(void)
{
	char buf[4] = "zzz";
	CHECK(jsonx_copy(buf, sizeof(buf), "abc") == 0);
	CHECK_STR(buf, "abc");
	CHECK(jsonx_copy(buf, sizeof(buf), "abcd") == -EINVAL);
	CHECK_STR(buf, "abc"); /* untouched */
	CHECK(jsonx_copy(buf, sizeof(buf), "") == 0 && buf[0] == '\0');
}

int main(void)
{
	test_strings_any_bytes();
	test_escapes_as_before();
	test_load_refuses();
	test_fields();
	test_copy();
	return tap_done();
}
