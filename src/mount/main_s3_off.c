/*
 * main_s3 — see main_s3.h. Built without S3 (meson -Ds3=disabled): no
 * libcurl, no expat, no uploader. The s3_* options are still parsed, so
 * that one given here is refused, before anything is mounted or
 * created, by saying why instead of "unknown option".
 */
#include "main_s3.h"

#include <stdio.h>

const char *main_s3_help(void)
{
	return "\nS3 upload: not in this build (meson -Ds3=disabled); the s3_* options are refused\n";
}

int main_s3_prepare(const struct main_s3_opts *o, main_s3 **out, char *err, size_t errlen)
{
	const struct {
		const char *name, *value;
	} given[] = {{"s3_bucket", o->bucket},
		     {"s3_prefix", o->prefix},
		     {"s3_endpoint", o->endpoint},
		     {"s3_region", o->region},
		     {"s3_profile", o->profile},
		     {"s3_part_size", o->part_size},
		     {"s3_parallel", o->parallel},
		     {"s3_upload", o->upload},
		     {"s3_lease_ttl", o->lease_ttl},
		     {"s3_host_id", o->host_id},
		     {"s3_keep", o->keep},
		     {"s3_grace", o->grace},
		     {"s3_cluster", o->cluster},
		     {"s3_role", o->role},
		     {"s3_poll", o->poll}};
	*out = NULL;
	for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++)
		if (given[i].value) {
			snprintf(err, errlen,
				 "%s=%s: this snapfs was built without S3 upload (meson -Ds3=disabled); "
				 "rebuild with -Ds3=enabled to upload snapshots",
				 given[i].name, given[i].value);
			return -1;
		}
	return 0;
}

int main_s3_start(main_s3 *s, store *st, vfs *v, char *err, size_t errlen)
{
	return 0;
}

int main_s3_claim(main_s3 *s, store *st, char *err, size_t errlen)
{
	return 0;
}

int main_s3_run(main_s3 *s, store *st, compactor *comp, vfs *v, char *err, size_t errlen)
{
	return 0;
}

void main_s3_published(main_s3 *s, const char *coll, uint64_t id)
{
}

void main_s3_halt(main_s3 *s)
{
}

void main_s3_stop(main_s3 *s)
{
}
