"""pytest fixtures for the mounted snapfs tests.

Where FUSE cannot be used (no /dev/fuse, not root) the whole session exits
77, which meson reports as SKIP; with SNAPFS_REQUIRE_FUSE=1 (CI) that is a
failure instead. Each test gets its own STORE and MOUNT under tmp_path;
teardown unmounts with fusermount3 -u, requires exit status 0, and fails
on any sanitizer report in the daemon's log.
"""

import faulthandler
import os

import pytest

from snapfs_test import harness

# A test that hangs (a FUSE request never answered) dumps every thread's
# stack and ends the run instead of waiting for meson's timeout.
TEST_WATCHDOG_S = int(os.environ.get("SNAPFS_TEST_WATCHDOG", "300"))



def pytest_sessionstart(session):
    why = harness.fuse_unusable()
    if why is None:
        return
    if os.environ.get("SNAPFS_REQUIRE_FUSE") == "1":
        pytest.exit(f"FUSE unusable ({why}) but SNAPFS_REQUIRE_FUSE=1", returncode=1)
    pytest.exit(f"skipping mounted tests: FUSE unusable ({why})", returncode=77)


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(TEST_WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


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
    errors = []
    for fs in made:
        try:
            fs.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)


@pytest.fixture
def fs(make_fs):
    """A mounted snapfs with a short batch delay."""
    return make_fs()


@pytest.fixture
def coll(fs):
    """A collection named "c" in fs."""
    return fs.mkcoll("c")
