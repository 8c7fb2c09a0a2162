"""A server that stalls (the fault proxy holds the connection open and
never answers): unmount during an upload, during a swap and during a
sweep ends every S3 call in flight and the daemon exits 0 within 2 s,
leaving nothing the next start cannot finish or clean. And a server that
works 20 s on CompleteMultipartUpload or AbortMultipartUpload before it
answers is waited out, once, not cut off and asked again; the abort,
which is housekeeping, does not hold the upload of a new snapshot up."""

import signal
import time
import urllib.parse

import pytest

from snapfs_test import upload as uh
from snapfs_test.faultproxy import FaultProxy, Rule  # noqa: E402

uh.require_fuse()

EXIT_WITHIN_S = 2.0  # the requirement (snapfs(8): unmount never waits on S3)


def upstream(rgw):
    u = urllib.parse.urlparse(rgw.endpoint)
    return (u.hostname, u.port)


def unmount_timed(fs, proxy, what, how="unmount"):
    """The whole server stalls from now on (the clean-up on the way out, an
    abort or the lease's release, too); fusermount3 -u (or SIGTERM): the
    daemon must exit 0 within 2 s."""
    proxy.set_rules([Rule(None, "", "stall")])
    t0 = time.monotonic()
    if how == "unmount":
        uh.run(["fusermount3", "-u", fs.mnt])
    else:
        fs.proc.send_signal(signal.SIGTERM)
    fs.wait_exit(30, expect=0)
    took = time.monotonic() - t0
    print(f"\n{how} during {what} against a stalled server: daemon exited 0 in {took:.2f} s")
    assert took < EXIT_WITHIN_S, f"{how} during {what} took {took:.2f} s"
    uh.wait_for(lambda: not fs.mounted(), 10, "the mount to go away")
    return took


def restart_direct(fs, rgw):
    """The next start, straight to the server."""
    fs.opts = [o for o in fs.opts if not o.startswith("s3_endpoint=")] + [f"s3_endpoint={rgw.endpoint}"]
    fs.start()


@pytest.mark.parametrize("how", ["unmount", "SIGTERM"])
def test_unmount_during_upload(make_s3fs, rgw, s3, bucket, how):
    with FaultProxy(upstream(rgw), rules=[Rule("PUT", "partNumber=", "stall")]) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", "s3_part_size=5M", "s3_parallel=2"])
        c = fs.mkcoll("c")
        sid = fs.publish(c, big_rows=170_000)
        uh.wait_for(lambda: proxy.stats()["injected_stalls"] >= 2 and fs.upload(c)["state"] == "uploading",
                    60, "parts stalled mid-upload")
        unmount_timed(fs, proxy, "an upload", how)
    restart_direct(fs, rgw)
    fs.wait_upload(c, sid, timeout=300)
    uh.wait_for(lambda: uh.multipart_uploads(s3, bucket) == [], 30, "no multipart upload left")
    assert uh.pointer(s3, bucket, c)[0]["id"] == sid


def test_unmount_during_swap(make_s3fs, rgw, s3, bucket, tmp_path):
    with FaultProxy(upstream(rgw), rules=[Rule("PUT", "pointer.json", "stall")]) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", "s3_lease_ttl=15"])
        c = fs.mkcoll("c")
        sid = fs.publish(c)
        uh.wait_for(lambda: proxy.stats()["injected_stalls"] >= 1 and fs.upload(c)["state"] == "swapping",
                    60, "the pointer's PUT stalled")
        unmount_timed(fs, proxy, "a swap")
    # The lease could not be released on the way out: it expires (15 s), and
    # the next start swaps then.
    restart_direct(fs, rgw)
    fs.wait_upload(c, sid, timeout=60)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid
    uh.check_pointer_target(s3, bucket, p, tmp_path)


def test_unmount_during_sweep(make_s3fs, rgw, s3, bucket):
    with FaultProxy(upstream(rgw), rules=[Rule("POST", "?delete", "stall")]) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", "s3_keep=1", "s3_grace=0s",
                                     "s3_lease_ttl=15"])
        c = fs.mkcoll("c")
        s1 = fs.publish(c, rows=[(1, "one")])
        fs.wait_upload(c, s1)
        s2 = fs.publish(c, rows=[(2, "two")])
        fs.wait_upload(c, s2)
        uh.wait_for(lambda: proxy.requests("POST", "?delete") >= 1
                    and fs.upload(c)["bucket"]["sweep"]["state"] == "sweeping",
                    60, "the sweep's DeleteObjects stalled")
        unmount_timed(fs, proxy, "a sweep")
    # The sweep's hold on the lease could not be released: the next start's
    # sweep waits for it to expire (15 s), then deletes.
    restart_direct(fs, rgw)
    uh.wait_for(lambda: fs.snap_key(c, s1) not in uh.keys(s3, bucket), 60, "S1 swept after the restart")
    assert uh.pointer(s3, bucket, c)[0]["id"] == s2


def test_slow_complete_is_waited_out(make_s3fs, rgw, s3, bucket, tmp_path):
    with FaultProxy(upstream(rgw), rules=[Rule("POST", "uploadId=", "delay", 20)]) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", "s3_part_size=5M"])
        c = fs.mkcoll("c")
        sid = fs.publish(c, big_rows=170_000)
        fs.wait_upload(c, sid, timeout=300)
        assert proxy.requests("POST", "uploadId=") == 1, proxy.seen  # one Complete, waited out
        assert proxy.stats()["injected_delays"] == 1
    assert fs.metric("snapfs_upload_failures_total", c) == 0
    uh.check_pointer_target(s3, bucket, uh.pointer(s3, bucket, c)[0], tmp_path)


def test_slow_abort_is_waited_out_beside_the_upload(make_s3fs, rgw, s3, bucket):
    """A stale multipart upload of this host (a crash's) is aborted by the
    sweep; the server takes 20 s to answer the abort. It is sent once, and
    while the sweep waits for the answer the upload of a new snapshot goes
    through and swaps."""
    with FaultProxy(upstream(rgw), rules=[Rule("DELETE", "uploadId=", "delay", 20)]) as proxy:
        fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}"])
        c = fs.mkcoll("c")
        fs.unmount()
        s3.create_multipart_upload(Bucket=bucket, Key=fs.snap_key(c, 99))
        fs.start()  # its first sweep aborts the stale upload: the answer takes 20 s
        uh.wait_for(lambda: proxy.requests("DELETE", "uploadId=") == 1, 30, "the abort sent")
        t0 = time.monotonic()
        sid = fs.publish(c)
        fs.wait_upload(c, sid, timeout=60)
        took = time.monotonic() - t0
        b = fs.upload(c)["bucket"]
        assert b["sweep"]["state"] == "sweeping" and b["stale_uploads_aborted_total"] == 0, \
            "the upload waited for the abort's answer"
        print(f"\nsnapshot published, uploaded and swapped in {took:.1f} s beside a 20 s abort")
        uh.wait_for(lambda: fs.upload(c)["bucket"]["stale_uploads_aborted_total"] == 1, 60,
                    "the slow abort answered")
        assert proxy.requests("DELETE", "uploadId=") == 1, proxy.seen  # waited out, not asked again
        assert uh.multipart_uploads(s3, bucket) == []
        assert fs.upload(c)["bucket"]["sweep"]["failures_total"] == 0
        fs.unmount()
