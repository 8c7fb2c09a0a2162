/*
 * manifest — writes MANIFEST.json and reads back what a verifier needs.
 *
 * The writer emits one fixed layout (format 1, see manifest.h): keys in a
 * fixed order, two-space indent, every string through sbuf_add_json_str,
 * so collection and delta names with quotes, backslashes, control bytes
 * or UTF-8 come out as valid JSON.
 *
 * The reader is a strict RFC 8259 tokenizer, not a general parser: it
 * walks the whole document (so malformed input anywhere is rejected),
 * looks at the keys of the top-level object only, and keeps "size",
 * "sha256" and "id". Nested objects (tables, deltas) are validated and
 * skipped, so a table or delta called "sha256" can never be mistaken for
 * the snapshot's own field. A needed key that is missing, repeated or of
 * the wrong type makes the document invalid (-EINVAL).
 */
#include "manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "sbuf.h"

#define MANIFEST_FORMAT 1
#define MANIFEST_MAX_DEPTH 32

/* ---- writer ---- */

/* A JSON string (sbuf_add_json_str keeps it valid UTF-8), or null for a missing one. */
static void manifest_str(sbuf *out, const char *s)
{
	if (s)
		sbuf_add_json_str(out, s);
	else
		sbuf_adds(out, "null");
}

static void manifest_time(sbuf *out, time_t t)
{
	struct tm tm;
	char buf[64];
	if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		sbuf_adds(out, "null");
		return;
	}
	manifest_str(out, buf);
}

void manifest_write_json(const struct manifest *m, sbuf *out)
{
	sbuf_addf(out, "{\n  \"format\": %d,\n  \"snapfs_version\": ", MANIFEST_FORMAT);
	manifest_str(out, SNAPFS_VERSION);
	sbuf_adds(out, ",\n  \"collection\": ");
	manifest_str(out, m->collection);
	sbuf_addf(out, ",\n  \"id\": %" PRIu64 ",\n  \"snapshot\": \"%08" PRIu64 "\",\n  \"created\": ",
		  m->id, m->id);
	manifest_time(out, m->created);
	sbuf_addf(out, ",\n  \"created_unix\": %lld,\n  \"file\": ", (long long)m->created);
	manifest_str(out, m->file);
	sbuf_addf(out, ",\n  \"size\": %" PRIu64 ",\n  \"sha256\": ", m->size);
	manifest_str(out, m->sha256);
	sbuf_addf(out, ",\n  \"page_size\": %" PRIu64 ",\n  \"page_count\": %" PRIu64 ",\n  \"integrity_check\": ",
		  m->page_size, m->page_count);
	manifest_str(out, m->integrity);
	sbuf_addf(out, ",\n  \"ledger_max\": %" PRId64 ",\n  \"tables\": {", m->ledger_max);
	for (size_t i = 0; i < m->ntables; i++) {
		sbuf_adds(out, i ? ",\n    " : "\n    ");
		manifest_str(out, m->tables[i].name);
		sbuf_addf(out, ": %" PRId64, m->tables[i].rows);
	}
	sbuf_adds(out, m->ntables ? "\n  },\n  \"deltas\": [" : "},\n  \"deltas\": [");
	for (size_t i = 0; i < m->ndeltas; i++) {
		const struct manifest_delta *d = &m->deltas[i];
		sbuf_addf(out, "%s{\"seq\": %" PRId64 ", \"name\": ", i ? ",\n    " : "\n    ", d->seq);
		manifest_str(out, d->name);
		sbuf_adds(out, ", \"sha256\": ");
		manifest_str(out, d->sha256);
		sbuf_adds(out, "}");
	}
	sbuf_adds(out, m->ndeltas ? "\n  ]\n}\n" : "]\n}\n");
}

/* ---- reader ---- */

struct mjson {
	const char *p;
	const char *end;
};

static void mjson_ws(struct mjson *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int mjson_hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*out = v;
	return 0;
}

/*
 * Parses a string at j->p (which is at the opening quote). If out is not
 * NULL, the decoded value is stored there when it fits in cap-1 bytes
 * (NUL-terminated); *fits says whether it did. Characters outside ASCII
 * are decoded as 0xff placeholders: the reader only compares against
 * ASCII keys and hex digits, so they can only ever make a mismatch.
 */
static int mjson_string(struct mjson *j, char *out, size_t cap, bool *fits)
{
	size_t n = 0;
	bool ok = out != NULL;
	if (j->p >= j->end || *j->p != '"')
		return -EINVAL;
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return -EINVAL;
		unsigned char c = (unsigned char)*j->p;
		char dec;
		if (c == '"') {
			j->p++;
			break;
		}
		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			if (j->end - j->p < 2)
				return -EINVAL;
			char e = j->p[1];
			j->p += 2;
			switch (e) {
			case '"': dec = '"'; break;
			case '\\': dec = '\\'; break;
			case '/': dec = '/'; break;
			case 'b': dec = '\b'; break;
			case 'f': dec = '\f'; break;
			case 'n': dec = '\n'; break;
			case 'r': dec = '\r'; break;
			case 't': dec = '\t'; break;
			case 'u': {
				unsigned u;
				if (j->end - j->p < 4 || mjson_hex4(j->p, &u) < 0)
					return -EINVAL;
				j->p += 4;
				if (u >= 0xd800 && u <= 0xdbff) {
					/* A high surrogate must be followed by a low one. */
					unsigned lo;
					if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
					    mjson_hex4(j->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
						return -EINVAL;
					j->p += 6;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					return -EINVAL;
				}
				/* NUL could truncate a key into a match. */
				dec = (u > 0 && u < 0x80) ? (char)u : (char)0xff;
				break;
			}
			default:
				return -EINVAL;
			}
		} else {
			size_t len = sbuf_utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
			if (len == 0)
				return -EINVAL;
			j->p += len;
			dec = len == 1 ? (char)c : (char)0xff;
		}
		if (ok) {
			if (n + 1 < cap)
				out[n++] = dec;
			else
				ok = false;
		}
	}
	if (out && cap)
		out[ok ? n : 0] = '\0';
	if (fits)
		*fits = ok;
	return 0;
}

/*
 * Parses a number. If u64 is not NULL the number must be a non-negative
 * integer that fits in 64 bits (no fraction, no exponent), stored there.
 */
static int mjson_number(struct mjson *j, uint64_t *u64)
{
	const char *start = j->p;
	bool neg = false, integral = true;
	if (j->p < j->end && *j->p == '-') {
		neg = true;
		j->p++;
	}
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return -EINVAL;
	if (*j->p == '0') {
		j->p++;
	} else {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	const char *int_end = j->p;
	if (j->p < j->end && *j->p == '.') {
		integral = false;
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return -EINVAL;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		integral = false;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return -EINVAL;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (!u64)
		return 0;
	if (neg || !integral)
		return -EINVAL;
	uint64_t v = 0;
	for (const char *d = start; d < int_end; d++) {
		uint64_t digit = (uint64_t)(*d - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return -EINVAL;
		v = v * 10 + digit;
	}
	*u64 = v;
	return 0;
}

static int mjson_literal(struct mjson *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return -EINVAL;
	j->p += n;
	return 0;
}

/* Validates and skips any value (recursion bounded by depth). */
static int mjson_skip(struct mjson *j, int depth)
{
	mjson_ws(j);
	if (j->p >= j->end)
		return -EINVAL;
	char c = *j->p;
	if (c == '"')
		return mjson_string(j, NULL, 0, NULL);
	if (c == '-' || (c >= '0' && c <= '9'))
		return mjson_number(j, NULL);
	if (c == 't')
		return mjson_literal(j, "true");
	if (c == 'f')
		return mjson_literal(j, "false");
	if (c == 'n')
		return mjson_literal(j, "null");
	if (c != '{' && c != '[')
		return -EINVAL;
	if (depth >= MANIFEST_MAX_DEPTH)
		return -EINVAL;
	char close = c == '{' ? '}' : ']';
	j->p++;
	mjson_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		mjson_ws(j);
		if (close == '}') {
			if (mjson_string(j, NULL, 0, NULL) < 0)
				return -EINVAL;
			mjson_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return -EINVAL;
			j->p++;
		}
		if (mjson_skip(j, depth + 1) < 0)
			return -EINVAL;
		mjson_ws(j);
		if (j->p >= j->end)
			return -EINVAL;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != close)
			return -EINVAL;
		j->p++;
		return 0;
	}
}

static bool manifest_is_sha_hex(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

int manifest_read_basic(const char *json, uint64_t *size, char sha256[65], uint64_t *id)
{
	if (!json)
		return -EINVAL;
	struct mjson j = {json, json + strlen(json)};
	bool have_size = false, have_sha = false, have_id = false;
	uint64_t v_size = 0, v_id = 0;
	char v_sha[65] = "";

	mjson_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return -EINVAL;
	j.p++;
	mjson_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
	} else {
		for (;;) {
			char key[16];
			bool fits;
			mjson_ws(&j);
			if (mjson_string(&j, key, sizeof(key), &fits) < 0)
				return -EINVAL;
			mjson_ws(&j);
			if (j.p >= j.end || *j.p != ':')
				return -EINVAL;
			j.p++;
			mjson_ws(&j);
			if (fits && strcmp(key, "size") == 0) {
				if (have_size || mjson_number(&j, &v_size) < 0)
					return -EINVAL;
				have_size = true;
			} else if (fits && strcmp(key, "id") == 0) {
				if (have_id || mjson_number(&j, &v_id) < 0)
					return -EINVAL;
				have_id = true;
			} else if (fits && strcmp(key, "sha256") == 0) {
				bool sha_fits;
				if (have_sha || j.p >= j.end || *j.p != '"' ||
				    mjson_string(&j, v_sha, sizeof(v_sha), &sha_fits) < 0 || !sha_fits ||
				    !manifest_is_sha_hex(v_sha))
					return -EINVAL;
				have_sha = true;
			} else if (mjson_skip(&j, 1) < 0) {
				return -EINVAL;
			}
			mjson_ws(&j);
			if (j.p >= j.end)
				return -EINVAL;
			if (*j.p == ',') {
				j.p++;
				continue;
			}
			if (*j.p != '}')
				return -EINVAL;
			j.p++;
			break;
		}
	}
	mjson_ws(&j);
	if (j.p != j.end || !have_size || !have_sha || !have_id)
		return -EINVAL;
	if (size)
		*size = v_size;
	if (id)
		*id = v_id;
	if (sha256)
		memcpy(sha256, v_sha, 65);
	return 0;
}
