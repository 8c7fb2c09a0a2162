"""The compactor cut off from S3 (its traffic goes through the fault
proxy, which then drops or blackholes every request) for longer than its
lease: it steps down before another host can take over, never writes the
pointer again under the lease it lost, and the other host takes the
collection over and publishes, with every delta that reached S3. When the
partition heals the old compactor follows, ships what it acknowledged
while cut off, and converges."""

import time
import urllib.parse

import pytest

from snapfs_test import cluster as ch
from snapfs_test import upload as uh
from snapfs_test.faultproxy import FaultProxy, Rule

uh.require_fuse()


def upstream(rgw):
    u = urllib.parse.urlparse(rgw.endpoint)
    return (u.hostname, u.port)


def watch_handover(a, b, coll, t0, timeout):
    """Polls both hosts until b holds the lease; never both at once.
    Returns (when a stopped saying it holds, when b started), monotonic."""
    a_down = None
    deadline = t0 + timeout
    while True:
        ha, hb = a.holds(coll), b.holds(coll)
        now = time.monotonic()
        assert not (ha and hb), (f"{now - t0:.1f} s after the cut, {a.name} and {b.name} both hold {coll}'s lease: "
                                 f"{a.cluster(coll)} {b.cluster(coll)}\n{a.log_text(3000)}")
        if not ha and a_down is None:
            a_down = now
        if hb:
            return a_down, now
        assert now < deadline, f"{b.name} did not take the lease in {timeout} s: {b.cluster(coll)}"
        time.sleep(0.02)


@pytest.mark.parametrize("action", ["stall", "drop"])
def test_partitioned_compactor_steps_down_and_follows(cluster, rgw, tmp_path, action):
    with FaultProxy(upstream(rgw)) as proxy:
        a = cluster.add("a", opts=["s3_role=compactor"], endpoint=proxy.url)
        b = cluster.add("b")
        # Cut off, a cannot reach S3 and says so.
        a.expect_output(r"snapfs error: ")
        a.mkcoll("c")
        cluster.wait_collection("c", [a, b])
        assert cluster.compactor("c") is a
        before = [a.send_new("c"), b.send_new("c"), a.send_new("c", how="rsync"), b.send_new("c", how="mv")]
        p0 = cluster.wait_converged("c", [a, b], shas=before)
        token_a = a.cluster("c")["lease"]["token"]
        assert p0["host"] == "a" and p0["lease_token"] == token_a

        watch = ch.PointerWatch(cluster, "c")
        watch.start()
        try:
            # The partition: every request a sends from now on goes nowhere.
            proxy.set_rules([Rule(None, "", action)])
            t0 = time.monotonic()
            shipped_by_b = [b.send_new("c")]
            left_on_a = [a.send_new("c"), a.send_new("c", how="rsync")]  # acknowledged, cannot ship
            a_down, b_up = watch_handover(a, b, "c", t0, ch.TAKEOVER_S + 30)
            print(f"\npartition ({action}): a stepped down after {a_down - t0:.1f} s, "
                  f"b took the lease after {b_up - t0:.1f} s")
            # a's lease ends ttl after its last renewal was sent; b waits ttl + 2 s
            # (+ 1 %) after it saw that renewal: a is out well before b is in.
            assert a_down is not None and a_down <= b_up - 1.0, \
                f"a stepped down {a_down - t0:.1f} s after the cut, b took over {b_up - t0:.1f} s after"
            # a renewed it at most ttl/3 before the cut; b watches it ttl + 2 s from then.
            assert b_up - t0 >= ch.TTL * 2 / 3 + 2, "b took a lease that was still being renewed"
            s = a.cluster("c")
            assert s["role"] != "compactor" and not s["lease"]["held_here"], s
            # What a acknowledged while cut off waits in its outbox (a delta being
            # tried is not shipped yet either).
            def outbox():
                s = a.cluster("c")
                assert s["outbox"] == len(left_on_a), s
                return s
            ch.wait_for(outbox, 10, f"a: {len(left_on_a)} deltas in its outbox")

            # b publishes what reached S3, under its own, higher token.
            shipped_by_b.append(b.send_new("c", how="rsync"))
            pb = cluster.wait_converged("c", [b], shas=before + shipped_by_b, timeout=60)
            assert pb["host"] == "b" and pb["lease_token"] > token_a, pb
            assert cluster.lease("c")["owner"].split("/")[0] == "b"
            # Still cut off well past its lease (and b's first swap): a keeps out.
            while time.monotonic() < t0 + ch.TAKEOVER_S + 5:
                assert not a.holds("c")
                time.sleep(0.1)
        finally:
            proxy.set_rules([])  # healed
        everything = before + shipped_by_b + left_on_a
        p = cluster.wait_converged("c", [a, b], shas=everything, timeout=120, same_id=False)
        assert b.latest_id("c") == p["id"]
        watch.finish()
        # While a can still reach S3 (the proxy goes with this block): nothing of a's is pending.
        seen = []

        def nothing_pending():
            seen[:] = [a.cluster("c")]
            return seen[0] if seen[0]["outbox"] == 0 and seen[0]["in_flight"] == 0 else None
        try:
            s = ch.wait_for(nothing_pending, 30, "a: nothing pending")
        except ch.harness.Timeout:
            raise AssertionError(f"a still has deltas pending: {seen[0]}\nS3 deltas: {cluster.keys('c', 'deltas')}\n"
                                 f"b: {b.cluster('c')}\n{a.log_text(3000)}") from None
        assert s["role"] == "follower" and s["lease"]["holder"].split("/")[0] == "b"
        assert s["pointer"]["generation"] == p["generation"] and s["lag_generations"] == 0

    # Every pointer generation: once b's token is in, a never wrote again.
    docs = watch.check()
    assert docs[-1]["host"] == "b"
    first_b = next(i for i, d in enumerate(docs) if d["host"] == "b")
    late_a = [d for d in docs[first_b:] if d["host"] == "a" or d["lease_token"] <= token_a]
    assert not late_a, f"pointer written under the lost lease after b took over: {late_a}"
    for h in (a, b):
        cluster.check_applied_once(h, "c", everything)
        assert h.count_rows("c") == 3 * len(everything)
        h.verify_all("c")
    assert cluster.compactor("c") is b
    cluster.wait_no_deltas("c")
