"""A bad delta copied into a host that is not the compactor is shipped
like any other, refused by the compactor with the same untrusted-input
rules as on one host, relayed through PREFIX/COLL/rejected/HOST/ and ends
in the rejected/ directory of the host that took it, under its own name,
with its reason; nothing of it is applied anywhere, and good deltas sent
beside it still are."""

import os
import re
import threading

from snapfs_test import cluster as ch
from snapfs_test import harness
from snapfs_test import upload as uh

uh.require_fuse()


def text_file(p):
    with open(p, "w") as f:
        f.write("this is not a database\n" * 20)


def truncated(p):
    harness.make_delta(p, rows=[(100000 + i, "t" * 200) for i in range(1000)])
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)


EVIL = 10 ** 9


def trigger(p):
    harness.make_delta(p, rows=[(EVIL, "evil")],
                       extra_sql=["CREATE TRIGGER tr AFTER INSERT ON items BEGIN SELECT 1; END"])


BAD = {  # name: (maker, what the reason must mention)
    "text.db": (text_file, r"sqlite|database"),
    "truncated.db": (truncated, r"truncat|torn|short|malformed|corrupt|integrity|size"),
    "trigger.db": (trigger, r"trigger"),
}


class RejectedWatch(threading.Thread):
    """Lists PREFIX/COLL/rejected/ all along; keeps every key seen with
    its user metadata."""

    def __init__(self, cluster, coll):
        super().__init__(daemon=True)
        self.cluster, self.coll, self.seen = cluster, coll, {}
        self.s3 = cluster.rgw.client()
        self.stop = threading.Event()

    def run(self):
        prefix = f"{ch.PREFIX}{self.coll}/rejected/"
        while not self.stop.wait(0.02):
            try:
                for k in uh.keys(self.s3, self.cluster.bucket, prefix):
                    if k not in self.seen:
                        try:
                            self.seen[k] = self.s3.head_object(Bucket=self.cluster.bucket, Key=k)["Metadata"]
                        except self.s3.exceptions.ClientError:
                            self.seen[k] = None  # gone already
            except Exception:  # noqa: BLE001 - a list that failed: the next one will do
                pass


def test_remote_bad_delta_ends_in_the_senders_rejected(cluster, tmp_path):
    a = cluster.add("a", opts=["s3_role=follower"])
    b = cluster.add("b", opts=["s3_role=compactor"])
    b.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    assert cluster.compactor("c") is b
    good = [a.send_new("c")]
    cluster.wait_converged("c", [a, b], shas=good)

    watch = RejectedWatch(cluster, "c")
    watch.start()
    bad = {}
    try:
        for i, (name, (make, _)) in enumerate(BAD.items()):
            src = str(tmp_path / name)
            make(src)
            bad[name] = harness.sha256_file(src)
            a.send("c", src, ch.HOWS[i % 3])
            good.append(a.send_new("c"))  # a good one right behind each bad one
        reasons = {name: a.wait_rejected("c", name, timeout=60) for name in BAD}
        p = cluster.wait_converged("c", [a, b], shas=good)
    finally:
        watch.stop.set()
        watch.join(10)

    for name, (_, pattern) in BAD.items():
        r = reasons[name]
        assert r.strip() and r.count("\n") <= 1, repr(r)
        assert r.startswith("refused by the cluster's compactor"), repr(r)  # snapfs(8), MANY HOSTS
        assert re.search(pattern, r, re.I), f"{name}: reason does not name the problem: {r!r}"
        assert harness.sha256_file(a.path("c", "rejected", name)) == bad[name], f"{name}: not the bytes sent"
    for h in (a, b):
        ledger = cluster.check_applied_once(h, "c", good)
        assert not set(bad.values()) & set(ledger)
        assert h.query("c", "SELECT count(*) FROM items WHERE id = ?", (EVIL,)) == [(0,)]
        assert h.count_rows("c") == 3 * len(good)
        h.verify_all("c")
    assert p["host"] == "b"
    cluster.wait_no_deltas("c")

    # Counted on both sides; what the watcher caught of rejected/ in S3 was a's.
    def settled():
        s = a.cluster("c")
        if s["remote_rejected"] != len(BAD) or s["outbox"] or s["in_flight"]:
            raise AssertionError(f"a: {s}")
        return s
    ch.wait_for(settled, 30, "a: its refused deltas counted, nothing pending")
    assert b.cluster("c")["relayed"] == len(BAD), b.cluster("c")
    print(f"\nseen under rejected/ in S3: {sorted(watch.seen)}")
    for k, meta in watch.seen.items():
        host, leaf = k[len(f"{ch.PREFIX}c/rejected/"):].split("/")
        assert host == "a" and leaf.split("-")[-1] in bad.values(), k
        if meta is not None:
            assert meta.get("snapfs-name") in BAD and meta.get("snapfs-reason"), (k, meta)
