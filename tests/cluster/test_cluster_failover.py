"""kill -9 of the compactor host at random moments (mid-merge, mid-seal,
mid-upload, mid-swap: deltas keep coming, so it is always busy), round
after round, while the other hosts keep taking deltas: another host takes
the lease within ttl + a few seconds and publishes; the killed host,
started again on its STORE, follows and converges. In the end no
acknowledged delta is lost or applied twice, the pointer only ever moved
forward, and no host ever showed a snapshot whose file is not its
manifest's. A compactor restarted on its own STORE takes its lease back
at once, without waiting for it to expire."""

import os
import random
import re
import sqlite3
import threading
import time

from snapfs_test import cluster as ch
from snapfs_test import upload as uh

uh.require_fuse()

ROUNDS = int(os.environ.get("SNAPFS_CLUSTER_KILL_ROUNDS", "3"))
# ttl + 2 s + 1 % of watching after the last renewal, then a few polls (an
# auto host lets a free lease be for 3 of them) and some slack for CI.
TAKEOVER_WITHIN = ch.TAKEOVER_S + 5


class Reader(threading.Thread):
    """Reads whatever latest names on every running host, again and again:
    the file must be its MANIFEST's and pass integrity_check."""

    def __init__(self, hosts, coll):
        super().__init__(daemon=True, name="reader")
        self.hosts, self.coll = hosts, coll
        self.checked, self.bad = 0, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.3):
            for h in list(self.hosts):
                try:
                    sid = h.latest_id(self.coll) if h.running() else None
                    if sid is not None:
                        ch.harness.verify_snapshot(h.snap_dir(self.coll, sid), self.coll)
                        self.checked += 1
                except (AssertionError, ValueError) as e:  # a mismatch, a torn MANIFEST.json
                    if h.running():
                        self.bad.append(f"{h.name}: {e!r}")
                except sqlite3.Error as e:
                    if h.running() and re.search(r"malformed|not a database|corrupt", str(e)):
                        self.bad.append(f"{h.name}: {e!r}")
                except OSError:
                    pass  # retired between readlink and open, or the host was just killed


def phase(st):
    """What a compactor's collection status says it is doing."""
    u = st.get("upload") or {}
    return st["state"] if st["state"] != "idle" else u.get("state", "idle")


def kill_compactor(cluster, coll, rnd, writers):
    """Kills coll's compactor while it is in a phase chosen at random (a
    phase too short to catch: near it), then at a random moment more;
    returns it and the time of the kill."""
    comp = cluster.compactor(coll)
    aim = rnd.choice(["merging", "sealing", "uploading", "swapping"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and phase(comp.status(coll)) != aim:
        pass
    time.sleep(rnd.uniform(0, 0.2))
    now = phase(comp.status(coll))
    writers[comp.name].hold.set()
    t0 = time.monotonic()
    comp.kill9()
    print(f"killed {comp.name} aiming at {aim}, while {now}")
    return comp, t0


def test_kill9_of_the_compactor_repeatedly(cluster, tmp_path):
    seed = int(os.environ.get("SNAPFS_KILL_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    print(f"\nseed {seed}, {ROUNDS} rounds")
    hosts = [cluster.add(h) for h in ("a", "b", "c")]
    hosts[0].mkcoll("c")
    cluster.wait_collection("c", hosts)
    first = [hosts[1].send_new("c")]
    cluster.wait_converged("c", hosts, shas=first)

    watch = ch.PointerWatch(cluster, "c")
    reader = Reader(hosts, "c")
    writers = {h.name: ch.Writer(h, "c", pause=0.1) for h in hosts}
    for t in [watch, reader, *writers.values()]:
        t.start()
    timings = []
    try:
        for r in range(ROUNDS):
            ch.wait_for(lambda: sum(len(w.acked) for w in writers.values()) >= 10 * (r + 1), 60,
                        "deltas coming in")
            gen0 = cluster.pointer("c")["generation"]
            dead, t0 = kill_compactor(cluster, "c", rnd, writers)
            survivors = [h for h in hosts if h is not dead]
            new = cluster.compactor("c", survivors, timeout=TAKEOVER_WITHIN + 10)
            took = time.monotonic() - t0
            assert new is not dead
            assert took <= TAKEOVER_WITHIN, f"round {r}: {new.name} took the lease {took:.1f} s after the kill"
            lease = cluster.lease("c")
            assert lease["owner"].split("/")[0] == new.name, lease
            # The next snapshot comes from the new compactor.
            p = ch.wait_for(lambda: (lambda p: p if p["generation"] > gen0 and p["host"] == new.name else None)(
                cluster.pointer("c")), 60, f"a pointer written by {new.name}")
            timings.append((dead.name, new.name, round(took, 1), round(time.monotonic() - t0, 1)))
            assert p["lease_token"] == lease["token"]
            dead.start(timeout=30)  # on its STORE
            writers[dead.name].hold.clear()
        for w in writers.values():
            w.finish()
    finally:
        for w in writers.values():
            w.stop.set()
        reader.stop.set()
        watch.finish()
    print("killed -> new compactor, lease taken after (s), its first pointer after (s): "
          + ", ".join(map(str, timings)))

    acked = first + [s for w in writers.values() for s in w.acked]
    maybe = [s for w in writers.values() for s in w.maybe]
    p = cluster.wait_converged("c", hosts, shas=acked, timeout=300, same_id=False)
    reader.join(10)
    print(f"reader checked {reader.checked} snapshots; pointer generations seen: {len(watch.seen)}; "
          f"deltas acknowledged {len(acked)}, uncertain (cp cut by a kill) {len(maybe)}")
    assert not reader.bad, reader.bad[:3]
    docs = watch.check()
    assert docs, "the watcher saw no pointer"
    uh.check_pointer_target(cluster.s3, cluster.bucket, p, tmp_path)
    for h in hosts:
        ledger = cluster.check_applied_once(h, "c", acked, maybe)
        assert h.count_rows("c") == 3 * len(ledger)
        h.verify_all("c")
        ch.wait_for(lambda h=h: (lambda s: s if s["outbox"] == 0 and s["in_flight"] == 0 else None)(
            h.cluster("c")), 60, f"{h.name}: nothing pending")
    cluster.wait_no_deltas("c")
    # Followers that never died show the pointer's snapshot under the pointer's id.
    comp = cluster.compactor("c")
    for h in hosts:
        if h is not comp and h.starts == 1:
            assert h.latest_id("c") == p["id"], h.name


def test_restarted_compactor_takes_its_lease_back_at_once(cluster):
    a = cluster.add("a", opts=["s3_role=compactor"])
    b = cluster.add("b")
    a.mkcoll("c")
    cluster.wait_collection("c", [a, b])
    assert cluster.compactor("c") is a
    s1 = a.send_new("c")
    cluster.wait_converged("c", [a, b], shas=[s1])
    token = a.cluster("c")["lease"]["token"]

    a.kill9()
    t0 = time.monotonic()
    a.start()
    assert cluster.compactor("c", timeout=ch.TTL) is a
    took = time.monotonic() - t0
    print(f"\nthe restarted compactor held its lease again {took:.1f} s after the kill")
    assert took < ch.TTL, f"waited {took:.1f} s: for its own lease to expire?"
    assert a.cluster("c")["lease"]["token"] >= token
    assert not b.holds("c")
    # It publishes again: a delta of each host gets in.
    shas = [s1, a.send_new("c"), b.send_new("c", how="mv")]
    p = cluster.wait_converged("c", [a, b], shas=shas)
    assert p["host"] == "a"
    for h in (a, b):
        cluster.check_applied_once(h, "c", shas)


def test_a_follower_never_takes_the_lease(cluster):
    """s3_role=follower: even with the compactor dead past its lease, the
    follower only follows (and keeps its deltas in S3 for a compactor to come)."""
    a = cluster.add("a", opts=["s3_role=compactor"])
    f = cluster.add("f", opts=["s3_role=follower"])
    a.mkcoll("c")
    cluster.wait_collection("c", [a, f])
    shas = [f.send_new("c")]
    p = cluster.wait_converged("c", [a, f], shas=shas)
    a.kill9()
    shas.append(f.send_new("c"))
    deadline = time.monotonic() + ch.TAKEOVER_S + 5
    while time.monotonic() < deadline:
        s = f.cluster("c")
        assert s["role"] == "follower" and not s["lease"]["held_here"], s
        time.sleep(0.2)
    assert cluster.pointer("c")["generation"] == p["generation"]
    ch.wait_for(lambda: f.cluster("c")["outbox"] == 0 or None, 30, "f: its delta shipped")
    assert any(k.endswith("-" + shas[-1]) for k in cluster.keys("c", "deltas"))
    # The compactor back: it applies what f shipped meanwhile.
    a.start(timeout=30)
    cluster.wait_converged("c", [a, f], shas=shas)
    cluster.wait_no_deltas("c")
    assert f.status()["cluster"]["role"] == "follower"
