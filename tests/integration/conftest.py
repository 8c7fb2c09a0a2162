"""pytest fixtures for the mounted snapfs tests.

Where FUSE cannot be used (no /dev/fuse, not root) the whole session exits
77, which meson reports as SKIP; with SNAPFS_REQUIRE_FUSE=1 (CI) that is a
failure instead. Each test gets its own STORE and MOUNT under tmp_path;
teardown unmounts with fusermount3 -u, requires exit status 0, and fails
on any sanitizer report in the daemon's log.
"""

import pytest

from snapfs_test import harness


def pytest_sessionstart(session):
    harness.exit_unless_usable(harness.fuse_unusable(), ("SNAPFS_REQUIRE_FUSE",), "the mounted tests")


@pytest.fixture
def make_fs(tmp_path):
    """Factory: make_fs(opts=(...)) -> a started harness.Snapfs on a fresh
    STORE+MOUNT (start=False leaves it unstarted). All are closed (and
    checked) at teardown."""
    made = []

    def make(opts=("batch_delay=50",), start=True, name="fs"):
        d = tmp_path / name
        d.mkdir()
        fs = harness.Snapfs(d, opts=opts)
        made.append(fs)
        if start:
            fs.start()
        return fs

    yield make
    harness.close_all(made)


@pytest.fixture
def fs(make_fs):
    """A mounted snapfs with a short batch delay."""
    return make_fs()


@pytest.fixture
def coll(fs):
    """A collection named "c" in fs."""
    return fs.mkcoll("c")
