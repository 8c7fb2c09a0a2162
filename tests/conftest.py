"""What every pytest run under tests/ shares (the shared helpers are the
package tests/pylib/snapfs_test)."""

import faulthandler
import os

import pytest

# A test that hangs (a FUSE request or an S3 call that never returns)
# dumps every thread's stack and ends the run instead of waiting for
# meson's timeout.
TEST_WATCHDOG_S = int(os.environ.get("SNAPFS_TEST_WATCHDOG", "300"))


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(TEST_WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
