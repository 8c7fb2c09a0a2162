#!/usr/bin/env python3
"""A throwaway Ceph RADOS Gateway (S3 server) for tests.

Facts behind it: ../../../shared/s3-test-server.md. Ceph 16 (Debian 12) has
no standalone radosgw, so this starts a one-node cluster in a fresh temp
dir: one monitor, one storage daemon keeping everything in RAM (memstore)
and radosgw, all bound to 127.0.0.1 on free ports, with a private
ceph.conf. Nothing outside the temp dir is read or written.

As a module:

    from snapfs_test.radosgw import RadosGW
    with RadosGW() as gw:            # ready: user made, gw.bucket created
        s3 = gw.client()             # boto3, path-style, us-east-1
        s3.put_object(Bucket=gw.bucket, Key="k", Body=b"v")
        gw.endpoint, gw.access_key, gw.secret_key, gw.region, gw.env()

As a command:

    python3 tests/pylib/snapfs_test/radosgw.py install   # Debian packages it needs
    python3 tests/pylib/snapfs_test/radosgw.py run       # start one, print `export ...`
                                          # lines, serve until SIGTERM/^C
    python3 tests/pylib/snapfs_test/radosgw.py probe     # start one, print timings and
                                          # memory as JSON, stop

The daemons run in the foreground as children of the process that started
them, each in its own session (a ^C in the terminal reaches only us), with
PR_SET_PDEATHSIG=SIGKILL: if that process dies however it dies (even
SIGKILL), the kernel kills them. stop() (also run from atexit) SIGTERMs
each daemon by the pid in its pid file, SIGKILLs it after a grace period,
and removes the temp dir. A temp dir left by a dead owner is removed by the
next start. (PR_SET_PDEATHSIG follows the *thread* that started the
daemons: start a RadosGW from a thread that lives as long as it should,
normally the main thread, as pytest fixtures are.)

Environment: SNAPFS_RGW_START_TIMEOUT (seconds, default 120) bounds a
start; SNAPFS_RGW_KEEP=1 keeps the temp dir (logs, ceph.conf) after stop.
"""

import atexit
import base64
import hashlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

PACKAGES = ("radosgw", "ceph-mon", "ceph-osd", "python3-boto3")
BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")

# Fixed test credentials (shaped like AWS's: 20-char key id, 40-char secret
# with '/' and '+' so clients' encoding gets exercised).
ACCESS_KEY = "SNAPFSTESTKEY0000001"
SECRET_KEY = "snapfs/test+secret/0000000000000000000000"
REGION = "us-east-1"
BUCKET = "snapfs-test"
USER = "snapfs-test"

DIR_PREFIX = "snapfs-rgw-"
MEMSTORE_BYTES = 4 << 30
START_TIMEOUT = float(os.environ.get("SNAPFS_RGW_START_TIMEOUT", "120"))
STOP_GRACE = 10.0
# A unix socket path must fit in 108 bytes: "<dir>/run/client.rgw.a.<pid>.asok".
MAX_DIR_LEN = 70


class RadosGWError(RuntimeError):
    """Start or stop failed; the message carries the daemons' log tails."""


class RadosGWUnavailable(RadosGWError):
    """The Ceph binaries (or boto3) are not installed."""


def missing_binaries():
    return [b for b in BINARIES if shutil.which(b) is None]


def import_boto3():
    """boto3 and botocore; Debian's python3-boto3 lives in
    /usr/lib/python3/dist-packages, which another python3 of the same
    minor version (pyenv, venv) can use too."""
    try:
        import boto3
        import botocore
    except ImportError:
        deb = "/usr/lib/python3/dist-packages"
        if sys.version_info[:2] != (3, 11) or not os.path.isdir(os.path.join(deb, "boto3")) or deb in sys.path:
            raise
        sys.path.append(deb)
        import boto3
        import botocore
    return boto3, botocore


def unavailable_reason():
    """None when a RadosGW can be started here, else why not."""
    miss = missing_binaries()
    if miss:
        return "missing " + " ".join(miss) + " (python3 tests/pylib/snapfs_test/radosgw.py install)"
    try:
        import_boto3()
    except ImportError:
        return "boto3 not importable by " + sys.executable + " (apt-get install python3-boto3)"
    return None


# ---------------------------------------------------------------- install

def _dpkg_installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return r.returncode == 0 and r.stdout.strip() == "installed"


def _as_root(cmd):
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo") is None:
        raise RadosGWError("not root and no sudo: run as root: " + " ".join(cmd))
    return ["sudo"] + cmd


def _apt(args):
    cmd = _as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get",
                    "-o", "DPkg::Lock::Timeout=600"] + args)
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(p.stdout)
    sys.stderr.flush()
    return p.returncode, p.stdout


def install():
    """apt-get install the packages that are missing; apt-get update only
    when the install fails for lack of (fresh) package lists."""
    missing = [p for p in PACKAGES if not _dpkg_installed(p)]
    if not missing and not missing_binaries():
        print("radosgw.py: " + " ".join(PACKAGES) + " already installed", file=sys.stderr)
        return 0
    missing = missing or list(PACKAGES)
    args = ["install", "-y", "--no-install-recommends"] + missing
    rc, out = _apt(args)
    lists_problem = ("Unable to locate package", "has no installation candidate",
                     "Failed to fetch", "404  Not Found", "404 Not Found")
    if rc != 0 and any(s in out for s in lists_problem):
        rc, _ = _apt(["update"])
        if rc == 0:
            rc, _ = _apt(args)
    if rc == 0 and missing_binaries():
        print("radosgw.py: still missing " + " ".join(missing_binaries()), file=sys.stderr)
        rc = 1
    return rc


# ---------------------------------------------------------------- helpers

def free_port():
    """A port on 127.0.0.1 that was free a moment ago (from the kernel's
    ephemeral range, so never in Ceph's 6800-7300 range for OSDs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid):
    """True while pid runs (a zombie, dead but not yet reaped, is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _tail(path, lines=40, max_bytes=64 << 10):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return "\n".join(data.splitlines()[-lines:])


_libc = None


def _pdeathsig_preexec(parent):
    """In the child before exec: die with SIGKILL when the parent thread
    dies; exit at once if the parent is already gone."""
    def fn():
        global _libc
        try:
            import ctypes
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:
            pass
        if os.getppid() != parent:
            os._exit(1)
    return fn


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def clean_stale(base=None):
    """Remove temp dirs of RadosGWs whose owner process is gone, first
    SIGKILLing any daemon still running on that dir's ceph.conf."""
    base = base or _base_dir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(DIR_PREFIX):
            continue
        d = os.path.join(base, name)
        try:
            with open(os.path.join(d, "owner")) as f:
                owner = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or just being made
        if _pid_alive(owner):
            continue
        conf = os.path.join(d, "ceph.conf")
        run = os.path.join(d, "run")
        try:
            pidfiles = [f for f in os.listdir(run) if f.endswith(".pid")]
        except OSError:
            pidfiles = []
        for pf in pidfiles:
            try:
                with open(os.path.join(run, pf)) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if conf in _cmdline(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(d, ignore_errors=True)


def _base_dir():
    base = tempfile.gettempdir()
    if len(base) + len(DIR_PREFIX) + 10 > MAX_DIR_LEN:
        base = "/tmp"
    return base


# ---------------------------------------------------------------- the server

_live = set()
_live_lock = threading.Lock()


def _stop_all_at_exit():
    with _live_lock:
        live = list(_live)
    for gw in live:
        try:
            gw.stop(grace=5.0)
        except Exception as e:  # never mask the real exit status
            print(f"radosgw.py: at exit: {e}", file=sys.stderr)


atexit.register(_stop_all_at_exit)


class _Daemon:
    def __init__(self, name, proc, pid_file, log_file, out_file):
        self.name = name
        self.proc = proc
        self.pid_file = pid_file
        self.log_file = log_file
        self.out_file = out_file

    def pid(self):
        """The pid from the daemon's pid file, when it names our child;
        else our child's pid (radosgw writes no pid file in foreground)."""
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().strip())
            if pid == self.proc.pid:
                return pid
        except (OSError, ValueError):
            pass
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None


class RadosGW:
    """One throwaway radosgw. start() (or `with`) makes it ready: the test
    user exists and `bucket` is created (unless bucket=None).

    Attributes once started: endpoint ("http://127.0.0.1:PORT", for
    path-style), port, mon_port, access_key, secret_key, region, bucket,
    dns_name ("localhost": virtual-host style is http://BUCKET.localhost:PORT),
    dir, conf, timings (seconds per phase and 'total')."""

    def __init__(self, bucket=BUCKET, memstore_bytes=MEMSTORE_BYTES,
                 start_timeout=START_TIMEOUT, base_dir=None, verbose=False,
                 extra_conf=None):
        self.bucket = bucket
        self.memstore_bytes = int(memstore_bytes)
        self.start_timeout = float(start_timeout)
        self.base_dir = base_dir
        self.verbose = verbose
        self.extra_conf = dict(extra_conf or {})
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.user = USER
        self.dns_name = "localhost"
        self.port = None
        self.mon_port = None
        self.endpoint = None
        self.dir = None
        self.conf = None
        self.timings = {}
        self._daemons = []
        self._env = None
        self._owner_pid = None

    # -- context manager
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return f"<RadosGW {self.endpoint or 'stopped'} dir={self.dir}>"

    def _log(self, msg):
        if self.verbose:
            print(f"radosgw.py: {msg}", file=sys.stderr, flush=True)

    # -- start
    def start(self):
        if self.dir is not None:
            raise RadosGWError("already started")
        why = unavailable_reason()
        if why:
            raise RadosGWUnavailable(why)
        base = self.base_dir or _base_dir()
        clean_stale(base)
        # A port picked free can be taken before the daemon binds it: then
        # start over on new ports (only for that cause, never other errors).
        for _ in range(3):
            try:
                self._start_once(base)
                return self
            except _PortTaken as e:
                self._log(f"{e}; retrying on other ports")
                self._teardown(grace=2.0)
            except BaseException:
                self._teardown(grace=2.0)
                raise
        raise RadosGWError("could not bind free ports three times in a row")

    def _start_once(self, base):
        t_all = time.monotonic()
        deadline = t_all + self.start_timeout
        self.timings = {}
        self.dir = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base)
        with _live_lock:
            _live.add(self)
        self._owner_pid = os.getpid()
        with open(os.path.join(self.dir, "owner"), "w") as f:
            f.write(f"{os.getpid()}\n")
        for sub in ("run", "log", "crash", "mon-a", "osd-0", "rgw"):
            os.mkdir(os.path.join(self.dir, sub))
        self.port = free_port()
        self.mon_port = free_port()
        while self.mon_port == self.port:
            self.mon_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.conf = os.path.join(self.dir, "ceph.conf")
        fsid = str(uuid.uuid4())
        osd_uuid = str(uuid.uuid4())
        self._write_conf(fsid)
        self._env = dict(os.environ)
        for var in ("CEPH_ARGS", "CEPH_CONF", "CEPH_KEYRING"):
            self._env.pop(var, None)
        self._env["TMPDIR"] = self.dir

        t = time.monotonic()
        monmap = os.path.join(self.dir, "monmap")
        self._run(["monmaptool", "--create", "--add", "a", f"v2:127.0.0.1:{self.mon_port}",
                   "--fsid", fsid, monmap], deadline)
        self._run(["ceph-mon", "-c", self.conf, "-i", "a", "--mkfs", "--monmap", monmap], deadline)
        mon = self._spawn("mon.a", ["ceph-mon", "-c", self.conf, "-i", "a", "-f"])
        # `osd create UUID` is idempotent: a retry after a timed-out try
        # cannot make a second OSD id. It is also the wait for the monitor.
        out = self._ceph_retry(["osd", "create", osd_uuid], deadline, watch=[mon])
        if out.strip() != "0":
            raise self._error(f"`ceph osd create` gave id {out.strip()!r}, expected 0")
        self.timings["mon"] = time.monotonic() - t

        t = time.monotonic()
        self._run(["ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], deadline,
                  watch=[mon])
        osd = self._spawn("osd.0", ["ceph-osd", "-c", self.conf, "-i", "0", "-f"])
        # radosgw only once the OSD is up: a pool it creates before that
        # gets its placement groups at the monitor's next tick (up to 5 s).
        while True:
            st = json.loads(self._ceph_retry(["osd", "stat", "-f", "json"], deadline, watch=[mon, osd]))
            if st.get("num_up_osds", 0) >= 1:
                break
            if time.monotonic() > deadline:
                raise self._error(f"osd.0 not up within {self.start_timeout:g}s: {st}")
            time.sleep(0.1)
        self.timings["osd"] = time.monotonic() - t

        t = time.monotonic()
        rgw = self._spawn("client.rgw.a", ["radosgw", "-c", self.conf, "-n", "client.rgw.a", "-f"])
        self._wait_http(deadline, watch=[mon, osd, rgw])
        self.timings["rgw"] = time.monotonic() - t

        t = time.monotonic()
        self._run(["radosgw-admin", "-c", self.conf, "user", "create", f"--uid={self.user}",
                   "--display-name=snapfs tests", f"--access-key={self.access_key}",
                   f"--secret-key={self.secret_key}"], deadline, watch=[mon, osd, rgw])
        self.timings["user"] = time.monotonic() - t
        if self.bucket:
            t = time.monotonic()
            self.create_bucket(self.bucket)
            self.timings["bucket"] = time.monotonic() - t
        self.timings["total"] = time.monotonic() - t_all
        self._log(f"ready at {self.endpoint} in {self.timings['total']:.1f}s ({self.dir})")

    def _write_conf(self, fsid):
        d = self.dir
        g = {
            "fsid": fsid,
            "mon_host": f"v2:127.0.0.1:{self.mon_port}",
            "mon_initial_members": "a",
            "public_addr": "127.0.0.1",
            "cluster_addr": "127.0.0.1",
            "ms_bind_ipv6": "false",
            "ms_bind_msgr1": "false",
            # A port taken meanwhile: fail at once (start() picks new ones)
            # rather than retry 3 times 5 s apart. (With a count of 0 the
            # error is misreported as EPERM.)
            "ms_bind_retry_count": "1",
            "ms_bind_retry_delay": "0",
            "auth_cluster_required": "none",
            "auth_service_required": "none",
            "auth_client_required": "none",
            "ms_mon_client_mode": "crc secure",
            "ms_client_mode": "crc secure",
            "osd_pool_default_size": "1",
            "osd_pool_default_min_size": "1",
            "mon_allow_pool_size_one": "true",
            "osd_pool_default_pg_num": "8",
            "osd_pool_default_pgp_num": "8",
            "osd_pool_default_pg_autoscale_mode": "off",
            "osd_crush_chooseleaf_type": "0",
            "mon_warn_on_pool_no_redundancy": "false",
            "mon_warn_on_insecure_global_id_reclaim_allowed": "false",
            # A throwaway one-monitor cluster: propose map changes at once
            # (default: batch them for 1 s, which makes each of radosgw's
            # pool creations take 1-2 s), and let an OSD that is told to
            # stop not wait 5 s for the monitor.
            "paxos_propose_interval": "0.01",
            "paxos_min_wait": "0.01",
            "osd_mon_shutdown_timeout": "1",
            # The monitor's store is tiny; do not refuse to run on a full disk.
            "mon_data_avail_warn": "2",
            "mon_data_avail_crit": "1",
            "run_dir": f"{d}/run",
            "pid_file": f"{d}/run/$name.pid",
            "log_file": f"{d}/log/$name.log",
            "admin_socket": f"{d}/run/$name.$pid.asok",
            "crash_dir": f"{d}/crash",
            # The monitor's cluster and audit logs (default /var/log/ceph/).
            "mon_cluster_log_file": f"default={d}/log/$cluster.$channel.log cluster={d}/log/$cluster.log",
            "keyring": f"{d}/keyring",
            "mon_data": f"{d}/mon-$id",
            "osd_data": f"{d}/osd-$id",
            "rgw_data": f"{d}/rgw",
        }
        sections = {
            "global": g,
            "osd.0": {
                "osd_objectstore": "memstore",
                "memstore_device_bytes": str(self.memstore_bytes),
            },
            "client.rgw.a": {
                "rgw_frontends": f"beast endpoint=127.0.0.1:{self.port}",
                # Host: BUCKET.localhost:PORT is virtual-host addressing
                # (curl resolves *.localhost to loopback by itself);
                # Host: 127.0.0.1:PORT stays path-style.
                "rgw_dns_name": self.dns_name,
                # Free the data of deleted and overwritten objects (and of
                # aborted uploads) within seconds, not after 2 h: it lives in
                # RAM, and a full memstore blocks every write.
                "rgw_gc_obj_min_wait": "5",
                "rgw_gc_processor_period": "5",
            },
        }
        for key, val in self.extra_conf.items():
            sec, _, opt = key.rpartition("/")
            sections.setdefault(sec or "global", {})[opt] = str(val)
        with open(self.conf, "w") as f:
            for sec, opts in sections.items():
                f.write(f"[{sec}]\n")
                for k, v in opts.items():
                    f.write(f"{k} = {v}\n")
                f.write("\n")

    def _spawn(self, name, cmd):
        out_file = os.path.join(self.dir, "log", name + ".out")
        with open(out_file, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.dir, env=self._env, start_new_session=True,
                                    preexec_fn=_pdeathsig_preexec(os.getpid()))
        d = _Daemon(name, proc, os.path.join(self.dir, "run", name + ".pid"),
                    os.path.join(self.dir, "log", name + ".log"), out_file)
        self._daemons.append(d)
        self._log(f"started {name} pid {proc.pid}")
        return d

    def _exec(self, cmd, timeout, watch=()):
        """Run cmd; (returncode or None on timeout, stdout, stderr). Gives
        up early (raising) when a daemon in `watch` dies meanwhile, so a
        client blocked on a dead monitor does not wait out its timeout."""
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=self.dir, env=self._env, text=True,
                             start_new_session=True, preexec_fn=_pdeathsig_preexec(os.getpid()))
        end = time.monotonic() + timeout
        try:
            while True:
                try:
                    out, err = p.communicate(timeout=0.1)
                    return p.returncode, out, err
                except subprocess.TimeoutExpired:
                    pass
                self._check_alive(watch)
                if time.monotonic() > end:
                    return None, "", ""
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()

    def _run(self, cmd, deadline, timeout=60.0, watch=()):
        left = max(1.0, min(timeout, deadline - time.monotonic()))
        rc, out, err = self._exec(cmd, left, watch)
        if rc is None:
            raise self._error(f"`{shlex.join(cmd)}` did not finish in {left:.0f}s")
        if rc != 0:
            raise self._error(f"`{shlex.join(cmd)}` exited {rc}:\n{out}{err}")
        return out

    def _ceph_retry(self, args, deadline, watch):
        """`ceph ARGS` until it succeeds (the monitor may not answer yet)."""
        cmd = ["ceph", "-c", self.conf, "--connect-timeout", "5"] + args
        last = ""
        while True:
            self._check_alive(watch)
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error(f"`{shlex.join(cmd)}` kept failing: {last}")
            rc, out, err = self._exec(cmd, max(1.0, min(30.0, left)), watch)
            if rc == 0:
                return out
            last = "timed out" if rc is None else f"exit {rc}: {err.strip()[-500:]}"
            time.sleep(0.2)

    def _check_alive(self, watch):
        for d in watch:
            if not d.alive():
                msg = f"{d.name} exited with status {d.proc.returncode} during start"
                if self._port_taken(d):
                    raise _PortTaken(msg)
                raise self._error(msg)

    def _port_taken(self, d):
        text = (_tail(d.log_file, 200) or "") + (_tail(d.out_file, 200) or "")
        return any(s in text for s in ("Address already in use", "EADDRINUSE", "unable to bind"))

    def _wait_http(self, deadline, watch):
        last = None
        while True:
            self._check_alive(watch)
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2) as r:
                    r.read()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except (OSError, http.client.HTTPException) as e:
                last = e
            if time.monotonic() > deadline:
                raise self._error(f"{self.endpoint} did not answer within {self.start_timeout:g}s "
                                  f"(last: {last!r}); osd stat: {self._osd_stat()}")
            time.sleep(0.1)

    def _osd_stat(self):
        try:
            p = subprocess.run(["ceph", "-c", self.conf, "--connect-timeout", "3", "osd", "stat"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=10, env=self._env, cwd=self.dir)
            return p.stdout.strip()
        except Exception as e:
            return repr(e)

    def logs(self, lines=40):
        """The tail of each daemon's log file and of its stdout/stderr."""
        parts = []
        for d in self._daemons:
            for path in (d.log_file, d.out_file):
                t = _tail(path, lines)
                if t:
                    parts.append(f"--- {d.name}: {os.path.basename(path)} (last {lines} lines)\n{t}")
        if self.dir:
            t = _tail(os.path.join(self.dir, "log", "client.admin.log"), lines)
            if t:
                parts.append(f"--- client.admin.log (last {lines} lines)\n{t}")
        return "\n".join(parts)

    def _error(self, msg):
        keep = "kept" if os.environ.get("SNAPFS_RGW_KEEP") == "1" else "removed; SNAPFS_RGW_KEEP=1 keeps it"
        return RadosGWError(f"radosgw fixture: {msg}\n(dir {self.dir}, {keep})\n{self.logs()}")

    # -- stop
    def stop(self, grace=STOP_GRACE):
        """SIGTERM every daemon (pid from its pid file), SIGKILL those still
        there after `grace` seconds, remove the temp dir. Idempotent."""
        self._teardown(grace)

    def _teardown(self, grace):
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            # A forked child (e.g. a test's subprocess via fork) must not
            # tear down its parent's server.
            return
        daemons, self._daemons = self._daemons, []
        # One at a time, radosgw first: it hangs in shutdown if the OSD is
        # already gone, and the OSD tells the monitor it is going.
        for d in reversed(daemons):
            if d.alive():
                try:
                    os.kill(d.pid(), signal.SIGTERM)
                except OSError:
                    pass
            try:
                d.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._log(f"{d.name} ignored SIGTERM for {grace:.0f}s: SIGKILL")
                try:
                    d.proc.kill()
                except OSError:
                    pass
                d.proc.wait()
        if self.dir and os.environ.get("SNAPFS_RGW_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        with _live_lock:
            _live.discard(self)
        self.dir = None
        self.endpoint = None

    # -- using it
    def pids(self):
        return {d.name: d.pid() for d in self._daemons if d.alive()}

    def rss_kib(self):
        """Resident memory of each running daemon, in KiB."""
        out = {}
        for name, pid in self.pids().items():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            out[name] = int(line.split()[1])
            except OSError:
                pass
        return out

    def env(self):
        """Variables that point AWS tools (and snapfs) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "SNAPFS_TEST_BUCKET": self.bucket or "",
        }

    def client(self, access_key=None, secret_key=None, region=None, **config):
        """A boto3 S3 client for this server: path-style, endpoint_url,
        region us-east-1, no AWS config or credentials files consulted
        (AWS_PROFILE and friends in the environment cannot break it)."""
        boto3, botocore = import_boto3()
        import botocore.config
        import botocore.session
        bs = botocore.session.Session(session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        })
        session = boto3.session.Session(botocore_session=bs)
        kw = dict(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=60)
        kw.update(config)
        try:
            # botocore >= 1.36 adds CRC checksums (aws-chunked bodies) on its
            # own; this radosgw predates them. Ask only when required.
            cfg = botocore.config.Config(request_checksum_calculation="when_required",
                                         response_checksum_validation="when_required", **kw)
        except TypeError:
            cfg = botocore.config.Config(**kw)
        return session.client("s3", endpoint_url=self.endpoint, region_name=region or self.region,
                               aws_access_key_id=access_key or self.access_key,
                               aws_secret_access_key=secret_key or self.secret_key, config=cfg)

    def create_bucket(self, name=None):
        """Create bucket `name` (a fresh unique one when None) owned by the
        test user; an existing one of ours is fine. Returns the name."""
        if name is None:
            name = "t-" + uuid.uuid4().hex[:20]
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def empty_bucket(self, name, delete=True):
        """Abort its multipart uploads, delete every object (and then the
        bucket): their data lives in RAM until deleted."""
        c = self.client()
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for u in page.get("Uploads", []):
                c.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        if delete:
            c.delete_bucket(Bucket=name)

    def admin(self, *args):
        """Run radosgw-admin on this cluster; returns its stdout."""
        return self._run(["radosgw-admin", "-c", self.conf] + list(args), time.monotonic() + 60)

    def signed_request(self, method, path, body=b"", headers=None, query=None,
                       secret_key=None, payload_sha256=None, virtual_host=False):
        """A SigV4-signed request made by hand (urllib), for what boto3
        will not send. path is "/bucket/key" (not yet percent-encoded);
        payload_sha256 overrides the x-amz-content-sha256 that is signed
        and sent (to send a body that does not match it); virtual_host
        sends it as Host: bucket.localhost:PORT, path /key (connecting to
        127.0.0.1 all the same).
        Returns (status, headers dict with lowercase names, body bytes)."""
        _, botocore = import_boto3()
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        q = urllib.parse.urlencode(sorted((query or {}).items()), quote_via=urllib.parse.quote)
        hdrs = dict(headers or {})
        sign_base = self.endpoint
        if virtual_host:
            bucket, _, rest = path.lstrip("/").partition("/")
            path = "/" + rest
            sign_base = f"http://{bucket}.{self.dns_name}:{self.port}"
            hdrs["Host"] = f"{bucket}.{self.dns_name}:{self.port}"
        tail = urllib.parse.quote(path, safe="/~") + ("?" + q if q else "")
        url = self.endpoint + tail
        req = botocore.awsrequest.AWSRequest(method=method, url=sign_base + tail, data=body, headers=hdrs)
        creds = botocore.credentials.Credentials(self.access_key, secret_key or self.secret_key)
        # S3SigV4Auth: no path normalization; sets and signs
        # x-amz-content-sha256 from its payload() (SHA-256 of the body).
        auth = botocore.auth.S3SigV4Auth(creds, "s3", self.region)
        if payload_sha256 is not None:
            auth.payload = lambda request: payload_sha256
        auth.add_auth(req)
        hdrs = dict(req.headers.items())
        r = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                   method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class _PortTaken(Exception):
    pass


def content_md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# ---------------------------------------------------------------- CLI

def _cmd_run(args):
    gw = RadosGW(bucket=args.bucket, verbose=True)
    stop = threading.Event()

    def on_signal(signum, frame):
        if gw.endpoint is None or not gw.timings.get("total"):
            raise KeyboardInterrupt  # still starting: unwind, start() cleans up
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        gw.start()
    except RadosGWError as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        for k, v in gw.env().items():
            print(f"export {k}={shlex.quote(v)}")
        sys.stdout.flush()
        print(f"radosgw.py: serving {gw.endpoint} (bucket {gw.bucket}, dir {gw.dir}); "
              "SIGTERM or ^C stops it", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            dead = [d.name for d in gw._daemons if not d.alive()]
            if dead:
                print("radosgw.py: died: " + " ".join(dead) + "\n" + gw.logs(), file=sys.stderr)
                return 1
    finally:
        print("radosgw.py: stopping", file=sys.stderr, flush=True)
        gw.stop()
    return 0


def _cmd_probe(args):
    t = time.monotonic()
    with RadosGW(bucket=args.bucket, verbose=args.verbose) as gw:
        started = time.monotonic() - t
        c = gw.client()
        c.put_object(Bucket=gw.bucket, Key="probe", Body=b"x" * (1 << 20))
        report = {"endpoint": gw.endpoint, "start_s": round(started, 2),
                  "phases_s": {k: round(v, 2) for k, v in gw.timings.items()},
                  "rss_kib": gw.rss_kib()}
        report["rss_total_mib"] = round(sum(report["rss_kib"].values()) / 1024, 1)
        t = time.monotonic()
    report["stop_s"] = round(time.monotonic() - t, 2)
    print(json.dumps(report, indent=1))
    return 0


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="apt-get install " + " ".join(PACKAGES))
    p = sub.add_parser("run", help="start one and print export lines; SIGTERM/^C stops it")
    p.add_argument("--bucket", default=BUCKET)
    p = sub.add_parser("probe", help="start one, print timings and memory (JSON), stop")
    p.add_argument("--bucket", default=BUCKET)
    p.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "install":
        return install()
    if args.cmd == "run":
        return _cmd_run(args)
    return _cmd_probe(args)


if __name__ == "__main__":
    sys.exit(main())
