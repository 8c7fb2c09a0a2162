"""pytest fixtures for tests against a real S3 server (a throwaway Ceph
RADOS Gateway, see radosgw.py and ../../../shared/s3-test-server.md).

Fixtures: `rgw` (session: a started radosgw.RadosGW), `s3` (session: a
boto3 client for it), `bucket` (a fresh, empty bucket per test).

Where the Ceph binaries or boto3 are missing the whole session exits 77,
which meson reports as SKIP; with SNAPFS_REQUIRE_S3=1 (CI) that is a
failure instead. `python3 tests/pylib/snapfs_test/radosgw.py install` installs them.
"""

import signal
import sys

import pytest

from snapfs_test import harness, radosgw
from snapfs_test.upload import make_s3fs  # noqa: F401 (a fixture for every test here)

_started = []


def _check_available():
    harness.exit_unless_usable(radosgw.unavailable_reason(), ("SNAPFS_REQUIRE_S3",), "the S3 tests")


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def pytest_sessionstart(session):
    _check_available()
    # A SIGTERM (meson's timeout, a CI runner) ends the run like ^C: the
    # fixtures' teardown stops the daemons and removes their temp dir.
    # (Were this process killed outright, the daemons die with it anyway:
    # radosgw.py starts them with PR_SET_PDEATHSIG.)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


@pytest.fixture(scope="session")
def rgw():
    """A radosgw.RadosGW, started once per session, stopped at its end:
    .endpoint .access_key .secret_key .region .bucket .env() .client()
    .create_bucket(name=None) .empty_bucket(name) .signed_request(...)
    .admin(...) .timings .rss_kib()."""
    _check_available()
    gw = radosgw.RadosGW()
    try:
        gw.start()
    except radosgw.RadosGWError as e:
        # Once, with the daemons' log tails, rather than as the same error
        # repeated for every test.
        pytest.exit(f"could not start the S3 test server:\n{e}", returncode=1)
    _started.append(gw)
    yield gw
    gw.rss_at_end = gw.rss_kib()
    gw.stop()


@pytest.fixture(scope="session")
def s3(rgw):
    return rgw.client()


@pytest.fixture
def bucket(rgw):
    """A fresh empty bucket for one test; emptied and deleted afterwards
    (best effort: the server keeps objects in RAM)."""
    name = rgw.create_bucket()
    yield name
    try:
        rgw.empty_bucket(name)
    except Exception as e:  # a test's leftovers must not fail the next test
        print(f"bucket fixture: could not remove {name}: {e}", file=sys.stderr)



def pytest_terminal_summary(terminalreporter):
    for gw in _started:
        t = ", ".join(f"{k} {v:.2f}s" for k, v in gw.timings.items())
        terminalreporter.write_line(f"radosgw fixture: started in {t}")
        rss = getattr(gw, "rss_at_end", None)
        if rss:
            mib = ", ".join(f"{k} {v / 1024:.0f}" for k, v in rss.items())
            terminalreporter.write_line(f"radosgw fixture: RSS at the end (MiB): {mib}")
