"""A pointer.json or lease.json in S3 that is not a document of its kind:
the daemon says plainly what is wrong with which key (status and metric),
never overwrites it, keeps publishing locally, and resumes by itself once
`snapfs-ctl repair` has replaced it under the lease by compare-and-swap."""

import json

from snapfs_test import upload as uh

uh.require_fuse()

GARBAGE = b'{"generation": "seven", "id": \x00 truncated'


def corrupt_metric(fs, coll, doc):
    key = f'snapfs_s3_document_corrupt{{collection="{coll}",document="{doc}"}}'
    for line in fs.metrics().splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return None


def failed_on(fs, coll, doc):
    u = fs.upload(coll)
    return u if u["state"] == "failed" and u["corrupt"] == doc else False


def test_corrupt_pointer_reported_then_repaired(make_s3fs, rgw, s3, bucket, tmp_path):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    s1 = fs.publish(c, rows=[(1, "one")])
    fs.wait_upload(c, s1)
    key = f"{uh.PREFIX}{c}/pointer.json"
    s3.put_object(Bucket=bucket, Key=key, Body=GARBAGE)

    s2 = fs.publish(c, rows=[(2, "two")])
    u = uh.wait_for(lambda: failed_on(fs, c, "pointer"), 60, "upload failed on the pointer")
    err = u["last_error"]
    assert "not a pointer document" in err and key in err and "it begins" in err, err
    assert f"snapfs-ctl repair --bucket {bucket}" in err, err
    assert corrupt_metric(fs, c, "pointer") == 1 and corrupt_metric(fs, c, "lease") == 0
    # Publishing goes on; the document is left as it was; nothing was uploaded for it.
    s3_ = fs.publish(c, rows=[(3, "three")])
    uh.harness.verify_snapshot(fs.snap_dir(c, s3_), c)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == GARBAGE
    assert fs.snap_key(c, s2) not in uh.keys(s3, bucket)

    r = json.loads(uh.ctl(rgw, "repair", "--bucket", bucket, c).stdout)
    assert r["pointer"] == "replaced" and r["repaired"] and r["lease"] == "ok"
    # The newest whole snapshot in the bucket: S1, the only one uploaded.
    assert r["snapshot"] == fs.snap_name(s1) and r["generation"] == 1
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == s1 and p["generation"] == 1
    uh.check_pointer_target(s3, bucket, p, tmp_path)

    # The daemon resumes by itself with the newest snapshot.
    u = fs.wait_upload(c, s3_, timeout=90)
    assert u["corrupt"] is None and u["last_error"] is None
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == s3_ and p["generation"] == 2 and p["history"][0]["generation"] == 1
    uh.check_pointer_target(s3, bucket, p, tmp_path)
    assert corrupt_metric(fs, c, "pointer") == 0

    # Nothing to repair now: nothing is written.
    etag = uh.pointer(s3, bucket, c)[1]
    r = json.loads(uh.ctl(rgw, "repair", "--bucket", bucket, c).stdout)
    assert not r["repaired"] and r["pointer"] == "ok"
    assert uh.pointer(s3, bucket, c)[1] == etag


def test_corrupt_lease_reported_then_repaired(make_s3fs, rgw, s3, bucket, tmp_path):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    s1 = fs.publish(c, rows=[(1, "one")])
    fs.wait_upload(c, s1)
    token = uh.pointer(s3, bucket, c)[0]["lease_token"]
    key = f"{uh.PREFIX}{c}/lease.json"
    s3.put_object(Bucket=bucket, Key=key, Body=b"[1, 2, 3]")

    s2 = fs.publish(c, rows=[(2, "two")])
    u = uh.wait_for(lambda: failed_on(fs, c, "lease"), 60, "upload failed on the lease")
    assert "not a lease document" in u["last_error"] and key in u["last_error"], u
    assert corrupt_metric(fs, c, "lease") == 1
    assert uh.pointer(s3, bucket, c)[0]["id"] == s1  # not moved without a lease

    r = json.loads(uh.ctl(rgw, "repair", "--bucket", bucket, c).stdout)
    assert r["repaired"] and r["pointer"] == "ok" and r["lease"].startswith(f"replaced (token {token + 1}")
    lease, _ = uh.lease(s3, bucket, c)
    assert lease["token"] == token + 1 and lease["expires"] == 0 and lease["owner"].startswith("snapfs-ctl/")

    s3_ = fs.publish(c, rows=[(3, "three")])
    u = fs.wait_upload(c, s3_, timeout=90)
    assert u["corrupt"] is None
    p, _ = uh.pointer(s3, bucket, c)
    assert p["id"] == s3_ and p["lease_token"] == token + 2  # the fencing token only grows
    assert corrupt_metric(fs, c, "lease") == 0
    assert s2 < s3_


def test_repair_needs_the_lease(make_s3fs, rgw, s3, bucket):
    """A corrupt pointer under a live lease of another holder: repair
    changes nothing and says who holds it."""
    c = "c"
    s3.put_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/pointer.json", Body=GARBAGE)
    doc = {"owner": "someone-else", "token": 5, "expires": uh.now() + 300,
           "acquired_at": uh.now(), "ttl": 300}
    s3.put_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/lease.json", Body=json.dumps(doc).encode())
    r = uh.ctl(rgw, "repair", "--bucket", bucket, c, check=False)
    assert r.returncode == 1 and "held by someone-else" in r.stderr, r.stderr
    assert s3.get_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/pointer.json")["Body"].read() == GARBAGE
    assert uh.lease(s3, bucket, c)[0] == doc
