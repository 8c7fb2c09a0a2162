/*
 * s3_xml — the S3 response documents the client reads, parsed with
 * expat (a real XML parser, never string search).
 *
 * Knows nothing of HTTP, buckets or credentials: each function takes a
 * response body and fills a plain struct. The input is untrusted (it
 * comes off the network): a document with a DTD, nested deeper than any
 * S3 document, with an element text over 64 KiB, a number that does not
 * parse, or a root element other than the one expected is refused with
 * -EINVAL and the reason in err; nothing is ever read past len.
 *
 * Names are matched by local name, so a namespace prefix or the S3
 * namespace declaration makes no difference. ETags are returned without
 * their surrounding quotes. Keys are returned as sent; when the document
 * says <EncodingType>url</EncodingType> they are percent-decoded.
 *
 * Memory: allocation failure aborts (as sbuf does). Results own their
 * strings; free them with the matching *_free. Every function is
 * reentrant: no state outside its arguments.
 */
#ifndef SNAPFS_S3_XML_H
#define SNAPFS_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* <Error>: an S3 error body (also the 200 OK body of a failed CompleteMultipartUpload). */
struct s3xml_error {
	char code[64];
	char message[512];
	char key[1025];
	char request_id[128];
	char resource[256];
};

/* One <Contents> (is_prefix false) or <CommonPrefixes> (is_prefix true) entry. */
struct s3xml_object {
	char *key;
	char *etag; /* "" for a common prefix */
	uint64_t size;
	time_t last_modified; /* 0 if absent */
	bool is_prefix;
};

/* One page of a ListObjectsV2 answer (<ListBucketResult>). */
struct s3xml_list {
	struct s3xml_object *items;
	size_t n;
	bool truncated;
	char *next_token; /* <NextContinuationToken>, NULL if absent */
};

/* One <Upload> of a ListMultipartUploads answer. */
struct s3xml_upload {
	char *key;
	char *upload_id;
	time_t initiated;
};

struct s3xml_uploads {
	struct s3xml_upload *items;
	size_t n;
	bool truncated;
	char *next_key_marker;       /* NULL if absent */
	char *next_upload_id_marker; /* NULL if absent */
};

/*
 * Parses an <Error> document. 0 if body is one (fields it lacks are
 * ""), -EINVAL if it is empty, not XML or another document.
 */
int s3xml_parse_error(const char *body, size_t len, struct s3xml_error *out);

int s3xml_parse_list(const char *body, size_t len, struct s3xml_list *out, char *err, size_t errlen);
void s3xml_list_free(struct s3xml_list *l);

/* <InitiateMultipartUploadResult>: *upload_id is malloc'd. */
int s3xml_parse_initiate(const char *body, size_t len, char **upload_id, char *err, size_t errlen);

/*
 * <CompleteMultipartUploadResult>: its ETag (possibly "", as radosgw
 * sends) into etag. An <Error> document answers -EAGAIN instead, with
 * the error in *e if e is not NULL: S3 may send it with 200 OK.
 */
int s3xml_parse_complete(const char *body, size_t len, char *etag, size_t etag_len,
			 struct s3xml_error *e, char *err, size_t errlen);

int s3xml_parse_uploads(const char *body, size_t len, struct s3xml_uploads *out, char *err,
			size_t errlen);
void s3xml_uploads_free(struct s3xml_uploads *u);

/* One <Error> of a DeleteObjects answer: a key that was not deleted. */
struct s3xml_delete_error {
	char *key;
	char code[64];
	char message[512];
};

/* A <DeleteResult>: how many <Deleted> entries, and the errors. */
struct s3xml_delete {
	size_t deleted;
	struct s3xml_delete_error *errors;
	size_t n;
};

int s3xml_parse_delete(const char *body, size_t len, struct s3xml_delete *out, char *err,
		       size_t errlen);
void s3xml_delete_free(struct s3xml_delete *d);

/*
 * "2009-10-12T17:50:30.000Z" (ISO 8601, UTC, optional fraction) to
 * seconds since the epoch. 0, or -EINVAL if s is not such a time.
 */
int s3xml_parse_time(const char *s, time_t *out);

#endif
