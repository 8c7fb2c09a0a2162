#!/usr/bin/env python3
"""Chaos run for snapfs: writers, readers and kill -9, then a full audit.

One real snapfs daemon (foreground, harness.Snapfs) on a STORE of its own.
While it runs:

  writers   each good writer copies its own deltas into MOUNT/COLL/incoming/
            with one tool: `cp` straight to the final name, `rsync` (temp
            dot-file, then rename) or `cp` to a dot-name then `mv`. A delta
            is ACKNOWLEDGED when that command exited 0. A command that
            failed because the daemon was killed under it is retried, after
            the restart, under the SAME name with the SAME bytes (so a first
            attempt that did land makes the retry a duplicate, which must
            not be applied twice). Now and then a writer also re-sends an
            old acknowledged delta under a new name: a duplicate too.
  corrupt   a writer of deltas that must all be rejected: truncated files,
            random bytes, a zeroed page, an empty file, schema conflicts,
            tables without a primary key, triggers, views, generated columns.
  readers   resolve latest, copy the snapshot (`cp`, via latest/ or via
            snapshots/ID/) or query it in place (`sqlite3 -readonly`), and
            check it against the MANIFEST.json of the same snapshot:
            sha256, size, PRAGMA integrity_check, ledger_max, row count;
            a slow reader reads an open snapshot in chunks over a while,
            so that retention retires it meanwhile.
  killer    SIGKILLs the daemon at random moments, some aimed at "merging"
            or "sealing" (it polls .snapfs/status), some right after a
            start, some before the mount is even up (during recovery);
            after each kill it audits the STORE as the kill left it, then
            restarts snapfs on the same STORE with randomly chosen options.

At the end: writers stop, the daemon is restarted one last time, the
harness waits (with a deadline) until every acknowledged delta is in the
ledger of latest and every queue is empty and idle, unmounts (exit 0
required), and audits the STORE and the last snapshot.

Every delta's content is unique and known, so the audit replays the
ledger of the last snapshot, in seq order, over what each delta holds and
compares the result with the tables:

  items   each delta's own id range (rows nobody else writes), with values
          derived from its name; each delta also deletes the rows of its
          writer's delta 4 back, so a delta replayed after its deleter
          brings rows back
  reg     64 keys per collection that every delta overwrites a few of: the
          value must be the delta with the highest ledger seq that wrote it
  marks   each delta inserts a marker and deletes its predecessor's
  wstate  per writer, the last delta applied

Counters (all but the first four must be 0; any non-zero one fails the run):

  kills            SIGKILLs sent to the daemon
  acknowledged     good deltas whose writing command exited 0
  applied          acknowledged deltas in the ledger (latest snapshot at the
                   end; the live database at each kill)
  rejected         files in rejected/ (corrupt deltas, torn partials)
  LOST             an acknowledged good delta not in the ledger at the end,
                   or, at a kill, found neither in the live ledger nor in
                   queue/ nor in incoming/; an acknowledged corrupt delta
                   not in rejected/
  APPLIED TWICE    a ledger sha256 twice; a delta in the "deltas" of two
                   manifests with different seq; rows, reg values, markers
                   or wstate of a delta that a later-applied delta replaced
                   or deleted (the delta was applied again after it)
  TORN             a read that succeeded but whose bytes do not match the
                   manifest of the same snapshot directory (sha256, size),
                   or integrity_check != ok, or ledger_max / row count off
  LEFTOVER         after a restart, staging/ entries the kill left; at the
                   end any entry in staging/ or queue/, a non-dot file in
                   incoming/, a *.tmp crumb anywhere in the STORE, or a
                   rejected delta without its .reason
  CORRUPT APPLIED  a corrupt delta (or a torn partial, or anything of
                   unknown content) in the ledger, its rows or its tables
  WRONG MERGE      tables that differ from the ledger replay otherwise
                   (rows missing or with wrong values, ghost rows of a
                   delta that is not in the ledger)
  BAD SNAPSHOT     a directory in snapshots/ that fails verify_snapshot
  ID ERRORS        a snapshot id reused (new id <= an id used before a
                   crash, or one id seen with two sha256), latest moving
                   back, ledger_max not increasing with the id, latest
                   not the newest snapshot at the end
  READ ERRORS      a read that failed while the daemon was up and the
                   snapshot still listed (not ENOTCONN/ENOENT of a kill or
                   of retention)
  WRITE ERRORS     a write command that failed while the daemon was up
  HANGS            a command or status read that outlived its deadline
                   while the daemon was up
  DAEMON DIED      the daemon exited without being killed
  RESTART FAILED   the daemon could not start again on its STORE (the run
                   stops there)
  SANITIZER        an ASan/UBSan/LSan report in a daemon log
  UNCLEAN EXIT     the final unmount did not end the daemon with status 0
  S3 ERRORS        (--s3) the pointer went back, names something whose
                   size, SHA-256 or ETag is not its manifest's or pointer's,
                   or that fails integrity_check, or is not latest at the
                   end; multipart uploads left after the clean stop

--s3 starts a throwaway radosgw (tests/pylib/snapfs_test/radosgw.py) behind the fault
proxy (tests/pylib/snapfs_test/faultproxy.py), which now and then answers 503 SlowDown
or resets a request body; snapfs uploads through it (s3_lease_ttl=15, so
a lease held by a killed daemon is waited out).

Usage:
  python3 tests/chaos/chaos.py --kills 30 --snapfs build/src/mount/snapfs
  python3 tests/chaos/chaos.py --kills 1000 --snapfs build/src/mount/snapfs   # long round
  python3 tests/chaos/chaos.py --kills 30 --s3 --snapfs build/src/mount/snapfs
Exit status: 0 all counters clean, 1 a failure, 2 usage, 77 FUSE unusable
(SNAPFS_REQUIRE_FUSE=1 makes that 1) or, with --s3, no radosgw
(SNAPFS_REQUIRE_S3=1 makes that 1).
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))  # a script: pytest.ini does not apply
from snapfs_test import harness  # noqa: E402

EXIT_SKIP = 77
CMD_TIMEOUT = 60          # a cp/rsync/mv/sqlite3 that takes longer is a HANG
STATUS_TIMEOUT = 10       # a status read that takes longer is a HANG
MAX_ATTEMPTS = 6          # writes of one delta before it is abandoned
REG_KEYS = 64
DELETE_BACK = 4           # each delta deletes the rows of its writer's delta k-4
KEEP_SOURCES = 64         # a writer keeps the files of its last deltas per collection (re-sends)
WRITER_STRIDE = 10 ** 12  # id space per writer
DELTA_STRIDE = 10 ** 6    # id space per delta (rows per delta stay below it)
CORRUPT_WRITER = 900      # id space of the corrupt writers (900, 901, ...)
FAIL_KEYS = ("lost", "twice", "torn", "leftover", "corrupt_applied", "wrong", "bad_snapshots",
             "id_errors", "read_errors", "write_errors", "hangs", "daemon_died",
             "restart_failed", "sanitizer", "unclean_exit", "s3")
LABELS = {"lost": "LOST", "twice": "APPLIED TWICE", "torn": "TORN", "leftover": "LEFTOVER",
          "corrupt_applied": "CORRUPT APPLIED", "wrong": "WRONG MERGE",
          "bad_snapshots": "BAD SNAPSHOT", "id_errors": "ID ERRORS",
          "read_errors": "READ ERRORS", "write_errors": "WRITE ERRORS", "hangs": "HANGS",
          "daemon_died": "DAEMON DIED", "restart_failed": "RESTART FAILED",
          "sanitizer": "SANITIZER", "unclean_exit": "UNCLEAN EXIT", "s3": "S3 ERRORS"}

SCHEMA = (
    "CREATE TABLE items(id INTEGER PRIMARY KEY, delta TEXT, n INTEGER, body TEXT)",
    "CREATE TABLE reg(k INTEGER PRIMARY KEY, delta TEXT)",
    "CREATE TABLE marks(id INTEGER PRIMARY KEY, delta TEXT)",
    "CREATE TABLE wstate(writer TEXT PRIMARY KEY, delta TEXT, k INTEGER)",
)
TABLES = {"items", "reg", "marks", "wstate"}
FILL_ITEMS = ("WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x + 1 < :n) "
              "INSERT INTO items SELECT :lo + x, :name, x, printf('%s:%d:%.*c', :name, x, :pad, 'x') FROM s")
FILL_DELETES = ("WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x + 1 < :n) "
                "INSERT INTO _snapfs_delete_items SELECT :lo + x FROM s")
CHECK_ITEMS = ("SELECT count(*) FROM items WHERE id >= :lo AND id < :hi AND delta = :name "
               "AND n = id - :lo AND body = printf('%s:%d:%.*c', :name, id - :lo, :pad, 'x')")
CORRUPT_KINDS = ("truncated", "random", "header-random", "zeroed-page", "empty", "no-pk",
                 "trigger", "view", "columns-conflict", "pk-conflict", "generated")


def now():
    return time.monotonic()


def sha256_file(path):
    return harness.sha256_file(path)


# ------------------------------------------------------------------ deltas

class Delta:
    """A good delta: what it holds is known, so its effect can be checked."""

    def __init__(self, name, coll, writer, k, method, lo, n, pad, reg, mark, del_mark, del_items):
        self.name, self.coll, self.writer, self.k, self.method = name, coll, writer, k, method
        self.lo, self.n, self.pad = lo, n, pad
        self.reg, self.mark, self.del_mark, self.del_items = reg, mark, del_mark, del_items
        self.sha = None
        self.path = None
        self.acked = False
        self.attempts = 0
        self.corrupt = False

    def __repr__(self):
        return f"{self.coll}/{self.name}"


class Resend:
    """The same bytes as an earlier acknowledged delta, sent again under a
    new name: a duplicate, which must never be applied (nor its name land
    in the ledger)."""

    def __init__(self, orig, name):
        self.orig, self.name, self.coll, self.path, self.sha = orig, name, orig.coll, orig.path, orig.sha
        self.acked = False
        self.attempts = 0
        self.corrupt = False
        self.resend = True

    def __repr__(self):
        return f"{self.coll}/{self.name} (re-send of {self.orig.name})"


class Corrupt:
    """A delta that must be rejected; lo/n: rows it carries (if any)."""

    def __init__(self, name, coll, kind, lo, n):
        self.name, self.coll, self.kind, self.lo, self.n = name, coll, kind, lo, n
        self.sha = None
        self.path = None
        self.acked = False
        self.attempts = 0
        self.corrupt = True
        self.pad = 20

    def __repr__(self):
        return f"{self.coll}/{self.name} ({self.kind})"


def _new_db(path):
    if os.path.exists(path):
        os.unlink(path)
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=OFF")
    c.execute("PRAGMA synchronous=OFF")
    return c


def make_good(path, d):
    c = _new_db(path)
    try:
        for s in SCHEMA:
            c.execute(s)
        c.execute("CREATE TABLE _snapfs_delete_items(id INTEGER PRIMARY KEY)")
        c.execute("CREATE TABLE _snapfs_delete_marks(id INTEGER PRIMARY KEY)")
        c.execute(FILL_ITEMS, {"n": d.n, "lo": d.lo, "name": d.name, "pad": d.pad})
        for lo, n in d.del_items:
            c.execute(FILL_DELETES, {"n": n, "lo": lo})
        if d.del_mark is not None:
            c.execute("INSERT INTO _snapfs_delete_marks VALUES(?)", (d.del_mark,))
        c.executemany("INSERT INTO reg VALUES(?, ?)", [(k, d.name) for k in d.reg])
        c.execute("INSERT INTO marks VALUES(?, ?)", (d.mark, d.name))
        c.execute("INSERT INTO wstate VALUES(?, ?, ?)", (d.writer, d.name, d.k))
        c.commit()
    finally:
        c.close()
    d.path = path
    d.sha = sha256_file(path)
    return d


def _items_db(path, lo, n, name, pad, schema=SCHEMA[0]):
    c = _new_db(path)
    c.execute(schema)
    c.execute(FILL_ITEMS, {"n": n, "lo": lo, "name": name, "pad": pad})
    return c


def make_corrupt(path, x, rng):
    """Writes corrupt delta x (x.kind) at path; every kind is one the
    contract says is rejected. Kinds that hold rows hold x's own ids."""
    kind = x.kind
    if kind in ("truncated", "zeroed-page"):
        c = _items_db(path, x.lo, x.n, x.name, x.pad)
        c.commit()
        c.close()
        size = os.path.getsize(path)
        if kind == "truncated":
            # at least one page short of what the header says: never valid
            with open(path, "r+b") as f:
                f.truncate(rng.randint(1, size - 4096))
        else:
            npages = size // 4096
            page = rng.randint(2, npages)  # every page but the first is a b-tree page
            with open(path, "r+b") as f:
                f.seek((page - 1) * 4096)
                f.write(b"\0" * 4096)
    elif kind == "random":
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.randint(1, 64 * 1024)))
    elif kind == "header-random":
        with open(path, "wb") as f:
            f.write(b"SQLite format 3\0" + rng.randbytes(rng.randint(84, 64 * 1024)))
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "columns-conflict":
        c = _new_db(path)
        c.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, other TEXT)")
        c.executemany("INSERT INTO items VALUES(?, ?)", [(x.lo + i, x.name) for i in range(x.n)])
        c.commit()
        c.close()
    elif kind == "pk-conflict":
        c = _items_db(path, x.lo, x.n, x.name, x.pad,
                      schema="CREATE TABLE items(id INTEGER, delta TEXT, n INTEGER, body TEXT, "
                             "PRIMARY KEY(id, delta))")
        c.commit()
        c.close()
    else:
        c = _items_db(path, x.lo, x.n, x.name, x.pad)
        if kind == "no-pk":
            c.execute("CREATE TABLE nopk(a, b)")
            c.execute("INSERT INTO nopk VALUES(1, 2)")
        elif kind == "trigger":
            c.execute("CREATE TABLE tt(id INTEGER PRIMARY KEY, v TEXT)")
            c.execute("CREATE TRIGGER trg AFTER INSERT ON items BEGIN DELETE FROM reg; END")
        elif kind == "view":
            c.execute("CREATE VIEW vv AS SELECT id FROM items")
        elif kind == "generated":
            c.execute("CREATE TABLE gen(id INTEGER PRIMARY KEY, a INTEGER, "
                      "b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL)")
            c.execute("INSERT INTO gen(id, a) VALUES(1, 21)")
        else:
            raise ValueError(kind)
        c.commit()
        c.close()
    x.path = path
    x.sha = sha256_file(path)
    return x


# ------------------------------------------------------------------ shared state

class Hang(Exception):
    pass


def timed(fn, timeout, what):
    """fn() in a helper thread; raises Hang(what) if it is not done in time
    (the thread stays blocked until the daemon dies)."""
    box = {}

    def run():
        try:
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Hang(f"{what} did not return within {timeout}s")
    if "e" in box:
        raise box["e"]
    return box["v"]


class Life:
    """Whether the daemon is up, and an epoch that moves at every kill and
    every start: an operation whose epoch changed overlapped a kill."""

    def __init__(self):
        self.cv = threading.Condition()
        self.epoch = 0
        self.alive = False

    def down(self):
        with self.cv:
            self.epoch += 1
            self.alive = False

    def up(self):
        with self.cv:
            self.epoch += 1
            self.alive = True
            self.cv.notify_all()

    def get(self):
        with self.cv:
            return self.epoch, self.alive

    def wait_up(self, stop):
        """Until the daemon is up (True) or stop is set (False)."""
        with self.cv:
            while not self.alive:
                if stop.is_set():
                    return False
                self.cv.wait(0.2)
            return not stop.is_set()


class State:
    """Counters, findings and the catalog of every delta, shared by all
    threads (one lock)."""

    def __init__(self, seed, workdir):
        self.lock = threading.Lock()
        self.seed = seed
        self.workdir = workdir
        self.t0 = now()
        self.c = {k: 0 for k in FAIL_KEYS}
        self.resends = {}     # sha -> [Resend] acknowledged
        self.c.update(kills=0, restarts=0, acked=0, corrupt_acked=0, resends_acked=0, unacked_attempts=0,
                      reads_slow_outlived=0,
                      abandoned=0, reads_ok=0, reads_interrupted=0, reads_retired=0,
                      reads_raced=0, reads_nolatest=0)
        self.reads_by_mode = {}
        self.acked_by_method = {}
        self.kill_modes = {}
        self.findings = []
        self.by_sha = {}      # sha -> Delta or Corrupt (every file we ever made)
        self.good = []        # every Delta
        self.bad = []         # every Corrupt
        self.lost_at_kill = set()
        self.ids_seen = {}    # coll -> {id: sha256} from manifests (store and readers)
        self.log_errors = []  # error-level lines in daemon logs
        self.odd_output = []  # lines in daemon logs that are not log lines

    def inc(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    def finding(self, key, text, count=True):
        """Records a failure of class key (a FAIL_KEYS member) with evidence."""
        with self.lock:
            if count:
                self.c[key] += 1
            self.findings.append((key, round(now() - self.t0, 1), text))
        print(f"!! {LABELS.get(key, key)}: {text}", flush=True)

    def add(self, d):
        with self.lock:
            self.by_sha[d.sha] = d
            (self.bad if d.corrupt else self.good).append(d)

    def ack(self, d, method):
        with self.lock:
            d.acked = True
            if getattr(d, "resend", False):
                self.c["resends_acked"] += 1
                self.resends.setdefault(d.orig.sha, []).append(d)
            elif d.corrupt:
                self.c["corrupt_acked"] += 1
            else:
                self.c["acked"] += 1
                self.acked_by_method[method] = self.acked_by_method.get(method, 0) + 1

    def acked_lists(self):
        with self.lock:
            return [d for d in self.good if d.acked], [x for x in self.bad if x.acked]

    def see_id(self, coll, sid, sha, where):
        """One snapshot id must always mean one file."""
        with self.lock:
            seen = self.ids_seen.setdefault(coll, {})
            old = seen.get(sid)
            if old is None:
                seen[sid] = sha
                return
        if old != sha:
            self.finding("id_errors", f"{coll}: snapshot {sid:08d} seen with sha256 {old} and now "
                                      f"{sha} ({where}): an id was reused")

    def elapsed(self):
        return now() - self.t0


# ------------------------------------------------------------------ writers

def run_cmd(cmd, timeout=CMD_TIMEOUT):
    """(returncode, stderr); a timeout gives (None, 'timeout')."""
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, text=True, errors="replace")
        return p.returncode, (p.stderr or p.stdout).strip()
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout}s"


class Writer(threading.Thread):
    """Writes deltas with one method until stopped."""

    def __init__(self, chaos, idx, method, corrupt=False):
        super().__init__(name=f"writer-{method}{idx}", daemon=True)
        self.ch, self.st = chaos, chaos.st
        self.idx, self.method, self.corrupt = idx, method, corrupt
        self.label = f"bad{idx}" if corrupt else f"{method}{idx}"
        self.rng = random.Random(f"{chaos.seed}/{self.label}")
        self.dir = os.path.join(chaos.workdir, "src", self.label)
        os.makedirs(self.dir, exist_ok=True)
        self.k = 0
        self.history = {}  # coll -> [Delta] in writing order
        self.error = None

    # -- what to write

    def next_good(self):
        rng = self.rng
        self.k += 1
        coll = rng.choice(self.ch.colls)
        r = rng.random()
        if r < 0.03:
            n, pad = rng.randint(3000, 8000), 100   # a big one: merges that take a while
        elif r < 0.15:
            n, pad = rng.randint(200, 1500), 60
        else:
            n, pad = rng.randint(1, 40), rng.randint(1, 40)
        name = f"{self.label}-{self.k:06d}.db"
        lo = (self.idx + 1) * WRITER_STRIDE + self.k * DELTA_STRIDE
        hist = self.history.setdefault(coll, [])
        prev = hist[-1] if hist else None
        old = hist[-DELETE_BACK] if len(hist) >= DELETE_BACK else None
        d = Delta(name, coll, self.label, self.k, self.method, lo, n, pad,
                  reg=sorted(rng.sample(range(REG_KEYS), rng.randint(1, 4))),
                  mark=lo, del_mark=prev.mark if prev else None,
                  del_items=[(old.lo, old.n)] if old else [])
        d.del_target = old
        hist.append(d)
        make_good(os.path.join(self.dir, name), d)
        self.st.add(d)
        return d

    def next_corrupt(self):
        rng = self.rng
        self.k += 1
        kind = rng.choice(CORRUPT_KINDS)
        coll = rng.choice(self.ch.colls)
        name = f"{self.label}-{self.k:06d}-{kind}.db"
        lo = (CORRUPT_WRITER + self.idx) * WRITER_STRIDE + self.k * DELTA_STRIDE
        x = Corrupt(name, coll, kind, lo, rng.randint(60, 400))
        make_corrupt(os.path.join(self.dir, name), x, rng)
        self.st.add(x)
        return x

    # -- how to write it

    def commands(self, d, method):
        inc = self.ch.fs.path(d.coll, "incoming")
        final = os.path.join(inc, d.name)
        if method == "cp":
            return [["cp", d.path, final]]
        if method == "rsync":
            return [["rsync", d.path, final]]
        if method == "mv":
            dot = os.path.join(inc, "." + d.name)
            return [["cp", d.path, dot], ["mv", dot, final]]
        raise ValueError(method)

    def submit(self, d):
        """Writes d until a command sequence exits 0 (acknowledged), the run
        stops, or MAX_ATTEMPTS; every retry uses the same name and bytes."""
        method = self.method
        if self.corrupt:
            method = "mv" if self.rng.random() < 0.3 else "cp"
        while d.attempts < MAX_ATTEMPTS:
            if not self.ch.life.wait_up(self.ch.stop_writers):
                break
            d.attempts += 1
            e0, alive0 = self.ch.life.get()
            failed = None
            for cmd in self.commands(d, method):
                rc, err = run_cmd(cmd)
                if rc != 0:
                    failed = (cmd, rc, err)
                    break
            if failed is None:
                self.st.ack(d, method)
                return True
            e1, _ = self.ch.life.get()
            cmd, rc, err = failed
            if e1 == e0 and alive0 and self.ch.fs_alive():
                key = "hangs" if rc is None else "write_errors"
                self.st.finding(key, f"{' '.join(cmd)} exited {rc} while the daemon was up: {err}")
            else:
                self.st.inc("unacked_attempts")
        if not d.acked:
            self.st.inc("abandoned")
        return False

    def prune(self, d):
        """Source files are kept only as long as they can be sent again
        (the catalog keeps what they hold): a long round stays small."""
        if self.corrupt:
            os.unlink(d.path)
            return
        if getattr(d, "resend", False):
            return
        h = self.history[d.coll]
        if len(h) > KEEP_SOURCES:
            old = h[-KEEP_SOURCES - 1]
            if old.path and os.path.exists(old.path):
                os.unlink(old.path)

    def next_resend(self):
        """An acknowledged delta of this writer at least 3 deltas old (its
        queueing long done), to send again under a new name; or None."""
        old = [d for h in self.history.values() for d in h[-KEEP_SOURCES:-3] if d.acked]
        if not old:
            return None
        d = self.rng.choice(old)
        self.resent = getattr(self, "resent", 0) + 1
        return Resend(d, f"{self.label}-again{self.resent:05d}-{d.name}")

    def run(self):
        try:
            while not self.ch.stop_writers.is_set():
                d = None
                if not self.corrupt and self.rng.random() < self.ch.args.resend:
                    d = self.next_resend()
                if d is None:
                    d = self.next_corrupt() if self.corrupt else self.next_good()
                self.submit(d)
                self.prune(d)
                pause = self.rng.uniform(0, self.ch.args.pace * (3 if self.corrupt else 1))
                self.ch.stop_writers.wait(pause)
        except Exception:  # noqa: BLE001 - reported, fails the run
            self.error = traceback.format_exc()
            print(f"!! harness error in {self.name}:\n{self.error}", flush=True)


# ------------------------------------------------------------------ readers

class Reader(threading.Thread):
    """Copies or queries the latest snapshot and checks it against its
    manifest, until stopped."""

    def __init__(self, chaos, idx):
        super().__init__(name=f"reader{idx}", daemon=True)
        self.ch, self.st = chaos, chaos.st
        self.rng = random.Random(f"{chaos.seed}/reader{idx}")
        self.dir = os.path.join(chaos.workdir, "readers", str(idx))
        os.makedirs(self.dir, exist_ok=True)
        self.last_latest = {}
        self.error = None

    def run(self):
        try:
            while not self.ch.stop_readers.is_set():
                if not self.ch.life.wait_up(self.ch.stop_readers):
                    break
                self.read_once()
                self.ch.stop_readers.wait(self.rng.uniform(0, self.ch.args.read_pace))
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()
            print(f"!! harness error in {self.name}:\n{self.error}", flush=True)

    def read_once(self):
        coll = self.rng.choice(self.ch.colls)
        mode = self.rng.choices(("cp-latest", "cp-id", "sqlite3", "slow"), weights=(3, 3, 3, 1))[0]
        e0, alive0 = self.ch.life.get()
        fs = self.ch.fs
        sid = None
        try:
            sid = int(os.path.basename(os.readlink(fs.path(coll, "latest"))))
            last = self.last_latest.get(coll, 0)
            if sid < last:
                e1, _ = self.ch.life.get()
                kill = "a kill in between" if e1 != e0 else "no kill"
                self.st.finding("id_errors", f"{coll}: latest went back from {last:08d} to {sid:08d} "
                                             f"(reader {self.name}; {kill})")
            self.last_latest[coll] = max(last, sid)
            sdir = fs.path(coll, "snapshots", "%08d" % sid)
            if mode == "cp-latest":
                res = self.check_copy(coll, sid, fs.path(coll, "latest"), mode)
                if res == "raced":
                    return
            elif mode == "cp-id":
                res = self.check_copy(coll, sid, sdir, mode)
            elif mode == "slow":
                res = self.check_slow(coll, sid, sdir, e0)
                if res == "interrupted":
                    self.st.inc("reads_interrupted")
                    return
            else:
                res = self.check_sqlite3(coll, sid, sdir)
        except (OSError, ReadFailed) as e:
            self.failed(coll, mode, sid, e, e0, alive0)
            return
        except Hang as e:
            self.failed(coll, mode, sid, e, e0, alive0, hang=True)
            return
        if res is None:
            with self.st.lock:
                self.st.c["reads_ok"] += 1
                self.st.reads_by_mode[mode] = self.st.reads_by_mode.get(mode, 0) + 1
        else:
            e1, _ = self.ch.life.get()
            note = " (a kill happened during the read)" if e1 != e0 else ""
            self.st.finding("torn", f"{mode} of {coll} snapshot {sid:08d}: {res}{note}")

    def read_manifest(self, d):
        with open(os.path.join(d, "MANIFEST.json")) as f:
            return json.load(f)

    def check_copy(self, coll, sid, d, mode):
        """cp the database out of d (latest/ or snapshots/ID/), read the
        manifest of the same directory; None if they agree."""
        copy = os.path.join(self.dir, "copy.sqlite3")
        if os.path.exists(copy):
            os.unlink(copy)
        if mode == "cp-latest":
            rc, err = run_cmd(["cp", os.path.join(d, coll + ".sqlite3"), copy])
            m = self.read_manifest(d) if rc == 0 else None
            after = int(os.path.basename(os.readlink(self.ch.fs.path(coll, "latest"))))
            if after != sid:
                # latest moved meanwhile: the file and the manifest may come
                # from two snapshots (and cp may say "replaced while being
                # copied"); not a read of one directory
                self.st.inc("reads_raced")
                return "raced"
            if rc != 0:
                raise ReadFailed(f"cp exited {rc}: {err}", rc is None)
        else:
            m = self.read_manifest(d)
            rc, err = run_cmd(["cp", os.path.join(d, coll + ".sqlite3"), copy])
            if rc != 0:
                raise ReadFailed(f"cp exited {rc}: {err}", rc is None)
        self.st.see_id(coll, m.get("id"), m.get("sha256"), f"manifest read by {self.name}")
        problems = []
        if m.get("id") != sid or m.get("collection") != coll:
            problems.append(f"manifest says {m.get('collection')}/{m.get('id')}")
        sha = sha256_file(copy)
        size = os.path.getsize(copy)
        if sha != m.get("sha256"):
            problems.append(f"sha256 {sha} != manifest {m.get('sha256')}")
        if size != m.get("size"):
            problems.append(f"size {size} != manifest {m.get('size')}")
        try:
            ic = harness.integrity(copy, immutable=True)
        except sqlite3.DatabaseError as e:
            ic = str(e)
        if ic != "ok":
            problems.append(f"integrity_check: {ic[:200]}")
        if problems:
            keep = os.path.join(self.ch.workdir, "evidence", f"torn-{coll}-{sid:08d}-{time.time_ns()}")
            os.makedirs(keep, exist_ok=True)
            shutil.copy(copy, keep)
            with open(os.path.join(keep, "MANIFEST.json"), "w") as f:
                json.dump(m, f)
            return "; ".join(problems) + f" (copy kept in {keep})"
        return None

    def check_slow(self, coll, sid, d, e0):
        """Opens the database, then reads it in chunks over a random while
        (long enough for retention to retire the snapshot when keep is
        small): an open snapshot must keep reading whole. Errors before
        the open are the caller's; after it, only a kill excuses them."""
        m = self.read_manifest(d)
        self.st.see_id(coll, m.get("id"), m.get("sha256"), f"manifest read by {self.name}")
        f = open(os.path.join(d, coll + ".sqlite3"), "rb")
        try:
            size = m.get("size") or 1
            chunk = max(4096, size // self.rng.randint(2, 8))
            h = hashlib.sha256()
            total = 0
            try:
                while True:
                    b = f.read(chunk)
                    if not b:
                        break
                    h.update(b)
                    total += len(b)
                    time.sleep(self.rng.uniform(0, 0.15))  # chaos: a slow reader
            except OSError as e:
                e1, _ = self.ch.life.get()
                if e1 != e0 or not self.ch.fs_alive():
                    return "interrupted"
                listed = "%08d" % sid in _listdir(self.ch.fs.path(coll, "snapshots"))
                state = "listed" if listed else "retired"
                self.st.finding("read_errors", f"slow read of {coll} snapshot {sid:08d} failed after the "
                                               f"open, daemon up, snapshot {state}: {e}")
                return "interrupted"
        finally:
            f.close()
        if "%08d" % sid not in _listdir(self.ch.fs.path(coll, "snapshots")):
            self.st.inc("reads_slow_outlived")
        if h.hexdigest() != m.get("sha256") or total != m.get("size"):
            return (f"read {total} bytes with sha256 {h.hexdigest()}, "
                    f"manifest says {m.get('size')} / {m.get('sha256')}")
        return None

    def check_sqlite3(self, coll, sid, d):
        m = self.read_manifest(d)
        self.st.see_id(coll, m.get("id"), m.get("sha256"), f"manifest read by {self.name}")
        db = os.path.join(d, coll + ".sqlite3")
        sql = ("PRAGMA integrity_check; SELECT coalesce(max(seq), 0) FROM _snapfs_ledger; "
               "SELECT count(*) FROM items;")
        try:
            p = subprocess.run(["sqlite3", "-batch", "-readonly", db, sql], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ReadFailed(f"sqlite3 timed out after {CMD_TIMEOUT}s", True)
        out = p.stdout.split()
        err = p.stderr.strip()
        if p.returncode != 0 or err:
            # SQLite reporting corruption is a torn read, kill or not; an
            # I/O error is a failed read (benign if a kill overlapped it).
            text = (err + " " + p.stdout).lower()
            if "malformed" in text or "corrupt" in text:
                return f"sqlite3 -readonly exited {p.returncode}: {err} / {p.stdout.strip()[:300]}"
            raise ReadFailed(f"sqlite3 exited {p.returncode}: {err} / {p.stdout.strip()[:300]}", False)
        want = ["ok", str(m.get("ledger_max")), str(m.get("tables", {}).get("items"))]
        if out != want:
            return f"sqlite3 -readonly printed {out}, manifest wants {want}"
        return None

    def failed(self, coll, mode, sid, e, e0, alive0, hang=False):
        """A read that failed: benign if it overlapped a kill, or if the
        snapshot was retired meanwhile; otherwise a READ ERROR (or HANG)."""
        e1, alive1 = self.ch.life.get()
        if e1 != e0 or not alive0 or not alive1 or not self.ch.fs_alive():
            self.st.inc("reads_interrupted")
            return
        if sid is None:
            if isinstance(e, FileNotFoundError):
                self.st.inc("reads_nolatest")  # no snapshot yet
                return
        else:
            try:
                listed = "%08d" % sid in os.listdir(self.ch.fs.path(coll, "snapshots"))
            except OSError:
                listed = None
            if listed is False:
                self.st.inc("reads_retired")  # retention removed it: allowed
                return
            e2, _ = self.ch.life.get()
            if e2 != e0 or listed is None:
                self.st.inc("reads_interrupted")
                return
        key = "hangs" if hang or getattr(e, "hang", False) else "read_errors"
        self.st.finding(key, f"{mode} of {coll} snapshot {sid}: {e} (daemon up, snapshot still listed)")


class ReadFailed(Exception):
    def __init__(self, msg, hang=False):
        super().__init__(msg)
        self.hang = hang


# ------------------------------------------------------------------ the run

class Crash:
    """What the STORE held for one collection at a kill."""

    def __init__(self, staging, snapshots, max_id, latest):
        self.staging, self.snapshots, self.max_id, self.latest = staging, snapshots, max_id, latest


def _ids_in(names):
    out = set()
    for n in names:
        m = re.fullmatch(r"(?:\.removing-)?(\d{8})", n)
        if m:
            out.add(int(m.group(1)))
    return out


def _listdir(p):
    try:
        return os.listdir(p)
    except FileNotFoundError:
        return []


class EnvSnapfs(harness.Snapfs):
    """harness.Snapfs whose daemon gets an environment of its own (the S3
    keys of the throwaway server, nothing of the machine's AWS setup)."""

    def __init__(self, workdir, env=None):
        super().__init__(workdir, opts=())
        self.env = env

    def spawn(self, opts=None, args=()):
        if self.env is None:
            return super().spawn(opts, args)
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = os.path.join(self.workdir, f"snapfs-{self.starts}.log")
        self.logs.append(log)
        cmd = [harness.SNAPFS_BIN, self.store, self.mnt, "-f"]
        if opts:
            cmd += ["-o", ",".join(opts)]
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(cmd + list(args), stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                         env=self.env)
        return self.proc


def s3_unavailable():
    from snapfs_test import radosgw
    return radosgw.unavailable_reason()


class S3Side:
    """--s3: a throwaway radosgw (tests/pylib/snapfs_test/radosgw.py) behind the fault
    proxy (tests/pylib/snapfs_test/faultproxy.py); snapfs uploads through the proxy, which
    now and then answers 503 SlowDown or resets a body mid-way. The
    pointer is checked (read straight from radosgw) at every kill and at
    the end: it only moves forward, and it names an object whose size and
    SHA-256 are its manifest's, that passes integrity_check, and whose id
    means the same file locally."""

    PREFIX = "snapfs/"
    HOST = "chaos"

    def __init__(self, ch):
        from snapfs_test import faultproxy
        from snapfs_test import radosgw
        self.ch, self.st = ch, ch.st
        self.gw = radosgw.RadosGW()
        self.gw.start()
        self.bucket = self.gw.create_bucket()
        port = int(self.gw.endpoint.rsplit(":", 1)[1])
        self.proxy = faultproxy.FaultProxy(("127.0.0.1", port)).start()
        self.s3 = self.gw.client()
        self.gen = {}
        self.checked = {}
        self.faults = {"503": 0, "reset": 0}

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.gw.env())
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/snapfs-chaos-credentials"
        env["AWS_CONFIG_FILE"] = "/nonexistent/snapfs-chaos-config"
        return env

    def opts(self):
        return [f"s3_bucket={self.bucket}", f"s3_endpoint={self.proxy.url}", f"s3_host_id={self.HOST}",
                "s3_lease_ttl=15", "s3_part_size=5M"]

    def arm(self, rng):
        """Maybe a fault for the next requests: a burst of 503s, or a reset."""
        r = rng.random()
        with self.proxy._lock:
            if r < 0.15:
                self.proxy.fail_first = self.proxy._counts["requests"] + rng.randint(1, 4)
                self.faults["503"] += 1
            elif r < 0.35:
                self.proxy.resets += 1
                self.faults["reset"] += 1

    def pointer(self, coll):
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=f"{self.PREFIX}{coll}/pointer.json")
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(r["Body"].read())

    def check(self, coll, where, want_id=None):
        p = self.pointer(coll)
        if p is None:
            if want_id is not None:
                self.st.finding("s3", f"{coll}: no pointer in S3 {where}")
            return None
        last = self.gen.get(coll)
        if last is not None and p["generation"] < last:
            self.st.finding("s3", f"{coll}: pointer generation went back from {last} to "
                                  f"{p['generation']} ({where})")
        self.gen[coll] = max(p["generation"], last or 0)
        if want_id is not None and p["id"] != want_id:
            self.st.finding("s3", f"{coll}: pointer names snapshot {p['id']} {where}, latest is {want_id}")
        if self.checked.get(coll) == p["generation"] and want_id is None:
            return p
        self.checked[coll] = p["generation"]
        try:
            man = json.loads(self.s3.get_object(Bucket=self.bucket, Key=p["keys"]["manifest"])["Body"].read())
            path = os.path.join(self.ch.workdir, "inspect", f"s3-{coll}.sqlite3")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            r = self.s3.get_object(Bucket=self.bucket, Key=p["keys"]["db"])
            h = hashlib.sha256()
            with open(path, "wb") as f:
                for chunk in r["Body"].iter_chunks(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            head = self.s3.head_object(Bucket=self.bucket, Key=p["keys"]["db"])
        except Exception as e:  # noqa: BLE001 - any failure to fetch what the pointer names
            self.st.finding("s3", f"{coll}: pointer {p} ({where}): cannot fetch what it names: {e}")
            return p
        sha = h.hexdigest()
        problems = []
        if not (sha == man.get("sha256") == p["sha256"]):
            problems.append(f"object sha256 {sha}, manifest {man.get('sha256')}, pointer {p['sha256']}")
        if not (os.path.getsize(path) == man.get("size") == p["size"]):
            problems.append(f"object size {os.path.getsize(path)}, manifest {man.get('size')}, "
                            f"pointer {p['size']}")
        if head["ETag"].strip('"') != p["etag"]:
            problems.append(f"object ETag {head['ETag']}, pointer {p['etag']}")
        ic = harness.integrity(path, immutable=True)
        if ic != "ok":
            problems.append(f"integrity_check: {ic[:200]}")
        if problems:
            self.st.finding("s3", f"{coll}: pointer generation {p['generation']} ({where}): "
                                  + "; ".join(problems))
        else:
            self.st.see_id(coll, p["id"], sha, "the S3 pointer")
        os.unlink(path)
        return p

    def multipart_left(self):
        r = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=self.PREFIX)
        return [u["Key"] for u in r.get("Uploads", [])]

    def stop(self):
        self.proxy.stop()
        self.gw.stop()


class Chaos:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.workdir = args.workdir
        self.st = State(self.seed, self.workdir)
        self.rng = random.Random(f"{self.seed}/killer")
        self.life = Life()
        self.stop_writers = threading.Event()
        self.stop_readers = threading.Event()
        names = ["lines", "words"] + [f"coll{i}" for i in range(2, args.collections)]
        self.colls = names[:args.collections]
        self.s3 = S3Side(self) if args.s3 else None
        self.fs = EnvSnapfs(self.workdir, env=self.s3.env() if self.s3 else None)
        self.writers = []
        self.readers = []
        self.crash = {}           # coll -> Crash at the last kill
        self.store_ids = {c: set() for c in self.colls}  # ids ever listed in the store
        self.verified = {c: {} for c in self.colls}      # id -> manifest
        self.sha_cache = {}
        self.scanned_logs = set()
        self.round_line_every = 1
        self.final = {}

    # -- daemon life

    def fs_alive(self):
        return self.fs.proc is not None and self.fs.proc.poll() is None

    def choose_opts(self):
        r = self.rng
        opts = [f"batch_delay={r.choice((10, 50, 50, 200))}",
                f"batch_max={r.choice((1, 4, 1000, 1000))}",
                f"keep={r.choice((2, 5, 10))}",
                # The audit checks every corrupt delta in rejected/: no cap (rejected_max
                # would rightly remove the oldest of a long round).
                "rejected_max=0"]
        if self.s3:
            opts += self.s3.opts()
        return opts

    def start(self, opts=None):
        opts = opts or self.choose_opts()
        if self.s3:
            self.s3.arm(self.rng)
        try:
            self.fs.start(opts=opts, timeout=60)
        except AssertionError as e:
            self.st.finding("restart_failed", f"snapfs did not start again on its STORE with "
                                              f"{','.join(opts)}: {str(e)[-3000:]}")
            raise
        self.st.inc("restarts")
        self.life.up()

    def kill(self, mode):
        """SIGKILL (harness kill9: also detaches the dead mount); then the
        STORE as the kill left it is audited."""
        if not self.fs_alive():
            rc = self.fs.proc.returncode if self.fs.proc else None
            self.life.down()
            self.st.finding("daemon_died", f"snapfs exited {rc} by itself before kill "
                                           f"{self.st.c['kills'] + 1}; "
                                           f"log {self.fs.logs[-1] if self.fs.logs else '-'}:\n"
                                           + harness._read(self.fs.logs[-1])[-2000:])
            self.fs.kill9()  # detaches the dead mount
        else:
            self.life.down()
            self.fs.kill9()
        with self.st.lock:
            self.st.c["kills"] += 1
            self.st.kill_modes[mode] = self.st.kill_modes.get(mode, 0) + 1
        self.scan_log(self.fs.logs[-1])
        self.audit_at_kill()
        if self.s3:
            for coll in self.colls:
                self.s3.check(coll, f"at kill {self.st.c['kills']}")

    def restart(self, recovery_kill=True):
        """Restarts on the same STORE; sometimes (recovery_kill) first a
        start that is killed before or right as it mounts (a kill during
        recovery)."""
        if recovery_kill and self.rng.random() < 0.08:
            self.fs.spawn(opts=self.choose_opts())
            time.sleep(self.rng.uniform(0, 0.02))  # chaos: a random moment of the start
            self.kill("recovery")
            self.print_round("recovery")
        self.start()
        self.check_after_restart()

    # -- aiming

    def states(self):
        def read():
            with open(self.fs.path(".snapfs", "status")) as f:
                return json.load(f)
        s = timed(read, STATUS_TIMEOUT, ".snapfs/status read")
        return {c: v.get("state") for c, v in s.get("collections", {}).items()}

    def wait_for_state(self, want, deadline):
        """Polls the status until a collection is in state want; True if
        it was seen before the deadline."""
        while now() < deadline:
            if not self.fs_alive():
                return False
            try:
                if want in self.states().values():
                    return True
            except Hang as e:
                self.st.finding("hangs", f"{e} while aiming at {want}; daemon threads: {self.thread_dump()}")
                return False
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        return False

    def thread_dump(self):
        pid = self.fs.proc.pid if self.fs.proc else None
        out = []
        try:
            for tid in sorted(os.listdir(f"/proc/{pid}/task")):
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    w = f.read()
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
                out.append(f"{tid}:{comm}:{w}")
        except OSError:
            pass
        return " ".join(out)

    def one_round(self):
        r = self.rng
        mode = r.choices(("random", "merging", "sealing", "startup"), weights=(40, 25, 25, 10))[0]
        label = mode
        if mode == "random":
            time.sleep(r.uniform(0.05, self.args.interval))  # chaos: a random moment
        elif mode == "startup":
            time.sleep(r.uniform(0, 0.05))  # chaos: right after a start
        else:
            # let work pile up for a random while, then aim at the state
            time.sleep(r.uniform(0, self.args.interval / 2))
            hit = self.wait_for_state(mode, now() + r.uniform(1.0, 3.0))
            if hit and r.random() < 0.5:
                time.sleep(r.uniform(0, 0.01))
            label = f"{mode}({'hit' if hit else 'miss'})"
            with self.st.lock:
                k = f"aimed_{mode}_{'hit' if hit else 'miss'}"
                self.st.c[k] = self.st.c.get(k, 0) + 1
        self.kill(label)
        self.print_round(label)

    # -- audits

    def sha_of(self, path):
        try:
            s = os.stat(path)
        except FileNotFoundError:
            return None
        key = (path, s.st_ino, s.st_size, s.st_mtime_ns)
        v = self.sha_cache.get(key)
        if v is None:
            v = sha256_file(path)
            self.sha_cache[key] = v
        return v

    def live_ledger(self, coll):
        """(seq, sha256, name) rows of live.db as the kill left it, read
        from a copy (the STORE is never opened for writing)."""
        src = self.fs.store_path(coll, "live.db")
        if not os.path.exists(src):
            return []
        d = os.path.join(self.workdir, "inspect")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, coll + ".db")
        for suf in ("", "-wal", "-journal", "-shm"):
            if os.path.exists(dst + suf):
                os.unlink(dst + suf)
        for suf in ("", "-wal", "-journal"):
            if os.path.exists(src + suf):
                shutil.copyfile(src + suf, dst + suf)
        c = sqlite3.connect(dst)
        try:
            return c.execute("SELECT seq, sha256, name FROM _snapfs_ledger").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            c.close()

    def verify_store_snapshots(self, coll, where):
        """verify_snapshot on every snapshot dir not verified yet; ids
        listed for the first time must be above every id used before the
        last kill."""
        snaps_dir = self.fs.store_path(coll, "snapshots")
        ids = sorted(int(n) for n in _listdir(snaps_dir) if re.fullmatch(r"\d{8}", n))
        prev = self.crash.get(coll)
        for sid in ids:
            if sid not in self.store_ids[coll]:
                self.store_ids[coll].add(sid)
                if prev is not None and sid <= prev.max_id and sid not in prev.snapshots:
                    self.st.finding("id_errors", f"{coll}: snapshot {sid:08d} appeared after a kill "
                                                 f"whose STORE had already used ids up to {prev.max_id:08d}")
            if sid in self.verified[coll]:
                continue
            d = os.path.join(snaps_dir, "%08d" % sid)
            try:
                m = harness.verify_snapshot(d, coll, immutable=True)
            except (AssertionError, OSError, ValueError, sqlite3.DatabaseError) as e:
                keep = os.path.join(self.workdir, "evidence", f"bad-{coll}-{sid:08d}")
                shutil.copytree(d, keep, dirs_exist_ok=True)
                self.st.finding("bad_snapshots", f"{coll}: {d} ({where}): {e}; copy in {keep}")
                self.verified[coll][sid] = None
                continue
            self.verified[coll][sid] = {"sha256": m["sha256"], "ledger_max": m.get("ledger_max"),
                                        "deltas": m.get("deltas", [])}
            self.st.see_id(coll, sid, m["sha256"], where)
        return ids

    def audit_at_kill(self):
        """With the daemon dead: every acknowledged delta is somewhere (live
        ledger, queue/, incoming/; corrupt ones also rejected/); every
        snapshot verifies; ids are not reused."""
        good, bad = self.st.acked_lists()
        applied = rejected = 0
        for coll in self.colls:
            cdir = self.fs.store_path(coll)
            staging = set(_listdir(os.path.join(cdir, "staging")))
            ids = self.verify_store_snapshots(coll, f"at kill {self.st.c['kills']}")
            max_id = max(_ids_in(staging) | set(ids) | {0})
            try:
                latest = int(os.path.basename(os.readlink(os.path.join(cdir, "latest"))))
            except OSError:
                latest = None
            ledger = self.live_ledger(coll)
            shas = [s for _, s, _ in ledger]
            if len(shas) != len(set(shas)):
                self.st.finding("twice", f"{coll}: live ledger holds a sha256 twice at kill "
                                         f"{self.st.c['kills']}")
            in_ledger = set(shas)
            where = {}
            for area in ("queue", "incoming", "rejected"):
                for n in _listdir(os.path.join(cdir, area)):
                    p = os.path.join(cdir, area, n)
                    if n.endswith((".reason", ".reason.tmp")) or (area == "incoming" and n.startswith(".")):
                        continue
                    if not os.path.isfile(p):
                        continue
                    s = self.sha_of(p)
                    if s:
                        where.setdefault(s, set()).add(area)
                    if area == "rejected":
                        rejected += 1
            for d in good:
                if d.coll != coll:
                    continue
                if d.sha in in_ledger:
                    applied += 1
                elif not (where.get(d.sha, set()) & {"queue", "incoming"}) \
                        and d.sha not in self.st.lost_at_kill:
                    self.st.lost_at_kill.add(d.sha)
                    self.st.finding("lost", f"{d} (sha256 {d.sha}, acknowledged, {d.method}) is at kill "
                                            f"{self.st.c['kills']} neither in the live ledger nor in queue/ "
                                            f"or incoming/ (found in: {sorted(where.get(d.sha, []))})")
            for x in bad:
                if x.coll != coll:
                    continue
                if x.sha in in_ledger:
                    if x.sha not in self.st.lost_at_kill:
                        self.st.lost_at_kill.add(x.sha)
                        self.st.finding("corrupt_applied", f"{x} is in the live ledger at kill "
                                                           f"{self.st.c['kills']}")
                elif not where.get(x.sha) and x.sha not in self.st.lost_at_kill:
                    self.st.lost_at_kill.add(x.sha)
                    self.st.finding("lost", f"corrupt {x} (acknowledged) is at kill {self.st.c['kills']} in "
                                            f"neither queue/, incoming/ nor rejected/")
            self.crash[coll] = Crash(staging, set(ids), max_id, latest)
        self.last_applied, self.last_rejected = applied, rejected

    def check_after_restart(self):
        for coll in self.colls:
            c = self.crash.get(coll)
            if c is None:
                continue
            left = c.staging & set(_listdir(self.fs.store_path(coll, "staging")))
            if left:
                self.st.finding("leftover", f"{coll}: half-made staging work survived the restart: "
                                            f"{sorted(left)}")
            if c.snapshots:
                try:
                    now_latest = int(os.path.basename(os.readlink(self.fs.path(coll, "latest"))))
                except OSError as e:
                    now_latest = f"unreadable ({e})"
                if not isinstance(now_latest, int) or now_latest < max(c.snapshots):
                    self.st.finding("id_errors", f"{coll}: after restart latest is {now_latest}, but the STORE "
                                                 f"held snapshot {max(c.snapshots):08d} at the kill")

    def scan_log(self, log):
        if log in self.scanned_logs:
            return
        self.scanned_logs.add(log)
        text = harness._read(log)
        for m in harness.SANITIZER_MARKERS:
            if m in text:
                self.st.finding("sanitizer", f"{m!r} in {log}")
        for line in text.splitlines():
            if " snapfs error: " in line:
                self.st.log_errors.append(f"{os.path.basename(log)}: {line}")
            elif not harness.LOG_LINE.match(line) and not any(r.search(line) for r in harness.KNOWN_OUTPUT):
                self.st.odd_output.append(f"{os.path.basename(log)}: {line}")

    def print_round(self, label):
        c = self.st.c
        extra = " ".join(f"{LABELS[k].lower().replace(' ', '_')}={c[k]}" for k in FAIL_KEYS
                         if k not in ("lost", "twice", "torn", "leftover") and c[k])
        print(f"[kill {c['kills']}/{self.args.kills} {label}] acknowledged={c['acked']} "
              f"applied={self.last_applied} rejected={self.last_rejected} lost={c['lost']} "
              f"twice={c['twice']} torn={c['torn']} leftover={c['leftover']} "
              f"corrupt_applied={c['corrupt_applied']}{' ' + extra if extra else ''} "
              f"reads={c['reads_ok']} elapsed={self.st.elapsed():.1f}s", flush=True)

    # -- setup, main loop, end

    def setup(self):
        os.makedirs(self.workdir, exist_ok=True)
        self.start(opts=["batch_delay=50", "keep=10", "rejected_max=0"] + (self.s3.opts() if self.s3 else []))
        seeds = []
        for i, coll in enumerate(self.colls):
            self.fs.mkcoll(coll)
            # the collection's tables exist before any conflicting delta arrives
            d = Delta(f"seed-{coll}.db", coll, "seed", 0, "cp", (i + 1) * 10 ** 6, 10, 5,
                      reg=list(range(REG_KEYS)), mark=(i + 1) * 10 ** 6, del_mark=None, del_items=[])
            d.del_target = None
            os.makedirs(os.path.join(self.workdir, "src"), exist_ok=True)
            make_good(os.path.join(self.workdir, "src", d.name), d)
            self.st.add(d)
            harness.run(["cp", d.path, self.fs.path(coll, "incoming", d.name)])
            self.st.ack(d, "cp")
            seeds.append(d)
        for d in seeds:
            self.fs.wait_applied(d.coll, [d.sha], timeout=60)
        methods = ("cp", "rsync", "mv")
        for i in range(self.args.writers):
            self.writers.append(Writer(self, i, methods[i % 3]))
        for i in range(self.args.corrupt_writers):
            self.writers.append(Writer(self, i, "corrupt", corrupt=True))
        for i in range(self.args.readers):
            self.readers.append(Reader(self, i))
        for t in self.writers + self.readers:
            t.start()

    def run(self):
        self.last_applied = self.last_rejected = 0
        self.setup()
        while True:
            self.one_round()
            if self.st.c["kills"] >= self.args.kills:
                break
            # a kill during recovery counts too, but never as the last one
            self.restart(recovery_kill=self.st.c["kills"] + 1 < self.args.kills)
        # the last kill was made: writers stop, then the last restart
        self.stop_writers.set()
        self.restart(recovery_kill=False)
        self.finish()

    def join_threads(self, threads, what, timeout):
        deadline = now() + timeout
        for t in threads:
            t.join(max(0.1, deadline - now()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            self.st.finding("hangs", f"{what} still running {timeout}s after being told to stop: {alive}")

    def drained(self):
        """Every collection idle with an empty queue, every acknowledged
        good delta in the ledger of latest, every acknowledged corrupt one
        in rejected/."""
        good, bad = self.st.acked_lists()
        for coll in self.colls:
            s = self.fs.status(coll)
            if s["queued"] != 0 or s["state"] != "idle":
                return False
            if self.fs.latest_id(coll) is None:
                return False
            led = set(self.fs.ledger(coll))
            if any(d.sha not in led for d in good if d.coll == coll):
                return False
            rej = {self.sha_of(os.path.join(self.fs.store_path(coll, "rejected"), n))
                   for n in _listdir(self.fs.store_path(coll, "rejected")) if not n.endswith(".reason")}
            if any(x.sha not in rej for x in bad if x.coll == coll):
                return False
        return True

    def finish(self):
        self.join_threads(self.writers, "writers", CMD_TIMEOUT * 2 + 30)
        good, bad = self.st.acked_lists()
        timeout = 120 + 0.05 * (len(good) + len(bad))
        try:
            harness.wait_for(self.drained, timeout,
                             "every queue empty and idle, every acknowledged delta in the ledger of "
                             "latest (corrupt ones in rejected/)", interval=0.1)
        except harness.Timeout as e:
            st = {}
            for coll in self.colls:
                try:
                    st[coll] = self.fs.status(coll)
                except Exception as e2:  # noqa: BLE001
                    st[coll] = repr(e2)
            print(f"!! {e}\n   status: {json.dumps(st)}", flush=True)
        except harness.DaemonDied as e:
            self.st.finding("daemon_died", f"during the final drain: {str(e)[:3000]}")
        if self.s3:
            self.wait_uploaded()
        self.stop_readers.set()
        self.join_threads(self.readers, "readers", CMD_TIMEOUT + 30)
        self.life.down()  # from here on, nothing that fails is the daemon's fault
        if self.fs_alive():
            p = harness.run(["fusermount3", "-u", self.fs.mnt], check=False)
            try:
                rc = self.fs.proc.wait(120)
            except subprocess.TimeoutExpired:
                rc = None
                self.st.finding("unclean_exit", f"snapfs did not exit within 120s of fusermount3 -u "
                                                f"({p.stderr.strip()}); threads: {self.thread_dump()}")
                self.fs.kill9()
            if rc is not None and rc != 0:
                self.st.finding("unclean_exit", f"snapfs exited {rc} on unmount; log tail:\n"
                                                + harness._read(self.fs.logs[-1])[-2000:])
        if self.fs.mounted():
            harness.run(["fusermount3", "-u", "-z", self.fs.mnt], check=False)
        for log in self.fs.logs:
            self.scan_log(log)
        self.audit_final()
        if self.s3:
            for coll in self.colls:
                try:
                    latest = int(os.path.basename(os.readlink(self.fs.store_path(coll, "latest"))))
                except OSError:
                    latest = None
                self.s3.check(coll, "at the end", want_id=latest)
            left = self.s3.multipart_left()
            if left:
                self.st.finding("s3", f"multipart uploads left in the bucket after a clean stop: {left[:5]}")

    def wait_uploaded(self):
        """Until every collection's newest snapshot is uploaded and the
        pointer swapped (upload state idle)."""
        def done():
            for coll in self.colls:
                u = self.fs.status(coll).get("upload") or {}
                if u.get("state") != "idle" or (u.get("last_uploaded_id") or 0) < (self.fs.latest_id(coll) or 0):
                    return False
            return True
        try:
            harness.wait_for(done, 300, "every collection's latest snapshot uploaded, pointer swapped",
                             interval=0.2)
        except harness.Timeout as e:
            ups = {c: self.fs.status(c).get("upload") for c in self.colls}
            self.st.finding("s3", f"{e}; upload status: {json.dumps(ups)}")

    def audit_final(self):
        """From the STORE of the stopped daemon and its last snapshots."""
        good, bad = self.st.acked_lists()
        applied_total = rejected_total = unacked_applied = 0
        for coll in self.colls:
            cdir = self.fs.store_path(coll)
            ids = self.verify_store_snapshots(coll, "at the end")
            # leftovers: staging/, queue/, non-dot incoming/, *.tmp crumbs
            for area in ("staging", "queue"):
                for n in _listdir(os.path.join(cdir, area)):
                    self.st.finding("leftover", f"{coll}: {area}/{n} left after a clean stop")
            dots = []
            for n in _listdir(os.path.join(cdir, "incoming")):
                if n.startswith("."):
                    dots.append(n)
                else:
                    self.st.finding("leftover", f"{coll}: incoming/{n} never queued")
            self.final.setdefault("stale_dot_files", {})[coll] = len(dots)
            for root, dirs, files in os.walk(cdir):
                if os.path.relpath(root, cdir).split(os.sep)[0] == "incoming":
                    continue
                for n in files + dirs:
                    if n.endswith(".tmp"):
                        self.st.finding("leftover", f"crumb {os.path.join(root, n)}")
            # latest names the newest snapshot
            try:
                latest = int(os.path.basename(os.readlink(os.path.join(cdir, "latest"))))
            except OSError:
                latest = None
            if not ids or latest != ids[-1]:
                newest = ids[-1] if ids else None
                self.st.finding("id_errors", f"{coll}: latest -> {latest}, newest snapshot {newest}")
                if latest not in ids:
                    continue
            # ids and manifests over the whole run
            seen = sorted((sid, m) for sid, m in self.verified[coll].items() if m)
            for (a, ma), (b, mb) in zip(seen, seen[1:]):
                if not (ma["ledger_max"] < mb["ledger_max"]):
                    self.st.finding("id_errors", f"{coll}: snapshot {a:08d} has ledger_max {ma['ledger_max']}, "
                                                 f"later snapshot {b:08d} has {mb['ledger_max']}")
            in_manifest = {}
            for sid, m in seen:
                for e in m["deltas"]:
                    prev = in_manifest.get(e["sha256"])
                    if prev and prev[1] != e["seq"]:
                        self.st.finding("twice", f"{coll}: delta {e['name']} is new in snapshot {prev[0]:08d} "
                                                 f"(seq {prev[1]}) and in {sid:08d} (seq {e['seq']})")
                    in_manifest.setdefault(e["sha256"], (sid, e["seq"]))
            db = os.path.join(cdir, "snapshots", "%08d" % latest, coll + ".sqlite3")
            a = self.audit_ledger_and_tables(coll, db, good, bad)
            applied_total += a["applied"]
            unacked_applied += a["unacked_applied"]
            # corrupt acknowledged deltas are in rejected/; good ones are not
            rej = {}
            rnames = set(_listdir(os.path.join(cdir, "rejected")))
            for n in sorted(rnames):
                if n.endswith(".reason") or n.endswith(".reason.tmp"):
                    continue
                rejected_total += 1
                if n + ".reason" not in rnames:
                    self.st.finding("leftover", f"{coll}: rejected/{n} has no .reason (a rejection half "
                                                f"done when a kill came, never finished)")
                s = self.sha_of(os.path.join(cdir, "rejected", n))
                rej.setdefault(s, []).append(n)
            for x in bad:
                if x.coll == coll and x.sha not in rej and x.sha not in self.st.lost_at_kill:
                    self.st.finding("lost", f"corrupt {x} (acknowledged) is not in rejected/")
            partials = 0
            good_names = {d.name for d in self.st.good if d.coll == coll}
            good_names |= {r.name for lst in self.st.resends.values() for r in lst if r.coll == coll}
            for s, names in rej.items():
                d = self.st.by_sha.get(s)
                partials += sum(1 for n in names if re.sub(r"\.\d+$", "", n) in good_names)
                if d is not None and not d.corrupt:
                    reason = harness._read(os.path.join(cdir, "rejected", names[0] + ".reason")).strip()
                    if d.acked and d.sha not in a["ledger"]:
                        # counted as LOST by the ledger audit; this says where it went
                        self.st.finding("lost", f"good delta {d} was rejected: {reason}", count=False)
                    else:
                        self.st.finding("wrong", f"good delta {d} (complete, valid) was rejected: {reason}")
            self.final.setdefault("partials_rejected", {})[coll] = partials
            # live ledger = ledger of latest (all applied work published)
            live_max = max((s for s, _, _ in self.live_ledger(coll)), default=0)
            latest_max = max(a["ledger"].values(), default=0)
            if live_max != latest_max:
                self.st.finding("lost", f"{coll}: live ledger reaches seq {live_max} but latest only "
                                        f"{latest_max}: applied, never published", count=False)
        self.final.update(applied=applied_total, rejected=rejected_total, unacked_applied=unacked_applied)

    def audit_ledger_and_tables(self, coll, db, good, bad):
        """Replays the ledger of the last snapshot over the catalog and
        compares with the tables."""
        c = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
        try:
            rows = c.execute("SELECT seq, sha256, name FROM _snapfs_ledger ORDER BY seq").fetchall()
            ledger = {}
            for seq, sha, name in rows:
                sha = sha.lower()
                if sha in ledger:
                    self.st.finding("twice", f"{coll}: ledger holds sha256 {sha} ({name}) at seq "
                                             f"{ledger[sha]} and {seq}")
                ledger.setdefault(sha, seq)
            byname = {}
            for seq, sha, name in rows:
                byname.setdefault(name, []).append((seq, sha.lower()))
            for name, lst in byname.items():
                known = [self.st.by_sha.get(s) for _, s in lst]
                if len(lst) > 1 and all(k is not None and not k.corrupt for k in known) \
                        and len({k.name for k in known}) == 1:
                    self.st.finding("twice", f"{coll}: {name} in the ledger at seqs {[s for s, _ in lst]}")
            # replay
            order = []
            for seq, sha, name in rows:
                d = self.st.by_sha.get(sha.lower())
                if d is None:
                    self.st.finding("corrupt_applied", f"{coll}: ledger seq {seq} {name} sha256 {sha} is no "
                                                       f"delta any writer completed (a torn partial applied?)")
                    continue
                if d.corrupt:
                    if d.sha not in self.st.lost_at_kill:
                        self.st.finding("corrupt_applied", f"{coll}: corrupt {d} applied at seq {seq}")
                    continue
                if d.coll != coll:
                    self.st.finding("wrong", f"{coll}: ledger seq {seq} is {d} of another collection")
                    continue
                if name != d.name:
                    again = [r.name for r in self.st.resends.get(d.sha, [])]
                    if name in again:
                        self.st.finding("lost", f"{coll}: {d} never got into the ledger under its own name; its "
                                                f"re-send {name} did (seq {seq})")
                    else:
                        self.st.finding("wrong", f"{coll}: ledger seq {seq} names {name}, delta was written as "
                                                 f"{d.name}")
                order.append((seq, d))
            present, reg, marks, wstate, seq_of = {}, {}, {}, {}, {}
            for seq, d in order:
                seq_of[d] = seq
                if d.del_target is not None:
                    present[d.del_target] = False
                if d.del_mark is not None:
                    marks.pop(d.del_mark, None)
                present[d] = True
                for k in d.reg:
                    reg[k] = d
                marks[d.mark] = d
                wstate[d.writer] = d
            byname_d = {d.name: d for d in self.st.good if d.coll == coll}
            twice = set()

            def judge(actual_name, expected, what):
                a = byname_d.get(actual_name)
                if a is not None and a in seq_of and (expected is None or seq_of[a] < seq_of.get(expected, 0)):
                    twice.add(a)
                    later = f"the later delta {expected.name} replaced" if expected else "a later delta deleted"
                    self.st.finding("twice", f"{coll}: {what} holds {actual_name} (seq {seq_of[a]}), which "
                                             f"{later}: applied again")
                else:
                    self.st.finding("wrong", f"{coll}: {what} holds {actual_name}, the ledger replay says "
                                             f"{expected.name if expected else 'nothing'}")
            for k, dname in c.execute("SELECT k, delta FROM reg"):
                if reg.get(k) is None or reg[k].name != dname:
                    judge(dname, reg.get(k), f"reg[{k}]")
            for k in set(reg) - {k for (k,) in c.execute("SELECT k FROM reg")}:
                self.st.finding("wrong", f"{coll}: reg[{k}] missing, ledger replay says {reg[k].name}")
            actual_marks = dict(c.execute("SELECT id, delta FROM marks").fetchall())
            for mid, dname in actual_marks.items():
                if mid not in marks or marks[mid].name != dname:
                    judge(dname, None, f"marks[{mid}]")
            for mid in set(marks) - set(actual_marks):
                self.st.finding("wrong", f"{coll}: marks[{mid}] of {marks[mid].name} missing")
            actual_ws = dict((w, d) for w, d, _ in c.execute("SELECT writer, delta, k FROM wstate"))
            for w, dname in actual_ws.items():
                if w not in wstate or wstate[w].name != dname:
                    judge(dname, wstate.get(w), f"wstate[{w}]")
            for w in set(wstate) - set(actual_ws):
                self.st.finding("wrong", f"{coll}: wstate[{w}] missing")
            # items: each delta's range holds all its rows (right values) or none
            known_total = 0
            for d in [d for d in self.st.good if d.coll == coll] + [x for x in self.st.bad if x.coll == coll]:
                got = c.execute("SELECT count(*) FROM items WHERE id >= ? AND id < ?",
                                (d.lo, d.lo + d.n)).fetchone()[0]
                want = d.n if present.get(d) else 0
                known_total += got
                if got == want:
                    if want:
                        ok = c.execute(CHECK_ITEMS, {"lo": d.lo, "hi": d.lo + d.n, "name": d.name,
                                                     "pad": d.pad}).fetchone()[0]
                        if ok != d.n:
                            self.st.finding("wrong", f"{coll}: {d}: {d.n - ok} of {d.n} rows with wrong values")
                    continue
                if d.corrupt:
                    self.st.finding("corrupt_applied", f"{coll}: {got} rows of corrupt {d} in items")
                elif want == 0 and d in seq_of:
                    if d not in twice:
                        twice.add(d)
                        self.st.finding("twice", f"{coll}: {got} rows of {d} (seq {seq_of[d]}) are back after a "
                                                 f"later delta deleted them: applied again")
                else:
                    self.st.finding("wrong", f"{coll}: {d}: {got} rows in items, ledger replay says {want}"
                                             f"{'' if d in seq_of else ' (not in the ledger)'}")
            total = c.execute("SELECT count(*) FROM items").fetchone()[0]
            if total != known_total:
                self.st.finding("wrong", f"{coll}: items holds {total - known_total} rows outside the id range "
                                         f"of every delta written")
            tables = {n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            odd = tables - TABLES - {"_snapfs_ledger"}
            if odd:
                self.st.finding("corrupt_applied", f"{coll}: tables no good delta has: {sorted(odd)}")
            others = c.execute("SELECT type, name FROM sqlite_master "
                               "WHERE type IN ('view', 'trigger')").fetchall()
            if others:
                self.st.finding("corrupt_applied", f"{coll}: {others} in the collection")
        finally:
            c.close()
        applied = unacked = 0
        for d in good:
            if d.coll != coll:
                continue
            if d.sha in ledger:
                applied += 1
            elif d.sha not in self.st.lost_at_kill:
                self.st.finding("lost", f"{d} (sha256 {d.sha}, acknowledged, {d.method}, "
                                        f"{d.attempts} attempt(s)) "
                                        f"is not in the ledger of the last snapshot")
        for d in self.st.good:
            if d.coll == coll and not d.acked and d.sha in ledger:
                unacked += 1
        return {"applied": applied, "unacked_applied": unacked, "ledger": ledger}

    # -- report

    def report(self, interrupted=None):
        c = self.st.c
        f = self.final
        print("", flush=True)
        print(f"chaos: seed={self.seed} kills={c['kills']} restarts={c['restarts']} "
              f"writers={self.args.writers}+{self.args.corrupt_writers} corrupt readers={self.args.readers} "
              f"collections={len(self.colls)} snapfs={harness.SNAPFS_BIN}")
        modes = ", ".join(f"{k} {v}" for k, v in sorted(self.st.kill_modes.items()))
        print(f"  kills by moment: {modes}")
        print(f"  good deltas: written {len(self.st.good)}, acknowledged {c['acked']} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(self.st.acked_by_method.items()))}), "
              f"applied {f.get('applied', '-')}, "
              f"applied without acknowledgement {f.get('unacked_applied', '-')}, "
              f"failed attempts {c['unacked_attempts']}, abandoned {c['abandoned']}; "
              f"re-sent duplicates acknowledged {c['resends_acked']}")
        print(f"  corrupt deltas: written {len(self.st.bad)}, acknowledged {c['corrupt_acked']}; "
              f"rejected/ holds {f.get('rejected', '-')} (of which torn partials of good deltas, "
              f"left by killed writes: {sum(f.get('partials_rejected', {}).values())})")
        by_mode = ", ".join(f"{k} {v}" for k, v in sorted(self.st.reads_by_mode.items()))
        print(f"  reads: ok {c['reads_ok']} ({by_mode}), "
              f"interrupted by a kill {c['reads_interrupted']}, snapshot retired {c['reads_retired']}, "
              f"latest moved {c['reads_raced']}; "
              f"slow reads that outlived their snapshot {c['reads_slow_outlived']}")
        print(f"  stale rsync/mv dot-files left in incoming/: {sum(f.get('stale_dot_files', {}).values())}")
        if self.s3:
            print(f"  S3: pointer generations {self.s3.gen}, faults armed {self.s3.faults}, "
                  f"proxy {self.s3.proxy.stats()}")
        if self.st.log_errors:
            print(f"  error lines in daemon logs: {len(self.st.log_errors)}; first: {self.st.log_errors[:3]}")
        if self.st.odd_output:
            print(f"  other output in daemon logs: {len(self.st.odd_output)}; first: {self.st.odd_output[:3]}")
        print("  " + " ".join(f"{LABELS[k].replace(' ', '_')}={c[k]}" for k in FAIL_KEYS))
        print(f"  elapsed={self.st.elapsed():.1f}s")
        errors = [t.name for t in self.writers + self.readers if t.error]
        bad = [k for k in FAIL_KEYS if c[k]]
        if interrupted:
            print(f"RESULT: FAIL (run interrupted: {interrupted})")
        elif bad or errors:
            print(f"RESULT: FAIL ({', '.join(LABELS[k] for k in bad)}"
                  f"{'; harness errors in ' + ', '.join(errors) if errors else ''}); seed {self.seed}, "
                  f"workdir {self.workdir}")
            by = {}
            for key, t, text in self.st.findings:
                by.setdefault(key, []).append(f"  +{t}s {text}")
            for key, lines in by.items():
                print(f"{LABELS.get(key, key)} ({len(lines)}):")
                print("\n".join(lines[:15]))
        else:
            print("RESULT: PASS")
        summary = {"seed": self.seed, "counters": c, "final": f, "kill_modes": self.st.kill_modes,
                   "acked_by_method": self.st.acked_by_method, "reads_by_mode": self.st.reads_by_mode,
                   "elapsed": round(self.st.elapsed(), 1), "findings": self.st.findings,
                   "log_errors": self.st.log_errors[:200], "odd_output": self.st.odd_output[:200]}
        with open(os.path.join(self.workdir, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1, default=str)
        sys.stdout.flush()
        return 1 if (bad or errors or interrupted) else 0

    def teardown(self):
        self.stop_writers.set()
        self.stop_readers.set()
        if self.fs.proc is not None and self.fs.proc.poll() is None:
            self.life.down()
            self.fs.kill9()
        elif self.fs.mounted():
            harness.run(["fusermount3", "-u", "-z", self.fs.mnt], check=False)
        if self.s3:
            self.s3.stop()



def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Counters and method: see the module docstring, or RELIABILITY.md.")
    p.add_argument("--kills", type=int, default=30, help="SIGKILLs before the final check (30)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every random choice (default: a random one, printed)")
    p.add_argument("--writers", type=int, default=3, help="good writers; they take cp, rsync, mv in turn (3)")
    p.add_argument("--corrupt-writers", type=int, default=1, help="writers of corrupt deltas (1)")
    p.add_argument("--readers", type=int, default=2, help="readers of latest (2)")
    p.add_argument("--collections", type=int, default=2, help="collections written to (2)")
    p.add_argument("--interval", type=float, default=1.2,
                   help="longest random wait before a kill, seconds (1.2)")
    p.add_argument("--resend", type=float, default=0.05,
                   help="chance that a good writer sends an old acknowledged delta again, new name (0.05)")
    p.add_argument("--pace", type=float, default=0.1, help="longest pause of a writer between deltas, s (0.1)")
    p.add_argument("--read-pace", type=float, default=0.2,
                   help="longest pause of a reader between reads, s (0.2)")
    p.add_argument("--workdir", default=None,
                   help="STORE, mount, deltas and logs go here; must be empty (default: a new temp dir)")
    p.add_argument("--snapfs", default=None, help="the snapfs binary (default: $SNAPFS_BIN or build/src/mount/snapfs)")
    p.add_argument("--s3", action="store_true",
                   help="also upload to a throwaway radosgw behind a fault proxy, and check the pointer")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the workdir after a clean run (it is always kept after a failure)")
    a = p.parse_args(argv)
    if a.kills < 1 or a.writers < 1 or a.readers < 0 or a.collections < 1 or a.corrupt_writers < 0:
        p.error("--kills, --writers, --collections must be >= 1; --readers, --corrupt-writers >= 0")
    return a


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main(argv=None):
    args = parse_args(argv)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big") % 1_000_000
    if args.snapfs:
        harness.SNAPFS_BIN = os.path.abspath(args.snapfs)
    why = harness.fuse_unusable(("fusermount3", "rsync", "sqlite3"))
    if why:
        if os.environ.get("SNAPFS_REQUIRE_FUSE") == "1":
            print(f"chaos: FUSE unusable ({why}) but SNAPFS_REQUIRE_FUSE=1", flush=True)
            return 1
        print(f"chaos: skipped: FUSE unusable ({why})", flush=True)
        return EXIT_SKIP
    if args.s3:
        why = s3_unavailable()
        if why:
            if os.environ.get("SNAPFS_REQUIRE_S3") == "1":
                print(f"chaos: S3 test server unavailable ({why}) but SNAPFS_REQUIRE_S3=1", flush=True)
                return 1
            print(f"chaos: skipped: S3 test server unavailable ({why})", flush=True)
            return EXIT_SKIP
    if not os.access(harness.SNAPFS_BIN, os.X_OK):
        print(f"chaos: snapfs binary not found at {harness.SNAPFS_BIN} (--snapfs or SNAPFS_BIN)", flush=True)
        return 1
    made_workdir = args.workdir is None
    if made_workdir:
        args.workdir = tempfile.mkdtemp(prefix="snapfs-chaos-")
    else:
        args.workdir = os.path.abspath(args.workdir)
        os.makedirs(args.workdir, exist_ok=True)
        if os.listdir(args.workdir):
            print(f"chaos: --workdir {args.workdir} is not empty", flush=True)
            return 2
    print(f"chaos: seed={args.seed} kills={args.kills} writers={args.writers} "
          f"corrupt-writers={args.corrupt_writers} readers={args.readers} collections={args.collections} "
          f"snapfs={harness.SNAPFS_BIN} workdir={args.workdir}", flush=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        ch = Chaos(args)
    except Exception:  # noqa: BLE001 - e.g. radosgw did not start
        traceback.print_exc()
        return 1
    interrupted = None
    try:
        ch.run()
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except AssertionError as e:
        interrupted = str(e).splitlines()[0] if str(e) else "assertion"
        if ch.st.c["restart_failed"] == 0:
            traceback.print_exc()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        interrupted = "harness error"
    finally:
        ch.teardown()
    rc = ch.report(interrupted)
    if rc == 0 and not args.keep_workdir and made_workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
    else:
        print(f"chaos: workdir kept: {args.workdir}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
