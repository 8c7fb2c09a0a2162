/*
 * manifest — writes MANIFEST.json and reads back what a verifier needs.
 *
 * The writer builds the document as a jansson tree and lays it out in one
 * fixed form (format 1, see manifest.h): keys in a fixed order, two-space
 * indent, the top object and its tables and deltas one member a line,
 * each delta on one line. Every string goes through jsonx_str, so
 * collection, table and delta names with quotes, backslashes, control
 * bytes or bytes that are not UTF-8 come out as valid JSON.
 *
 * The reader is jsonx_load (strict RFC 8259, a key repeated anywhere
 * refused, nesting bounded) and looks at the keys of the top-level object
 * only, so a table or delta called "sha256" can never be mistaken for the
 * snapshot's own field. A needed key that is missing or of the wrong type
 * makes the document invalid (-EINVAL).
 */
#include "manifest.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "jsonx.h"
#include "rfc3339.h"

#define MANIFEST_FORMAT 1
#define MANIFEST_MAX_DEPTH 32
/* Containers this deep or deeper (a delta in "deltas") are written on one line. */
#define MANIFEST_INLINE_DEPTH 2

/* ---- writer ---- */

/* null for a time that has no calendar date (gmtime fails). */
static json_t *manifest_time(time_t t)
{
	char buf[RFC3339_LEN];
	return *rfc3339_format(t, buf) ? jsonx_str(buf) : json_null();
}

static json_t *manifest_tree(const struct manifest *m)
{
	char snapshot[24];
	snprintf(snapshot, sizeof(snapshot), "%08llu", (unsigned long long)m->id);
	json_t *o = json_object(), *tables = json_object(), *deltas = json_array();
	jsonx_set(o, "format", jsonx_int(MANIFEST_FORMAT));
	jsonx_set(o, "snapfs_version", jsonx_str(SNAPFS_VERSION));
	jsonx_set(o, "collection", jsonx_str(m->collection));
	jsonx_set(o, "id", jsonx_u64(m->id));
	jsonx_set(o, "snapshot", jsonx_str(snapshot));
	jsonx_set(o, "created", manifest_time(m->created));
	jsonx_set(o, "created_unix", jsonx_int((int64_t)m->created));
	jsonx_set(o, "file", jsonx_str(m->file));
	jsonx_set(o, "size", jsonx_u64(m->size));
	jsonx_set(o, "sha256", jsonx_str(m->sha256));
	jsonx_set(o, "page_size", jsonx_u64(m->page_size));
	jsonx_set(o, "page_count", jsonx_u64(m->page_count));
	jsonx_set(o, "integrity_check", jsonx_str(m->integrity));
	jsonx_set(o, "ledger_max", jsonx_int(m->ledger_max));
	for (size_t i = 0; i < m->ntables; i++)
		jsonx_set(tables, m->tables[i].name ? m->tables[i].name : "",
			  jsonx_int(m->tables[i].rows));
	jsonx_set(o, "tables", tables);
	for (size_t i = 0; i < m->ndeltas; i++) {
		json_t *d = json_object();
		jsonx_set(d, "seq", jsonx_int(m->deltas[i].seq));
		jsonx_set(d, "name", jsonx_str(m->deltas[i].name));
		jsonx_set(d, "sha256", jsonx_str(m->deltas[i].sha256));
		jsonx_push(deltas, d);
	}
	jsonx_set(o, "deltas", deltas);
	return o;
}

static void manifest_indent(sbuf *out, int depth)
{
	sbuf_adds(out, "\n");
	for (int i = 0; i < depth; i++)
		sbuf_adds(out, "  ");
}

/*
 * v at depth: a container above MANIFEST_INLINE_DEPTH with members gets
 * one member a line, indented two spaces a level; anything else is
 * jansson's one-line form ({"seq": 1, "name": ...}, {}, []).
 */
static void manifest_layout(json_t *v, int depth, sbuf *out)
{
	bool obj = json_is_object(v);
	size_t n = obj ? json_object_size(v) : json_is_array(v) ? json_array_size(v) : 0;
	if (n == 0 || depth >= MANIFEST_INLINE_DEPTH) {
		jsonx_dump(v, JSON_ENCODE_ANY, out);
		return;
	}
	sbuf_adds(out, obj ? "{" : "[");
	if (obj) {
		const char *key;
		json_t *m;
		size_t i = 0;
		json_object_foreach(v, key, m)
		{
			sbuf_adds(out, i++ ? "," : "");
			manifest_indent(out, depth + 1);
			json_t *k = jsonx_str(key);
			jsonx_dump(k, JSON_ENCODE_ANY, out);
			json_decref(k);
			sbuf_adds(out, ": ");
			manifest_layout(m, depth + 1, out);
		}
	} else {
		size_t i;
		json_t *m;
		json_array_foreach(v, i, m)
		{
			sbuf_adds(out, i ? "," : "");
			manifest_indent(out, depth + 1);
			manifest_layout(m, depth + 1, out);
		}
	}
	manifest_indent(out, depth);
	sbuf_adds(out, obj ? "}" : "]");
}

void manifest_write_json(const struct manifest *m, sbuf *out)
{
	json_t *o = manifest_tree(m);
	manifest_layout(o, 0, out);
	sbuf_adds(out, "\n");
	json_decref(o);
}

/* ---- reader ---- */

static bool manifest_is_sha_hex(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

/* The needed fields of the top-level object; file (cap bytes) only if not NULL. */
static int manifest_read(const char *json, uint64_t *size, char sha256[65], uint64_t *id,
			 char *file, size_t cap)
{
	json_t *root;
	const char *sha, *f = NULL;
	json_int_t v_size, v_id;
	if (jsonx_load(json, MANIFEST_MAX_DEPTH, &root) < 0)
		return -EINVAL;
	int rc = 0;
	if (json_unpack(root, "{s:I, s:s, s:I}", "size", &v_size, "sha256", &sha, "id", &v_id) < 0 ||
	    v_size < 0 || v_id < 0 || !manifest_is_sha_hex(sha) ||
	    (file && (json_unpack(root, "{s:s}", "file", &f) < 0 || jsonx_copy(file, cap, f) < 0))) {
		rc = -EINVAL;
	} else {
		if (size)
			*size = (uint64_t)v_size;
		if (id)
			*id = (uint64_t)v_id;
		if (sha256)
			memcpy(sha256, sha, 65);
	}
	json_decref(root);
	return rc;
}

int manifest_read_basic(const char *json, uint64_t *size, char sha256[65], uint64_t *id)
{
	return manifest_read(json, size, sha256, id, NULL, 0);
}

int manifest_read_file(const char *json, char *file, size_t cap)
{
	return manifest_read(json, NULL, NULL, NULL, file, cap);
}
