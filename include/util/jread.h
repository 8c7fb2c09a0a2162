/*
 * jread — a strict reader for small JSON objects: fills the named fields
 * of a top-level object into caller storage, refusing anything that is
 * not exactly what was asked for.
 *
 * Strict: RFC 8259 syntax only (no trailing commas, comments, NaN);
 * strings are UTF-8 with their escapes decoded and may not hold a NUL;
 * integers must be integers that fit; a key given twice is refused;
 * unknown keys are checked and skipped (documents may grow fields).
 * Nothing is allocated; the input is never read past its NUL.
 */
#ifndef SNAPFS_JREAD_H
#define SNAPFS_JREAD_H

#include <stdbool.h>
#include <stddef.h>

enum jread_type {
	JREAD_STR, /* dst: char[cap] */
	JREAD_U64, /* dst: uint64_t; a non-negative integer */
	JREAD_I64, /* dst: int64_t */
	JREAD_OBJ, /* sub: fields of the nested object */
	/*
	 * An array of objects: each element is read with sub into their dst
	 * (each element must have every field that is not optional), then
	 * each(each_arg) is called to take the values; a negative return
	 * refuses the document. Optional fields an element lacks keep the
	 * previous element's values: each() should reset them.
	 */
	JREAD_ARR,
};

struct jread_field {
	const char *name;
	enum jread_type type;
	void *dst;
	size_t cap;
	const struct jread_field *sub;
	size_t nsub;
	bool optional;
	int (*each)(void *each_arg); /* JREAD_ARR */
	void *each_arg;
};

/*
 * Reads a JSON document whose top level is an object, filling the named
 * fields (unknown keys are checked and skipped). -EINVAL if the document
 * is malformed, a field has the wrong type or does not fit, a key is
 * repeated, or a field that is not optional is missing.
 */
int jread_object(const char *json, const struct jread_field *fields, size_t n);

#endif
