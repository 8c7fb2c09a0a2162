/*
 * fuzz_s3cred — s3cred_load reading ~/.aws/credentials and ~/.aws/config
 * (s3_cred.h): INI files written by hand or by other tools, and read at
 * every start of snapfs, snapfs-s3 and snapfs-ctl.
 *
 * Input: one byte of options, then the credentials file, a NUL byte,
 * the config file. Options: bit 0 names the profile "p1" (as -o
 * s3_profile= does), bit 1 sets AWS_PROFILE=p1 instead, bit 2 leaves the
 * credentials file out, bit 3 the config file. The files are written to
 * a private directory that AWS_SHARED_CREDENTIALS_FILE and
 * AWS_CONFIG_FILE point to; every other AWS_* variable is unset.
 *
 * Checked: the answer is 0, -ENOENT or -EINVAL, with a reason on
 * failure and a cleared result; on success a key pair and a source are
 * there, every value is one trimmed line that the files hold, the
 * addressing style is one of the enum's; loading twice gives the same;
 * and no secret of the files (a value of aws_secret_access_key or
 * aws_session_token with a digit in it and 8 bytes or more) is ever in
 * the error message, unless another line quotes it too; a file holding a
 * NUL byte is refused (-EINVAL).
 */
#include "fuzz.h"
#include "s3_cred.h"

#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], cred_path[300], conf_path[300];

static void cleanup(void)
{
	unlink(cred_path);
	unlink(conf_path);
	rmdir(dir);
}

static void setup(void)
{
	static const char *const vars[] = {
		"AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE",        "AWS_DEFAULT_PROFILE",   "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",   "AWS_ENDPOINT_URL",
		"AWS_CA_BUNDLE",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
			   : getenv("TMPDIR")            ? getenv("TMPDIR")
							 : "/tmp";
	snprintf(dir, sizeof(dir), "%s/snapfs-fuzz-s3cred.%ld", base, (long)getpid());
	snprintf(cred_path, sizeof(cred_path), "%s/credentials", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/config", dir);
	cleanup();
	FUZZ_SETUP(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
	atexit(cleanup);
	setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
	setenv("AWS_CONFIG_FILE", conf_path, 1);
}

static void put_file(const char *path, const uint8_t *data, size_t len, bool present)
{
	unlink(path);
	if (!present)
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_SETUP(fd >= 0, "open %s: %s", path, strerror(errno));
	FUZZ_SETUP(len == 0 || write(fd, data, len) == (ssize_t)len, "write %s: %s", path,
		   strerror(errno));
	close(fd);
}

static bool one_trimmed_line(const char *v)
{
	size_t n = strlen(v);
	return !strchr(v, '\n') &&
	       (n == 0 || (v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t'));
}

/* Whether v (NULL: fine) is one trimmed line found in one of the files. */
static bool from_files(const char *v, const uint8_t *f1, size_t l1, const uint8_t *f2, size_t l2)
{
	if (!v)
		return true;
	size_t n = strlen(v);
	return one_trimmed_line(v) && (memmem(f1, l1, v, n) || memmem(f2, l2, v, n));
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/*
 * The value of line if its name is aws_secret_access_key or
 * aws_session_token (line is cut there), else NULL.
 */
static char *secret_value(char *line)
{
	char *eq = strchr(line, '=');
	if (!eq)
		return NULL;
	char *k = line + strspn(line, " \t"), *ke = eq;
	while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
		ke--;
	size_t kl = (size_t)(ke - k);
	if (!(kl == 21 && !strncasecmp(k, "aws_secret_access_key", 21)) &&
	    !(kl == 17 && !strncasecmp(k, "aws_session_token", 17)))
		return NULL;
	char *v = eq + 1 + strspn(eq + 1, " \t"), *e = v + strlen(v);
	while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	*e = '\0';
	return v;
}

/*
 * No secret of the files (a value of aws_secret_access_key or
 * aws_session_token with a digit in it and 8 bytes or more) is in err,
 * unless it is also part of a line that is no secret (the addressing
 * style is quoted back in its error) or of the files' paths.
 */
static void check_no_secret(const char *err, const uint8_t *f1, size_t l1, const uint8_t *f2,
			    size_t l2)
{
	enum { MAX_LINES = 1024 };
	char *text[2] = {fuzz_strndup(f1, l1), fuzz_strndup(f2, l2)};
	char *line[MAX_LINES], *secret[MAX_LINES];
	size_t n = 0;
	/* s3cred reads past NUL bytes, which end no line there: read them as line breaks here. */
	for (size_t i = 0; i < l1; i++)
		text[0][i] = text[0][i] ? text[0][i] : '\n';
	for (size_t i = 0; i < l2; i++)
		text[1][i] = text[1][i] ? text[1][i] : '\n';
	for (int f = 0; f < 2; f++) {
		for (char *p = text[f]; p && n < MAX_LINES; n++) {
			char *nl = strchr(p, '\n');
			if (nl)
				*nl = '\0';
			line[n] = p;
			secret[n] = secret_value(p);
			p = nl ? nl + 1 : NULL;
		}
	}
	for (size_t k = 0; k < n; k++) {
		const char *v = secret[k];
		if (!v || strlen(v) < 8 || !strpbrk(v, "0123456789"))
			continue;
		bool elsewhere = strstr(cred_path, v) || strstr(conf_path, v);
		for (size_t i = 0; i < n && !elsewhere; i++)
			elsewhere = !secret[i] && strstr(line[i], v);
		FUZZ_CHECK(elsewhere || !strstr(err, v),
			   "a secret from the files is in the error message: %s", err);
	}
	free(text[0]);
	free(text[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	unsigned opts = size ? data[0] : 0;
	const uint8_t *rest = size ? data + 1 : data;
	size_t rlen = size ? size - 1 : 0;
	const uint8_t *nul = memchr(rest, '\0', rlen);
	const uint8_t *f1 = rest, *f2 = nul ? nul + 1 : rest + rlen;
	size_t l1 = nul ? (size_t)(nul - rest) : rlen, l2 = nul ? rlen - l1 - 1 : 0;
	put_file(cred_path, f1, l1, !(opts & 4));
	put_file(conf_path, f2, l2, !(opts & 8));
	if ((opts & 2) && !(opts & 1))
		setenv("AWS_PROFILE", "p1", 1);
	else
		unsetenv("AWS_PROFILE");
	const char *profile = (opts & 1) ? "p1" : NULL;

	struct s3cred c, c2;
	char err[512] = "", err2[512] = "";
	int rc = s3cred_load(profile, &c, err, sizeof(err));
	int rc2 = s3cred_load(profile, &c2, err2, sizeof(err2));
	FUZZ_CHECK(rc == rc2 && !strcmp(err, err2), "loading twice answers %d then %d", rc, rc2);
	struct s3cred zero;
	memset(&zero, 0, sizeof(zero));
	/*
	 * A NUL byte once cut the value it sat in short, silently
	 * (regressions/s3cred/value-cut-at-nul): a file holding one is
	 * refused. The input's first NUL ends the credentials file, so only
	 * the config file can hold one.
	 */
	if (!(opts & 8) && memchr(f2, '\0', l2))
		FUZZ_CHECK(rc == -EINVAL,
			   "the config file holds a NUL byte, yet s3cred_load answered %d: %s", rc,
			   err);
	if (rc) {
		FUZZ_CHECK(rc == -ENOENT || rc == -EINVAL, "s3cred_load returned %d: %s", rc, err);
		FUZZ_CHECK(err[0], "s3cred_load failed without a reason");
		FUZZ_CHECK(!memcmp(&c, &zero, sizeof(c)),
			   "s3cred_load failed but left data in the result");
	} else {
		FUZZ_CHECK(c.access_key_id && c.access_key_id[0] && c.secret_access_key &&
				   c.secret_access_key[0],
			   "s3cred_load succeeded without a key pair");
		FUZZ_CHECK(c.source[0],
			   "s3cred_load succeeded without saying where the keys came from");
		FUZZ_CHECK(c.addressing >= S3CRED_ADDRESSING_UNSET &&
				   c.addressing <= S3CRED_ADDRESSING_VIRTUAL,
			   "addressing %d", (int)c.addressing);
		const char *vals[] = {c.access_key_id, c.secret_access_key, c.session_token,
				      c.region,        c.endpoint,          c.ca_bundle};
		for (size_t i = 0; i < 6; i++)
			FUZZ_CHECK(from_files(vals[i], f1, l1, f2, l2),
				   "value #%zu \"%s\" is not a trimmed line of the files", i,
				   vals[i]);
		FUZZ_CHECK(same_str(c.access_key_id, c2.access_key_id) &&
				   same_str(c.secret_access_key, c2.secret_access_key) &&
				   same_str(c.session_token, c2.session_token) &&
				   same_str(c.region, c2.region) &&
				   same_str(c.endpoint, c2.endpoint) &&
				   same_str(c.ca_bundle, c2.ca_bundle) &&
				   c.addressing == c2.addressing && !strcmp(c.source, c2.source),
			   "loading twice gives two results");
	}
	check_no_secret(err, f1, l1, f2, l2);
	s3cred_clear(&c);
	s3cred_clear(&c2);
	FUZZ_CHECK(!memcmp(&c, &zero, sizeof(c)), "s3cred_clear left data behind");
	return 0;
}
