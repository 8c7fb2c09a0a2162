"""kill -9 in the middle of a multipart upload, then a restart on the
same STORE: the upload is redone from the start, the pointer ends up
naming the snapshot, and the multipart upload the dead process left is
aborted (none of ours stays in progress). Unmounting in the middle of an
upload stops at once and leaves nothing behind either."""

import time

from snapfs_test import upload as uh

uh.require_fuse()

# ~120 MB: with 5 MiB parts one at a time the upload takes long enough to
# be caught in the middle.
BIG_ROWS = 1_000_000


def mid_upload(fs, coll):
    u = fs.upload(coll)
    if u["state"] == "uploading" and 0 < u["bytes_done"] < u["bytes_total"]:
        return u
    return False


def test_kill9_mid_upload_then_restart(make_s3fs, s3, bucket, tmp_path):
    opts = ["s3_part_size=5M", "s3_parallel=1"]
    fs = make_s3fs(bucket, opts=opts)
    c = fs.mkcoll("c")
    small = fs.publish(c)
    fs.wait_upload(c, small)
    p1, _ = uh.pointer(s3, bucket, c)
    assert p1["id"] == small and p1["generation"] == 1

    sid = fs.publish(c, big_rows=BIG_ROWS)
    size = fs.manifest(c, sid)["size"]
    assert size > 20 * (5 << 20)
    u = uh.wait_for(lambda: mid_upload(fs, c), 120, "an upload in progress", interval=0.01)
    assert u["bytes_total"] == size
    fs.kill9()

    # The dead process left its multipart upload in progress, and the pointer as it was.
    left = uh.multipart_uploads(s3, bucket)
    assert [k for k, _ in left] == [fs.snap_key(c, sid)], left
    assert uh.pointer(s3, bucket, c)[0] == p1
    rec = uh.json.load(open(fs.store_path(c, "upload.json")))
    assert rec["id"] == small

    fs.start()
    u = fs.wait_upload(c, sid, timeout=300)
    assert u["last_uploaded"]["size"] == size and u["lag"] == 0
    p2, _ = uh.pointer(s3, bucket, c)
    assert p2["id"] == sid and p2["generation"] == 2
    uh.check_pointer_target(s3, bucket, p2, tmp_path)
    # The sweep, beside the upload, aborted the one the dead process left.
    uh.wait_for(lambda: uh.multipart_uploads(s3, bucket) == [], 30, "no multipart upload left")
    assert "aborted 1 multipart upload(s) of host h1 left by an earlier run" in fs.log_text()
    rec = uh.json.load(open(fs.store_path(c, "upload.json")))
    assert rec["id"] == sid and rec["pointer"] == "swapped"


def test_restart_after_upload_before_swap_redoes_it(make_s3fs, s3, bucket, tmp_path):
    """A record that says "pending" (objects uploaded, pointer not yet
    swapped: what a crash between the two leaves) makes the restart upload
    that snapshot again and swap the pointer."""
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    fs.wait_upload(c, sid)
    fs.unmount()
    path = fs.store_path(c, "upload.json")
    rec = uh.json.load(open(path))
    rec["pointer"] = "pending"
    with open(path, "w") as f:
        uh.json.dump(rec, f)
    s3.delete_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/pointer.json")
    fs.start()
    fs.wait_upload(c, sid)
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == sid and p["generation"] == 1
    assert fs.metric("snapfs_uploads_total", c) == 1


def test_unmount_mid_upload_cancels_quickly(make_s3fs, s3, bucket):
    fs = make_s3fs(bucket, opts=["s3_part_size=5M", "s3_parallel=1"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, big_rows=BIG_ROWS)
    uh.wait_for(lambda: mid_upload(fs, c), 120, "an upload in progress", interval=0.01)
    t0 = time.monotonic()
    fs.unmount(timeout=30)
    took = time.monotonic() - t0
    assert took < 10, f"unmount took {took:.1f}s with an upload in progress"
    # The upload was abandoned and aborted on the server; nothing half-made stays.
    assert uh.multipart_uploads(s3, bucket) == []
    assert uh.pointer(s3, bucket, c) == (None, None)
    # The next mount uploads it.
    fs.start()
    fs.wait_upload(c, sid, timeout=300)
    assert uh.pointer(s3, bucket, c)[0]["id"] == sid


def test_start_aborts_only_our_own_stale_multipart_uploads(make_s3fs, s3, bucket):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    fs.unmount()
    ours = fs.snap_key(c, 99)
    theirs = uh.snap_key(c, 99, "h2")
    lookalike = f"{uh.PREFIX}{c}/snapshots/x99-h1/{c}.sqlite3"  # not ID-HOST
    for k in (ours, theirs, lookalike):
        s3.create_multipart_upload(Bucket=bucket, Key=k)
    fs.start()  # nothing to upload: the clean-up runs all the same
    uh.wait_for(lambda: ours not in [k for k, _ in uh.multipart_uploads(s3, bucket)], 30,
                "our stale multipart upload aborted")
    left = sorted(k for k, _ in uh.multipart_uploads(s3, bucket))
    assert left == sorted([theirs, lookalike])
    assert "aborted 1 multipart upload(s) of host h1 left by an earlier run" in fs.log_text()
    for k, uid in uh.multipart_uploads(s3, bucket):
        s3.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=uid)
