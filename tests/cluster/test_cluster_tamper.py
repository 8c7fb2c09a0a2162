"""A follower never shows a snapshot that is not the one the pointer and
its manifest describe: when the bytes of the object the pointer names are
changed in S3 (same size), or a hand-written pointer names an object
whose bytes are not the ones it claims, the follower refuses it, says why
in its status and keeps serving the snapshot it had; the next genuine
snapshot is shown as usual."""

import json
import re
import time

from snapfs_test import cluster as ch
from snapfs_test import upload as uh

uh.require_fuse()

WHY = re.compile(r"sha-?256|etag|checksum|hash|mismatch|differ|verif|integrity", re.I)


def refused(b, coll, keep_id, bad_id, bad_sha, observe_s=3.0):
    """Waits until b's status says why it refused; then, for observe_s,
    b keeps showing keep_id and never bad_id nor a file with bad_sha."""
    def error():
        s = b.cluster(coll)
        if not s["last_error"]:
            raise AssertionError(f"latest {b.latest_id(coll)}, snapshots {b.snapshot_ids(coll)}, status {s}")
        return s["last_error"]
    err = ch.wait_for(error, 30, f"{b.name}: a verification error in status")
    assert WHY.search(err), f"status does not say why: {err!r}"
    deadline = time.monotonic() + observe_s
    while time.monotonic() < deadline:
        assert b.latest_id(coll) == keep_id
        assert bad_id not in b.snapshot_ids(coll)
        time.sleep(0.1)
    shown = b.verify_all(coll)
    assert bad_sha not in shown.values()
    assert b.cluster(coll)["last_error"], "the error went away without a good snapshot"
    return err


def test_follower_refuses_a_changed_snapshot_object(cluster):
    a = cluster.add("a", opts=["s3_role=compactor"])
    b = cluster.add("b", opts=["s3_role=follower"])
    b.expect_output(r"snapfs error: ")  # it says so in its log too
    a.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    s1 = [a.send_new("c")]
    p1 = cluster.wait_converged("c", [a, b], shas=s1)

    # b away; a publishes S2; then S2's database object changes in S3.
    b.unmount()
    s2 = s1 + [a.send_new("c")]
    p2 = cluster.wait_converged("c", [a], shas=s2)
    key = p2["keys"]["db"]
    obj = cluster.s3.get_object(Bucket=cluster.bucket, Key=key)
    bad = ch.flip_byte(obj["Body"].read())
    assert len(bad) == p2["size"]
    cluster.s3.put_object(Bucket=cluster.bucket, Key=key, Body=bad, Metadata=obj["Metadata"])

    b.start(timeout=30)
    err = refused(b, "c", p1["id"], p2["id"], ch.sha256(bad))
    print(f"\nfollower refused the changed object: {err}")
    assert b.cluster("c")["pointer"]["generation"] == p2["generation"]  # it saw it, and refused it

    # The next genuine snapshot is shown.
    s3_ = s2 + [a.send_new("c")]
    p3 = cluster.wait_converged("c", [a, b], shas=s3_)
    assert p3["generation"] > p2["generation"]
    b.verify_all("c")
    cluster.check_applied_once(b, "c", s3_)


def test_follower_refuses_a_pointer_whose_object_is_not_its_sha256(cluster):
    a = cluster.add("a", opts=["s3_role=compactor"])
    b = cluster.add("b", opts=["s3_role=follower"])
    b.expect_output(r"snapfs error: ")
    a.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    shas = [a.send_new("c"), b.send_new("c")]
    p = cluster.wait_converged("c", [a, b], shas=shas)
    a.unmount()  # nobody compacts: the hand-written pointer stays

    # A "next" snapshot: pointer and manifest agree (id, size, sha256 of
    # bytes nobody has), the ETag is the object's, but the object's bytes
    # are not that sha256.
    body = cluster.s3.get_object(Bucket=cluster.bucket, Key=p["keys"]["db"])["Body"].read()
    bad = ch.flip_byte(body)
    claimed = ch.sha256(ch.flip_byte(body, len(body) // 3))
    man = json.loads(cluster.s3.get_object(Bucket=cluster.bucket, Key=p["keys"]["manifest"])["Body"].read())
    fid = p["id"] + 1
    man.update(id=fid, sha256=claimed)
    d = f"{uh.PREFIX}c/snapshots/{fid:08d}-a-{a.instance()}"
    put = cluster.s3.put_object(Bucket=cluster.bucket, Key=f"{d}/c.sqlite3", Body=bad)
    ch.put_json(cluster.s3, cluster.bucket, f"{d}/MANIFEST.json", man)
    forged = dict(p, generation=p["generation"] + 1, id=fid, sha256=claimed, etag=put["ETag"].strip('"'),
                  keys={"db": f"{d}/c.sqlite3", "manifest": f"{d}/MANIFEST.json"},
                  written_at=uh.now())
    ch.put_json(cluster.s3, cluster.bucket, f"{uh.PREFIX}c/pointer.json", forged)

    err = refused(b, "c", p["id"], fid, ch.sha256(bad))
    print(f"\nfollower refused the forged pointer: {err}")
    assert b.cluster("c")["pointer"]["generation"] == forged["generation"]
    assert set(b.ledger_shas("c")) == set(shas)
