"""Helpers for the multi-host tests (tests/cluster/): several snapfs
processes on one machine, each with its own STORE, mount and s3_host_id,
all on one bucket (default prefix snapfs/) of the throwaway radosgw.

  Host          an upload.S3Snapfs that is a cluster member: its status's
                "cluster" member, deltas put in as producers do (cp, rsync,
                mv), what latest shows, the ledger, every snapshot checked
  Cluster       the hosts of one test on one bucket: add hosts, find the
                compactor, wait until every host shows the pointer's
                snapshot, the S3 side (pointer, lease, deltas/)
  Writer        a thread that keeps sending deltas into one host
  PointerWatch  a thread that reads the pointer all along and keeps every
                generation it sees

Timings are short (poll 200 ms, lease ttl 15 s, batch_delay 50 ms).
Another host's lease counts as expired once it was watched unchanged for
ttl + 2 s + 1 % (tests/s3/test_upload_lease.py), so a takeover after a
compactor died comes within TAKEOVER_S of its last renewal.
"""

import hashlib
import itertools
import json
import os
import shutil
import threading
import time

from snapfs_test import harness
from snapfs_test import upload as uh

wait_for = harness.wait_for
PREFIX = uh.PREFIX
TTL = 15
POLL = "200ms"
TAKEOVER_S = TTL + 2 + 0.01 * TTL
OPTS = ("batch_delay=50", "s3_cluster=on", f"s3_poll={POLL}", f"s3_lease_ttl={TTL}")
HOWS = ("cp", "rsync", "mv")

# Row ids of the deltas made here: disjoint across every delta of a run, so
# that the rows of a snapshot count the deltas in it.
_ids = itertools.count(1)
_ids_lock = threading.Lock()


def make_rows_delta(path, nrows=3):
    """A delta of nrows new items rows (ids never used before in this run);
    returns its sha256."""
    with _ids_lock:
        ids = [next(_ids) for _ in range(nrows)]
    return harness.make_delta(path, rows=[(i, f"{os.path.basename(path)} row {i}") for i in ids])


class Host(uh.S3Snapfs):
    """One cluster member."""

    def __repr__(self):
        return f"Host({self.host_id()})"

    @property
    def name(self):
        return self.host_id()

    def cluster(self, coll):
        """The "cluster" member of coll's status."""
        return self.status(coll)["cluster"]

    def holds(self, coll):
        """Whether this host says it is coll's compactor, holding the lease."""
        c = self.cluster(coll)
        return c["role"] == "compactor" and c["lease"]["held_here"]

    def has(self, coll):
        return os.path.isdir(self.path(coll, "incoming"))

    def send(self, coll, src, how="cp", name=None):
        """Puts delta src into coll's incoming/ as a producer does: cp to
        the final name, rsync (a dot-file, then a rename), or mv from
        another file system (a copy, then an unlink). Returns when the tool
        did, i.e. when the delta is acknowledged."""
        name = name or os.path.basename(src)
        dst = self.path(coll, "incoming", name)
        if how == "cp":
            harness.run(["cp", src, dst])
        elif how == "rsync":
            harness.run(["rsync", src, dst])
        elif how == "mv":
            tmp = src + ".mv"
            shutil.copyfile(src, tmp)
            harness.run(["mv", tmp, dst])
        else:
            raise ValueError(how)
        return dst

    def send_new(self, coll, how="cp", nrows=3, name=None):
        """Makes a new delta (make_rows_delta), sends it, removes the
        source; returns its sha256."""
        self._sent = getattr(self, "_sent", 0) + 1
        name = name or f"{self.name}-{self._sent}.db"
        src = os.path.join(self.workdir, name)
        sha = make_rows_delta(src, nrows)
        self.send(coll, src, how, name)
        os.unlink(src)
        return sha

    def latest(self, coll):
        """(id, manifest) of the snapshot latest names, or None."""
        sid = self.latest_id(coll)
        if sid is None:
            return None
        return sid, self.manifest(coll, sid)

    def ledger_shas(self, coll, sid=None):
        """The ledger's sha256 of every row (a delta applied twice shows
        twice) of snapshot sid (default latest)."""
        return [r[0].lower() for r in self.query(coll, "SELECT sha256 FROM _snapfs_ledger", sid=sid)]

    def count_rows(self, coll, sid=None):
        return self.query(coll, "SELECT count(*) FROM items", sid=sid)[0][0]

    def verify_all(self, coll):
        """Every snapshot this host shows: the file is its MANIFEST's (sha256,
        size) and passes integrity_check. Returns {id: sha256}."""
        out = {}
        for sid in self.snapshot_ids(coll):
            m = harness.verify_snapshot(self.snap_dir(coll, sid), coll)
            assert m["id"] == sid, f"{self.name}: snapshots/{sid:08d} has the manifest of {m['id']}"
            out[sid] = m["sha256"]
        return out


class Cluster:
    """The hosts of one test, all on one bucket. Closed (and each host's
    log checked) by the fixture that made it."""

    def __init__(self, root, rgw, bucket):
        self.root, self.rgw, self.bucket = str(root), rgw, bucket
        self.s3 = rgw.client()
        self.hosts = []

    def add(self, host_id, opts=(), start=True, endpoint=None, name=None, timeout=60):
        """A new host on a STORE of its own (in a dir named name, default
        host_id): OPTS, s3_bucket, s3_host_id, then opts (an option given
        in opts replaces the default of the same name)."""
        d = os.path.join(self.root, name or host_id)
        os.makedirs(d)
        o = dict(o.split("=", 1) for o in OPTS)
        o.update(s3_bucket=self.bucket, s3_host_id=host_id)
        if endpoint:
            o["s3_endpoint"] = endpoint
        o.update(x.split("=", 1) for x in opts)
        h = Host(d, uh.s3_env(self.rgw), [f"{k}={v}" for k, v in o.items()])
        self.hosts.append(h)
        if start:
            h.start(timeout=timeout)
        return h

    def running(self):
        return [h for h in self.hosts if h.running()]

    def close(self):
        harness.close_all(self.hosts)

    # -- the S3 side

    def pointer(self, coll):
        return uh.pointer(self.s3, self.bucket, coll)[0]

    def lease(self, coll):
        return uh.lease(self.s3, self.bucket, coll)[0]

    def keys(self, coll, area):
        """Keys under PREFIX/coll/area/ (deltas, rejected, snapshots)."""
        return uh.keys(self.s3, self.bucket, f"{PREFIX}{coll}/{area}/")

    def wait_no_deltas(self, coll, timeout=60):
        """Waits until nothing is left under coll/deltas/ in S3."""
        return wait_for(lambda: self.keys(coll, "deltas") == [] or None, timeout,
                        f"{coll}/deltas/ empty in S3 (left: {self.keys(coll, 'deltas')[:3]})")

    # -- the hosts

    def wait_collection(self, coll, hosts=None, timeout=10):
        """Waits until coll is a collection in every host's mount; returns
        how long it took."""
        hosts = hosts or self.running()
        t0 = time.monotonic()
        wait_for(lambda: all(h.has(coll) for h in hosts), timeout,
                 f"collection {coll} on {[h.name for h in hosts if not h.has(coll)]}")
        return time.monotonic() - t0

    def compactor(self, coll, hosts=None, timeout=60):
        """Waits until exactly one of hosts (default the running ones) holds
        coll's lease; returns it."""
        def one():
            hs = hosts or self.running()
            held = [h for h in hs if h.holds(coll)]
            assert len(held) <= 1, f"{coll}: two hosts say they hold the lease: {held}"
            return held[0] if held else False
        return wait_for(one, timeout, f"one compactor of {coll}", interval=0.05)

    def wait_converged(self, coll, hosts=None, shas=(), timeout=180, same_id=True):
        """Waits until the pointer's snapshot holds every sha in shas and
        every host (default: the running ones) shows it as latest: the same
        sha256 in MANIFEST.json and, with same_id, the same id. Returns the
        pointer."""
        want = {s.lower() for s in shas}

        def done():
            p = self.pointer(coll)
            if p is None:
                return False
            for h in hosts or self.running():
                h.check_alive()
                lt = h.latest(coll)
                if lt is None or lt[1]["sha256"] != p["sha256"] or (same_id and lt[0] != p["id"]):
                    raise AssertionError(f"{h.name}: latest {lt and (lt[0], lt[1]['sha256'][:12])}; pointer "
                                         f"generation {p['generation']}: {p['id']} {p['sha256'][:12]}")
            if want:
                h = (hosts or self.running())[0]
                missing = want - set(h.ledger_shas(coll))
                if missing:
                    raise AssertionError(f"{len(missing)} of {len(want)} deltas not in the pointer's snapshot")
            return p
        return wait_for(done, timeout, f"every host on {coll}'s newest snapshot", interval=0.1)

    def check_applied_once(self, h, coll, acked, maybe=()):
        """h's latest snapshot holds every acknowledged delta once, nothing
        but acknowledged ones (and maybe: deltas whose cp failed because
        their host was killed), and the rows of exactly those deltas."""
        ledger = h.ledger_shas(coll)
        acked = {s.lower() for s in acked}
        dups = {s for s in ledger if ledger.count(s) > 1}
        assert not dups, f"{h.name}: deltas applied twice: {sorted(dups)[:3]}"
        assert acked <= set(ledger), f"{h.name}: {len(acked - set(ledger))} acknowledged deltas lost"
        extra = set(ledger) - acked - {s.lower() for s in maybe}
        assert not extra, f"{h.name}: {len(extra)} deltas applied that nobody sent"
        return ledger


class Writer(threading.Thread):
    """Keeps sending new deltas (cp, rsync, mv in turn) into one host until
    stopped or count is reached. acked: the shas whose tool returned 0;
    maybe: those whose tool failed while the host was being killed (they
    may or may not have been taken)."""

    def __init__(self, host, coll, count=None, pause=0.0):
        super().__init__(daemon=True, name=f"writer-{host.name}")
        self.host, self.coll, self.count, self.pause = host, coll, count, pause
        self.acked, self.maybe, self.errors = [], [], []
        self.stop = threading.Event()
        self.hold = threading.Event()  # set: do not write (the host is down)

    def run(self):
        n = 0
        while not self.stop.is_set() and (self.count is None or n < self.count):
            if self.hold.is_set() or not self.host.running():
                time.sleep(0.05)
                continue
            n += 1
            name = f"{self.host.name}-w{n}.db"
            src = os.path.join(self.host.workdir, name)
            sha = make_rows_delta(src)
            try:
                self.host.send(self.coll, src, HOWS[n % len(HOWS)], name)
                self.acked.append(sha)
            except (AssertionError, OSError) as e:
                if self.host.running() and not self.hold.is_set():
                    self.errors.append(f"{name}: {e}")
                self.maybe.append(sha)
            finally:
                for p in (src, src + ".mv"):
                    if os.path.exists(p):
                        os.unlink(p)
            if self.pause:
                time.sleep(self.pause)

    def finish(self, timeout=300):
        """Ends the thread (at once, or once count deltas were sent) and
        asserts that every write to a running host succeeded."""
        if self.count is None:
            self.stop.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not end"
        assert not self.errors, f"{self.name}: {self.errors[:3]}"


class PointerWatch(threading.Thread):
    """Reads coll's pointer every interval and keeps each generation it
    sees (seen: generation -> document, in the order seen). check() then
    says whether the pointer only ever moved forward: generations, ids and
    lease tokens never go back."""

    def __init__(self, cluster, coll, interval=0.02):
        super().__init__(daemon=True, name=f"pointer-{coll}")
        self.s3 = cluster.rgw.client()
        self.bucket, self.coll, self.interval = cluster.bucket, coll, interval
        self.seen = {}
        self.order = []
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                p, _ = uh.pointer(self.s3, self.bucket, self.coll)
                if p is not None and p["generation"] not in self.seen:
                    self.seen[p["generation"]] = p
                    self.order.append(p["generation"])
            except Exception as e:  # noqa: BLE001 - kept, reported by check
                self.errors.append(repr(e))
            time.sleep(self.interval)

    def finish(self):
        self.stop.set()
        self.join(30)

    def check(self):
        """Asserts the pointer only moved forward; returns the documents in
        generation order."""
        assert not self.errors, self.errors[:3]
        assert self.order == sorted(self.order), f"pointer generations went back: {self.order}"
        docs = [self.seen[g] for g in self.order]
        for a, b in zip(docs, docs[1:]):
            assert b["id"] > a["id"], f"snapshot id went back: {a['id']} -> {b['id']} ({a['host']} -> {b['host']})"
            assert b["lease_token"] >= a["lease_token"], \
                f"lease token went back: {a['lease_token']} ({a['host']}) -> {b['lease_token']} ({b['host']})"
        return docs


def flip_byte(data, at=None):
    """data with one byte changed (in the middle by default)."""
    b = bytearray(data)
    i = len(b) // 2 if at is None else at
    b[i] ^= 0x5A
    return bytes(b)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def put_json(s3, bucket, key, doc):
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
