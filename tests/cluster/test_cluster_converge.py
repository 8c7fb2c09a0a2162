"""Three hosts on one bucket: a collection made on one appears on all;
deltas copied into all three at once (cp, rsync, mv) are each applied
exactly once by the one compactor, every host ends on the same newest
snapshot (same id, same SHA-256) and S3 keeps no delta behind. A fourth
host started on an empty STORE shows every collection's newest snapshot
at once. rmdir of a collection is refused on a member."""

import errno
import os
import re

import pytest

from snapfs_test import cluster as ch
from snapfs_test import upload as uh

uh.require_fuse()

PER_HOST = int(os.environ.get("SNAPFS_CLUSTER_DELTAS", "20"))


def test_collection_made_on_one_host_appears_on_every_host(cluster):
    a, b, c = (cluster.add(h) for h in ("a", "b", "c"))
    took = {}
    for maker, name in ((a, "one"), (b, "two"), (c, "three")):
        maker.mkcoll(name)
        took[name] = cluster.wait_collection(name, [a, b, c])
        assert uh.get_json(cluster.s3, cluster.bucket, f"{ch.PREFIX}{name}/collection.json")[0] is not None
    print(f"\ncollection visible on every host after (s): {took}")
    for h in (a, b, c):
        assert set(h.status()["collections"]) == {"one", "two", "three"}
        assert sorted(os.listdir(h.path("two"))) == sorted(os.listdir(b.path("two")))
    # mkdir of a name that exists (made elsewhere) is EEXIST, as on one host.
    with pytest.raises(FileExistsError):
        os.mkdir(c.path("one"))


def test_rmdir_of_a_collection_is_refused_on_a_member(cluster):
    a, b = cluster.add("a"), cluster.add("b")
    a.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    for h in (a, b):
        with pytest.raises(OSError) as e:
            os.rmdir(h.path("c"))
        assert e.value.errno == errno.EPERM, f"{h.name}: rmdir: {e.value}"
        assert h.has("c")
    assert uh.get_json(cluster.s3, cluster.bucket, f"{ch.PREFIX}c/collection.json")[0] is not None


def cluster_status_ok(h, coll, p):
    """h has nothing pending and has applied the pointer's generation."""
    s = h.cluster(coll)
    if s["outbox"] or s["in_flight"] or s["applied_generation"] != p["generation"] or s["lag_generations"]:
        raise AssertionError(f"{h.name}: {s}")
    return s


def test_deltas_on_three_hosts_converge_applied_once(cluster, tmp_path):
    hosts = [cluster.add(h) for h in ("a", "b", "c")]
    a = hosts[0]
    a.mkcoll("c")
    cluster.wait_collection("c", hosts)
    comp = cluster.compactor("c")

    writers = [ch.Writer(h, "c", count=PER_HOST) for h in hosts]
    for w in writers:
        w.start()
    for w in writers:
        w.finish()
    acked = [s for w in writers for s in w.acked]
    assert len(acked) == 3 * PER_HOST and not any(w.maybe for w in writers)

    p = cluster.wait_converged("c", hosts, shas=acked, timeout=300)
    assert cluster.compactor("c") is comp, "the compactor changed with nobody gone"
    assert p["host"] == comp.name and p["lease_token"] == comp.cluster("c")["lease"]["token"]
    uh.check_pointer_target(cluster.s3, cluster.bucket, p, tmp_path)
    for h in hosts:
        ledger = cluster.check_applied_once(h, "c", acked)
        assert len(ledger) == len(acked)
        assert h.count_rows("c") == 3 * len(acked)
        assert h.latest("c")[1]["sha256"] == ch.harness.sha256_file(h.snap_db("c", p["id"]))
        # The status's newest snapshot is the cluster's on followers too.
        ls = ch.harness.wait_for(lambda: (lambda l: l if l and l["id"] == p["id"] else None)(
            h.status("c")["last_snapshot"]), 10, f"{h.name}: status last_snapshot {p['id']}")
        assert ls["sha256"] == p["sha256"], (h.name, ls)
        h.verify_all("c")
    cluster.wait_no_deltas("c")

    # Status: the same pointer everywhere, nothing pending, one compactor.
    sts = {h.name: ch.wait_for(lambda h=h: cluster_status_ok(h, "c", p), 30, f"{h.name} settled")
           for h in hosts}
    for h in hosts:
        s = sts[h.name]
        assert s["role"] == ("compactor" if h is comp else "follower"), (h.name, s)
        assert s["lease"]["holder"].split("/")[0] == comp.name and s["lease"]["held_here"] == (h is comp)
        assert {k: s["pointer"][k] for k in ("generation", "id", "host", "sha256")} == \
            {k: p[k] for k in ("generation", "id", "host", "sha256")}
        assert s["shipped"] == PER_HOST, (h.name, s)
        assert s["remote_rejected"] == 0 and s["last_error"] is None, (h.name, s)
        assert isinstance(s["lag_seconds"], (int, float))
        assert h.metric("snapfs_cluster_lag_generations", "c") == 0
    assert sts[comp.name]["imported"] == 3 * PER_HOST
    ch.wait_for(lambda: comp.cluster("c")["deleted"] == 3 * PER_HOST, 30, "every delta deleted from S3")
    assert re.search(r'^snapfs_cluster_\w+\{collection="c"\} ', comp.metrics(), re.M)
    for h in hosts:  # .snapfs/status: who this host is in the cluster
        root = h.status()["cluster"]
        assert root["host"] == h.name and root["instance"] == h.instance() and root["role"] == "auto"
        assert root["poll_ms"] == 200, root


def test_host_on_an_empty_store_shows_every_collection(cluster):
    a, b = cluster.add("a"), cluster.add("b")
    want = {}
    for coll, maker in (("x", a), ("y", b), ("z", a)):
        maker.mkcoll(coll)
        cluster.wait_collection(coll, [a, b])
        shas = [maker.send_new(coll) for _ in range(2)] + [(b if maker is a else a).send_new(coll)]
        want[coll] = (cluster.wait_converged(coll, [a, b], shas=shas), shas)

    d = cluster.add("d")  # a new host, empty STORE
    for coll, (p, shas) in want.items():
        got = cluster.wait_converged(coll, [a, b, d], timeout=60)
        assert got["generation"] == p["generation"]
        assert d.latest_id(coll) == p["id"]
        ch.harness.verify_snapshot(d.snap_dir(coll, p["id"]), coll)
        assert set(d.ledger_shas(coll)) == set(shas)
        assert d.query(coll, "SELECT id, body FROM items ORDER BY id") == \
            a.query(coll, "SELECT id, body FROM items ORDER BY id")
        s = d.cluster(coll)
        assert s["role"] == "follower" and s["outbox"] == 0 and s["shipped"] == 0
    assert set(d.status()["collections"]) == set(want)

    # The newcomer's deltas go in like anyone's.
    sha = d.send_new("y", how="rsync")
    cluster.wait_converged("y", [a, b, d], shas=want["y"][1] + [sha])
