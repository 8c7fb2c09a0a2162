"""kill -9 at random moments while snapshots upload, the pointer swaps and
the sweep deletes behind it, again and again. A poller reads the pointer
all along and checks every generation it sees at once: it names a whole
object whose SHA-256 is the pointer's and its manifest's. After the last
kill the bucket converges to the retention rule, with no multipart
upload left."""

import json
import os
import random
import threading
import time
import urllib.parse

from snapfs_test import upload as uh
from snapfs_test.faultproxy import FaultProxy, Rule  # noqa: E402
from test_upload_retention import converged  # noqa: E402

uh.require_fuse()

ROUNDS = int(os.environ.get("SNAPFS_KILL_ROUNDS", "10"))
KEEP = 2
GRACE = 3  # long enough for the checker to check what it saw before it may go


class Checker(threading.Thread):
    """Reads the pointer as fast as it can; checks each new value at once."""

    def __init__(self, rgw, bucket, coll, tmp):
        super().__init__(daemon=True)
        self.s3 = rgw.client()
        self.bucket, self.coll, self.tmp = bucket, coll, tmp
        self.seen = {}  # generation -> pointer document
        self.bad = []
        self.stop = threading.Event()

    def check(self, p):
        man = json.loads(self.s3.get_object(Bucket=self.bucket, Key=p["keys"]["manifest"])["Body"].read())
        sha = uh.download(self.s3, self.bucket, p["keys"]["db"], os.path.join(self.tmp, "chk"))
        head = self.s3.head_object(Bucket=self.bucket, Key=p["keys"]["db"])
        if not (sha == p["sha256"] == man["sha256"] and head["ContentLength"] == p["size"] == man["size"]
                and head["ETag"].strip('"') == p["etag"]):
            self.bad.append((p["generation"], sha, p, man))

    def run(self):
        while not self.stop.is_set():
            try:
                p, _ = uh.pointer(self.s3, self.bucket, self.coll)
                if p is not None and p["generation"] not in self.seen:
                    self.seen[p["generation"]] = p
                    self.check(p)
            except Exception as e:  # noqa: BLE001 - a read that failed is a bad read
                self.bad.append(("error", repr(e)))
            time.sleep(0.005)


# Answers held back a little (the daemon goes through the fault proxy), so
# that each phase lasts long enough to be killed in: a part, the pointer's
# PUT (the swap), the DeleteObjects of a sweep.
SLOW = [Rule("PUT", "partNumber=", "delay", 0.2), Rule("PUT", "pointer.json", "delay", 0.4),
        Rule("POST", "?delete", "delay", 0.4)]


def test_kill9_during_upload_swap_and_sweep(make_s3fs, rgw, s3, bucket, tmp_path):
    seed = int(os.environ.get("SNAPFS_KILL_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    print(f"\nseed {seed}, {ROUNDS} rounds")
    u = urllib.parse.urlparse(rgw.endpoint)
    proxy = FaultProxy((u.hostname, u.port), rules=SLOW).start()
    fs = make_s3fs(bucket, opts=[f"s3_endpoint={proxy.url}", f"s3_keep={KEEP}", f"s3_grace={GRACE}s",
                                 "s3_lease_ttl=15", "s3_part_size=5M", "s3_parallel=2"])
    c = fs.mkcoll("c")
    sid = fs.publish(c, big_rows=60_000)
    fs.wait_upload(c, sid, timeout=120)
    chk = Checker(rgw, bucket, c, str(tmp_path))
    chk.start()
    phases = []
    try:
        for r in range(ROUNDS):
            fs.publish(c, big_rows=60_000, first_id=1_000_000 * (r + 1))
            # Aim at one phase (the upload, the swap, the sweep behind it), then a
            # random moment more; a phase too short to catch is killed near it.
            aim = rnd.choice(["uploading", "swapping", "sweeping"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                u = fs.upload(c)
                now = u["bucket"]["sweep"]["state"] if aim == "sweeping" else u["state"]
                if now == aim:
                    break
            time.sleep(rnd.uniform(0, 0.3))
            u = fs.upload(c)
            phases.append(f"{aim}->{u['state']}/{u['bucket']['sweep']['state']}")
            fs.kill9()
            fs.start()
        # The last start ships the newest snapshot and the sweep cleans up.
        newest = fs.latest_id(c)
        fs.wait_upload(c, newest, timeout=300)
        p, have = uh.wait_for(lambda: converged(s3, bucket, c, KEEP), GRACE + 90,
                              "the bucket converged to the retention rule")
        uh.wait_for(lambda: uh.multipart_uploads(s3, bucket) == [], 60, "no multipart upload left")
        uh.wait_for(lambda: p["generation"] in chk.seen, 10, "the checker saw the last generation")
    finally:
        chk.stop.set()
        chk.join(60)
        if fs.running():
            fs.unmount()
        proxy.stop()
    print("killed while (upload/sweep): " + ", ".join(phases))
    print(f"pointer generations seen and checked: {sorted(chk.seen)}")
    assert not chk.bad, chk.bad[:3]
    assert p["id"] == newest and len(have) == KEEP
    gens = sorted(chk.seen)
    assert gens == sorted(set(gens)) and gens[-1] == p["generation"]
    everything = set(uh.keys(s3, bucket, f"{uh.PREFIX}{c}/"))
    want = {f"{uh.PREFIX}{c}/pointer.json", f"{uh.PREFIX}{c}/lease.json"}
    for d in have:
        want |= {f"{uh.PREFIX}{c}/snapshots/{d}/{c}.sqlite3", f"{uh.PREFIX}{c}/snapshots/{d}/MANIFEST.json"}
    assert everything == want
