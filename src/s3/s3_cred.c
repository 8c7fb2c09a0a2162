/*
 * s3_cred — AWS credential and config files, and the AWS_* environment.
 *
 * The two files are INI files as botocore reads them: "[section]"
 * headers, "name = value" lines, full-line comments starting with '#'
 * or ';', and one level of nesting ("s3 =" followed by indented
 * "name = value" lines, read here as "s3.name"). Only the profile asked
 * for is kept; a malformed line inside it is an error (with file and
 * line), one elsewhere is none of our business. A file that holds a NUL
 * byte is refused whole (with file and line): it is no text, and the NUL
 * would cut the name or value it sits in short without a word.
 *
 * Every buffer that may hold a secret (the file text, the values kept
 * from it) is wiped before it is freed.
 */
#include "s3_cred.h"

#include "errbuf.h"
#include "xalloc.h"
#include "fsx.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct kv {
	char *name; /* "region", "s3.addressing_style" */
	char *value;
};

/* The settings of one profile found in one file. */
struct profile {
	const char *path; /* the file it came from */
	bool found;
	struct kv *kv;
	size_t n;
};

#define seterr(err, errlen, ...) errbuf_set(err, errlen, "s3cred", __VA_ARGS__)

/* NULL stays NULL (an absent value). */
static char *dup_opt(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void profile_free(struct profile *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->kv[i].name);
		free_secret(p->kv[i].value); /* any value may be a secret */
	}
	free(p->kv);
	p->kv = NULL;
	p->n = 0;
}

static void profile_set(struct profile *p, const char *name, size_t nlen, const char *value,
			size_t vlen)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strlen(p->kv[i].name) == nlen && strncasecmp(p->kv[i].name, name, nlen) == 0) {
			free_secret(p->kv[i].value);
			p->kv[i].value = xstrndup(value, vlen);
			return;
		}
	}
	struct kv *n = xreallocarray(p->kv, p->n + 1, sizeof(*n));
	p->kv = n;
	p->kv[p->n].name = xstrndup(name, nlen);
	for (char *c = p->kv[p->n].name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	p->kv[p->n].value = xstrndup(value, vlen);
	p->n++;
}

static const char *profile_get(const struct profile *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcasecmp(p->kv[i].name, name) == 0)
			return p->kv[i].value;
	return NULL;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trims [*s, *e) of blanks on both ends. */
static void trim(const char **s, const char **e)
{
	while (*s < *e && is_blank(**s))
		(*s)++;
	while (*e > *s && is_blank((*e)[-1]))
		(*e)--;
}

/*
 * Does section header text [s, e) name the profile? In the config file
 * a profile is "[profile NAME]" (or "[default]"); in the credentials
 * file it is "[NAME]".
 */
static bool section_is(const char *s, const char *e, const char *name, bool config)
{
	trim(&s, &e);
	if (config) {
		if ((size_t)(e - s) > 8 && strncmp(s, "profile", 7) == 0 && is_blank(s[7])) {
			s += 8;
			trim(&s, &e);
		} else if (!((size_t)(e - s) == 7 && strncmp(s, "default", 7) == 0)) {
			return false; /* "[sso-session x]", "[services x]", ... */
		}
	}
	return (size_t)(e - s) == strlen(name) && strncmp(s, name, (size_t)(e - s)) == 0;
}

/*
 * A NUL byte would cut the name or value it sits in short, silently
 * (they are C strings from here on). A text file has none: the file is
 * damaged, and none of its lines is trusted, in any profile.
 */
static int refuse_nul(const char *path, const char *buf, size_t len, char *err, size_t errlen)
{
	const char *nul = memchr(buf, '\0', len);
	if (!nul)
		return 0;
	unsigned lineno = 1;
	for (const char *c = buf; c < nul; c++)
		lineno += *c == '\n';
	seterr(err, errlen,
	       "%s line %u: contains a NUL byte (the file is damaged or not text): fix or rewrite it",
	       path, lineno);
	return -EINVAL;
}

/*
 * Reads profile name from the file at path into *p. A missing file is
 * no error (p->found stays false).
 */
static int profile_read(const char *path, const char *name, bool config, struct profile *p,
			char *err, size_t errlen)
{
	char *buf;
	size_t len;
	p->path = path;
	int rc = fsx_read_all(path, &buf, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc) {
		seterr(err, errlen, "cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	bool in = false;
	char parent[64] = ""; /* nested section being read ("s3"), "" if none */
	unsigned lineno = 0;
	const char *line = buf, *end = buf + len;
	rc = refuse_nul(path, buf, len, err, errlen);
	while (line < end && !rc) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *le = nl ? nl : end;
		const char *next = nl ? nl + 1 : end;
		lineno++;
		if (le > line && le[-1] == '\r')
			le--;
		bool indented = le > line && is_blank(line[0]);
		const char *s = line, *e = le;
		trim(&s, &e);
		line = next;
		if (s == e || *s == '#' || *s == ';')
			continue;
		if (*s == '[' && !indented) {
			if (e[-1] != ']') {
				if (in) {
					seterr(err, errlen, "%s line %u: section header without ']'",
					       path, lineno);
					rc = -EINVAL;
				}
				in = false;
				continue;
			}
			in = section_is(s + 1, e - 1, name, config);
			p->found = p->found || in;
			parent[0] = '\0';
			continue;
		}
		if (!in)
			continue;
		const char *eq = memchr(s, '=', (size_t)(e - s));
		if (!eq) {
			seterr(err, errlen, "%s line %u (profile \"%s\"): expected \"name = value\"",
			       path, lineno, name);
			rc = -EINVAL;
			continue;
		}
		const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
		trim(&ks, &ke);
		trim(&vs, &ve);
		if (ks == ke) {
			seterr(err, errlen, "%s line %u (profile \"%s\"): empty name", path, lineno,
			       name);
			rc = -EINVAL;
			continue;
		}
		if (indented && parent[0]) {
			char full[160];
			int n = snprintf(full, sizeof(full), "%s.%.*s", parent, (int)(ke - ks), ks);
			if (n > 0 && (size_t)n < sizeof(full))
				profile_set(p, full, (size_t)n, vs, (size_t)(ve - vs));
			continue;
		}
		if (vs == ve && (size_t)(ke - ks) < sizeof(parent)) {
			/* "s3 =" opens a nested section of indented lines. */
			memcpy(parent, ks, (size_t)(ke - ks));
			parent[ke - ks] = '\0';
			continue;
		}
		parent[0] = '\0';
		profile_set(p, ks, (size_t)(ke - ks), vs, (size_t)(ve - vs));
	}
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

/* The value of name in the credentials file, else in the config file. */
static const char *lookup(const struct profile *cred, const struct profile *conf, const char *name)
{
	const char *v = profile_get(cred, name);
	if (!v || !*v)
		v = profile_get(conf, name);
	return v && *v ? v : NULL;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* $HOME/rest, or the password database's home if HOME is unset. */
static char *home_path(const char *rest)
{
	const char *home = env("HOME");
	if (!home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw && pw->pw_dir ? pw->pw_dir : "/";
	}
	size_t n = strlen(home) + strlen(rest) + 2;
	char *p = xmalloc(n);
	snprintf(p, n, "%s/%s", home, rest);
	return p;
}

void s3cred_clear(struct s3cred *c)
{
	free(c->access_key_id);
	free_secret(c->secret_access_key);
	free_secret(c->session_token);
	free(c->region);
	free(c->endpoint);
	free(c->ca_bundle);
	memset(c, 0, sizeof(*c));
}

static int load_keys(bool named, const char *pname, const struct profile *cred,
		     const struct profile *conf, struct s3cred *out, char *err, size_t errlen)
{
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	if (!named && (id || secret)) {
		if (!id || !secret) {
			seterr(err, errlen, "%s is set but %s is not",
			       id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
			       id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
			return -EINVAL;
		}
		out->access_key_id = dup_opt(id);
		out->secret_access_key = dup_opt(secret);
		out->session_token = dup_opt(env("AWS_SESSION_TOKEN"));
		snprintf(out->source, sizeof(out->source), "environment");
		return 0;
	}
	if (!cred->found && !conf->found) {
		if (named || env("AWS_PROFILE") || env("AWS_DEFAULT_PROFILE"))
			seterr(err, errlen, "profile \"%s\" is in neither %s nor %s", pname,
			       cred->path, conf->path);
		else
			seterr(err, errlen,
			       "no credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set "
			       "and neither %s nor %s has a [default] profile",
			       cred->path, conf->path);
		return -ENOENT;
	}
	id = lookup(cred, conf, "aws_access_key_id");
	secret = lookup(cred, conf, "aws_secret_access_key");
	const char *where = profile_get(cred, "aws_access_key_id") ? cred->path : conf->path;
	if (!id && !secret) {
		static const char *const indirect[] = {"role_arn", "credential_process",
						       "sso_session", "sso_start_url",
						       "web_identity_token_file"};
		for (size_t i = 0; i < sizeof(indirect) / sizeof(indirect[0]); i++) {
			if (lookup(cred, conf, indirect[i])) {
				seterr(err, errlen,
				       "profile \"%s\" gets its keys through %s, which snapfs does not "
				       "support: give it aws_access_key_id and aws_secret_access_key",
				       pname, indirect[i]);
				return -EINVAL;
			}
		}
		seterr(err, errlen, "profile \"%s\" (in %s or %s) has no aws_access_key_id", pname,
		       cred->path, conf->path);
		return -ENOENT;
	}
	if (!id || !secret) {
		seterr(err, errlen, "profile \"%s\" in %s has %s but no %s", pname, where,
		       id ? "aws_access_key_id" : "aws_secret_access_key",
		       id ? "aws_secret_access_key" : "aws_access_key_id");
		return -EINVAL;
	}
	out->access_key_id = dup_opt(id);
	out->secret_access_key = dup_opt(secret);
	out->session_token = dup_opt(lookup(cred, conf, "aws_session_token"));
	snprintf(out->source, sizeof(out->source), "profile \"%s\" (%s)", pname, where);
	return 0;
}

static int load_settings(const char *pname, const struct profile *cred, const struct profile *conf,
			 struct s3cred *out, char *err, size_t errlen)
{
	const char *v = env("AWS_REGION");
	if (!v)
		v = env("AWS_DEFAULT_REGION");
	if (!v)
		v = lookup(cred, conf, "region");
	out->region = dup_opt(v);

	v = env("AWS_ENDPOINT_URL_S3");
	if (!v)
		v = env("AWS_ENDPOINT_URL");
	if (!v)
		v = lookup(cred, conf, "s3.endpoint_url");
	if (!v)
		v = lookup(cred, conf, "endpoint_url");
	out->endpoint = dup_opt(v);

	v = env("AWS_CA_BUNDLE");
	if (!v)
		v = lookup(cred, conf, "ca_bundle");
	out->ca_bundle = dup_opt(v);

	v = lookup(cred, conf, "s3.addressing_style");
	if (!v)
		out->addressing = S3CRED_ADDRESSING_UNSET;
	else if (strcmp(v, "path") == 0)
		out->addressing = S3CRED_ADDRESSING_PATH;
	else if (strcmp(v, "virtual") == 0)
		out->addressing = S3CRED_ADDRESSING_VIRTUAL;
	else if (strcmp(v, "auto") == 0)
		out->addressing = S3CRED_ADDRESSING_AUTO;
	else {
		seterr(err, errlen,
		       "profile \"%s\": s3 addressing_style \"%.40s\" is not path, virtual or auto",
		       pname, v);
		return -EINVAL;
	}
	return 0;
}

int s3cred_load(const char *profile, struct s3cred *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	bool named = profile && *profile;
	const char *pname = named ? profile : env("AWS_PROFILE");
	if (!pname)
		pname = env("AWS_DEFAULT_PROFILE");
	if (!pname)
		pname = "default";

	char *cred_path = dup_opt(env("AWS_SHARED_CREDENTIALS_FILE"));
	char *conf_path = dup_opt(env("AWS_CONFIG_FILE"));
	if (!cred_path)
		cred_path = home_path(".aws/credentials");
	if (!conf_path)
		conf_path = home_path(".aws/config");

	struct profile cred = {0}, conf = {0};
	int rc = profile_read(cred_path, pname, false, &cred, err, errlen);
	if (!rc)
		rc = profile_read(conf_path, pname, true, &conf, err, errlen);
	if (!rc)
		rc = load_keys(named, pname, &cred, &conf, out, err, errlen);
	if (!rc)
		rc = load_settings(pname, &cred, &conf, out, err, errlen);
	if (rc)
		s3cred_clear(out);
	profile_free(&cred);
	profile_free(&conf);
	free(cred_path);
	free(conf_path);
	return rc;
}
