#!/usr/bin/env python3
"""Many hosts on one bucket: the three figures of issue 9, side by side
with their baselines in one run, on one machine with one throwaway Ceph
RADOS Gateway (tests/pylib/snapfs_test/radosgw.py).

  follow    a ~SIZE_MB collection; each round a small delta goes to the
            compactor host A, and the time is taken from the moment the
            pointer moves (pointer.json polled every 20 ms with boto3) to
            the new snapshot visible on follower B (its `latest`, after
            B's download, SHA-256 and integrity_check). Baseline, same
            round, alternating order: `aws s3 cp` of the same object with
            no verification at all. Target: follower <= 1.0 x aws + one
            s3_poll.
  e2e       three hosts A (writer), B (compactor), C (reader) and a
            ~E2E_MB collection: time from `cp` of a small delta into A's
            incoming/ to its row readable with sqlite3 on C. Target:
            batch_delay + 2 x s3_poll + 2 s.
  failover  kill -9 of the compactor B while deltas keep coming on A:
            time to the next snapshot published (by A, which takes the
            lease). Target: s3_lease_ttl + 5 s.

Every round is printed, then the median and the range, and the load
average before and after (the machine may be shared).

usage: bench/cluster.py [--size-mb 600] [--e2e-mb 50] [--rounds 5]
                        [--poll 1s] [--ttl 15] [--build build] [--workdir DIR]
                        [follow] [e2e] [failover]
"""

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))  # a script: the test package by path
from snapfs_test import harness, radosgw, upload  # noqa: E402


def parse_ms(s):
    for suf, mult in (("ms", 1), ("s", 1000), ("m", 60000)):
        if s.endswith(suf) and s[: -len(suf)].isdigit():
            return int(s[: -len(suf)]) * mult
    return int(s) * 1000


class Host(upload.S3Snapfs):
    """A mount with its own environment (the test package's), plus what the bench reads."""

    def latest_ok(self, coll):
        try:
            return int(os.readlink(self.path(coll, "latest")).rsplit("/", 1)[1])
        except (OSError, ValueError):
            return 0

    def role(self, coll):
        try:
            return self.status(coll)["cluster"]["role"]
        except (OSError, KeyError, ValueError):
            return None


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summary(name, xs, unit="s"):
    xs = sorted(xs)
    return f"{name}: median {statistics.median(xs):.2f} {unit}, range {xs[0]:.2f}-{xs[-1]:.2f} {unit} ({len(xs)} rounds)"


def tiny_delta(path, rid):
    if os.path.exists(path):
        os.unlink(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO t VALUES(?, ?)", (rid, f"row {rid}"))
    db.commit()
    db.close()


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="snapfs-bench-cluster-", dir=a.workdir)
        need = max(6 << 30, a.size_mb * (1 << 20) * 6 + (2 << 30))
        self.gw = radosgw.RadosGW(memstore_bytes=need)
        self.gw.start()
        self.s3 = self.gw.client()
        self.hosts = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(self.gw.env())
        self.env["AWS_SHARED_CREDENTIALS_FILE"] = self.env["AWS_CONFIG_FILE"] = "/nonexistent"
        self.n = 0

    def host(self, bucket, hid, role="auto"):
        d = os.path.join(self.work, f"{bucket}-{hid}")
        os.makedirs(d)
        opts = ["batch_delay=50", "keep=2", f"s3_bucket={bucket}", f"s3_host_id={hid}", f"s3_role={role}",
                f"s3_poll={self.a.poll}", f"s3_lease_ttl={self.a.ttl}", "s3_keep=2", "s3_grace=0s"]
        h = Host(d, self.env, opts)
        h.start(timeout=60)
        self.hosts.append(h)
        return h

    def close(self):
        for h in self.hosts:
            try:
                if h.running():
                    h.unmount(timeout=60)
            except Exception as e:  # noqa: BLE001 - a bench cleans up whatever happens
                print(f"(cleanup: {e})", file=sys.stderr)
        self.gw.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def pointer_gen(self, bucket, coll):
        try:
            import json
            r = self.s3.get_object(Bucket=bucket, Key=f"snapfs/{coll}/pointer.json")
            return json.loads(r["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def big_collection(self, h, coll, mb):
        h.mkcoll(coll)
        src = os.path.join(self.work, f"big-{coll}.db")
        harness.make_big_delta(src, 1_000_000, mb * (1 << 20) // 118)
        h.submit(coll, src)
        os.unlink(src)

    def send(self, h, coll):
        self.n += 1
        src = os.path.join(self.work, f"d{self.n}.db")
        tiny_delta(src, self.n)
        subprocess.run(["cp", src, h.path(coll, "incoming", f"d{self.n}.db")], check=True)
        return self.n

    def follow(self):
        a, coll, bucket = self.a, "big", self.gw.create_bucket("bench-follow")
        A = self.host(bucket, "a", "compactor")
        B = self.host(bucket, "b", "follower")
        self.big_collection(A, coll, a.size_mb)
        harness.wait_for(lambda: B.latest_ok(coll) and B.latest_ok(coll) == A.latest_ok(coll), 600,
                         "the big collection on the follower")
        poll_s = parse_ms(a.poll) / 1000
        fol, aws = [], []
        for r in range(a.rounds):
            g0 = self.pointer_gen(bucket, coll)["generation"]
            self.send(A, coll)
            while (p := self.pointer_gen(bucket, coll)) is None or p["generation"] == g0:
                time.sleep(0.02)
            t0 = time.monotonic()
            harness.wait_for(lambda: B.latest_ok(coll) >= p["id"], 600, "follower shows it", interval=0.01)
            tf = time.monotonic() - t0
            dst = os.path.join(self.work, "aws-copy.db")
            t1 = time.monotonic()
            subprocess.run(["aws", "s3", "cp", "--only-show-errors", f"s3://{bucket}/{p['keys']['db']}", dst],
                           check=True, env=self.env)
            ta = time.monotonic() - t1
            os.unlink(dst)
            fol.append(tf)
            aws.append(ta)
            print(f"follow round {r + 1}: follower {tf:.2f} s, aws s3 cp {ta:.2f} s, ratio {tf / ta:.2f} "
                  f"(target <= 1.0 + poll {poll_s:.1f} s: {ta + poll_s:.2f} s); {p['size'] / 1e6:.0f} MB",
                  flush=True)
        print(summary("follower (pointer move to verified snapshot visible)", fol))
        print(summary("aws s3 cp, no verification", aws))
        print(f"median ratio follower / aws: {statistics.median(fol) / statistics.median(aws):.2f}; "
              f"median follower - (aws + poll): {statistics.median(fol) - statistics.median(aws) - poll_s:+.2f} s")

    def e2e(self):
        a, coll, bucket = self.a, "mid", self.gw.create_bucket("bench-e2e")
        B = self.host(bucket, "b", "compactor")
        A = self.host(bucket, "a", "follower")
        C = self.host(bucket, "c", "follower")
        self.big_collection(B, coll, a.e2e_mb)
        harness.wait_for(lambda: C.latest_ok(coll) and C.latest_ok(coll) == B.latest_ok(coll), 300,
                         "the collection on C")
        xs = []
        for r in range(a.rounds):
            t0 = time.monotonic()
            rid = self.send(A, coll)

            def seen():
                sid = C.latest_ok(coll)
                if not sid:
                    return False
                try:
                    return bool(C.query(coll, "SELECT 1 FROM t WHERE id = ?", (rid,), sid=sid))
                except Exception:  # noqa: BLE001 - a snapshot retired under us: look again
                    return False
            harness.wait_for(seen, 120, f"row {rid} on C", interval=0.01)
            dt = time.monotonic() - t0
            xs.append(dt)
            print(f"e2e round {r + 1}: {dt:.2f} s (target {0.05 + 2 * parse_ms(a.poll) / 1000 + 2:.2f} s)",
                  flush=True)
        print(summary(f"cp on A to the row on C (compactor B, {a.e2e_mb} MB)", xs))

    def failover(self):
        a, coll, bucket = self.a, "fo", self.gw.create_bucket("bench-failover")
        xs = []
        A = self.host(bucket, "a", "auto")
        for r in range(a.rounds):
            B = self.host(bucket, f"b{r}", "compactor")
            if r == 0:
                B.mkcoll(coll)
            harness.wait_for(lambda: coll in os.listdir(A.mnt) and coll in os.listdir(B.mnt), 30, "collection")
            # B must hold the lease: A (auto) lets a free one be for a few polls.
            harness.wait_for(lambda: B.role(coll) == "compactor", 120, "B compacts")
            self.send(A, coll)
            harness.wait_for(lambda: A.latest_ok(coll) == B.latest_ok(coll) and A.latest_ok(coll), 60, "settled")
            before = A.latest_ok(coll)
            B.kill9()
            t0 = time.monotonic()
            self.send(A, coll)
            harness.wait_for(lambda: A.latest_ok(coll) > before, a.ttl + 120, "next snapshot", interval=0.05)
            dt = time.monotonic() - t0
            xs.append(dt)
            print(f"failover round {r + 1}: {dt:.2f} s (target {a.ttl + 5} s)", flush=True)
            # A compacts now; the next round's B (role compactor) waits for A's lease to be released or expire.
            A.unmount(timeout=60)
            A.start(timeout=60)
        print(summary(f"kill -9 of the compactor to the next snapshot (s3_lease_ttl={a.ttl})", xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--e2e-mb", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--poll", default="1s")
    ap.add_argument("--ttl", type=int, default=15)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("what", nargs="*", default=["follow", "e2e", "failover"])
    a = ap.parse_args()
    harness.SNAPFS_BIN = os.path.join(a.build, "src", "mount", "snapfs")
    if not shutil.which("aws"):
        sys.exit("bench/cluster.py: the aws command (awscli) is not installed")
    why = radosgw.unavailable_reason() or harness.fuse_unusable()
    if why:
        sys.exit(f"bench/cluster.py: {why}")
    print(f"bench/cluster.py {' '.join(a.what)}: {os.cpu_count()} cores, load {loadavg()}, "
          f"s3_poll={a.poll}, s3_lease_ttl={a.ttl}, {a.rounds} rounds", flush=True)
    b = Bench(a)
    try:
        for w in a.what:
            getattr(b, w)()
            print(f"(load after {w}: {loadavg()})", flush=True)
    finally:
        b.close()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    main()
