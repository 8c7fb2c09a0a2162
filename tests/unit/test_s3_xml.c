/*
 * Unit tests for s3_xml: the documents S3 and radosgw send (ListObjectsV2
 * pages, error bodies, InitiateMultipartUpload, CompleteMultipartUpload,
 * ListMultipartUploads), and the refusal of hostile or broken ones: DTDs
 * and entity bombs, wrong roots, bad numbers, deep nesting, truncation.
 * Ends with a mutation loop (deterministic) so ASan/UBSan see the parser
 * fed thousands of damaged documents.
 */
#include "s3_xml.h"
#include "tap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static int parse_err(const char *doc, struct s3xml_error *e)
{
	return s3xml_parse_error(doc, strlen(doc), e);
}

static void test_error_bodies(void)
{
	struct s3xml_error e;
	const char *aws =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
		"does not match the signature you provided. Check your key and signing method.</Message>"
		"<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256</StringToSign>"
		"<RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>";
	CHECK(parse_err(aws, &e) == 0);
	CHECK(strcmp(e.code, "SignatureDoesNotMatch") == 0);
	CHECK(strncmp(e.message, "The request signature we calculated", 35) == 0);
	CHECK(strcmp(e.request_id, "4442587FB7D0A2F9") == 0);
	CHECK(e.key[0] == '\0');

	/* radosgw: no Message, a Key, and a BucketName. */
	const char *rgw = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
			  "<BucketName>b</BucketName><Key>dir/a &amp; b.txt</Key>"
			  "<RequestId>tx000001</RequestId><HostId>1-default</HostId></Error>";
	CHECK(parse_err(rgw, &e) == 0);
	CHECK(strcmp(e.code, "NoSuchKey") == 0);
	CHECK(strcmp(e.key, "dir/a & b.txt") == 0);
	CHECK(e.message[0] == '\0');

	/* A namespace prefix changes nothing. */
	CHECK(parse_err("<s3:Error xmlns:s3=\"urn:x\"><s3:Code>SlowDown</s3:Code></s3:Error>", &e) ==
	      0);
	CHECK(strcmp(e.code, "SlowDown") == 0);

	/* Not an error document, or not XML: refused, fields cleared. */
	CHECK(parse_err("<ListBucketResult/>", &e) == -EINVAL);
	CHECK(e.code[0] == '\0');
	CHECK(parse_err("<html><body>502 Bad Gateway</body></html>", &e) == -EINVAL);
	CHECK(parse_err("Service Unavailable", &e) == -EINVAL);
	CHECK(parse_err("<Error><Code>Internal", &e) == -EINVAL);
	CHECK(s3xml_parse_error("", 0, &e) == -EINVAL);
	CHECK(s3xml_parse_error(NULL, 0, &e) == -EINVAL);

	/* Over-long fields are cut, never overflowed. */
	char big[4096];
	char msg[3000];
	memset(msg, 'm', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	snprintf(big, sizeof(big), "<Error><Code>X</Code><Message>%s</Message></Error>", msg);
	CHECK(parse_err(big, &e) == 0);
	CHECK(strlen(e.message) == sizeof(e.message) - 1);
}

static void test_hostile(void)
{
	struct s3xml_error e;
	const char *bomb =
		"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
		"<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
		"<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
		"<Error><Code>&lol3;</Code></Error>";
	CHECK(parse_err(bomb, &e) == -EINVAL);
	CHECK(parse_err("<!DOCTYPE Error SYSTEM \"file:///etc/passwd\"><Error><Code>X</Code></Error>",
			&e) == -EINVAL);
	/* Deeper than any S3 document. */
	CHECK(parse_err("<Error><a><b><c><d><e><f><g><h><i>x</i></h></g></f></e></d></c></b></a></Error>",
			&e) == -EINVAL);
	/* Text beyond 64 KiB in one element. */
	size_t n = 70 * 1024;
	char *doc = malloc(n + 64);
	strcpy(doc, "<Error><Message>");
	memset(doc + 16, 'x', n);
	strcpy(doc + 16 + n, "</Message></Error>");
	CHECK(parse_err(doc, &e) == -EINVAL);
	free(doc);
	/* Two roots, trailing junk. */
	CHECK(parse_err("<Error></Error><Error></Error>", &e) == -EINVAL);
	/* An embedded NUL ends nothing early: the length is what counts. */
	const char nul[] = "<Error><Code>A\0B</Code></Error>";
	CHECK(s3xml_parse_error(nul, sizeof(nul) - 1, &e) == -EINVAL);
}

static void test_list_page(void)
{
	const char *doc =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<ListBucketResult " NS ">"
		"<Name>bucket</Name><Prefix>a/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>"
		"<IsTruncated>true</IsTruncated>"
		"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
		"<Contents><Key>a/one</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
		"<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
		"<StorageClass>STANDARD</StorageClass></Contents>"
		"<Contents><Key>a/two &amp; three</Key><LastModified>2009-10-12T17:50:31Z</LastModified>"
		"<ETag>\"9b2cf535f27731c974343645a3985328-12\"</ETag><Size>18446744073709551615</Size>"
		"<Owner><ID>x</ID></Owner></Contents>"
		"<CommonPrefixes><Prefix>a/sub/</Prefix></CommonPrefixes>"
		"</ListBucketResult>";
	struct s3xml_list l;
	char err[256];
	CHECK(s3xml_parse_list(doc, strlen(doc), &l, err, sizeof(err)) == 0);
	CHECK(l.n == 3);
	CHECK(l.truncated);
	CHECK(l.next_token &&
	      strcmp(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=") == 0);
	CHECK(strcmp(l.items[0].key, "a/one") == 0);
	CHECK(strcmp(l.items[0].etag, "fba9dede5f27731c9771645a39863328") == 0);
	CHECK(l.items[0].size == 434234);
	CHECK(l.items[0].last_modified == 1255369830);
	CHECK(!l.items[0].is_prefix);
	CHECK(strcmp(l.items[1].key, "a/two & three") == 0);
	CHECK(strcmp(l.items[1].etag, "9b2cf535f27731c974343645a3985328-12") == 0);
	CHECK(l.items[1].size == UINT64_MAX);
	CHECK(l.items[1].last_modified == 1255369831);
	CHECK(l.items[2].is_prefix && strcmp(l.items[2].key, "a/sub/") == 0);
	CHECK(strcmp(l.items[2].etag, "") == 0);
	s3xml_list_free(&l);

	/* Last page: not truncated, no token; an empty listing. */
	const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount>"
			   "</ListBucketResult>";
	CHECK(s3xml_parse_list(last, strlen(last), &l, err, sizeof(err)) == 0);
	CHECK(l.n == 0 && !l.truncated && !l.next_token);
	s3xml_list_free(&l);
}

static void test_list_encoding(void)
{
	/* encoding-type=url: keys come percent-encoded (EncodingType may come after them). */
	const char *doc =
		"<ListBucketResult><IsTruncated>false</IsTruncated>"
		"<Contents><Key>a%20b/c%2Bd/%C3%BC.txt</Key><Size>1</Size><ETag>\"x\"</ETag></Contents>"
		"<Contents><Key>plus+space</Key><Size>2</Size></Contents>"
		"<EncodingType>url</EncodingType></ListBucketResult>";
	struct s3xml_list l;
	char err[256];
	CHECK(s3xml_parse_list(doc, strlen(doc), &l, err, sizeof(err)) == 0);
	CHECK(l.n == 2);
	CHECK(strcmp(l.items[0].key, "a b/c+d/\xc3\xbc.txt") == 0);
	CHECK(strcmp(l.items[1].key, "plus space") == 0);
	CHECK(strcmp(l.items[1].etag, "") == 0);
	s3xml_list_free(&l);

	/* Without EncodingType, a '%' in a key is a '%'. */
	const char *raw = "<ListBucketResult><Contents><Key>100%25</Key><Size>1</Size></Contents>"
			  "</ListBucketResult>";
	CHECK(s3xml_parse_list(raw, strlen(raw), &l, err, sizeof(err)) == 0);
	CHECK(l.n == 1 && strcmp(l.items[0].key, "100%25") == 0);
	s3xml_list_free(&l);

	const char *bad = "<ListBucketResult><EncodingType>url</EncodingType>"
			  "<Contents><Key>a%zz</Key><Size>1</Size></Contents></ListBucketResult>";
	CHECK(s3xml_parse_list(bad, strlen(bad), &l, err, sizeof(err)) == -EINVAL);
	const char *nul = "<ListBucketResult><EncodingType>url</EncodingType>"
			  "<Contents><Key>a%00b</Key><Size>1</Size></Contents></ListBucketResult>";
	CHECK(s3xml_parse_list(nul, strlen(nul), &l, err, sizeof(err)) == -EINVAL);
}

static void test_list_refusals(void)
{
	struct s3xml_list l;
	char err[256] = "";
	const char *cases[] = {
		/* truncated without a way to go on: would loop or stop silently */
		"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
		"<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
		"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>k</Key><Size>12a</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>k</Key><Size>18446744073709551616</Size></Contents>"
		"</ListBucketResult>",
		"<ListBucketResult><Contents><Key>k</Key><LastModified>yesterday</LastModified></Contents>"
		"</ListBucketResult>",
		"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
		"<Error><Code>AccessDenied</Code></Error>",
		"<ListBucketResult><Contents><Key>k</Key>",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		int rc = s3xml_parse_list(cases[i], strlen(cases[i]), &l, err, sizeof(err));
		CHECK(rc == -EINVAL);
		CHECK(err[0] != '\0');
		CHECK(l.items == NULL && l.n == 0);
		if (rc != -EINVAL)
			fprintf(stderr, "case %zu was accepted\n", i);
	}
}

static void test_multipart_docs(void)
{
	char err[256], *id;
	const char *init = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
			   "<InitiateMultipartUploadResult " NS "><Bucket>b</Bucket><Key>k</Key>"
			   "<UploadId>2~iCw_lDY8VoNDyBfFVMBSKVuiAhbeUk-</UploadId>"
			   "</InitiateMultipartUploadResult>";
	CHECK(s3xml_parse_initiate(init, strlen(init), &id, err, sizeof(err)) == 0);
	CHECK(id && strcmp(id, "2~iCw_lDY8VoNDyBfFVMBSKVuiAhbeUk-") == 0);
	free(id);
	const char *noid = "<InitiateMultipartUploadResult><UploadId></UploadId>"
			   "</InitiateMultipartUploadResult>";
	CHECK(s3xml_parse_initiate(noid, strlen(noid), &id, err, sizeof(err)) == -EINVAL);
	CHECK(id == NULL);

	char etag[128];
	struct s3xml_error e;
	const char *done =
		"<CompleteMultipartUploadResult " NS "><Location>http://x/b/k</Location>"
		"<Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
		"</CompleteMultipartUploadResult>";
	CHECK(s3xml_parse_complete(done, strlen(done), etag, sizeof(etag), &e, err, sizeof(err)) == 0);
	CHECK(strcmp(etag, "3858f62230ac3c915f300c664312c11f-9") == 0);
	/* radosgw: an empty ETag. */
	const char *rgw = "<CompleteMultipartUploadResult><Location>l</Location><Bucket>b</Bucket>"
			  "<Key>k</Key><ETag></ETag></CompleteMultipartUploadResult>";
	CHECK(s3xml_parse_complete(rgw, strlen(rgw), etag, sizeof(etag), &e, err, sizeof(err)) == 0);
	CHECK(etag[0] == '\0');
	/* S3: 200 OK with an error inside. */
	const char *fail =
		"<Error><Code>InternalError</Code><Message>We encountered an internal error. "
		"Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId>"
		"</Error>";
	CHECK(s3xml_parse_complete(fail, strlen(fail), etag, sizeof(etag), &e, err, sizeof(err)) ==
	      -EAGAIN);
	CHECK(strcmp(e.code, "InternalError") == 0);
	CHECK(strcmp(e.request_id, "656c76696e6727732072657175657374") == 0);
	CHECK(s3xml_parse_complete("<Other/>", 8, etag, sizeof(etag), &e, err, sizeof(err)) ==
	      -EINVAL);
}

static void test_uploads(void)
{
	const char *doc =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		"<ListMultipartUploadsResult " NS "><Bucket>b</Bucket><KeyMarker></KeyMarker>"
		"<UploadIdMarker></UploadIdMarker><NextKeyMarker>snap/2</NextKeyMarker>"
		"<NextUploadIdMarker>2~B</NextUploadIdMarker><MaxUploads>2</MaxUploads>"
		"<IsTruncated>true</IsTruncated>"
		"<Upload><Key>snap/1</Key><UploadId>2~A</UploadId><Initiator><ID>u</ID></Initiator>"
		"<Owner><ID>u</ID></Owner><StorageClass>STANDARD</StorageClass>"
		"<Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>"
		"<Upload><Key>snap/2</Key><UploadId>2~B</UploadId>"
		"<Initiated>2010-11-10T20:49:33.000Z</Initiated></Upload>"
		"</ListMultipartUploadsResult>";
	struct s3xml_uploads u;
	char err[256];
	CHECK(s3xml_parse_uploads(doc, strlen(doc), &u, err, sizeof(err)) == 0);
	CHECK(u.n == 2);
	CHECK(u.truncated);
	CHECK(u.next_key_marker && strcmp(u.next_key_marker, "snap/2") == 0);
	CHECK(u.next_upload_id_marker && strcmp(u.next_upload_id_marker, "2~B") == 0);
	CHECK(strcmp(u.items[0].key, "snap/1") == 0 && strcmp(u.items[0].upload_id, "2~A") == 0);
	CHECK(u.items[0].initiated == 1289422113);
	CHECK(strcmp(u.items[1].key, "snap/2") == 0);
	s3xml_uploads_free(&u);

	const char *enc =
		"<ListMultipartUploadsResult><EncodingType>url</EncodingType>"
		"<IsTruncated>false</IsTruncated><Upload><Key>a%20b</Key><UploadId>x</UploadId>"
		"</Upload></ListMultipartUploadsResult>";
	CHECK(s3xml_parse_uploads(enc, strlen(enc), &u, err, sizeof(err)) == 0);
	CHECK(u.n == 1 && strcmp(u.items[0].key, "a b") == 0);
	s3xml_uploads_free(&u);

	const char *none = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
			   "</ListMultipartUploadsResult>";
	CHECK(s3xml_parse_uploads(none, strlen(none), &u, err, sizeof(err)) == 0);
	CHECK(u.n == 0);
	s3xml_uploads_free(&u);

	const char *noid = "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload>"
			   "</ListMultipartUploadsResult>";
	CHECK(s3xml_parse_uploads(noid, strlen(noid), &u, err, sizeof(err)) == -EINVAL);
	const char *stuck = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
			    "</ListMultipartUploadsResult>";
	CHECK(s3xml_parse_uploads(stuck, strlen(stuck), &u, err, sizeof(err)) == -EINVAL);
}

static void test_time(void)
{
	time_t t;
	CHECK(s3xml_parse_time("1970-01-01T00:00:00Z", &t) == 0 && t == 0);
	CHECK(s3xml_parse_time("2009-10-12T17:50:30.000Z", &t) == 0 && t == 1255369830);
	CHECK(s3xml_parse_time("2009-10-12T17:50:30.123456Z", &t) == 0 && t == 1255369830);
	CHECK(s3xml_parse_time("2009-10-12T17:50:30", &t) == -EINVAL);
	CHECK(s3xml_parse_time("2009-10-12 17:50:30Z", &t) == -EINVAL);
	CHECK(s3xml_parse_time("2009-13-12T17:50:30Z", &t) == -EINVAL);
	CHECK(s3xml_parse_time("2009-10-12T17:50:30.Z", &t) == -EINVAL);
	CHECK(s3xml_parse_time("2009-10-12T17:50:30+01:00", &t) == -EINVAL);
	CHECK(s3xml_parse_time("", &t) == -EINVAL);
}

/* xorshift: the same damage every run. */
static uint32_t rng_state = 2463534242u;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void test_mutations(void)
{
	const char *seeds[] = {
		"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
		"<NextContinuationToken>t</NextContinuationToken><Contents><Key>a%20b</Key>"
		"<Size>12</Size><ETag>\"e\"</ETag><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
		"</Contents><CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes></ListBucketResult>",
		"<ListMultipartUploadsResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
		"<NextKeyMarker>k</NextKeyMarker><Upload><Key>k</Key><UploadId>u</UploadId>"
		"<Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload></ListMultipartUploadsResult>",
		"<Error><Code>C</Code><Message>M</Message><Key>K</Key><RequestId>R</RequestId></Error>",
		"<CompleteMultipartUploadResult><ETag>\"e-2\"</ETag></CompleteMultipartUploadResult>",
	};
	int accepted = 0, refused = 0;
	for (int round = 0; round < 4000; round++) {
		const char *seed = seeds[round % 4];
		size_t len = strlen(seed);
		char *doc = malloc(len + 1);
		memcpy(doc, seed, len + 1);
		int edits = 1 + (int)(rnd() % 4);
		for (int i = 0; i < edits && len; i++) {
			size_t at = rnd() % len;
			switch (rnd() % 3) {
			case 0: doc[at] = (char)(rnd() & 0xff); break;
			case 1: doc[at] = "<>/&%\"\0"[rnd() % 7]; break;
			default: len = at; break; /* truncate */
			}
		}
		char err[256], etag[128], *id;
		struct s3xml_list l;
		struct s3xml_uploads u;
		struct s3xml_error e;
		int rc = 0;
		switch (round % 4) {
		case 0:
			rc = s3xml_parse_list(doc, len, &l, err, sizeof(err));
			if (!rc)
				s3xml_list_free(&l);
			break;
		case 1:
			rc = s3xml_parse_uploads(doc, len, &u, err, sizeof(err));
			if (!rc)
				s3xml_uploads_free(&u);
			break;
		case 2: rc = s3xml_parse_error(doc, len, &e); break;
		default:
			rc = s3xml_parse_complete(doc, len, etag, sizeof(etag), &e, err, sizeof(err));
			if (!rc)
				(void)s3xml_parse_initiate(doc, len, &id, err, sizeof(err));
			break;
		}
		if (rc)
			refused++;
		else
			accepted++;
		free(doc);
	}
	CHECK(accepted > 0);
	CHECK(refused > 0);
}

int main(void)
{
	test_error_bodies();
	test_hostile();
	test_list_page();
	test_list_encoding();
	test_list_refusals();
	test_multipart_docs();
	test_uploads();
	test_time();
	test_mutations();
	return tap_done();
}
