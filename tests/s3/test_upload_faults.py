"""Uploads through a fault-injecting proxy (faultproxy.py) in front of
radosgw: 503 SlowDown answers and connections reset in the middle of a
part. The upload completes, the pointer names the right object, and the
retries show in the metrics."""

import urllib.parse

from snapfs_test import upload as uh
from snapfs_test.faultproxy import FaultProxy, Rule  # noqa: E402

uh.require_fuse()


def upstream(rgw):
    u = urllib.parse.urlparse(rgw.endpoint)
    return (u.hostname, u.port)


def test_resets_mid_part_and_503s(make_s3fs, rgw, s3, bucket, tmp_path):
    # Ten 503 SlowDown answers, all to requests of the uploader (the sweep
    # beside it sends none of these): six to parts, four to the lease's
    # PUT, more than its client's three attempts, so the uploader's own
    # retry (with backoff) is needed too. And three parts are cut 1 MiB
    # in with a TCP reset.
    rules = [Rule("PUT", "partNumber=", "503", count=6), Rule("PUT", "lease.json", "503", count=4)]
    with FaultProxy(upstream(rgw), resets=3, reset_after=1 << 20, rules=rules) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", "s3_part_size=5M",
                                     "s3_parallel=2"])
        c = fs.mkcoll("c")
        sid = fs.publish(c, big_rows=170000)
        man = fs.manifest(c, sid)
        assert man["size"] > 3 * (5 << 20)
        u = fs.wait_upload(c, sid, timeout=300)
        st = proxy.stats()
        assert st["injected_503"] == 10 and st["injected_resets"] == 3, st

        assert u["last_uploaded"]["sha256"] == man["sha256"]
        assert u["last_error"] is None and u["state"] == "idle"
        p, _ = uh.pointer(s3, bucket, c)
        assert p["id"] == sid and p["generation"] == 1
        uh.check_pointer_target(s3, bucket, p, tmp_path)
        assert uh.multipart_uploads(s3, bucket) == []

        # Every injected fault is a retry, except the last attempt of a
        # request that used them all up: that one is a failed attempt of the
        # uploader (which then starts over).
        retries = fs.metric("snapfs_upload_retries_total", c)
        failures = fs.metric("snapfs_upload_failures_total", c)
        assert failures >= 1, "the 503s outlasted one request's attempts"
        assert retries + failures >= 13, f"retries {retries}, failures {failures}, injected {st}"
        assert fs.metric("snapfs_uploads_total", c) == 1
        assert "SlowDown" in fs.log_text()

        # A second snapshot through the (now quiet) proxy moves the pointer on.
        sid2 = fs.publish(c)
        fs.wait_upload(c, sid2)
        p2, _ = uh.pointer(s3, bucket, c)
        assert p2["id"] == sid2 and p2["generation"] == 2
        uh.check_pointer_target(s3, bucket, p2, tmp_path)


def test_resets_of_single_puts_are_retried(make_s3fs, rgw, s3, bucket, tmp_path):
    """A proxy that resets a single-PUT body (manifest, small database)
    twice: the client re-sends from the file, the pointer is right."""
    with FaultProxy(upstream(rgw), resets=2, reset_after=100) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}"])
        c = fs.mkcoll("c")
        sid = fs.publish(c)
        fs.wait_upload(c, sid, timeout=120)
        assert proxy.stats()["injected_resets"] == 2
        p, _ = uh.pointer(s3, bucket, c)
        assert p["id"] == sid
        uh.check_pointer_target(s3, bucket, p, tmp_path)
        assert fs.metric("snapfs_upload_retries_total", c) >= 2
