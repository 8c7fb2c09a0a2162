"""snapfs-ctl on a collection's part of the bucket: ls (what is there and
what the sweep does with it), sweep by hand (--dry-run first), restore of
any kept snapshot by id; and the keys: a STORE made again never writes
over the object the pointer names."""

import json
import time

from snapfs_test import upload as uh

uh.require_fuse()


def next_second():
    """Waits until the wall clock has moved to a later second (S3 times have
    second resolution): what is written after is strictly newer."""
    t = int(time.time())
    uh.wait_for(lambda: int(time.time()) > t, 5, "the next second")


def by_name(coll_doc):
    return {s["snapshot"]: s for s in coll_doc["snapshots"]}


def test_ls_dry_run_and_sweep(make_s3fs, rgw, s3, bucket, tmp_path):
    # The daemon keeps everything for an hour: what goes here goes by hand.
    fs = make_s3fs(bucket, opts=["s3_keep=2", "s3_grace=1h"])
    c = fs.mkcoll("c")
    ids = []
    for i in range(3):
        ids.append(fs.publish(c, rows=[(i, f"r{i}")]))
        fs.wait_upload(c, ids[-1])
    # An orphan (a copy of S1 under a dir no pointer named), an unknown key,
    # and another host's multipart upload; then S4, strictly newer.
    ghost = f"00000099-ghost-{'0' * 16}"
    for leaf in (f"{c}.sqlite3", "MANIFEST.json"):
        s3.copy_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/snapshots/{ghost}/{leaf}",
                       CopySource={"Bucket": bucket, "Key": fs.snap_key(c, ids[0], leaf)})
    s3.put_object(Bucket=bucket, Key=f"{uh.PREFIX}{c}/snapshots/notes.txt", Body=b"not snapfs's")
    mp_key = uh.snap_key(c, 7, "other", inst="f" * 16)
    s3.create_multipart_upload(Bucket=bucket, Key=mp_key)
    next_second()
    ids.append(fs.publish(c, rows=[(9, "r9")]))
    fs.wait_upload(c, ids[-1])
    fs.unmount()
    names = {sid: fs.snap_name(sid) for sid in ids}

    rules = ["--keep", "2", "--grace", "0s", "--upload-age", "1s"]
    uh.wait_for(lambda: uh.now() >= int(s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]
                                          ["Initiated"].timestamp()) + 1, 10, "the upload 1 s old")
    ls = json.loads(uh.ctl(rgw, "ls", "--bucket", bucket, *rules).stdout)
    assert [x["collection"] for x in ls["collections"]] == [c]
    doc = ls["collections"][0]
    snaps = by_name(doc)
    assert doc["pointer"]["snapshot"] == names[ids[3]] and doc["pointer"]["generation"] == 4
    assert [h["snapshot"] for h in doc["pointer"]["history"]] == [names[i] for i in reversed(ids[:3])]
    assert {k: (v["role"], v["action"]) for k, v in snaps.items()} == {
        names[ids[3]]: ("pointer", "keep"),
        names[ids[2]]: ("kept", "keep"),
        names[ids[1]]: ("expired", "delete"),
        names[ids[0]]: ("expired", "delete"),
        ghost: ("orphan", "delete"),
    }
    assert snaps[ghost]["host"] == "ghost" and snaps[names[ids[0]]]["instance"] == fs.instance()
    assert doc["unknown_keys"] == 1
    assert [(u["key"], u["stale"]) for u in doc["uploads"]] == [(mp_key, True)]
    assert doc["to_delete"]["snapshots"] == 3 and doc["to_delete"]["objects"] == 6

    # The same with the daemon's grace: everything unneeded waits.
    ls_wait = json.loads(uh.ctl(rgw, "ls", "--bucket", bucket, "--keep", "2", c).stdout)
    assert {v["action"] for v in ls_wait["collections"][0]["snapshots"]} == {"keep", "wait"}

    before = sorted(uh.keys(s3, bucket))
    dry = json.loads(uh.ctl(rgw, "sweep", "--dry-run", "--bucket", bucket, *rules, c).stdout)
    assert dry["collections"][0]["to_delete"] == doc["to_delete"]
    assert sorted(uh.keys(s3, bucket)) == before  # a dry run changes nothing
    assert len(uh.multipart_uploads(s3, bucket)) == 1

    done = json.loads(uh.ctl(rgw, "sweep", "--bucket", bucket, *rules, c).stdout)
    sw = done["swept"][0]
    assert sw["deleted_snapshots"] == 3 and sw["deleted_objects"] == 6 and sw["aborted_uploads"] == 1
    left = {k.split("/snapshots/")[1].split("/")[0] for k in uh.keys(s3, bucket, f"{uh.PREFIX}{c}/snapshots/")}
    assert left == {names[ids[3]], names[ids[2]], "notes.txt"}  # the unknown key is left alone
    assert uh.multipart_uploads(s3, bucket) == []
    # The lease was taken for it, and released.
    lease, _ = uh.lease(s3, bucket, c)
    assert lease["owner"].startswith("snapfs-ctl/") and lease["expires"] == 0


def test_restore_any_kept_snapshot_by_id(make_s3fs, rgw, s3, bucket, tmp_path):
    a = make_s3fs(bucket, "h1")
    b = make_s3fs(bucket, "h2")
    c = a.mkcoll("c")
    b.mkcoll("c")
    s1 = a.publish(c, rows=[(1, "one")])
    a.wait_upload(c, s1)
    s2 = a.publish(c, rows=[(2, "two")])
    a.wait_upload(c, s2)
    t1 = b.publish(c, rows=[(100, "b")])  # id 1 of host h2, too
    b.wait_upload(c, t1, state=None)
    out = tmp_path / "o"
    out.mkdir()
    # By id (only h1 has a snapshot 2), by ID-HOST, by the directory as ls shows it.
    for sid, snap in ((s2, str(s2)), (s2, f"{s2:08d}"), (s1, f"{s1:08d}-h1"), (s1, a.snap_name(s1))):
        dest = str(out / f"{snap}.sqlite3")
        r = json.loads(uh.ctl(rgw, "restore", "--bucket", bucket, c, snap, dest).stdout)
        assert r["sha256"] == a.manifest(c, sid)["sha256"] == uh.harness.sha256_file(dest), snap
        assert r["id"] == sid
    # Id 1 is in two hosts' names: the whole name is asked for.
    assert s1 == t1 == 1
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, "1", str(out / "x"), check=False)
    assert r.returncode == 2 and a.snap_name(s1) in r.stderr and b.snap_name(t1) in r.stderr, r.stderr
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, "77", str(out / "y"), check=False)
    assert r.returncode == 1 and "no snapshot \"77\"" in r.stderr
    r = uh.ctl(rgw, "restore", "--bucket", bucket, c, "../x", str(out / "y"), check=False)
    assert r.returncode == 2
    assert not (out / "x").exists() and not (out / "y").exists()


def test_recreated_store_never_overwrites_what_the_pointer_names(make_s3fs, s3, bucket, tmp_path):
    fs = make_s3fs(bucket, opts=["s3_grace=1h"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, rows=[(1, "first store")])
    fs.wait_upload(c, sid)
    p1, _ = uh.pointer(s3, bucket, c)
    old_inst = fs.instance()
    fs.unmount()
    # The STORE is lost and made again: its ids start over at 1.
    uh.harness.run(["rm", "-rf", fs.store])
    fs.start()
    c = fs.mkcoll("c")
    sid2 = fs.publish(c, rows=[(1, "second store")])
    assert sid2 == sid
    assert fs.instance() != old_inst
    fs.wait_upload(c, sid2)
    p2, _ = uh.pointer(s3, bucket, c)
    assert p2["generation"] == p1["generation"] + 1 and p2["keys"]["db"] != p1["keys"]["db"]
    # The first store's object is what it was: same ETag, same bytes as its pointer said.
    head = s3.head_object(Bucket=bucket, Key=p1["keys"]["db"])
    assert head["ETag"].strip('"') == p1["etag"]
    assert uh.download(s3, bucket, p1["keys"]["db"], str(tmp_path / "old")) == p1["sha256"]
    uh.check_pointer_target(s3, bucket, p2, tmp_path)
    assert p2["history"][0]["keys"]["db"] == p1["keys"]["db"]
