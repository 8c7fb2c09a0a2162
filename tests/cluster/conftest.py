"""The multi-host tests' fixtures: the S3 ones (rgw, s3, bucket,
make_s3fs, from snapfs_test/s3fixtures.py, as in tests/s3/) and
`cluster`, a snapfs_test.cluster.Cluster on a fresh bucket whose hosts
are unmounted and checked at teardown."""

import pytest

from snapfs_test.cluster import Cluster
from snapfs_test.s3fixtures import *  # noqa: F401,F403


@pytest.fixture
def cluster(tmp_path, rgw, bucket):
    c = Cluster(tmp_path, rgw, bucket)
    yield c
    c.close()
