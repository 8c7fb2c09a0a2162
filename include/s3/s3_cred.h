/*
 * s3_cred — finds S3 credentials and settings the way AWS tools do.
 *
 * Knows nothing of HTTP or of what the credentials are for. Sources, in
 * order:
 *  - keys: if a profile is named by the caller, that profile only (as
 *    `aws --profile` does, it wins over the environment); otherwise
 *    AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) from
 *    the environment; otherwise the profile AWS_PROFILE (or
 *    AWS_DEFAULT_PROFILE, or "default"). A profile is read from the
 *    credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
 *    sections "[name]") and then the config file (AWS_CONFIG_FILE or
 *    ~/.aws/config, sections "[profile name]", or "[default]"); for a key
 *    set in both, the credentials file wins.
 *  - region: AWS_REGION, AWS_DEFAULT_REGION, then the profile's "region".
 *  - endpoint: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then the profile's
 *    "s3 = endpoint_url" (nested) or "endpoint_url".
 *  - addressing: the profile's nested "s3 = addressing_style" (path,
 *    virtual or auto).
 *  - CA bundle: AWS_CA_BUNDLE, then the profile's "ca_bundle".
 * A half-given key pair (an id without a secret, in the environment or
 * in a profile) is an error, not a reason to look further; so is a file
 * that holds a NUL byte anywhere (damaged, or not text: it would cut a
 * name or value short). Profiles that get keys from elsewhere
 * (role_arn, sso_*, credential_process) are refused with a message
 * saying so.
 *
 * Secrets: the secret key and session token are never written into err
 * or anywhere else; s3cred_clear wipes them (and the file buffers read
 * on the way are wiped before they are freed). Errors name the variable,
 * file, line and profile, never a value.
 *
 * Not thread-safe with respect to setenv() by other threads (it reads
 * the environment); call it at start-up.
 */
#ifndef SNAPFS_S3_CRED_H
#define SNAPFS_S3_CRED_H

#include <stddef.h>

enum s3cred_addressing {
	S3CRED_ADDRESSING_UNSET = 0,
	S3CRED_ADDRESSING_AUTO,
	S3CRED_ADDRESSING_PATH,
	S3CRED_ADDRESSING_VIRTUAL,
};

struct s3cred {
	char *access_key_id;
	char *secret_access_key; /* wiped by s3cred_clear */
	char *session_token;     /* NULL if none; wiped by s3cred_clear */
	char *region;            /* NULL if none was configured */
	char *endpoint;          /* NULL if none was configured */
	char *ca_bundle;         /* NULL if none was configured */
	enum s3cred_addressing addressing;
	/* Where the keys came from, for messages: "environment" or "profile x (/root/.aws/credentials)". */
	char source[320];
};

/*
 * Fills *out (which the caller then clears with s3cred_clear). profile
 * NULL or "" means "not named". 0, or -ENOENT if no credentials were
 * found, -EINVAL if a source is malformed or incomplete, another
 * negative errno if a file exists but cannot be read; err says which.
 */
int s3cred_load(const char *profile, struct s3cred *out, char *err, size_t errlen);

/* Wipes the secrets, frees everything, leaves *c zeroed. */
void s3cred_clear(struct s3cred *c);

#endif
