"""A host id names one STORE in the cluster (its claim,
PREFIX/.cluster/hosts/HOST.json, names the STORE's instance): a second
snapfs with the same s3_host_id on another STORE is refused before it
mounts, with a message naming the host id, while the first goes on
working. The STORE that holds the claim starts again at once after a
kill -9; another STORE gets the id only once the claim has stopped
changing (its owner is dead)."""

import re
import time

from snapfs_test import cluster as ch
from snapfs_test import upload as uh

uh.require_fuse()

DECIDE_WITHIN = 16 + 14  # the claim is watched up to 16 s; slack for CI


def claim(cluster, host):
    return uh.get_json(cluster.s3, cluster.bucket, f"{ch.PREFIX}.cluster/hosts/{host}.json")[0]


def test_second_store_with_the_same_host_id_is_refused(cluster):
    a = cluster.add("h1")
    assert claim(cluster, "h1")["instance"] == a.instance()
    a.mkcoll("c")

    twin = cluster.add("h1", name="h1-twin", start=False)
    twin.expect_output(r"^snapfs: |snapfs error: ")
    t0 = time.monotonic()
    rc = twin.spawn().wait(DECIDE_WITHIN + 30)
    took = time.monotonic() - t0
    log = twin.log_text()
    print(f"\nthe twin exited {rc} after {took:.1f} s: {log.strip().splitlines()[-1]}")
    assert rc != 0
    assert took <= DECIDE_WITHIN, f"it took {took:.1f} s to refuse"
    assert "h1" in log and re.search(r"in use by another|another (snapfs )?instance", log, re.I), log
    assert not twin.mounted()

    # The first goes on as if nothing happened: its claim, its collection, its deltas.
    assert claim(cluster, "h1")["instance"] == a.instance()
    sha = a.send_new("c")
    cluster.wait_converged("c", [a], shas=[sha])
    assert a.cluster("c")["last_error"] is None
    assert a.status()["cluster"]["host"] == "h1"


def test_the_claim_follows_its_store(cluster):
    a = cluster.add("h1")
    b = cluster.add("h2")
    a.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    shas = [a.send_new("c")]
    cluster.wait_converged("c", [a, b], shas=shas)

    # Killed and started again on its STORE: the claim is its own, no wait.
    a.kill9()
    t0 = time.monotonic()
    a.start(timeout=10)
    print(f"\nrestarted on its STORE, mounted after {time.monotonic() - t0:.1f} s")
    assert claim(cluster, "h1")["instance"] == a.instance()

    # Killed for good: a new STORE may use h1 once the claim stopped changing.
    a.kill9()
    new = cluster.add("h1", name="h1-new", start=False)
    t0 = time.monotonic()
    new.start(timeout=DECIDE_WITHIN + 30)
    print(f"a new STORE took host id h1 after {time.monotonic() - t0:.1f} s")
    assert claim(cluster, "h1")["instance"] == new.instance() != a.instance()
    cluster.wait_collection("c", [new, b])
    shas.append(new.send_new("c"))
    cluster.wait_converged("c", [new, b], shas=shas)
