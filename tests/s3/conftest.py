"""The S3 tests' fixtures (rgw, s3, bucket, make_s3fs) and session hooks:
snapfs_test/s3fixtures.py's, shared with tests/cluster/."""

from snapfs_test.s3fixtures import *  # noqa: F401,F403
