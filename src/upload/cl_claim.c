/*
 * cl_claim — the host claim: PREFIX/.cluster/hosts/HOST.json names the
 * STORE instance that uses host id HOST, rewritten every CLUSTER_BEAT_S
 * by the coordinator (cl_beat). cluster_claim, before mounting, refuses
 * a host id whose claim another instance keeps rewriting; one left by a
 * dead instance is taken over after watching it unchanged for
 * CLUSTER_CLAIM_WATCH_S. Every write is conditional on the ETag read,
 * so two instances starting at once cannot both take it.
 */
#include "cluster.h"
#include "cluster_i.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"
#include "log.h"
#include "rfc3339.h"
#include "sbuf.h"

#define CL_DOC_MAX (64u << 10)

static void cl_claim_doc(const char *host, const char *inst, sbuf *out)
{
	char now[RFC3339_LEN];
	rfc3339_format((int64_t)time(NULL), now);
	json_t *o = json_object();
	jsonx_set(o, "host", jsonx_str(host));
	jsonx_set(o, "instance", jsonx_str(inst));
	jsonx_set(o, "pid", jsonx_u64((uint64_t)getpid()));
	jsonx_set(o, "beat", jsonx_str(now));
	jsonx_dump(o, 0, out);
	sbuf_adds(out, "\n");
	json_decref(o);
}

/* Reads the claim: 0 with *present, inst[] and etag; a negative errno (err) on failure. */
static int cl_claim_read(s3_client *c3, const char *key, bool *present,
			 char inst[LAYOUT_INST_LEN + 1], char etag[S3_ETAG_MAX], struct s3_error *e)
{
	void *doc = NULL;
	size_t len;
	struct s3_object_info info;
	*present = false;
	inst[0] = '\0';
	int rc = s3_get_buf(c3, key, NULL, CL_DOC_MAX, &doc, &len, &info, e);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	*present = true;
	snprintf(etag, S3_ETAG_MAX, "%s", info.etag);
	s3_object_info_free(&info);
	json_t *root = NULL;
	(void)len;
	if (jsonx_load(doc, 4, &root) < 0)
		root = NULL;
	free(doc);
	const char *i = root ? json_string_value(json_object_get(root, "instance")) : NULL;
	if (i)
		snprintf(inst, LAYOUT_INST_LEN + 1, "%s", i);
	json_decref(root);
	return 0;
}

/* Writes our claim over etag (NULL: create-only); new_etag receives its ETag. */
static int cl_claim_write(s3_client *c3, const char *key, const char *host, const char *inst,
			  const char *etag, char new_etag[S3_ETAG_MAX], struct s3_error *e)
{
	sbuf b = SBUF_INIT;
	cl_claim_doc(host, inst, &b);
	struct s3_put_opts po = {.content_type = "application/json",
				 .if_none_match = etag == NULL,
				 .if_match = etag};
	struct s3_put_result pr;
	int rc = s3_put_buf(c3, key, b.buf, b.len, &po, &pr, e);
	sbuf_free(&b);
	if (rc == 0)
		snprintf(new_etag, S3_ETAG_MAX, "%s", pr.etag);
	return rc;
}

int cluster_claim(const struct s3_config *s3, const char *prefix, const char *host_id,
		  const char *instance, char *err, size_t errlen)
{
	char key[S3_KEY_MAX + 1], etag[S3_ETAG_MAX] = "", inst[LAYOUT_INST_LEN + 1],
				  first[S3_ETAG_MAX];
	s3_client *c3;
	struct s3_error e;
	bool present;
	if (layout_host_key(prefix, host_id, key, sizeof(key)) < 0) {
		snprintf(err, errlen, "host claim key too long");
		return -ENAMETOOLONG;
	}
	int rc = s3_client_new(s3, &c3, err, errlen);
	if (rc < 0)
		return rc;
	rc = cl_claim_read(c3, key, &present, inst, etag, &e);
	if (rc == 0 && present && strcmp(inst, instance) != 0) {
		/* Another STORE's claim: a live one is rewritten every CLUSTER_BEAT_S. */
		snprintf(first, sizeof(first), "%s", etag);
		double until = mono_now() + CLUSTER_CLAIM_WATCH_S;
		log_info("cluster: host id %s is claimed by STORE instance %s; watching it for %d s",
			 host_id, inst, CLUSTER_CLAIM_WATCH_S);
		while (rc == 0 && present && !strcmp(etag, first) && mono_now() < until) {
			usleep(500000);
			rc = cl_claim_read(c3, key, &present, inst, etag, &e);
		}
		if (rc == 0 && present && strcmp(etag, first) != 0 && strcmp(inst, instance) != 0) {
			snprintf(err, errlen,
				 "s3_host_id=%s is in use by another snapfs (STORE instance %s), which keeps its "
				 "claim s3://%s/%s alive: give this mount a host id of its own",
				 host_id, inst, s3_client_bucket(c3), key);
			s3_client_free(c3);
			return -EEXIST;
		}
	}
	if (rc == 0) {
		char ne[S3_ETAG_MAX];
		rc = cl_claim_write(c3, key, host_id, instance, present ? etag : NULL, ne, &e);
		if (rc == -ESTALE)
			snprintf(err, errlen,
				 "s3_host_id=%s: the claim s3://%s/%s changed while it was taken: "
				 "another snapfs is starting with this host id",
				 host_id, s3_client_bucket(c3), key);
	}
	if (rc < 0 && rc != -ESTALE) {
		char detail[1100];
		s3_error_format(&e, detail, sizeof(detail));
		snprintf(err, errlen, "claiming host id %s: %s", host_id, detail);
	}
	s3_client_free(c3);
	return rc;
}

/* The coordinator's beat: our claim rewritten, If-Match our last write. */
void cl_beat(cluster *cl)
{
	char key[S3_KEY_MAX + 1], etag[S3_ETAG_MAX], ne[S3_ETAG_MAX];
	struct s3_error e;
	pthread_mutex_lock(&cl->mu);
	bool due = mono_now() >= cl->next_beat;
	snprintf(etag, sizeof(etag), "%s", cl->host_etag);
	pthread_mutex_unlock(&cl->mu);
	if (!due || layout_host_key(cl->prefix, cl->host, key, sizeof(key)) < 0)
		return;
	int rc = cl_claim_write(cl->coord_c, key, cl->host, cl->inst, etag[0] ? etag : NULL, ne, &e);
	if (rc == -ESTALE) {
		/* Someone wrote our claim: another instance started with our host id. */
		bool present;
		char inst[LAYOUT_INST_LEN + 1];
		if (cl_claim_read(cl->coord_c, key, &present, inst, etag, &e) == 0 && present &&
		    !strcmp(inst, cl->inst))
			rc = 0, snprintf(ne, sizeof(ne), "%s", etag);
		else
			log_err("cluster: another snapfs (STORE instance %s) claims host id %s: two hosts must not "
				"share one; this one keeps its claim",
				present ? inst : "?", cl->host);
		if (rc < 0)
			rc = cl_claim_write(cl->coord_c, key, cl->host, cl->inst,
					    present ? etag : NULL, ne, &e);
	}
	pthread_mutex_lock(&cl->mu);
	if (rc == 0) {
		snprintf(cl->host_etag, sizeof(cl->host_etag), "%s", ne);
		cl->next_beat = mono_now() + CLUSTER_BEAT_S;
	}
	pthread_mutex_unlock(&cl->mu);
	if (rc < 0)
		cl_error(cl, NULL, "rewriting the host claim", &e, rc);
}
