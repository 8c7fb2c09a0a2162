"""A server with little space: radosgw with a bucket quota of 64 MiB, and
a collection whose snapshot is more than a quarter of it. With retention
the sweep frees what the pointer no longer needs and every upload goes
through; without, the server fills, the status says so in the server's
words, local snapshots keep coming, and once space is freed shipping
resumes by itself with the newest snapshot."""


from snapfs_test import upload as uh

uh.require_fuse()

QUOTA = 64 << 20
ROWS = 170_000  # about 19 MB: more than a quarter of the quota


def set_quota(rgw, bucket, size):
    rgw.admin("quota", "set", "--quota-scope=bucket", f"--bucket={bucket}", f"--max-size={size}")
    rgw.admin("quota", "enable", "--quota-scope=bucket", f"--bucket={bucket}")


def bytes_in(s3, bucket):
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def snapshot_dirs(s3, bucket, coll):
    return {k.split("/snapshots/")[1].split("/")[0]
            for k in uh.keys(s3, bucket, f"{uh.PREFIX}{coll}/snapshots/")}


def grow(fs, coll, i):
    """A delta that changes a few rows: the snapshot stays about as large."""
    return fs.publish(coll, rows=[(j, f"round {i} row {j}") for j in range(i * 10, i * 10 + 10)])


def test_retention_keeps_uploads_succeeding(make_s3fs, rgw, s3, bucket):
    set_quota(rgw, bucket, QUOTA)
    keep = 2
    fs = make_s3fs(bucket, opts=[f"s3_keep={keep}", "s3_grace=0s", "s3_part_size=5M"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, big_rows=ROWS)
    size = fs.manifest(c, sid)["size"]
    assert size > QUOTA // 4, size
    fs.wait_upload(c, sid, timeout=300)
    for i in range(1, 7):
        # Retention has freed what the pointer no longer needs...
        uh.wait_for(lambda: len(snapshot_dirs(s3, bucket, c)) <= keep, 60,
                    f"at most {keep} snapshots in the bucket")
        # ...so the next upload goes through at once.
        sid = grow(fs, c, i)
        fs.wait_upload(c, sid, timeout=300)
        assert bytes_in(s3, bucket) <= QUOTA
    assert fs.metric("snapfs_upload_failures_total", c) == 0
    assert fs.metric("snapfs_uploads_total", c) == 7
    u = fs.upload(c)
    assert not u["server_full"] and u["error_code"] is None
    assert u["bucket"]["deleted_snapshots_total"] >= 7 - keep - 1
    assert uh.pointer(s3, bucket, c)[0]["id"] == sid


def test_full_server_is_reported_and_shipping_resumes(make_s3fs, rgw, s3, bucket):
    set_quota(rgw, bucket, QUOTA)
    fs = make_s3fs(bucket, opts=["s3_keep=all", "s3_part_size=5M"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, big_rows=ROWS)
    fs.wait_upload(c, sid, timeout=300)
    shipped = [sid]
    # Without retention every snapshot stays: the quota is reached.
    for i in range(1, 8):
        sid = grow(fs, c, i)
        u = uh.wait_for(lambda: (lambda u: u if (u["last_uploaded_id"] or 0) >= sid and u["state"] == "idle"
                                 or u["state"] == "failed" else False)(fs.upload(c)), 300,
                        "the upload done, or failed")
        if u["state"] == "failed":
            break
        shipped.append(sid)
    else:
        raise AssertionError("the server never filled up")
    # Plainly: failed, full, in the server's words, in status and metrics.
    u = fs.upload(c)
    assert u["server_full"] and u["error_code"] == "QuotaExceeded", u
    assert "the S3 server is full or over quota" in u["last_error"] and "QuotaExceeded" in u["last_error"]
    assert "local snapshots are still published" in u["last_error"]
    assert fs.metric("snapfs_upload_server_full", c) == 1
    assert f'snapfs_upload_error{{collection="{c}",code="QuotaExceeded"}} 1' in fs.metrics()
    assert "QuotaExceeded" in fs.log_text()
    # The failed upload left nothing half-made behind.
    uh.wait_for(lambda: uh.multipart_uploads(s3, bucket) == [], 30, "the failed upload aborted")
    # Local snapshots keep coming.
    newest = grow(fs, c, 20)
    uh.harness.verify_snapshot(fs.snap_dir(c, newest), c)
    assert fs.status(c)["last_error"] is None
    assert fs.upload(c)["lag"] >= 1

    # Space is freed (an operator deletes the oldest snapshots): shipping
    # resumes by itself, with the newest snapshot.
    p, _ = uh.pointer(s3, bucket, c)
    for old in shipped[:-1]:
        for leaf in (f"{c}.sqlite3", "MANIFEST.json"):
            s3.delete_object(Bucket=bucket, Key=fs.snap_key(c, old, leaf))
    u = fs.wait_upload(c, newest, timeout=120)
    assert not u["server_full"] and u["error_code"] is None and u["lag"] == 0
    assert uh.pointer(s3, bucket, c)[0]["id"] == newest
    assert fs.metric("snapfs_upload_server_full", c) == 0
    assert "snapfs_upload_error{" not in fs.metrics()
