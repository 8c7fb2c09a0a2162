"""Helpers for snapfs integration tests: run a real mount, wait for
conditions, make delta databases, run real tools.

Nothing here sleeps to let things settle: every wait polls a condition
(mounted, a status field, a row in a snapshot) with a deadline, and a
timeout names what was awaited and what was last seen.
"""

import errno
import hashlib
import json
import os
import shutil
import re
import signal
import sqlite3
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))  # tests/pylib/snapfs_test
SNAPFS_BIN = os.environ.get("SNAPFS_BIN") or os.path.join(REPO, "build", "src", "mount", "snapfs")

# Markers of sanitizer reports in the daemon's log: any one fails the test.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def fuse_unusable(tools=("fusermount3",)):
    """Why FUSE mounts cannot run here (not root, a tool missing, no
    usable /dev/fuse, no snapfs binary), or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as e:
        return f"/dev/fuse: {e.strerror}"
    os.close(fd)
    if not os.access(SNAPFS_BIN, os.X_OK):
        return f"snapfs binary not found at {SNAPFS_BIN} (set SNAPFS_BIN)"
    return None


def exit_unless_usable(why, require_vars, what):
    """At session start: nothing if why is None; else end the session,
    with exit 77 (meson's SKIP), or 1 when one of require_vars is "1" (CI
    must not skip)."""
    import pytest
    if why is None:
        return
    given = [v for v in require_vars if os.environ.get(v) == "1"]
    if given:
        pytest.exit(f"{what} cannot run ({why}) but {given[0]}=1", returncode=1)
    pytest.exit(f"skipping {what}: {why}", returncode=77)


def close_all(made):
    """Closes (and checks) every Snapfs in made; fails the test with every
    teardown error together."""
    import pytest
    errors = []
    for fs in made:
        try:
            fs.close()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "\n".join(errors), pytrace=False)

# What a line of the daemon's own log looks like (-f: one line per event).
# Anything else in its output (a libfuse complaint, an assertion) and any
# err-level line is unexpected and fails the test, unless the test said
# it expects it (Snapfs.expect_output).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z snapfs (warning|info|debug): ")
# Known output that is not snapfs's: libfuse 3.14.0 complains when
# fuse_loop_cfg_set_idle_threads() is given its own "unset" value UINT_MAX.
KNOWN_OUTPUT = [re.compile(r"^Ignoring invalid max threads value 4294967295 > max \(100000\)\.$")]

# Writes outside incoming/ must fail with one of these.
READONLY_ERRNOS = (errno.EROFS, errno.EACCES)


class Timeout(AssertionError):
    pass


class DaemonDied(AssertionError):
    """The daemon under test exited while a test was waiting on it."""


def wait_for(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns something truthy and returns that.
    Exceptions from pred count as "not yet" (the last one is reported)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last = v
        except DaemonDied:
            raise
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def run(cmd, check=True, timeout=120, **kw):
    """Runs a real tool; returns the CompletedProcess (text, captured)."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def sha256_fd(fd):
    """Reads an open fd from offset 0 to EOF; returns (sha256, size)."""
    h = hashlib.sha256()
    off = 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            return h.hexdigest(), off
        h.update(b)
        off += len(b)


# ---------------------------------------------------------------- deltas

ITEMS_SCHEMA = "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT)"


def make_db(path, *sql, params=None):
    """Creates a SQLite database at path by running each statement; returns
    its sha256. The file is closed and has no journal left."""
    if os.path.exists(path):
        os.unlink(path)
    c = sqlite3.connect(path)
    try:
        for s in sql:
            c.execute(s)
        c.commit()
    finally:
        c.close()
    return sha256_file(path)


def make_delta(path, rows=(), deletes=(), extra_sql=()):
    """A delta for table items(id INTEGER PRIMARY KEY, body TEXT): rows are
    (id, body) upserts, deletes are ids listed in _snapfs_delete_items.
    Returns the delta's sha256."""
    if os.path.exists(path):
        os.unlink(path)
    c = sqlite3.connect(path)
    try:
        c.execute(ITEMS_SCHEMA)
        c.executemany("INSERT INTO items VALUES(?, ?)", list(rows))
        if deletes:
            c.execute("CREATE TABLE _snapfs_delete_items(id INTEGER PRIMARY KEY)")
            c.executemany("INSERT INTO _snapfs_delete_items VALUES(?)", [(d,) for d in deletes])
        for s in extra_sql:
            c.execute(s)
        c.commit()
    finally:
        c.close()
    return sha256_file(path)


def make_big_delta(path, first_id, nrows, body_bytes=100, rows=(), deletes=()):
    """A large items delta made inside SQLite (fast): ids first_id..,
    random bodies so every call gives a different file; plus rows and
    deletes as in make_delta."""
    if os.path.exists(path):
        os.unlink(path)
    c = sqlite3.connect(path)
    try:
        c.execute("PRAGMA journal_mode=OFF")
        c.execute("PRAGMA synchronous=OFF")
        c.execute(ITEMS_SCHEMA)
        c.execute(
            "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x + 1 < ?) "
            "INSERT INTO items SELECT ? + x, hex(randomblob(?)) FROM n",
            (nrows, first_id, body_bytes // 2))
        c.executemany("INSERT INTO items VALUES(?, ?)", list(rows))
        if deletes:
            c.execute("CREATE TABLE _snapfs_delete_items(id INTEGER PRIMARY KEY)")
            c.executemany("INSERT INTO _snapfs_delete_items VALUES(?)", [(d,) for d in deletes])
        c.commit()
    finally:
        c.close()
    return sha256_file(path)


def sqlite_query(path, sql, params=(), immutable=False):
    """Opens path read-only (as a reader of the mount would) and runs sql.
    immutable: for files in a STORE, so SQLite creates nothing beside them."""
    uri = f"file:{path}?mode=ro" + ("&immutable=1" if immutable else "")
    c = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return c.execute(sql, params).fetchall()
    finally:
        c.close()


def integrity(path, immutable=False):
    rows = sqlite_query(path, "PRAGMA integrity_check", immutable=immutable)
    return "\n".join(r[0] for r in rows)


# ---------------------------------------------------------------- the mount

class Snapfs:
    """One snapfs daemon in the foreground (-f) on a STORE and MOUNT of its
    own, with its stderr in a log file. May be stopped and started again on
    the same STORE; every log it wrote is scanned for sanitizer reports."""

    def __init__(self, workdir, store=None, mnt=None, opts=("batch_delay=50",)):
        self.workdir = str(workdir)
        self.store = str(store or os.path.join(self.workdir, "store"))
        self.mnt = str(mnt or os.path.join(self.workdir, "mnt"))
        self.opts = list(opts)
        self.env = {}  # extra environment of the daemon (fault injection)
        self.proc = None
        self.logs = []
        self.starts = 0
        self.expected = list(KNOWN_OUTPUT)
        os.makedirs(self.mnt, exist_ok=True)

    def inject_faults(self, rules, gate=None, trace=None, mark=None):
        """Runs the daemon under tests/faults/faultfs.c (LD_PRELOAD) with
        these rules ("OP:PATTERN:ERRNO[:COUNT[:DELAY_MS]]", see faultfs.c).
        gate: a file that must exist for the rules to apply (made here)."""
        lib = os.environ.get("SNAPFS_FAULTFS") or os.path.join(REPO, "build", "tests", "libfaultfs.so")
        assert os.path.exists(lib), f"fault injection library not built: {lib}"
        self.env["LD_PRELOAD"] = lib
        self.env["SNAPFS_FAULTS"] = ";".join(rules)
        # An ASan build wants its runtime first; faultfs only wraps libc calls.
        asan = os.environ.get("ASAN_OPTIONS", "")
        self.env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        if gate:
            open(gate, "w").close()
            self.env["SNAPFS_FAULTS_GATE"] = gate
        if trace:
            self.env["SNAPFS_FAULTS_TRACE"] = trace
        if mark:
            self.env["SNAPFS_FAULTS_MARK"] = mark

    def expect_output(self, regex):
        """Lets lines matching regex appear in the daemon's output."""
        self.expected.append(re.compile(regex))

    # -- life cycle

    def spawn(self, opts=None, args=()):
        """Starts the daemon (foreground) without waiting for the mount."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = os.path.join(self.workdir, f"snapfs-{self.starts}.log")
        self.logs.append(log)
        cmd = [SNAPFS_BIN, self.store, self.mnt, "-f"]
        o = list(self.opts if opts is None else opts)
        if o:
            cmd += ["-o", ",".join(o)]
        cmd += list(args)
        env = dict(os.environ, **self.env) if self.env else None
        with open(log, "wb") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env)
        return self.proc

    def start(self, opts=None, args=(), timeout=20):
        self.spawn(opts, args)
        self.wait_mounted(timeout)
        return self

    def wait_mounted(self, timeout=20):
        def ready():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"snapfs exited with {rc} before mounting:\n{self.log_text()}")
            return os.path.ismount(self.mnt)
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"snapfs did not mount {self.mnt} in {timeout}s:\n{self.log_text()}")
            time.sleep(0.02)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def unmount(self, timeout=60):
        """fusermount3 -u; requires the daemon to exit 0."""
        run(["fusermount3", "-u", self.mnt])
        return self.wait_exit(timeout, expect=0)

    def signal(self, sig, timeout=60):
        """Sends sig; requires the daemon to exit 0 and the mount to go."""
        self.proc.send_signal(sig)
        rc = self.wait_exit(timeout, expect=0)
        wait_for(lambda: not self.mounted(), 10, "the mount to go away")
        return rc

    def wait_exit(self, timeout=60, expect=None):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"snapfs did not exit within {timeout}s:\n{self.log_text()}")
        if expect is not None and rc != expect:
            raise AssertionError(f"snapfs exited {rc}, expected {expect}:\n{self.log_text()}")
        return rc

    def mounted(self):
        """True while the kernel has a mount at mnt, even a dead one
        (os.path.ismount says False there: its stat fails ENOTCONN)."""
        return in_mount_table(self.mnt)

    def kill9(self):
        """SIGKILL, then detach the dead mount so it can be mounted again."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        if self.mounted():
            run(["fusermount3", "-u", "-z", self.mnt], check=False)
        wait_for(lambda: not self.mounted(), 10, "the dead mount to go away")

    def close(self):
        """Teardown: unmount if still mounted (requiring exit 0), then scan
        every log for sanitizer reports. Raises AssertionError on either."""
        problems = []
        if self.running():
            p = run(["fusermount3", "-u", self.mnt], check=False)
            try:
                rc = self.proc.wait(60)
                if rc != 0:
                    problems.append(f"snapfs exited {rc} on unmount")
            except subprocess.TimeoutExpired:
                problems.append(f"snapfs did not exit after fusermount3 -u ({p.stderr.strip()})")
                self.proc.kill()
                self.proc.wait()
        if self.mounted():
            run(["fusermount3", "-u", "-z", self.mnt], check=False)
            problems.append(f"{self.mnt} was still mounted after the daemon exited")
        for log in self.logs:
            text = _read(log)
            for m in SANITIZER_MARKERS:
                if m in text:
                    problems.append(f"sanitizer report ({m!r}) in {log}")
            odd = [line for line in text.splitlines()
                   if not LOG_LINE.match(line) and not any(r.search(line) for r in self.expected)]
            if odd:
                problems.append(f"unexpected output in {log}: " + " | ".join(odd[:5]))
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + self.log_text())

    def log_text(self, tail=6000):
        out = []
        for log in self.logs:
            t = _read(log)
            out.append(f"--- {log} ---\n{t[-tail:]}")
        return "\n".join(out)

    # -- paths and reading

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def store_path(self, coll, *parts):
        return os.path.join(self.store, "collections", coll, *parts)

    def mkcoll(self, name):
        os.mkdir(self.path(name))
        return name

    def check_alive(self):
        """Raises DaemonDied (ending any wait_for at once) if the daemon
        exited on its own."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonDied(f"snapfs exited with {self.proc.returncode} while the test waited on it:\n"
                             + self.log_text())

    def status(self, coll=None):
        self.check_alive()
        p = self.path(".snapfs", "status") if coll is None else self.path(coll, "status")
        with open(p) as f:
            return json.load(f)

    def metrics(self):
        with open(self.path(".snapfs", "metrics")) as f:
            return f.read()

    def metric(self, name, coll):
        """Value of name{collection="coll"} in .snapfs/metrics, or None."""
        key = f'{name}{{collection="{coll}"}}'
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return None

    def snapshot_ids(self, coll):
        return sorted(int(n) for n in os.listdir(self.path(coll, "snapshots")))

    def latest_id(self, coll):
        """Id latest points at, or None while there is none."""
        try:
            target = os.readlink(self.path(coll, "latest"))
        except FileNotFoundError:
            return None
        return int(os.path.basename(target.rstrip("/")))

    def snap_dir(self, coll, sid):
        return self.path(coll, "snapshots", "%08d" % sid)

    def snap_db(self, coll, sid):
        return os.path.join(self.snap_dir(coll, sid), coll + ".sqlite3")

    def manifest(self, coll, sid):
        with open(os.path.join(self.snap_dir(coll, sid), "MANIFEST.json")) as f:
            return json.load(f)

    def query(self, coll, sql, params=(), sid=None):
        """Runs sql on snapshot sid (default: the one latest points at)."""
        if sid is None:
            sid = self.latest_id(coll)
            assert sid is not None, f"{coll} has no snapshot yet"
        return sqlite_query(self.snap_db(coll, sid), sql, params)

    def ledger(self, coll, sid=None):
        """{sha256: name} of the ledger in a snapshot (default latest)."""
        rows = self.query(coll, "SELECT sha256, name FROM _snapfs_ledger", sid=sid)
        return {s.lower(): n for s, n in rows}

    def wait_applied(self, coll, shas, timeout=60):
        """Waits until every sha is in the ledger of the latest snapshot."""
        want = {s.lower() for s in shas}

        def done():
            self.check_alive()
            if self.latest_id(coll) is None:
                return False
            missing = want - set(self.ledger(coll))
            if missing:
                raise AssertionError(f"{len(missing)} of {len(want)} deltas not yet in latest")
            return True
        return wait_for(done, timeout, f"{len(want)} delta(s) applied in {coll}")

    def wait_rejected(self, coll, name, timeout=60):
        """Waits for rejected/name and its .reason; returns the reason."""
        rej = self.path(coll, "rejected")

        def done():
            self.check_alive()
            names = os.listdir(rej)
            if name in names and name + ".reason" in names:
                with open(os.path.join(rej, name + ".reason")) as f:
                    return f.read() or False
            return False
        return wait_for(done, timeout, f"{name} to land in {coll}/rejected/")

    def wait_idle(self, coll, timeout=60):
        """Waits until nothing is queued and the compactor is idle."""
        return wait_for(
            lambda: (lambda s: s if s["queued"] == 0 and s["state"] == "idle" else False)(self.status(coll)),
            timeout, f"{coll} idle with an empty queue")

    def submit(self, coll, src, name=None):
        """cp src into incoming/ (cp(1), a real tool); returns the path."""
        dst = self.path(coll, "incoming", name or os.path.basename(src))
        run(["cp", src, dst])
        return dst

    def use(self, coll, workdir, body):
        """What a user does first: mkdir a collection, cp a delta of one
        row (1, body) into it, and wait to read that row from latest."""
        self.mkcoll(coll)
        src = os.path.join(str(workdir), f"{coll}-first.db")
        sha = make_delta(src, rows=[(1, body)])
        self.submit(coll, src)
        self.wait_applied(coll, [sha])
        assert self.query(coll, "SELECT body FROM items") == [(body,)]


def in_mount_table(path):
    """Whether path is a mount point in /proc/self/mountinfo."""
    want = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == want:
                return True
    return False


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def assert_readonly(fn, what):
    """fn() must raise OSError with EROFS or EACCES."""
    try:
        fn()
    except OSError as e:
        assert e.errno in READONLY_ERRNOS, f"{what}: {os.strerror(e.errno)} (errno {e.errno}), want EROFS or EACCES"
        return
    raise AssertionError(f"{what}: succeeded, want EROFS or EACCES")


def verify_snapshot(snapdir, coll, immutable=False):
    """Checks one published snapshot directory (in the mount, or in a STORE
    with immutable=True): both files, manifest sha and size equal the file,
    integrity ok. Returns the manifest."""
    with open(os.path.join(snapdir, "MANIFEST.json")) as f:
        m = json.load(f)
    db = os.path.join(snapdir, coll + ".sqlite3")
    sha = sha256_file(db)
    assert sha == m["sha256"], f"{db}: sha256 {sha} != manifest {m['sha256']}"
    assert os.path.getsize(db) == m["size"], f"{db}: size != manifest"
    ic = integrity(db, immutable)
    assert ic == "ok", f"{db}: integrity_check: {ic}"
    return m
