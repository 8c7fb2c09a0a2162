"""Two snapfs processes (two STOREs, two mounts) publish the same
collection to the same bucket and prefix, with different host ids, at
the same time. The pointer is polled with boto3 throughout: it only ever
moves forward, one generation at a time, and every value seen names a
fully uploaded snapshot whose SHA-256 matches. The host that loses a
race says so in its status."""

import os
import threading

from snapfs_test import upload as uh

uh.require_fuse()


class PointerPoller(threading.Thread):
    """Reads the pointer as fast as it can; keeps every value seen, in order."""

    def __init__(self, rgw, bucket, coll):
        super().__init__(daemon=True)
        self.s3 = rgw.client()
        self.bucket, self.coll = bucket, coll
        self.seen = []  # (generation, etag, doc), in the order seen
        self.stop = threading.Event()
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            try:
                doc, etag = uh.pointer(self.s3, self.bucket, self.coll)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                continue
            if doc is not None and (not self.seen or self.seen[-1][1] != etag):
                self.seen.append((doc["generation"], etag, doc))


def settled(fs, coll, sid):
    u = fs.upload(coll)
    if (u["last_uploaded_id"] or 0) >= sid and u["state"] in ("idle", "conflict"):
        return u
    return False


def test_two_hosts_race_for_the_pointer(make_s3fs, rgw, s3, bucket, tmp_path):
    a = make_s3fs(bucket, "hostA", opts=["s3_part_size=5M"])
    b = make_s3fs(bucket, "hostB", opts=["s3_part_size=5M"])
    coll = a.mkcoll("c")
    b.mkcoll("c")
    poller = PointerPoller(rgw, bucket, coll)
    poller.start()
    conflicts = []  # (round, host, last_error)
    rounds = 0
    try:
        while rounds < 4 or (not conflicts and rounds < 12):
            rounds += 1
            # Deltas of the same size for both, submitted at the same moment:
            # both read the pointer, upload for a while, then race to swap.
            srcs = {}
            for fs, first in ((a, 1), (b, 1_000_000)):
                src = os.path.join(fs.workdir, f"r{rounds}.db")
                uh.harness.make_big_delta(src, first + rounds * 100_000, 60_000)
                srcs[fs] = src
            before = {fs: fs.latest_id(coll) or 0 for fs in (a, b)}
            ts = [threading.Thread(target=fs.submit, args=(coll, srcs[fs])) for fs in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for fs in (a, b):
                uh.wait_for(lambda fs=fs: (fs.latest_id(coll) or 0) > before[fs], 120,
                            f"{fs.opts} new snapshot")
                sid = fs.latest_id(coll)
                u = uh.wait_for(lambda fs=fs, sid=sid: settled(fs, coll, sid), 180,
                                f"round {rounds}: snapshot {sid} uploaded and settled")
                if u["state"] == "conflict":
                    conflicts.append((rounds, fs, u["last_error"]))
                os.unlink(srcs[fs])
    finally:
        poller.stop.set()
        poller.join(30)

    assert not poller.errors, poller.errors[:3]
    seen = poller.seen
    assert seen, "the pointer was never seen"
    # Only forward, one generation per swap, one value per generation.
    gens = [g for g, _, _ in seen]
    assert gens == sorted(gens), f"pointer went backwards: {gens}"
    assert len(set(gens)) == len(gens), f"two values for one generation: {gens}"
    # Every value seen names a whole snapshot that matches its manifest.
    for g, etag, doc in seen:
        uh.check_pointer_target(s3, bucket, doc, tmp_path)
        assert doc["host"] in ("hostA", "hostB")
        assert doc["keys"]["db"] == {"hostA": a, "hostB": b}[doc["host"]].snap_key(coll, doc["id"])

    # The losers said so, naming who moved the pointer.
    assert conflicts, f"no conflict in {rounds} rounds"
    for rnd, fs, err in conflicts:
        assert "pointer moved by host" in err and "to generation" in err, err

    # The final generation counts every successful swap of both hosts.
    final, _ = uh.pointer(s3, bucket, coll)
    swaps = sum(fs.metric("snapfs_uploads_total", coll) - fs.metric("snapfs_pointer_conflicts_total", coll)
                for fs in (a, b))
    assert final["generation"] == swaps, (final, swaps)
    assert sum(fs.metric("snapfs_pointer_conflicts_total", coll) for fs in (a, b)) == len(conflicts)
    assert uh.lease(s3, bucket, coll)[0]["expires"] == 0
    assert uh.multipart_uploads(s3, bucket) == []
