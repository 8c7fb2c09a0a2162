"""snapfs mounted with S3 options uploads each sealed snapshot to a real
radosgw and moves the pointer; what it uploaded is read back with boto3.
Errors that cannot go away (wrong secret, missing bucket) are reported
in status without harm to the local snapshots."""

import os

import pytest

from snapfs_test import upload as uh

uh.require_fuse()


def test_each_snapshot_is_uploaded_and_pointer_names_it(make_s3fs, s3, bucket, tmp_path):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    seen = []
    for i in range(3):
        sid = fs.publish(c)
        u = fs.wait_upload(c, sid)
        assert u["last_uploaded_id"] == sid
        assert u["lag"] == 0 and u["lease"] == "free" and u["last_error"] is None
        assert u["pointer_generation"] == i + 1
        man = fs.manifest(c, sid)
        lu = u["last_uploaded"]
        assert lu["key"] == fs.snap_key(c, sid)
        assert lu["sha256"] == man["sha256"] and lu["size"] == man["size"]
        assert u["bytes_done"] == u["bytes_total"] == man["size"]

        p, _ = uh.pointer(s3, bucket, c)
        assert p["generation"] == i + 1 and p["id"] == sid and p["host"] == "h1"
        assert p["keys"] == {"db": fs.snap_key(c, sid),
                             "manifest": fs.snap_key(c, sid, "MANIFEST.json")}
        assert p["etag"] == lu["etag"]
        got = uh.check_pointer_target(s3, bucket, p, tmp_path)
        assert got == man  # the manifest object is the local manifest
        seen.append(sid)
        # The lease was held only around the swap: released, token kept.
        lease, _ = uh.lease(s3, bucket, c)
        assert lease["expires"] == 0 and lease["token"] == i + 1
        assert p["lease_token"] == i + 1
    # Every snapshot is in the bucket; no multipart upload is left behind.
    ks = uh.keys(s3, bucket)
    for sid in seen:
        assert fs.snap_key(c, sid) in ks
        assert fs.snap_key(c, sid, "MANIFEST.json") in ks
    assert uh.multipart_uploads(s3, bucket) == []
    assert fs.metric("snapfs_uploads_total", c) == 3
    assert fs.metric("snapfs_upload_failures_total", c) == 0
    assert fs.metric("snapfs_lease_held", c) == 0
    assert fs.metric("snapfs_pointer_conflicts_total", c) == 0
    assert fs.metric("snapfs_upload_bytes_total", c) == sum(
        fs.manifest(c, s)["size"] for s in seen)
    # The local record says the same.
    rec = uh.json.load(open(fs.store_path(c, "upload.json")))
    assert rec["id"] == seen[-1] and rec["pointer"] == "swapped" and rec["pointer_generation"] == 3
    # .snapfs/status carries the same object.
    assert fs.status()["collections"][c]["upload"]["last_uploaded_id"] == seen[-1]


def test_snapshot_larger_than_three_parts(make_s3fs, s3, bucket, tmp_path):
    fs = make_s3fs(bucket, opts=["s3_part_size=5M", "s3_parallel=3"])
    c = fs.mkcoll("big")
    sid = fs.publish(c, big_rows=170000, body_bytes=100)
    man = fs.manifest(c, sid)
    assert man["size"] > 3 * (5 << 20), man["size"]
    u = fs.wait_upload(c, sid, timeout=300)
    nparts = -(-man["size"] // (5 << 20))
    assert u["last_uploaded"]["etag"].endswith(f"-{nparts}")
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid
    uh.check_pointer_target(s3, bucket, p, tmp_path)
    head = s3.head_object(Bucket=bucket, Key=p["keys"]["db"])
    assert head["Metadata"].get("snapfs-sha256") == man["sha256"]
    assert uh.multipart_uploads(s3, bucket) == []


def test_wrong_secret_fails_clearly_and_nothing_is_uploaded(make_s3fs, rgw, s3, bucket):
    env = uh.s3_env(rgw, AWS_SECRET_ACCESS_KEY="wrong/secret+0000000000000000000000000000")
    fs = make_s3fs(bucket, env=env)
    c = fs.mkcoll("c")
    sid = fs.publish(c)

    u = uh.wait_for(lambda: (lambda u: u if u["state"] == "failed" else False)(fs.upload(c)),
                    60, "upload state failed")
    assert "SignatureDoesNotMatch" in u["last_error"], u
    assert "403" in u["last_error"]
    assert rgw.secret_key not in u["last_error"] and "wrong/secret" not in u["last_error"]
    assert u["last_uploaded_id"] is None and u["lag"] == 1
    # The local snapshot is published and readable all the same.
    harness_ok = uh.harness.verify_snapshot(fs.snap_dir(c, sid), c)
    assert harness_ok["id"] == sid
    assert fs.status(c)["last_error"] is None
    assert uh.keys(s3, bucket) == []
    assert fs.metric("snapfs_upload_failures_total", c) >= 1
    # Not retried in a loop: a permanent error waits (60 s or the next snapshot).
    n = fs.metric("snapfs_upload_failures_total", c)
    uh.time.sleep(2)
    assert fs.metric("snapfs_upload_failures_total", c) == n
    # A new snapshot tries again (and fails the same way).
    fs.publish(c)
    uh.wait_for(lambda: fs.metric("snapfs_upload_failures_total", c) > n, 30,
                "a new attempt for the new snapshot")
    assert fs.upload(c)["lag"] == 2
    log = fs.log_text()
    assert "SignatureDoesNotMatch" in log and rgw.secret_key not in log


def test_missing_bucket_is_a_clear_error(make_s3fs, s3):
    fs = make_s3fs("no-such-bucket-snapfs")
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    u = uh.wait_for(lambda: (lambda u: u if u["state"] == "failed" else False)(fs.upload(c)),
                    60, "upload state failed")
    assert "NoSuchBucket" in u["last_error"] and "no-such-bucket-snapfs" in u["last_error"], u
    uh.harness.verify_snapshot(fs.snap_dir(c, sid), c)
    assert fs.running()
    # The mount goes on serving: another snapshot is made.
    sid2 = fs.publish(c)
    assert sid2 > sid
    assert fs.upload(c)["lag"] == 2


def test_upload_off_sends_nothing(make_s3fs, s3, bucket):
    fs = make_s3fs(bucket, opts=["s3_upload=off"])
    c = fs.mkcoll("c")
    fs.publish(c)
    fs.publish(c)
    u = fs.upload(c)
    assert u["state"] == "off" and u["lag"] == 2 and u["last_uploaded_id"] is None
    assert uh.keys(s3, bucket) == []
    # Turned on again on the same STORE: the newest is uploaded, older ones skipped.
    fs.unmount()
    fs.opts = [o for o in fs.opts if o != "s3_upload=off"]
    fs.start()
    newest = fs.latest_id(c)
    u = fs.wait_upload(c, newest)
    assert u["lag"] == 0
    ks = uh.keys(s3, bucket, f"{uh.PREFIX}{c}/snapshots/")
    assert ks == [fs.snap_key(c, newest, "MANIFEST.json"), fs.snap_key(c, newest)] or \
        sorted(ks) == sorted([fs.snap_key(c, newest, "MANIFEST.json"), fs.snap_key(c, newest)])


def test_behind_skips_to_newest(make_s3fs, s3, bucket):
    """Snapshots made while the uploader cannot keep up are not all sent:
    it goes to the newest of the collection."""
    fs = make_s3fs(bucket, opts=["s3_upload=off"])
    c = fs.mkcoll("c")
    ids = [fs.publish(c) for _ in range(4)]
    fs.unmount()
    fs.opts = [o for o in fs.opts if o != "s3_upload=off"]
    fs.start()
    u = fs.wait_upload(c, ids[-1])
    assert u["last_uploaded_id"] == ids[-1]
    assert [k for k in uh.keys(s3, bucket) if k.endswith(".sqlite3")] == [fs.snap_key(c, ids[-1])]
    assert fs.metric("snapfs_uploads_total", c) == 1


def test_prefix_and_two_collections(make_s3fs, s3, bucket, tmp_path):
    fs = make_s3fs(bucket, opts=["s3_prefix=team/a"])
    a, b = fs.mkcoll("lines"), fs.mkcoll("words")
    sa, sb = fs.publish(a), fs.publish(b)
    fs.wait_upload(a, sa)
    fs.wait_upload(b, sb)
    for coll, sid in ((a, sa), (b, sb)):
        p, _ = uh.pointer(s3, bucket, coll, prefix="team/a/")
        assert p["keys"]["db"] == fs.snap_key(coll, sid, prefix="team/a/")
        uh.check_pointer_target(s3, bucket, p, tmp_path)
    m = fs.metrics()
    assert 'snapfs_uploads_total{collection="lines"} 1' in m
    assert 'snapfs_uploads_total{collection="words"} 1' in m


@pytest.mark.parametrize("opt,msg", [
    ("s3_part_size=1M", "s3_part_size=1M"),
    ("s3_upload=maybe", "s3_upload=maybe"),
    ("s3_host_id=a/b", "s3_host_id=a/b"),
    ("s3_parallel=0", "s3_parallel=0"),
    ("s3_lease_ttl=-5", "s3_lease_ttl=-5"),
    ("s3_prefix=/abs", "s3_prefix=/abs"),
    ("s3_keep=0", "s3_keep=0"),
    ("s3_keep=101", "s3_keep=101"),
    ("s3_grace=forever", "s3_grace=forever"),
    ("s3_grace=31d", "s3_grace=31d"),
])
def test_bad_s3_options_refused_before_mounting(make_s3fs, bucket, opt, msg):
    fs = make_s3fs(bucket, opts=[opt], start=False)
    fs.expect_output(r"^snapfs: ")
    p = fs.spawn()
    assert p.wait(30) != 0
    assert msg in fs.log_text()
    assert not fs.mounted()
    assert not os.path.exists(fs.store)  # a bad option creates no STORE


def test_no_credentials_refused_before_mounting(make_s3fs, rgw, bucket):
    env = uh.s3_env(rgw, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    fs = make_s3fs(bucket, env=env, start=False)
    fs.expect_output(r"^snapfs: ")
    p = fs.spawn()
    assert p.wait(30) != 0
    assert "credentials" in fs.log_text().lower()
    assert not fs.mounted()


def test_s3_options_without_bucket_refused(make_s3fs, bucket):
    fs = make_s3fs(bucket, start=False)
    fs.expect_output(r"^snapfs: ")
    p = fs.spawn(opts=["s3_prefix=x/"])
    assert p.wait(30) != 0
    assert "without s3_bucket" in fs.log_text()


def test_credentials_never_in_argv_status_or_log(make_s3fs, rgw, bucket):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    fs.wait_upload(c, sid)
    with open(f"/proc/{fs.proc.pid}/cmdline", "rb") as f:
        assert rgw.secret_key.encode() not in f.read()
    assert rgw.secret_key not in open(fs.path(".snapfs", "status")).read()
    assert rgw.secret_key not in fs.metrics()
    assert rgw.secret_key not in fs.log_text()
