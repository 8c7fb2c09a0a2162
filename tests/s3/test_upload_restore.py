"""snapfs-ctl: restore what the pointer names (or a given snapshot) from
S3 to a local path, verified (size, SHA-256 against the manifest,
integrity_check) and written atomically; refuse a tampered object;
verify a local snapshot directory."""

import json
import os
import shutil

from snapfs_test import upload as uh

uh.require_fuse()


def test_restore_from_pointer_and_by_name(make_s3fs, rgw, s3, bucket, tmp_path):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    s1 = fs.publish(c, rows=[(1, "one")])
    fs.wait_upload(c, s1)
    s2 = fs.publish(c, rows=[(2, "two")])
    fs.wait_upload(c, s2)
    out = tmp_path / "out"
    out.mkdir()

    dest = str(out / "c.sqlite3")
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, dest)
    res = json.loads(r.stdout)
    man = fs.manifest(c, s2)
    assert res["id"] == s2 and res["sha256"] == man["sha256"] and res["generation"] == 2
    assert res["host"] == "h1" and res["integrity_check"] == "ok"
    assert uh.harness.sha256_file(dest) == man["sha256"]
    assert uh.harness.sqlite_query(dest, "SELECT body FROM items ORDER BY id", immutable=True) == [
        ("one",), ("two",)]
    assert oct(os.stat(dest).st_mode & 0o777) == "0o444"
    assert sorted(os.listdir(out)) == ["c.sqlite3"]  # no temporary file left

    # An older snapshot by its name in the bucket, over an existing DEST.
    r = uh.ctl(rgw, "restore", c, fs.snap_name(s1), dest, "--bucket", bucket)
    assert json.loads(r.stdout)["sha256"] == fs.manifest(c, s1)["sha256"]
    assert uh.harness.sha256_file(dest) == fs.manifest(c, s1)["sha256"]

    # The pointer command shows what the pointer says.
    r = uh.ctl(rgw, "pointer", "--bucket", bucket, c)
    doc = json.loads(r.stdout)
    assert doc["pointer"]["id"] == s2 and doc["key"] == f"{uh.PREFIX}{c}/pointer.json"

    # verify: the STORE's snapshot directory and the mount's.
    for d in (fs.store_path(c, "snapshots", "%08d" % s2), fs.snap_dir(c, s2)):
        v = json.loads(uh.ctl(rgw, "verify", d).stdout)
        assert v["sha256"] == man["sha256"] and v["integrity_check"] == "ok" and v["id"] == s2


def test_tampered_object_is_refused(make_s3fs, rgw, s3, bucket, tmp_path):
    fs = make_s3fs(bucket)
    c = fs.mkcoll("c")
    sid = fs.publish(c)
    fs.wait_upload(c, sid)
    key = fs.snap_key(c, sid)
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # same size, one byte different
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    out = tmp_path / "out"
    out.mkdir()
    dest = out / "c.sqlite3"
    dest.write_bytes(b"the old copy")
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, str(dest), check=False)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "refusing" in r.stderr and "SHA-256" in r.stderr and key in r.stderr, r.stderr
    assert "not written" in r.stderr
    assert r.stdout == ""
    assert dest.read_bytes() == b"the old copy"
    assert sorted(os.listdir(out)) == ["c.sqlite3"]

    # A manifest that disagrees with the pointer is refused too.
    mkey = fs.snap_key(c, sid, "MANIFEST.json")
    man = json.loads(s3.get_object(Bucket=bucket, Key=mkey)["Body"].read())
    man["sha256"] = "0" * 64
    s3.put_object(Bucket=bucket, Key=mkey, Body=json.dumps(man).encode())
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, str(dest), check=False)
    assert r.returncode == 3 and "the pointer says" in r.stderr, r.stderr
    assert dest.read_bytes() == b"the old copy"


def test_restore_without_pointer_or_bucket(make_s3fs, rgw, s3, bucket, tmp_path):
    r = uh.ctl(rgw, "restore", "--bucket", bucket, "nothing", str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and "no pointer" in r.stderr
    r = uh.ctl(rgw, "restore", "--bucket", "no-such-bucket-ctl", "c", str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and "NoSuchBucket" in r.stderr
    r = uh.ctl(rgw, "restore", "c", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "--bucket" in r.stderr
    assert not (tmp_path / "x").exists()


def test_verify_refuses_damaged_local_copies(make_s3fs, rgw, bucket, tmp_path):
    fs = make_s3fs(bucket, opts=["s3_upload=off"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, big_rows=2000)
    src = fs.store_path(c, "snapshots", "%08d" % sid)

    def copy(name):
        d = tmp_path / name
        shutil.copytree(src, d)
        for f in os.listdir(d):
            os.chmod(d / f, 0o644)
        return d

    # One byte flipped: the SHA-256 differs.
    d = copy("flipped")
    db = d / f"{c}.sqlite3"
    b = bytearray(db.read_bytes())
    b[len(b) // 2] ^= 0x01
    db.write_bytes(bytes(b))
    r = uh.ctl(rgw, "verify", str(d), check=False)
    assert r.returncode == 3 and "SHA-256" in r.stderr, r.stderr

    # Truncated: the size differs.
    d = copy("short")
    db = d / f"{c}.sqlite3"
    db.write_bytes(db.read_bytes()[:4096])
    r = uh.ctl(rgw, "verify", str(d), check=False)
    assert r.returncode == 3 and "bytes, the manifest says" in r.stderr, r.stderr

    # Damaged pages with a manifest rewritten to match: integrity_check catches it.
    d = copy("pages")
    db = d / f"{c}.sqlite3"
    b = bytearray(db.read_bytes())
    page = 4096
    for off in range(2 * page, min(len(b), 6 * page)):
        b[off] = 0x5A
    db.write_bytes(bytes(b))
    man = json.loads((d / "MANIFEST.json").read_text())
    man["sha256"] = uh.harness.sha256_file(str(db))
    (d / "MANIFEST.json").write_text(json.dumps(man))
    r = uh.ctl(rgw, "verify", str(d), check=False)
    assert r.returncode == 3 and "integrity_check" in r.stderr, r.stderr

    # Not a snapshot directory at all.
    r = uh.ctl(rgw, "verify", str(tmp_path), check=False)
    assert r.returncode == 1 and "MANIFEST.json" in r.stderr
