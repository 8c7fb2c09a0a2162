"""Retention in the bucket (s3_keep, s3_grace): the pointer's snapshot and
the keep-1 it named before stay, everything else of ours under the
collection's snapshots/ goes once it has been unneeded for the grace, and
a reader that read the pointer just before a deletion can still download
what it names for the whole grace. What the test sees is read back with
boto3; the rule it checks against is the one snapfs(8) documents."""

import json

from snapfs_test import upload as uh

uh.require_fuse()


def dirs(s3, bucket, coll):
    """{snapshot directory: sorted leaves} under PREFIX/COLL/snapshots/."""
    out = {}
    pfx = f"{uh.PREFIX}{coll}/snapshots/"
    for k in uh.keys(s3, bucket, pfx):
        d, _, leaf = k[len(pfx):].partition("/")
        out.setdefault(d, []).append(leaf)
    return {d: sorted(v) for d, v in out.items()}


def dir_of(key):
    return key.split("/snapshots/", 1)[1].split("/", 1)[0]


def expected_dirs(p, keep):
    """What the rule keeps once the grace has passed: the pointer's
    snapshot and the keep-1 generations before it."""
    want = {dir_of(p["keys"]["db"])}
    for h in p.get("history", []):
        if h["generation"] > p["generation"] - keep:
            want.add(dir_of(h["keys"]["db"]))
    return want


def converged(s3, bucket, coll, keep):
    p, _ = uh.pointer(s3, bucket, coll)
    have = dirs(s3, bucket, coll)
    want = expected_dirs(p, keep)
    if set(have) == want and all(v == sorted([f"{coll}.sqlite3", "MANIFEST.json"]) for v in have.values()):
        return p, have
    return False


def test_40_snapshots_keep_3(make_s3fs, s3, bucket, tmp_path):
    keep = 3
    fs = make_s3fs(bucket, opts=[f"s3_keep={keep}", "s3_grace=1s"])
    c = fs.mkcoll("c")
    uploaded = []
    most = 0
    for i in range(42):
        sid = fs.publish(c, rows=[(i, f"row {i}")])
        fs.wait_upload(c, sid)
        uploaded.append(sid)
        most = max(most, len(dirs(s3, bucket, c)))
        if i % 7 == 6:
            # The bucket comes back to the rule within moments of the grace.
            p, have = uh.wait_for(lambda: converged(s3, bucket, c, keep), 30,
                                  f"the bucket back to the pointer and {keep - 1} before it")
            assert len(have) == keep
    p, have = uh.wait_for(lambda: converged(s3, bucket, c, keep), 30, "the bucket converged")
    assert p["id"] == uploaded[-1] and p["generation"] == len(uploaded)
    # The pointer's history is what retention kept: the previous generations, newest first.
    gens = [h["generation"] for h in p["history"]]
    assert gens == list(range(p["generation"] - 1, p["generation"] - 1 - len(gens), -1))
    assert len(gens) >= keep - 1
    # Nothing else under the collection's prefix: the kept snapshots, pointer and lease.
    everything = set(uh.keys(s3, bucket, f"{uh.PREFIX}{c}/"))
    want = {f"{uh.PREFIX}{c}/pointer.json", f"{uh.PREFIX}{c}/lease.json"}
    for d in have:
        want |= {f"{uh.PREFIX}{c}/snapshots/{d}/{c}.sqlite3", f"{uh.PREFIX}{c}/snapshots/{d}/MANIFEST.json"}
    assert everything == want
    assert uh.multipart_uploads(s3, bucket) == []
    # Every kept snapshot is whole and matches its manifest.
    for h in [p] + [h for h in p["history"] if dir_of(h["keys"]["db"]) in have]:
        man = json.loads(s3.get_object(Bucket=bucket, Key=h["keys"]["manifest"])["Body"].read())
        sha = uh.download(s3, bucket, h["keys"]["db"], str(tmp_path / "k.sqlite3"))
        assert sha == man["sha256"]
    print(f"\n42 snapshots uploaded, at most {most} snapshot directories seen at once, "
          f"{len(have)} kept at the end")
    # Status and metrics say what is kept and what went.
    uh.wait_for(lambda: fs.upload(c)["bucket"]["objects"] == 2 * keep, 30, "status: objects kept")
    b = fs.upload(c)["bucket"]
    assert b["snapshots_kept"] == keep and b["pointer_snapshot"] == dir_of(p["keys"]["db"])
    assert b["deleted_snapshots_total"] == len(uploaded) - keep
    assert b["deleted_objects_total"] == 2 * (len(uploaded) - keep)
    assert b["sweep"]["state"] == "idle" and b["sweep"]["last_error"] is None
    assert fs.metric("snapfs_s3_deleted_objects_total", c) == 2 * (len(uploaded) - keep)
    assert fs.metric("snapfs_s3_objects", c) == 2 * keep
    sizes = sum(s3.head_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/snapshots/{d}/{leaf}")["ContentLength"]
                for d, leaves in have.items() for leaf in leaves)
    assert fs.metric("snapfs_s3_bytes", c) == sizes == b["bytes"]
    assert fs.upload(c)["bytes_uploaded_total"] == fs.metric("snapfs_upload_bytes_total", c) > 0
    assert "deleted" in fs.log_text()


def test_reader_of_the_pointer_can_download_within_the_grace(make_s3fs, s3, bucket, tmp_path):
    """keep=1, grace 8 s. S1 is deleted by a sweep once S2 has replaced it
    for the grace. A reader then fetches the pointer (S2); S3 replaces S2
    and a sweep runs behind it: the reader's S2 is still there, and whole,
    within the grace; once the grace has passed it goes too, never before."""
    grace = 8
    fs = make_s3fs(bucket, opts=["s3_keep=1", f"s3_grace={grace}s"])
    c = fs.mkcoll("c")
    s1 = fs.publish(c, rows=[(1, "one")])
    fs.wait_upload(c, s1)
    s2 = fs.publish(c, rows=[(2, "two")])
    fs.wait_upload(c, s2)
    t2 = uh.pointer(s3, bucket, c)[0]["written_at"]
    k1 = fs.snap_key(c, s1)
    uh.wait_for(lambda: k1 not in uh.keys(s3, bucket), 30, "S1 deleted by the sweep")
    assert uh.now() >= t2 + grace - 1, "S1 went before its grace (second-resolution clocks)"

    reader, _ = uh.pointer(s3, bucket, c)  # the reader's view: S2
    assert reader["id"] == s2
    s3_ = fs.publish(c, rows=[(3, "three")])
    fs.wait_upload(c, s3_)
    t3 = uh.pointer(s3, bucket, c)[0]["written_at"]
    # A sweep has run since S3 replaced S2 (it deletes behind the pointer it read).
    uh.wait_for(lambda: (lambda b: b["pointer_snapshot"] == fs.snap_name(s3_)
                         and b["sweep"]["last_at"] >= t3)(fs.upload(c)["bucket"]),
                30, "a sweep pass behind S3")
    assert uh.now() < t3 + grace, "the test ran too slowly to be within the grace"
    sha = uh.download(s3, bucket, reader["keys"]["db"], str(tmp_path / "r.sqlite3"))
    assert sha == reader["sha256"] == fs.manifest(c, s2)["sha256"]
    assert fs.upload(c)["bucket"]["waiting_for_grace"] == 1  # S2, unneeded but kept

    k2 = fs.snap_key(c, s2)
    uh.wait_for(lambda: k2 not in uh.keys(s3, bucket), 30, "S2 deleted after the grace")
    assert uh.now() >= t3 + grace - 1
    assert set(dirs(s3, bucket, c)) == {fs.snap_name(s3_)}


def plant(s3, bucket, coll, src_dir, name):
    """A copy of a snapshot's objects under another directory of our layout:
    a snapshot no pointer ever named (as a race lost or a crash leaves)."""
    for leaf in (f"{coll}.sqlite3", "MANIFEST.json"):
        s3.copy_object(Bucket=bucket, Key=f"{uh.PREFIX}{coll}/snapshots/{name}/{leaf}",
                       CopySource={"Bucket": bucket, "Key": f"{uh.PREFIX}{coll}/snapshots/{src_dir}/{leaf}"})


def next_second():
    t = int(uh.time.time())
    uh.wait_for(lambda: int(uh.time.time()) > t, 5, "the next second")


def test_orphans_go_after_the_grace_newer_ones_wait_for_the_pointer(make_s3fs, rgw, s3, bucket):
    """An orphan older than the pointer's snapshot goes once the grace has
    passed, and is counted once; one uploaded after it (it could be about
    to be swapped in) stays until the pointer moves past it."""
    grace = 3
    fs = make_s3fs(bucket, opts=["s3_keep=2", f"s3_grace={grace}s"])
    c = fs.mkcoll("c")
    s1 = fs.publish(c, rows=[(1, "one")])
    fs.wait_upload(c, s1)
    old_orphan = f"00000090-gone-{'a' * 16}"
    plant(s3, bucket, c, fs.snap_name(s1), old_orphan)
    next_second()
    s2 = fs.publish(c, rows=[(2, "two")])
    fs.wait_upload(c, s2)
    next_second()
    newer = f"00000091-racer-{'b' * 16}"
    plant(s3, bucket, c, fs.snap_name(s1), newer)
    t_newer = uh.now()

    uh.wait_for(lambda: old_orphan not in dirs(s3, bucket, c), 30, "the old orphan deleted")
    assert uh.now() >= t_newer + grace - 2  # not before the grace (seconds, clocks)
    b = fs.upload(c)["bucket"]
    assert b["orphans_found_total"] == 1 and b["newer_than_pointer"] == 1
    assert fs.metric("snapfs_s3_orphans_found_total", c) == 1
    # The newer one waits for the pointer, however long: even with no grace
    # at all the rule keeps it (snapfs-ctl ls applies the daemon's rule).
    assert newer in dirs(s3, bucket, c)
    ls = json.loads(uh.ctl(rgw, "ls", "--bucket", bucket, "--keep", "2", "--grace", "0s", c).stdout)
    role = {s["snapshot"]: (s["role"], s["action"]) for s in ls["collections"][0]["snapshots"]}
    assert role[newer] == ("newer", "keep"), role
    # Once the pointer moves past it, it is an orphan like any: it goes after the grace.
    s3_ = fs.publish(c, rows=[(3, "three")])
    fs.wait_upload(c, s3_)
    uh.wait_for(lambda: newer not in dirs(s3, bucket, c), 30, "the passed-over upload deleted")
    assert fs.upload(c)["bucket"]["orphans_found_total"] == 2
    # And S1, out of the keep window since S3, goes after its grace too.
    uh.wait_for(lambda: set(dirs(s3, bucket, c)) == {fs.snap_name(s2), fs.snap_name(s3_)}, 30,
                "the pointer's snapshot and the one before it, nothing else")
