/*
 * Unit tests for s3_cred: the order of sources (environment, named
 * profile, AWS_PROFILE, default), both file formats ("[name]" in the
 * credentials file, "[profile name]" in the config file), nested "s3 ="
 * settings, half-given keys, unsupported indirections, and that no
 * error message ever carries a secret. Every case runs against temp
 * files through AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, with a
 * clean environment: the machine's own ~/.aws is never read.
 */
#include "s3_cred.h"
#include "tap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char cred_path[4096], conf_path[4096];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static const char *const vars[] = {
	"AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN",
	"AWS_PROFILE",
	"AWS_DEFAULT_PROFILE",
	"AWS_REGION",
	"AWS_DEFAULT_REGION",
	"AWS_ENDPOINT_URL",
	"AWS_ENDPOINT_URL_S3",
	"AWS_CA_BUNDLE",
	NULL,
};

/* A clean environment pointing at our two files (which may not exist). */
static void reset(const char *cred, const char *conf)
{
	for (const char *const *v = vars; *v; v++)
		unsetenv(*v);
	unlink(cred_path);
	unlink(conf_path);
	if (cred)
		write_file(cred_path, cred);
	if (conf)
		write_file(conf_path, conf);
	setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
	setenv("AWS_CONFIG_FILE", conf_path, 1);
}

static bool streq(const char *a, const char *b)
{
	bool ok = a && b ? strcmp(a, b) == 0 : a == b;
	if (!ok)
		fprintf(stderr, "  got \"%s\", want \"%s\"\n", a ? a : "(null)", b ? b : "(null)");
	return ok;
}

static const char CRED[] = "# comment\n"
			   "[default]\n"
			   "aws_access_key_id = AKIDDEFAULT\n"
			   "aws_secret_access_key = secretDEFAULT/+xyz\n"
			   "\n"
			   "[work]\r\n"
			   "aws_access_key_id=AKIDWORK\r\n"
			   "aws_secret_access_key=secretWORK\r\n"
			   "aws_session_token = tokenWORK\r\n"
			   "; another comment\n"
			   "[halfkey]\n"
			   "aws_access_key_id = AKIDHALF\n"
			   "[both]\n"
			   "aws_access_key_id = AKIDFROMCRED\n"
			   "aws_secret_access_key = secretFROMCRED\n";

static const char CONF[] = "[default]\n"
			   "region = eu-west-1\n"
			   "s3 =\n"
			   "  addressing_style = path\n"
			   "  endpoint_url = http://127.0.0.1:7480\n"
			   "output = json\n"
			   "[profile work]\n"
			   "region = us-west-2\n"
			   "endpoint_url = https://s3.example.net\n"
			   "[profile onlyconfig]\n"
			   "aws_access_key_id = AKIDCONF\n"
			   "aws_secret_access_key = secretCONF\n"
			   "s3 =\n"
			   "    addressing_style = virtual\n"
			   "[profile both]\n"
			   "aws_access_key_id = AKIDFROMCONF\n"
			   "aws_secret_access_key = secretFROMCONF\n"
			   "region = ap-south-1\n"
			   "[profile role]\n"
			   "role_arn = arn:aws:iam::123456789012:role/x\n"
			   "source_profile = default\n"
			   "[profile badstyle]\n"
			   "aws_access_key_id = A\n"
			   "aws_secret_access_key = B\n"
			   "s3 =\n"
			   "  addressing_style = sideways\n"
			   "[sso-session work]\n"
			   "sso_region = us-east-1\n"
			   "[work]\n"
			   "region = not-a-profile-in-the-config-file\n";

static void test_env_first(void)
{
	struct s3cred c;
	char err[512];
	reset(CRED, CONF);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secretENV", 1);
	setenv("AWS_SESSION_TOKEN", "tokenENV", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDENV"));
	CHECK(streq(c.secret_access_key, "secretENV"));
	CHECK(streq(c.session_token, "tokenENV"));
	CHECK(streq(c.source, "environment"));
	/* Settings still come from the default profile of the config file. */
	CHECK(streq(c.region, "eu-west-1"));
	CHECK(streq(c.endpoint, "http://127.0.0.1:7480"));
	CHECK(c.addressing == S3CRED_ADDRESSING_PATH);
	s3cred_clear(&c);
	CHECK(c.access_key_id == NULL && c.secret_access_key == NULL);

	/* ... and the environment wins over them. */
	setenv("AWS_REGION", "sa-east-1", 1);
	setenv("AWS_DEFAULT_REGION", "ignored-1", 1);
	setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
	setenv("AWS_ENDPOINT_URL_S3", "http://s3only:2", 1);
	setenv("AWS_CA_BUNDLE", "/etc/ca.pem", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.region, "sa-east-1"));
	CHECK(streq(c.endpoint, "http://s3only:2"));
	CHECK(streq(c.ca_bundle, "/etc/ca.pem"));
	s3cred_clear(&c);
	unsetenv("AWS_REGION");
	unsetenv("AWS_ENDPOINT_URL_S3");
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.region, "ignored-1"));
	CHECK(streq(c.endpoint, "http://generic:1"));
	s3cred_clear(&c);

	/* A profile named by the caller wins over the environment's keys, as aws --profile does. */
	CHECK(s3cred_load("work", &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDWORK"));
	CHECK(strstr(c.source, "profile \"work\"") != NULL);
	s3cred_clear(&c);
}

static void test_half_env(void)
{
	struct s3cred c;
	char err[512];
	reset(CRED, CONF);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "AWS_SECRET_ACCESS_KEY") != NULL);
	reset(CRED, CONF);
	setenv("AWS_SECRET_ACCESS_KEY", "secretONLY", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "secretONLY") == NULL);
	/* Empty variables count as unset. */
	reset(CRED, CONF);
	setenv("AWS_ACCESS_KEY_ID", "", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDDEFAULT"));
	s3cred_clear(&c);
}

static void test_profiles(void)
{
	struct s3cred c;
	char err[512];

	reset(CRED, CONF);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDDEFAULT"));
	CHECK(streq(c.secret_access_key, "secretDEFAULT/+xyz"));
	CHECK(c.session_token == NULL);
	CHECK(streq(c.region, "eu-west-1"));
	CHECK(strstr(c.source, cred_path) != NULL);
	s3cred_clear(&c);

	/* AWS_PROFILE picks the profile; CRLF line ends; [profile x] in the config file. */
	setenv("AWS_PROFILE", "work", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDWORK"));
	CHECK(streq(c.secret_access_key, "secretWORK"));
	CHECK(streq(c.session_token, "tokenWORK"));
	CHECK(streq(c.region, "us-west-2"));
	CHECK(streq(c.endpoint, "https://s3.example.net"));
	CHECK(c.addressing == S3CRED_ADDRESSING_UNSET);
	s3cred_clear(&c);
	unsetenv("AWS_PROFILE");
	setenv("AWS_DEFAULT_PROFILE", "work", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDWORK"));
	s3cred_clear(&c);
	unsetenv("AWS_DEFAULT_PROFILE");

	/* Keys only in the config file; nested addressing style. */
	CHECK(s3cred_load("onlyconfig", &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDCONF"));
	CHECK(c.addressing == S3CRED_ADDRESSING_VIRTUAL);
	CHECK(strstr(c.source, conf_path) != NULL);
	s3cred_clear(&c);

	/* In both files: the credentials file wins for keys, the config file gives the region. */
	CHECK(s3cred_load("both", &c, err, sizeof(err)) == 0);
	CHECK(streq(c.access_key_id, "AKIDFROMCRED"));
	CHECK(streq(c.secret_access_key, "secretFROMCRED"));
	CHECK(streq(c.region, "ap-south-1"));
	s3cred_clear(&c);
}

static void test_profile_errors(void)
{
	struct s3cred c;
	char err[512];
	reset(CRED, CONF);

	CHECK(s3cred_load("nosuch", &c, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "\"nosuch\"") != NULL);
	CHECK(c.access_key_id == NULL);

	setenv("AWS_PROFILE", "nosuch", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -ENOENT);
	unsetenv("AWS_PROFILE");

	CHECK(s3cred_load("halfkey", &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "aws_secret_access_key") != NULL);

	CHECK(s3cred_load("role", &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "role_arn") != NULL);

	CHECK(s3cred_load("badstyle", &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "sideways") != NULL);

	/* A section "[work]" in the config file is not profile work's. */
	CHECK(s3cred_load("work", &c, err, sizeof(err)) == 0);
	CHECK(streq(c.region, "us-west-2"));
	s3cred_clear(&c);

	/* No files, no environment. */
	reset(NULL, NULL);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "AWS_ACCESS_KEY_ID") != NULL);

	/* A malformed line inside the profile is an error (with line number); elsewhere it is not. */
	reset("[default]\naws_access_key_id = A\nthis line is wrong\naws_secret_access_key = S3CR3T\n"
	      "[other]\nnonsense\n",
	      NULL);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "line 3") != NULL);
	CHECK(strstr(err, "S3CR3T") == NULL);
	reset("[default]\naws_access_key_id = A\naws_secret_access_key = S3CR3T\n[other]\nnonsense\n",
	      NULL);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.secret_access_key, "S3CR3T"));
	s3cred_clear(&c);

	/* An unreadable file is an error, not "no such profile". */
	reset(NULL, NULL);
	mkdir(cred_path, 0700); /* a directory: read fails */
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) < 0);
	CHECK(strstr(err, cred_path) != NULL);
	rmdir(cred_path);
}

static void test_no_secret_in_errors(void)
{
	struct s3cred c;
	char err[512];
	/* Every failing path, with recognisable secrets around. */
	reset("[default]\naws_secret_access_key = TOPSECRET1\n",
	      "[profile x]\naws_session_token = TOPSECRET2\n");
	setenv("AWS_SECRET_ACCESS_KEY", "TOPSECRET3", 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "TOPSECRET") == NULL);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "TOPSECRET") == NULL);
	CHECK(s3cred_load("x", &c, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "TOPSECRET") == NULL);
}

/* Writes len bytes of data to path (write_file stops at a NUL). */
static void write_bytes(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
}

/*
 * A NUL byte once cut the value it sat in short, silently: the part
 * before it was used (tests/fuzz/regressions/s3cred/value-cut-at-nul).
 * A file holding one is refused, with file and line, in either file and
 * whichever profile the NUL is in; no secret is quoted.
 */
static void test_nul_refused(void)
{
	struct s3cred c;
	char err[512];
	static const char cut[] = "[default]\naws_access_key_id = AKIDNUL\n"
				  "aws_secret_access_key = SECRET123\0rest-of-secret\n";
	static const char other[] =
		"[default]\naws_access_key_id = AKIDNUL\naws_secret_access_key = SECRET123\n"
		"[other]\nregion = eu\0west-1\n";
	static const char header[] =
		"[def\0ault]\naws_access_key_id = AKIDNUL\naws_secret_access_key = SECRET123\n";

	reset(NULL, NULL);
	write_bytes(cred_path, cut, sizeof(cut) - 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	tap_note("NUL in a value: %s\n", err);
	CHECK(strstr(err, cred_path) && strstr(err, "line 3") && strstr(err, "contains a NUL byte"));
	CHECK(strstr(err, "SECRET123") == NULL);
	CHECK(c.access_key_id == NULL && c.secret_access_key == NULL);

	/* In the config file too (the credentials file is fine). */
	reset("[default]\naws_access_key_id = A\naws_secret_access_key = S\n", NULL);
	write_bytes(conf_path, cut, sizeof(cut) - 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, conf_path) && strstr(err, "line 3") && strstr(err, "contains a NUL byte"));

	/* In another profile, or in a section header: the file is damaged all the same. */
	reset(NULL, NULL);
	write_bytes(cred_path, other, sizeof(other) - 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "line 5") && strstr(err, "contains a NUL byte"));
	write_bytes(cred_path, header, sizeof(header) - 1);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "line 1") && strstr(err, "contains a NUL byte"));

	/* The same files without the NUL read as before. */
	reset("[default]\naws_access_key_id = AKIDNUL\naws_secret_access_key = SECRET123rest-of-secret\n",
	      NULL);
	CHECK(s3cred_load(NULL, &c, err, sizeof(err)) == 0);
	CHECK(streq(c.secret_access_key, "SECRET123rest-of-secret"));
	s3cred_clear(&c);
}

int main(void)
{
	const char *dir = tap_tmpdir();
	snprintf(cred_path, sizeof(cred_path), "%s/credentials", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/config", dir);
	test_env_first();
	test_half_env();
	test_profiles();
	test_profile_errors();
	test_no_secret_in_errors();
	test_nul_refused();
	unlink(cred_path);
	unlink(conf_path);
	rmdir(dir);
	return tap_done();
}
