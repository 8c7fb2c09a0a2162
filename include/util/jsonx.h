/*
 * jsonx — what snapfs adds to jansson, in one place for every layer that
 * reads or writes JSON (manifest, lease, pointer, upload.json, status,
 * the tools' output).
 *
 * Writing: jsonx_str makes a JSON string of any bytes (what is not
 * well-formed UTF-8 becomes U+FFFD, as jansson refuses such strings), so
 * a file or table name can never make a document invalid; jsonx_set and
 * jsonx_push add to a tree and abort on allocation failure (as sbuf
 * does: no caller could recover from ENOMEM on a few hundred bytes).
 * jsonx_dump spells escapes as snapfs always wrote them (\n, \r, \t,
 * \", \\, and \u00xx in lowercase hex for the other control bytes and
 * DEL), so documents stay byte-identical to those written before jansson.
 *
 * jansson's hash seed is set when the program starts (getrandom), not
 * from /dev/urandom at the first object, so that building a tree never
 * opens a file (status reads do no I/O).
 *
 * Reading: jsonx_load is the one strict way documents are read: RFC 8259
 * only (jansson), the top level an object, a key repeated anywhere
 * refused (JSON_REJECT_DUPLICATES), no NUL in a string, nesting bounded.
 * jansson's integers are signed 64-bit: a number past INT64_MAX is
 * refused, and jsonx_u64 writes at most INT64_MAX.
 */
#ifndef SNAPFS_JSONX_H
#define SNAPFS_JSONX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

/* A JSON string of s, malformed UTF-8 replaced by U+FFFD; s NULL: JSON null. */
json_t *jsonx_str(const char *s);
/* As jsonx_str, but JSON null for "" too (an unset message or name). */
json_t *jsonx_str_or_null(const char *s);
json_t *jsonx_int(int64_t v);
/* v as an integer; past INT64_MAX (no counter, size or id gets there), INT64_MAX. */
json_t *jsonx_u64(uint64_t v);
/* v rounded to decimals places (a display value: seconds); not finite: null. */
json_t *jsonx_real(double v, int decimals);

/* obj[key] = v (v is taken); key is made valid UTF-8 as jsonx_str does. */
void jsonx_set(json_t *obj, const char *key, json_t *v);
/* Appends v (taken) to the array arr. */
void jsonx_push(json_t *arr, json_t *v);

/*
 * Appends v as JSON (jansson's flags: 0 for one line with ", " and ": ",
 * JSON_COMPACT, JSON_ENCODE_ANY for a scalar); reals with 15 significant
 * digits. Nothing follows it (no newline).
 */
void jsonx_dump(const json_t *v, size_t flags, sbuf *out);

/*
 * Parses text (NUL-terminated) as one JSON object, strictly (see above),
 * nested at most max_depth levels (the top object is one). 0 with *out
 * (json_decref it), or -EINVAL.
 */
int jsonx_load(const char *text, int max_depth, json_t **out);
/* Copies s into buf[cap]: 0, or -EINVAL if it does not fit with its NUL. */
int jsonx_copy(char *buf, size_t cap, const char *s);

#endif
